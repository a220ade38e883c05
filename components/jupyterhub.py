"""JupyterHub (zero-to-jupyterhub) whose notebooks start Spark against the cluster with no setup.

The chart's values are built by `jupyterhub_values`, a pure function of the typed config and the
few deploy-time values (image, storage class, secrets). Notebooks run as the `notebook` service
account, bound to the Spark driver Role in the Spark namespace; `spark-defaults.conf` is mounted
from a ConfigMap and points `SPARK_CONF_DIR` at it; the single-user NetworkPolicy lets executors in
the Spark namespace reach the driver and block-manager ports, and lets the driver reach the API
server and its executors. Notebooks write their event logs where Spark's jobs do; when that is S3,
the `notebook` service account carries the IAM role (IRSA) that reaches it.
"""

from __future__ import annotations

from typing import Literal

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml
from pydantic import BaseModel, ConfigDict, Field

from components.kubernetes_types import (
    SHARED_GROUP,
    ByteQuantity,
    CpuQuantity,
    Namespace,
    Resources,
    bytes_of,
    labels,
    millicores_of,
    component_namespace,
)
from components.spark import (
    BLOCK_MANAGER_PORT,
    DRIVER_PORT,
    EXECUTOR_TEMPLATE_FILE,
    SHARED_VOLUME_EVENT_LOG,
    SPARK_VERSION,
    SPARK_VERSIONS,
    EventLogLocation,
    S3EventLog,
    SparkConfig,
    executor_pod_template,
    irsa_metadata,
    shared_volumes_for,
    spark_defaults,
    spark_defaults_conf,
)
from components.storage import SHARED_VOLUMES, PlatformStorage, protect_data_volumes

JUPYTERHUB_CHART = {
    "repository": "https://hub.jupyter.org/helm-chart/",
    "chart": "jupyterhub",
    "version": "4.4.0",
}
NOTEBOOK_UID = 1000  # jovyan
SPARK_CONF_DIR = "/etc/spark"
NOTEBOOK_SERVICE_ACCOUNT = "notebook"


class NotebookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pyspark_version: Literal[SPARK_VERSIONS] = Field(  # type: ignore[valid-type]
        SPARK_VERSION, description="PySpark version in the notebook image; must equal spark.version."
    )


class SingleUserStorageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    capacity: ByteQuantity = Field("10Gi", description="Size of each user's home volume.")


class SingleUserConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    storage: SingleUserStorageConfig = Field(SingleUserStorageConfig(), description="Per-user home volume.")
    cpu_guarantee: CpuQuantity = Field("500m", description="CPU reserved for each notebook server.")
    cpu_limit: CpuQuantity = Field("2", description="CPU ceiling of each notebook server.")
    memory_guarantee: ByteQuantity = Field("1Gi", description="Memory reserved for each notebook server.")
    memory_limit: ByteQuantity = Field("4Gi", description="Memory ceiling of each notebook server.")


class CullConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Stop idle notebook servers.")
    timeout_seconds: int = Field(3600, ge=300, description="Idle time after which a server is stopped.")
    every_seconds: int = Field(600, ge=60, description="How often to check for idle servers.")


class SharedPasswordAuth(BaseModel):
    """JupyterHub's SharedPasswordAuthenticator: any user name, one generated password (dev)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["shared-password"] = Field("shared-password", description="Authenticator.")
    admin_users: tuple[str, ...] = Field(("admin",), description="Users with admin rights.")


class HttpsOffload(BaseModel):
    """HTTPS ended at the AWS load balancer in front of the proxy, with a certificate ACM holds
    (zero-to-jupyterhub's `proxy.https.type: offload`); the load balancer talks plain TCP to the proxy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    acm_certificate_arn: str = Field(
        pattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}$",
        description="ACM certificate of the name users reach the hub at, in the cluster's region "
        "(`arn:aws:acm:<region>:<account>:certificate/<id>`).",
    )

    @property
    def region(self) -> str:
        return self.acm_certificate_arn.split(":")[3]

    @property
    def account(self) -> str:
        return self.acm_certificate_arn.split(":")[4]


# z2jh's documented offload set-up for AWS (docs: Administrator guide > Security > "Off-loading SSL to a
# Load Balancer"): TCP to the proxy, so websockets pass; TLS on the `https` port only; kernels' idle
# websockets kept for an hour rather than the load balancer's 60 seconds.
AWS_TLS_ANNOTATIONS = {
    "service.beta.kubernetes.io/aws-load-balancer-backend-protocol": "tcp",
    "service.beta.kubernetes.io/aws-load-balancer-ssl-ports": "https",
    "service.beta.kubernetes.io/aws-load-balancer-connection-idle-timeout": "3600",
}


def proxy_values(config: JupyterHubConfig, service_type: str, secret_token: pulumi.Input[str]) -> dict:
    """The chart's `proxy`: its Service of `service_type`, and HTTPS ended at the load balancer when
    `config.https` asks for it."""
    values = {
        "secretToken": secret_token,
        "service": {"type": service_type},
        "chp": {"resources": config.proxy_resources.to_kubernetes()},
    }
    if config.https is not None:
        values["https"] = {"enabled": True, "type": "offload"}
        # Offload keeps the plain `http` port 80 open beside `https` unless told not to: a user who
        # types http:// would send the password in clear.
        values["service"]["disableHttpPort"] = True
        values["service"]["annotations"] = {
            "service.beta.kubernetes.io/aws-load-balancer-ssl-cert": config.https.acm_certificate_arn,
            **AWS_TLS_ANNOTATIONS,
        }
    return values


class JupyterHubConfig(BaseModel):
    """The `jupyterhub` config key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: Namespace = Field("jupyterhub", description="Namespace of the hub and the notebook servers.")
    notebook: NotebookConfig = Field(NotebookConfig(), description="Notebook image.")
    singleuser: SingleUserConfig = Field(SingleUserConfig(), description="Notebook servers.")
    cull: CullConfig = Field(CullConfig(), description="Idle culling.")
    auth: SharedPasswordAuth = Field(SharedPasswordAuth(), description="Authentication.")
    https: HttpsOffload | None = Field(
        None,
        description="HTTPS at the load balancer (eks only; required there with service_type LoadBalancer, "
        "or passwords cross the internet in clear). None: plain HTTP, for a laptop's Minikube.",
    )
    hub_resources: Resources = Field(
        Resources(cpu_request="100m", cpu_limit="1", memory_request="512Mi", memory_limit="1Gi"),
        description="Hub container resources.",
    )
    proxy_resources: Resources = Field(
        Resources(cpu_request="100m", cpu_limit="500m", memory_request="128Mi", memory_limit="512Mi"),
        description="Proxy container resources.",
    )

    def requests(self) -> tuple[int, int]:
        """(millicores, bytes) the hub, the proxy and one notebook server ask the scheduler for."""
        parts = [self.hub_resources, self.proxy_resources]
        cpu = sum(millicores_of(r.cpu_request) for r in parts) + millicores_of(self.singleuser.cpu_guarantee)
        memory = sum(bytes_of(r.memory_request) for r in parts) + bytes_of(self.singleuser.memory_guarantee)
        return cpu, memory


def _split_image(reference: pulumi.Input[str]) -> dict:
    """The chart wants an image as separate name and tag."""
    if isinstance(reference, str):
        name, tag = reference.rsplit(":", 1)
        return {"name": name, "tag": tag}
    parts = pulumi.Output.from_input(reference).apply(lambda ref: ref.rsplit(":", 1))
    return {"name": parts[0], "tag": parts[1]}


def jupyterhub_values(
    config: JupyterHubConfig,
    spark: SparkConfig,
    *,
    notebook_image: pulumi.Input[str],
    pull_policy: str,
    storage_class: pulumi.Input[str],
    service_type: str,
    proxy_secret_token: pulumi.Input[str],
    cookie_secret: pulumi.Input[str],
    user_password: pulumi.Input[str],
    admin_password: pulumi.Input[str],
    event_log: EventLogLocation = SHARED_VOLUME_EVENT_LOG,
) -> dict:
    """Values for the zero-to-jupyterhub chart; notebooks mount the shared volumes Spark drivers use
    with `event_log`."""
    singleuser = config.singleuser
    spark_pods = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": spark.namespace}},
        "podSelector": {"matchLabels": {"spark-role": "executor"}},
    }
    shared_volumes = [("spark-defaults", {"configMap": {"name": "spark-defaults"}}, SPARK_CONF_DIR, True)] + [
        (claim, {"persistentVolumeClaim": {"claimName": claim}}, path, False)
        for claim, path in (SHARED_VOLUMES[volume] for volume in shared_volumes_for(event_log))
    ]
    return {
        "proxy": proxy_values(config, service_type, proxy_secret_token),
        "hub": {
            "cookieSecret": cookie_secret,
            "resources": config.hub_resources.to_kubernetes(),
            # The hub's database (users, servers, tokens) on the platform's Retain class, not the
            # cluster's default one, which deletes a volume with its claim.
            "db": {"pvc": {"storageClassName": storage_class}},
            "config": {
                "JupyterHub": {"authenticator_class": "shared-password"},
                "Authenticator": {"admin_users": list(config.auth.admin_users)},
                # admin_users log in with admin_password only (it must be 32+ characters).
                "SharedPasswordAuthenticator": {"user_password": user_password, "admin_password": admin_password},
            },
        },
        "singleuser": {
            "image": {**_split_image(notebook_image), "pullPolicy": pull_policy},
            "serviceAccountName": NOTEBOOK_SERVICE_ACCOUNT,
            "uid": NOTEBOOK_UID,
            "fsGid": SHARED_GROUP,
            "allowPrivilegeEscalation": False,
            "defaultUrl": "/lab",
            "cpu": {"guarantee": millicores_of(singleuser.cpu_guarantee) / 1000, "limit": millicores_of(singleuser.cpu_limit) / 1000},
            # Bytes: KubeSpawner reads "2G" as 2 GiB, so a Kubernetes quantity is not passed through.
            "memory": {"guarantee": bytes_of(singleuser.memory_guarantee), "limit": bytes_of(singleuser.memory_limit)},
            "storage": {
                "type": "dynamic",
                "capacity": singleuser.storage.capacity,
                "dynamic": {"storageClass": storage_class},
                "extraVolumes": [{"name": name, **source} for name, source, _, _ in shared_volumes],
                "extraVolumeMounts": [
                    {"name": name, "mountPath": path, "readOnly": read_only} for name, _, path, read_only in shared_volumes
                ],
            },
            "extraEnv": {
                "SPARK_CONF_DIR": SPARK_CONF_DIR,
                "POD_IP": {"valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            },
            # The chart's default blocks the cloud metadata server with a privileged, root init container
            # in every notebook pod; the NetworkPolicy below already denies that address
            # (egressAllowRules.cloudMetadataServer defaults to false for notebooks).
            "cloudMetadata": {"blockWithIptables": False},
            "networkPolicy": {
                "enabled": True,
                "ingress": [{
                    "from": [spark_pods],
                    "ports": [{"port": DRIVER_PORT, "protocol": "TCP"}, {"port": BLOCK_MANAGER_PORT, "protocol": "TCP"}],
                }],
                "egress": [
                    {"to": [spark_pods]},
                    # The Kubernetes API server, which the driver asks for executor pods.
                    {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}, {"port": 8443, "protocol": "TCP"}]},
                ],
            },
        },
        "cull": {"enabled": config.cull.enabled, "timeout": config.cull.timeout_seconds, "every": config.cull.every_seconds},
        # helm.v4.Chart does not run Helm hooks; the hook pre-puller would never finish.
        "prePuller": {"hook": {"enabled": False}, "continuous": {"enabled": False}},
        "scheduling": {"userScheduler": {"enabled": False}, "podPriority": {"enabled": False}, "userPlaceholder": {"enabled": False}},
    }


class JupyterHub(pulumi.ComponentResource):
    """The hub, its notebook service account bound into the Spark namespace, and spark-defaults."""

    namespace: pulumi.Output[str]
    """The JupyterHub namespace."""
    user_password: pulumi.Output[str]
    """The shared password users log in with (a secret)."""
    admin_password: pulumi.Output[str]
    """The password of the users in `auth.admin_users` (a secret)."""
    proxy_service: pulumi.Output[str]
    """Name of the Service users reach the hub through."""

    def __init__(
        self,
        name: str,
        args: JupyterHubConfig,
        spark: SparkConfig,
        *,
        notebook_image: pulumi.Input[str],
        spark_image: pulumi.Input[str],
        pull_policy: str,
        service_type: str,
        storage: PlatformStorage,
        spark_driver_role: pulumi.Input[str],
        spark_namespace: pulumi.Input[str],
        spark_event_log: EventLogLocation = SHARED_VOLUME_EVENT_LOG,
        notebook_role_arn: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        if isinstance(spark_event_log, S3EventLog) and notebook_role_arn is None:
            raise ValueError(
                f"notebooks write Spark event logs to {spark_event_log.dir} on S3, but no notebook_role_arn was given to reach it"
            )
        super().__init__("dataplatform:jupyterhub:JupyterHub", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ns = component_namespace(f"{name}-namespace", args.namespace, "jupyterhub", self)
        namespace = ns.metadata.name
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])
        notebook_sa = k8s.core.v1.ServiceAccount(
            f"{name}-notebook",
            metadata={
                "name": NOTEBOOK_SERVICE_ACCOUNT, "namespace": namespace, "labels": labels("notebook", "jupyterhub"),
                **irsa_metadata(notebook_role_arn),
            },
            opts=in_ns,
        )
        binding = k8s.rbac.v1.RoleBinding(
            f"{name}-notebook-spark",
            metadata={"name": f"{args.namespace}-notebook", "namespace": spark_namespace, "labels": labels("notebook", "jupyterhub")},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": spark_driver_role},
            subjects=[{"kind": "ServiceAccount", "name": notebook_sa.metadata.name, "namespace": namespace}],
            opts=child,
        )
        defaults = k8s.core.v1.ConfigMap(
            f"{name}-spark-defaults",
            metadata={"name": "spark-defaults", "namespace": namespace, "labels": labels("spark-defaults", "jupyterhub")},
            data={
                "spark-defaults.conf": pulumi.Output.from_input(spark_image).apply(
                    lambda ref: spark_defaults_conf(spark_defaults(spark, ref, pull_policy, SPARK_CONF_DIR, spark_event_log))
                ),
                EXECUTOR_TEMPLATE_FILE: yaml.safe_dump(executor_pod_template(), sort_keys=False),
            },
            opts=in_ns,
        )
        claims = [storage.claim(volume, namespace, self) for volume in shared_volumes_for(spark_event_log)]

        # Stable across runs (kept in state), secret end to end.
        proxy_token = random.RandomId(f"{name}-proxy-token", byte_length=32, opts=child)
        cookie = random.RandomId(f"{name}-cookie-secret", byte_length=32, opts=child)
        password = random.RandomPassword(f"{name}-user-password", length=24, special=False, opts=child)
        admin = random.RandomPassword(f"{name}-admin-password", length=40, special=False, opts=child)
        self.user_password = pulumi.Output.secret(password.result)
        self.admin_password = pulumi.Output.secret(admin.result)

        values = jupyterhub_values(
            args,
            spark,
            notebook_image=notebook_image,
            pull_policy=pull_policy,
            storage_class=storage.storage_class,
            service_type=service_type,
            proxy_secret_token=pulumi.Output.secret(proxy_token.hex),
            cookie_secret=pulumi.Output.secret(cookie.hex),
            user_password=self.user_password,
            admin_password=self.admin_password,
            event_log=spark_event_log,
        )
        k8s.helm.v4.Chart(
            f"{name}-chart",
            name="jupyterhub",
            chart=JUPYTERHUB_CHART["chart"],
            version=JUPYTERHUB_CHART["version"],
            repository_opts={"repo": JUPYTERHUB_CHART["repository"]},
            namespace=namespace,
            values=values,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[ns, notebook_sa, binding, defaults, *claims],
                transforms=[protect_data_volumes],
            ),
        )
        self.namespace = namespace
        self.proxy_service = pulumi.Output.from_input("proxy-public")
        self.register_outputs({
            "namespace": self.namespace,
            "user_password": self.user_password,
            "admin_password": self.admin_password,
            "proxy_service": self.proxy_service,
        })
