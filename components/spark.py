"""Spark on Kubernetes: namespace, driver RBAC, the Kubeflow Spark operator, history server, jobs.

Spark's own documentation (running-on-kubernetes.html, "RBAC") asks that the driver's service
account may create and watch pods, services, configmaps and persistentvolumeclaims in the job
namespace; that is all the driver Role grants, and only in that namespace. Executors get a service
account with no rights and no token.

Every job and notebook writes its event log to one place the history server reads: the shared
event-log volume (Minikube, existing clusters), or an S3 prefix (EKS). On S3 the S3A connector
(hadoop-aws, in the images) authenticates with the pod's IAM role for service accounts (IRSA): the
driver, executor, history-server and notebook service accounts carry an `eks.amazonaws.com/role-arn`
annotation, EKS's pod identity webhook projects a web-identity token into their pods, and S3A is
told to use exactly that token (`S3A_CREDENTIALS_PROVIDER`), never static keys or the node's role.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Union

import pulumi
import pulumi_kubernetes as k8s
from pydantic import BaseModel, ConfigDict, Field

from components.kubernetes_types import (
    RESTRICTED_CONTAINER,
    SHARED_GROUP,
    ByteQuantity,
    DnsLabel,
    Namespace,
    Resources,
    bytes_of,
    labels,
    millicores_of,
    component_namespace,
)
from components.storage import SHARED_VOLUMES, PlatformStorage, protect_data_volumes

SPARK_VERSION = "4.2.0"
"""Spark release of the platform's image; the notebook's PySpark must equal it."""
SPARK_VERSIONS = ("4.2.0",)
"""Spark releases for which the official `apache/spark` image publishes a python3 variant we build on."""
SPARK_OPERATOR_CHART = {
    "repository": "https://kubeflow.github.io/spark-operator",
    "chart": "spark-operator",
    "version": "2.5.2",
}
SPARK_UID = 185  # the `spark` user of the official apache/spark image

HADOOP_VERSION = "3.5.0"
"""Hadoop client of Spark 4.2.0 (its `hadoop.version`; `hadoop-client-api-3.5.0.jar` in the apache/spark
image and in PySpark): the S3A connector jars the images add must be this release of hadoop-aws."""
AWS_SDK_VERSION = "2.35.4"
"""AWS SDK v2 `bundle` that hadoop-aws HADOOP_VERSION is built against (hadoop-project's aws-java-sdk-v2.version)."""
ANALYTICS_ACCELERATOR_VERSION = "1.3.1"
"""`analyticsaccelerator-s3`, a compile-scope dependency of hadoop-aws HADOOP_VERSION."""

# Hadoop's own default S3A chain (hadoop-aws authentication.md, 3.4+) has no web-identity provider and
# ends with IAMInstanceCredentialsProvider, the node's role; this provider reads the token and role
# ARN the pod identity webhook injects (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN).
S3A_CREDENTIALS_PROVIDER = "software.amazon.awssdk.auth.credentials.WebIdentityTokenFileCredentialsProvider"
IRSA_ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
HISTORY_SERVER_SERVICE_ACCOUNT = "spark-history-server"
HISTORY_PORT = 18080

# The rules Spark's documentation asks of the driver's service account, as the Spark operator
# chart grants them to its own `spark` service account (charts/spark-operator-chart/templates/spark/rbac.yaml).
DRIVER_RULES = [
    {
        "apiGroups": [""],
        "resources": ["pods", "configmaps", "persistentvolumeclaims", "services"],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"],
    }
]

EVENT_LOG_DIR = f"file://{SHARED_VOLUMES['event_logs'][1]}"
DRIVER_PORT = 29413
BLOCK_MANAGER_PORT = 29414


@dataclass(frozen=True)
class SharedVolumeEventLog:
    """Event logs on the shared event-log volume, mounted at the same path in every pod."""

    dir: str = EVENT_LOG_DIR


@dataclass(frozen=True)
class S3EventLog:
    """Event logs under an S3 prefix, read and written with the pods' IRSA roles.

    `dir` is `s3a://<bucket>/<prefix>`; the prefix must exist (Spark refuses a missing event-log
    directory, and S3 has one only once an object or directory marker is under it).
    """

    dir: str
    region: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"s3a://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^\s]+", self.dir):
            raise ValueError(f"{self.dir!r} is not an S3A prefix: write s3a://<bucket>/<prefix>")
        if not self.region:
            raise ValueError("an S3 event log needs the bucket's region")


EventLogLocation = Union[SharedVolumeEventLog, S3EventLog]
SHARED_VOLUME_EVENT_LOG = SharedVolumeEventLog()


@dataclass(frozen=True)
class SparkS3Roles:
    """ARNs of the IAM roles Spark's service accounts assume (IRSA), each trusted by exactly that account."""

    driver: pulumi.Input[str]
    executor: pulumi.Input[str]
    history_server: pulumi.Input[str]


def spark_build_args(spark_version: str, event_log: EventLogLocation) -> dict[str, str]:
    """Build args of images/spark and images/notebook: the Spark version, and the S3A connector
    (`S3A_CONNECTOR`) exactly where Spark reaches S3, that is where its event log is there; the
    connector's AWS SDK bundle is over 600 MB that a cluster without S3 does not need."""
    return {"SPARK_VERSION": spark_version, "S3A_CONNECTOR": str(isinstance(event_log, S3EventLog)).lower()}


def shared_volumes_for(event_log: EventLogLocation) -> tuple[str, ...]:
    """The shared volumes (SHARED_VOLUMES keys) a namespace of Spark drivers mounts: the event-log
    volume only while event logs live there."""
    return ("event_logs", "shared_data") if isinstance(event_log, SharedVolumeEventLog) else ("shared_data",)


def s3a_conf(region: str) -> dict[str, str]:
    """S3A settings for pods with an IRSA role: the web-identity token, the buckets' region."""
    return {
        "spark.hadoop.fs.s3a.aws.credentials.provider": S3A_CREDENTIALS_PROVIDER,
        "spark.hadoop.fs.s3a.endpoint.region": region,
    }


def event_log_conf(event_log: EventLogLocation) -> dict[str, str]:
    """What a driver needs to write its event log to `event_log`."""
    conf = {"spark.eventLog.enabled": "true", "spark.eventLog.dir": event_log.dir}
    if isinstance(event_log, S3EventLog):
        conf.update(s3a_conf(event_log.region))
    return conf


def history_server_opts(event_log: EventLogLocation) -> str:
    """SPARK_HISTORY_OPTS: read `event_log` and serve the UI on HISTORY_PORT."""
    props = {"spark.history.fs.logDirectory": event_log.dir, "spark.history.ui.port": str(HISTORY_PORT)}
    if isinstance(event_log, S3EventLog):
        props.update(s3a_conf(event_log.region))
    return " ".join(f"-D{key}={value}" for key, value in props.items())


def irsa_metadata(role_arn: pulumi.Input[str] | None) -> dict:
    """Service account metadata for an IRSA role: the role-arn annotation, or nothing without a role."""
    return {"annotations": {IRSA_ROLE_ANNOTATION: role_arn}} if role_arn is not None else {}


def spark_memory(memory: str) -> str:
    """A Kubernetes quantity in Spark's own notation (`1Gi` -> `1024m`)."""
    return f"{bytes_of(memory) // 2**20}m"


def pod_memory(memory: str) -> int:
    """Bytes a Spark driver/executor pod requests: the JVM heap plus Spark's default overhead."""
    heap = bytes_of(memory)
    return heap + max(384 * 2**20, heap // 10)


class DriverConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cores: int = Field(1, ge=1, le=16, description="Driver cores.")
    memory: ByteQuantity = Field("1Gi", description="Driver JVM memory (`spark.driver.memory`).")


class ExecutorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    instances: int = Field(1, ge=1, le=100, description="Executors per application.")
    cores: int = Field(1, ge=1, le=16, description="Cores per executor.")
    memory: ByteQuantity = Field("1Gi", description="Executor JVM memory (`spark.executor.memory`).")


class HistoryServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Run the Spark history server.")
    resources: Resources = Field(
        Resources(cpu_request="100m", cpu_limit="500m", memory_request="512Mi", memory_limit="1Gi"),
        description="History server container resources.",
    )


class OperatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal["2.5.2"] = Field("2.5.2", description="Kubeflow Spark operator chart version.")
    controller_resources: Resources = Field(
        Resources(cpu_request="100m", cpu_limit="500m", memory_request="128Mi", memory_limit="512Mi"),
        description="Operator controller resources.",
    )
    webhook_resources: Resources = Field(
        Resources(cpu_request="50m", cpu_limit="200m", memory_request="64Mi", memory_limit="256Mi"),
        description="Operator webhook resources.",
    )


class SparkConfig(BaseModel):
    """The `spark` config key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: Namespace = Field("spark", description="Namespace of Spark jobs, the operator and the history server.")
    version: Literal[SPARK_VERSIONS] = Field(SPARK_VERSION, description="Spark version of the platform image.")  # type: ignore[valid-type]
    driver: DriverConfig = Field(DriverConfig(), description="Driver size of the example job.")
    executor: ExecutorConfig = Field(ExecutorConfig(), description="Executor size for jobs and notebooks.")
    history_server: HistoryServerConfig = Field(HistoryServerConfig(), description="Spark history server.")
    operator: OperatorConfig = Field(OperatorConfig(), description="Kubeflow Spark operator.")
    example_job: bool = Field(True, description="Submit the SparkPi example SparkApplication.")
    driver_service_account: DnsLabel = Field("spark-driver", description="Service account of Spark drivers.")
    executor_service_account: DnsLabel = Field("spark-executor", description="Service account of Spark executors.")

    def requests(self) -> tuple[int, int]:
        """(millicores, bytes) the Spark side asks the scheduler for while the example job runs."""
        parts = [self.operator.controller_resources, self.operator.webhook_resources]
        if self.history_server.enabled:
            parts.append(self.history_server.resources)
        cpu = sum(millicores_of(r.cpu_request) for r in parts)
        memory = sum(bytes_of(r.memory_request) for r in parts)
        if self.example_job:
            cpu += 1000 * (self.driver.cores + self.executor.instances * self.executor.cores)
            memory += pod_memory(self.driver.memory) + self.executor.instances * pod_memory(self.executor.memory)
        return cpu, memory


def _volume_conf(role: str, volume: str) -> dict[str, str]:
    claim, path = SHARED_VOLUMES[volume]
    prefix = f"spark.kubernetes.{role}.volumes.persistentVolumeClaim.{claim}"
    return {f"{prefix}.options.claimName": claim, f"{prefix}.mount.path": path}


EXECUTOR_TEMPLATE_CONTAINER = "executor"
EXECUTOR_TEMPLATE_FILE = "executor-pod-template.yaml"


def executor_pod_template() -> dict:
    """The pod template notebook-started executors get: Spark has no setting for a pod's security
    context or supplemental groups, and without group 100 an executor could not write the shared
    data volume (group 100, mode 2775)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"labels": labels("spark-executor", "spark")},
        "spec": {
            "securityContext": {
                "runAsUser": SPARK_UID, "runAsGroup": SPARK_UID, "runAsNonRoot": True,
                "supplementalGroups": [SHARED_GROUP], "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [{"name": EXECUTOR_TEMPLATE_CONTAINER, "securityContext": RESTRICTED_CONTAINER}],
        },
    }


def spark_defaults(
    config: SparkConfig,
    image: str,
    pull_policy: str,
    conf_dir: str = "/etc/spark",
    event_log: EventLogLocation = SHARED_VOLUME_EVENT_LOG,
) -> dict[str, str]:
    """spark-defaults for a client-mode driver in a notebook pod that runs executors in `config.namespace`.

    `spark.driver.host` is the notebook pod's IP, from the POD_IP variable the pod sets: executors
    connect back to it on the fixed driver and block-manager ports the network policy opens.
    """
    return {
        "spark.master": "k8s://https://kubernetes.default.svc:443",
        "spark.submit.deployMode": "client",
        "spark.kubernetes.namespace": config.namespace,
        "spark.kubernetes.container.image": image,
        "spark.kubernetes.container.image.pullPolicy": pull_policy,
        "spark.kubernetes.authenticate.executor.serviceAccountName": config.executor_service_account,
        "spark.driver.host": "${env:POD_IP}",
        "spark.driver.bindAddress": "0.0.0.0",
        "spark.driver.port": str(DRIVER_PORT),
        "spark.driver.blockManager.port": str(BLOCK_MANAGER_PORT),
        "spark.executor.instances": str(config.executor.instances),
        "spark.executor.cores": str(config.executor.cores),
        # Spark sets an executor's memory limit itself, but a CPU limit only when told.
        "spark.kubernetes.executor.limit.cores": str(config.executor.cores),
        "spark.executor.memory": spark_memory(config.executor.memory),
        **event_log_conf(event_log),
        "spark.kubernetes.executor.podTemplateFile": f"{conf_dir}/{EXECUTOR_TEMPLATE_FILE}",
        "spark.kubernetes.executor.podTemplateContainerName": EXECUTOR_TEMPLATE_CONTAINER,
        **_volume_conf("executor", "shared_data"),
    }


def spark_defaults_conf(defaults: dict[str, str]) -> str:
    """The text of a `spark-defaults.conf` file."""
    return "".join(f"{key} {value}\n" for key, value in sorted(defaults.items()))


def spark_pi(
    config: SparkConfig, image: pulumi.Input[str], pull_policy: str, event_log: EventLogLocation = SHARED_VOLUME_EVENT_LOG
) -> dict:
    """The SparkPi example as a `sparkoperator.k8s.io/v1beta2` SparkApplication spec."""
    spark_conf = event_log_conf(event_log)
    if isinstance(event_log, SharedVolumeEventLog):
        spark_conf.update(_volume_conf("driver", "event_logs"))
    pod_security = {"runAsUser": SPARK_UID, "runAsGroup": SPARK_UID, "runAsNonRoot": True, "supplementalGroups": [SHARED_GROUP]}
    return {
        "type": "Scala",
        "mode": "cluster",
        "image": image,
        "imagePullPolicy": pull_policy,
        "mainClass": "org.apache.spark.examples.SparkPi",
        "mainApplicationFile": f"local:///opt/spark/examples/jars/spark-examples_2.13-{config.version}.jar",
        "arguments": ["1000"],
        "sparkVersion": config.version,
        "restartPolicy": {"type": "Never"},
        "sparkConf": spark_conf,
        "driver": {
            "cores": config.driver.cores,
            "coreLimit": str(config.driver.cores),
            "memory": spark_memory(config.driver.memory),
            "serviceAccount": config.driver_service_account,
            "labels": labels("spark-pi", "spark-job"),
            "podSecurityContext": pod_security,
            "securityContext": RESTRICTED_CONTAINER,
        },
        "executor": {
            "instances": config.executor.instances,
            "cores": config.executor.cores,
            "coreLimit": str(config.executor.cores),
            "memory": spark_memory(config.executor.memory),
            "serviceAccount": config.executor_service_account,
            "labels": labels("spark-pi", "spark-job"),
            "podSecurityContext": pod_security,
            "securityContext": RESTRICTED_CONTAINER,
        },
    }


def operator_values(config: SparkConfig) -> dict:
    """Values for the Kubeflow Spark operator chart: watch exactly the Spark namespace."""
    return {
        "spark": {
            "jobNamespaces": [config.namespace],
            # Our own driver service account and Role replace the chart's broader ones.
            "serviceAccount": {"create": False},
            "rbac": {"create": False},
        },
        "controller": {"replicas": 1, "resources": config.operator.controller_resources.to_kubernetes()},
        "webhook": {"enable": True, "replicas": 1, "resources": config.operator.webhook_resources.to_kubernetes()},
        "hook": {"upgradeCrd": False},
    }


class SparkOnKubernetes(pulumi.ComponentResource):
    """Spark's namespace, driver RBAC, the Spark operator, the history server and the example job.

    `event_log` says where jobs write event logs and the history server reads them (the shared
    volume unless told otherwise); `s3_roles`, when given, are the IAM roles the driver, executor and
    history-server service accounts assume for S3. An S3 event log needs them.
    """

    namespace: pulumi.Output[str]
    """The Spark namespace."""
    driver_role: pulumi.Output[str]
    """Name of the Role, in the Spark namespace, that a Spark driver needs."""
    history_url: pulumi.Output[str]
    """In-cluster URL of the Spark history server (empty when disabled)."""
    event_log: EventLogLocation
    """Where Spark writes event logs (hand it to JupyterHub, whose notebooks are drivers too)."""

    def __init__(
        self,
        name: str,
        args: SparkConfig,
        image: pulumi.Input[str],
        pull_policy: str,
        storage: PlatformStorage,
        event_log: EventLogLocation = SHARED_VOLUME_EVENT_LOG,
        s3_roles: SparkS3Roles | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        if isinstance(event_log, S3EventLog) and s3_roles is None:
            raise ValueError(f"Spark's event log {event_log.dir} is on S3, but no s3_roles were given to reach it")
        super().__init__("dataplatform:spark:SparkOnKubernetes", name, None, opts)
        ns = component_namespace(f"{name}-namespace", args.namespace, "spark", self)
        namespace = ns.metadata.name
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])
        driver_sa = k8s.core.v1.ServiceAccount(
            f"{name}-driver",
            metadata={
                "name": args.driver_service_account, "namespace": namespace, "labels": labels("spark-driver", "spark"),
                **irsa_metadata(s3_roles.driver if s3_roles else None),
            },
            opts=in_ns,
        )
        # IRSA needs no API token: the pod identity webhook adds its own projected token volume.
        executor_sa = k8s.core.v1.ServiceAccount(
            f"{name}-executor",
            metadata={
                "name": args.executor_service_account, "namespace": namespace, "labels": labels("spark-executor", "spark"),
                **irsa_metadata(s3_roles.executor if s3_roles else None),
            },
            automount_service_account_token=False,
            opts=in_ns,
        )
        role = k8s.rbac.v1.Role(
            f"{name}-driver-role",
            metadata={"name": "spark-driver", "namespace": namespace, "labels": labels("spark-driver", "spark")},
            rules=DRIVER_RULES,
            opts=in_ns,
        )
        k8s.rbac.v1.RoleBinding(
            f"{name}-driver-binding",
            metadata={"name": "spark-driver", "namespace": namespace, "labels": labels("spark-driver", "spark")},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.metadata.name},
            subjects=[{"kind": "ServiceAccount", "name": driver_sa.metadata.name, "namespace": namespace}],
            opts=in_ns,
        )
        claims = {volume: storage.claim(volume, namespace, self) for volume in shared_volumes_for(event_log)}
        event_logs = [claims["event_logs"]] if "event_logs" in claims else []

        operator = k8s.helm.v4.Chart(
            f"{name}-operator",
            name="spark-operator",
            chart=SPARK_OPERATOR_CHART["chart"],
            version=args.operator.version,
            repository_opts={"repo": SPARK_OPERATOR_CHART["repository"]},
            namespace=namespace,
            values=operator_values(args),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns], transforms=[protect_data_volumes]),
        )

        self.history_url = pulumi.Output.from_input("")
        if args.history_server.enabled:
            history_sa = k8s.core.v1.ServiceAccount(
                f"{name}-history-sa",
                metadata={
                    "name": HISTORY_SERVER_SERVICE_ACCOUNT, "namespace": namespace,
                    "labels": labels("spark-history-server", "spark"),
                    **irsa_metadata(s3_roles.history_server if s3_roles else None),
                },
                automount_service_account_token=False,
                opts=in_ns,
            )
            self.history_url = self._history_server(
                name, args, image, pull_policy, namespace, event_log, depends_on=[history_sa, *event_logs]
            )

        if args.example_job:
            k8s.apiextensions.CustomResource(
                f"{name}-spark-pi",
                api_version="sparkoperator.k8s.io/v1beta2",
                kind="SparkApplication",
                metadata={"name": "spark-pi", "namespace": namespace, "labels": labels("spark-pi", "spark-job")},
                spec=spark_pi(args, image, pull_policy, event_log),
                # The operator's CRDs and webhook must be serving before the first job is sent.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[operator, driver_sa, executor_sa, role, *event_logs]),
            )

        self.namespace = namespace
        self.driver_role = role.metadata.name
        self.event_log = event_log
        self.register_outputs({"namespace": self.namespace, "driver_role": self.driver_role, "history_url": self.history_url})

    def _history_server(
        self, name, args: SparkConfig, image, pull_policy, namespace, event_log: EventLogLocation, depends_on
    ) -> pulumi.Output[str]:
        app = labels("spark-history-server", "spark")
        selector = {"app.kubernetes.io/name": "spark-history-server", "app.kubernetes.io/part-of": "dataplatform"}
        mounts = [{"name": "tmp", "mountPath": "/tmp"}]
        volumes = [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
        # The UI only. On the shared volume the server calls nothing; on S3 it calls S3 and STS (HTTPS)
        # and resolves their names.
        egress = []
        if isinstance(event_log, SharedVolumeEventLog):
            claim, mount_path = SHARED_VOLUMES["event_logs"]
            mounts.insert(0, {"name": "event-logs", "mountPath": mount_path, "readOnly": True})
            volumes.insert(0, {"name": "event-logs", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        else:
            egress = [
                {
                    "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                    "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
                },
                {"ports": [{"port": 443, "protocol": "TCP"}]},
            ]
        k8s.apps.v1.Deployment(
            f"{name}-history",
            metadata={"name": "spark-history-server", "namespace": namespace, "labels": app},
            spec={
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": app},
                    "spec": {
                        "serviceAccountName": HISTORY_SERVER_SERVICE_ACCOUNT,
                        "automountServiceAccountToken": False,
                        "securityContext": {
                            "runAsUser": SPARK_UID, "runAsGroup": SPARK_UID, "runAsNonRoot": True,
                            "supplementalGroups": [SHARED_GROUP], "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [{
                            "name": "history-server",
                            "image": image,
                            "imagePullPolicy": pull_policy,
                            "command": ["/opt/spark/bin/spark-class", "org.apache.spark.deploy.history.HistoryServer"],
                            "env": [{"name": "SPARK_HISTORY_OPTS", "value": history_server_opts(event_log)}],
                            "ports": [{"name": "http", "containerPort": HISTORY_PORT, "protocol": "TCP"}],
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "initialDelaySeconds": 10, "periodSeconds": 10},
                            "livenessProbe": {"httpGet": {"path": "/", "port": "http"}, "initialDelaySeconds": 30, "periodSeconds": 30},
                            "resources": args.history_server.resources.to_kubernetes(),
                            "securityContext": {**RESTRICTED_CONTAINER, "readOnlyRootFilesystem": True},
                            "volumeMounts": mounts,
                        }],
                        "volumes": volumes,
                    },
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-history-ingress",
            metadata={"name": "spark-history-server", "namespace": namespace, "labels": app},
            spec={
                "podSelector": {"matchLabels": selector},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"ports": [{"port": HISTORY_PORT, "protocol": "TCP"}]}],
                "egress": egress,
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        service = k8s.core.v1.Service(
            f"{name}-history-service",
            metadata={"name": "spark-history-server", "namespace": namespace, "labels": app},
            spec={"selector": selector, "ports": [{"name": "http", "port": HISTORY_PORT, "targetPort": "http", "protocol": "TCP"}]},
            opts=pulumi.ResourceOptions(parent=self),
        )
        return pulumi.Output.concat("http://", service.metadata.name, ".", namespace, ".svc:", str(HISTORY_PORT))
