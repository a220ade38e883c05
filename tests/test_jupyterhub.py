"""JupyterHub: chart values against the chart's own schema, notebooks as Spark drivers, secrets.

Ground truth: zero-to-jupyterhub 4.4.0's values.schema.yaml and values.yaml (reference/),
KubeSpawner's memory notation (kubespawner.traitlets.ByteSpecification: K, M, G, T are powers of
1024), JupyterHub's SharedPasswordAuthenticator (jupyterhub/authenticators/shared.py), and Spark's
executor pod label `spark-role: executor`.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import yaml
from pulumi.runtime import rpc
from pydantic import ValidationError

from components.jupyterhub import HttpsOffload, JupyterHubConfig, jupyterhub_values
from components.kubernetes_types import bytes_of
from components.spark import SparkConfig, spark_defaults
from tools import offline
from tools.schemas import reference, values_problems

SCHEMA = "zero-to-jupyterhub-4.4.0/values.schema.yaml"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"
IMAGE = "docker:index/image:Image"

NOTEBOOK_IMAGE = "registry.example/dataplatform/notebook:0123456789abcdef"
SPARK_IMAGE = "registry.example/dataplatform/spark:fedcba9876543210"

_recordings: dict[str, offline.Recording] = {}


def hub_values(config: JupyterHubConfig | None = None, spark: SparkConfig | None = None, **overrides) -> dict:
    """jupyterhub_values with plain strings for every deploy-time value."""
    args: dict[str, Any] = dict(
        notebook_image=NOTEBOOK_IMAGE,
        pull_policy="IfNotPresent",
        storage_class="dataplatform",
        service_type="NodePort",
        proxy_secret_token="a" * 64,
        cookie_secret="b" * 64,
        user_password="c" * 24,
        admin_password="d" * 40,
    )
    args.update(overrides)
    return jupyterhub_values(config or JupyterHubConfig(), spark or SparkConfig(), **args)


def helm_merge(defaults: Any, values: Any) -> Any:
    """Values as Helm hands them to the schema: the chart's values.yaml overlaid with ours (null deletes)."""
    if not isinstance(defaults, dict) or not isinstance(values, dict):
        return copy.deepcopy(values)
    merged = copy.deepcopy(defaults)
    for key, value in values.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = helm_merge(defaults.get(key), value)
    return merged


def chart_problems(values: dict) -> list[str]:
    defaults = yaml.safe_load(reference("zero-to-jupyterhub-4.4.0/values.yaml").read_text())
    return values_problems(helm_merge(defaults, values), SCHEMA)


def kubespawner_bytes(value: Any) -> int:
    """How KubeSpawner reads singleuser.memory.* (kubespawner.traitlets.ByteSpecification)."""
    suffixes = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    if isinstance(value, (int, float)):
        return int(value)
    number = float(value[:-1])  # raises like ByteSpecification for a bare number
    if value[-1] not in suffixes:
        raise ValueError(f"{value!r} is not a valid memory specification for KubeSpawner")
    return int(number * suffixes[value[-1]])


def spark_conf(text: str) -> dict[str, str]:
    """A spark-defaults.conf file as Spark reads it (key, whitespace, value)."""
    conf = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            conf[key] = value.strip()
    return conf


@pytest.fixture
def dev(run_stack) -> offline.Recording:
    if "dev" not in _recordings:
        _recordings["dev"] = run_stack("dev")
    return _recordings["dev"]


def hub_chart(recording: offline.Recording) -> offline.Registration:
    charts = [c for c in recording.charts() if c.plain_inputs["chart"] == "jupyterhub"]
    assert len(charts) == 1
    return charts[0]


def image_of(recording: offline.Recording, folder: str) -> str:
    images = [i for i in recording.of_type(IMAGE) if i.plain_inputs["build"]["context"].endswith(f"/images/{folder}")]
    assert len(images) == 1
    return images[0].plain_inputs["imageName"]


# --- the chart's own schema ---------------------------------------------------------------------


@pytest.mark.reference
@pytest.mark.parametrize("service_type", ["NodePort", "LoadBalancer", "ClusterIP"])
def test_values_pass_the_chart_schema(service_type):
    """Helm would accept our values: zero problems against zero-to-jupyterhub 4.4.0's values.schema.yaml."""
    assert chart_problems(hub_values(service_type=service_type)) == []


@pytest.mark.reference
def test_stack_chart_values_pass_the_chart_schema(dev):
    """What the dev stack hands the jupyterhub Chart, secrets included, is what the chart accepts."""
    assert chart_problems(hub_chart(dev).plain_inputs["values"]) == []


@pytest.mark.reference
def test_customised_values_pass_the_chart_schema():
    config = JupyterHubConfig.model_validate({
        "namespace": "hub",
        "singleuser": {"cpu_guarantee": "250m", "cpu_limit": "4", "memory_guarantee": "2Gi", "memory_limit": "8Gi",
                       "storage": {"capacity": "50Gi"}},
        "cull": {"enabled": False, "timeout_seconds": 7200, "every_seconds": 300},
        "auth": {"admin_users": ["alice", "bob"]},
    })
    assert chart_problems(hub_values(config, SparkConfig(namespace="analytics"))) == []


@pytest.mark.reference
@pytest.mark.parametrize(
    "breakage, path",
    [
        (lambda v: v["cull"].update(timeout="1h"), "cull.timeout"),
        (lambda v: v["singleuser"].update(serviceAccount="notebook"), "singleuser"),
        (lambda v: v["proxy"]["service"].update(type="Ingress"), "proxy.service.type"),
    ],
    ids=["wrong-type", "unknown-key", "bad-enum"],
)
def test_a_broken_value_is_detected(breakage, path):
    values = hub_values()
    breakage(values)
    problems = chart_problems(values)
    assert any(p.startswith(path) for p in problems), problems


def test_hook_pre_puller_is_off():
    """helm.v4.Chart does not run Helm hooks, so the hook pre-puller Job would block the install forever."""
    assert hub_values()["prePuller"]["hook"]["enabled"] is False


def test_singleuser_uses_the_platform_storage_class(dev):
    storage_class = dev.only(STORAGE_CLASS).plain_inputs["metadata"]["name"]
    storage = hub_chart(dev).plain_inputs["values"]["singleuser"]["storage"]
    assert storage["type"] == "dynamic"
    assert storage["dynamic"]["storageClass"] == storage_class


def test_hub_database_is_on_the_platform_storage_class(dev):
    """The cluster's default class (Minikube's `standard`) deletes a volume with its claim; ours retains it."""
    [storage_class] = dev.of_type(STORAGE_CLASS)
    assert storage_class.plain_inputs["reclaimPolicy"] == "Retain"
    values = hub_chart(dev).plain_inputs["values"]
    assert values["hub"]["db"]["pvc"]["storageClassName"] == storage_class.plain_inputs["metadata"]["name"]


def test_singleuser_image_is_the_built_notebook_image(dev):
    image = hub_chart(dev).plain_inputs["values"]["singleuser"]["image"]
    assert f"{image['name']}:{image['tag']}" == image_of(dev, "notebook")


# --- notebooks as Spark drivers -------------------------------------------------------------------


@pytest.mark.parametrize("spark", [SparkConfig(), SparkConfig(namespace="analytics")], ids=["default", "custom-namespace"])
def test_network_policy_lets_executors_reach_the_driver(spark):
    """Executors (pods Spark labels spark-role=executor) in the Spark namespace reach exactly the driver's fixed ports."""
    policy = hub_values(spark=spark)["singleuser"]["networkPolicy"]
    assert policy["enabled"] is True
    defaults = spark_defaults(spark, SPARK_IMAGE, "IfNotPresent")
    driver_ports = {int(defaults["spark.driver.port"]), int(defaults["spark.driver.blockManager.port"])}
    [rule] = policy["ingress"]
    assert {(p["port"], p["protocol"]) for p in rule["ports"]} == {(port, "TCP") for port in driver_ports}
    assert rule["from"] == [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": spark.namespace}},
        "podSelector": {"matchLabels": {"spark-role": "executor"}},
    }]


def test_driver_may_reach_its_executors_and_the_api_server():
    egress = hub_values()["singleuser"]["networkPolicy"]["egress"]
    assert any(
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "spark"}},
         "podSelector": {"matchLabels": {"spark-role": "executor"}}} in rule.get("to", [])
        for rule in egress
    )
    assert any({"port": 443, "protocol": "TCP"} in rule.get("ports", []) for rule in egress)


def test_spark_defaults_configmap_points_notebooks_at_the_cluster(dev):
    """A notebook's SparkSession needs no setup: master, namespace, image, service account, driver address, ports, event log."""
    values = hub_chart(dev).plain_inputs["values"]["singleuser"]
    conf_dir = values["extraEnv"]["SPARK_CONF_DIR"]
    [mount] = [m for m in values["storage"]["extraVolumeMounts"] if m["mountPath"] == conf_dir]
    [volume] = [v for v in values["storage"]["extraVolumes"] if v["name"] == mount["name"]]
    config_map = dev.only(CONFIG_MAP, namespace="jupyterhub", name=volume["configMap"]["name"])

    conf = spark_conf(config_map.plain_inputs["data"]["spark-defaults.conf"])
    assert conf["spark.master"] == "k8s://https://kubernetes.default.svc:443"
    assert conf["spark.submit.deployMode"] == "client"
    assert conf["spark.kubernetes.namespace"] == "spark"
    assert conf["spark.kubernetes.container.image"] == image_of(dev, "spark")
    executor_sa = conf["spark.kubernetes.authenticate.executor.serviceAccountName"]
    assert executor_sa == SparkConfig().executor_service_account
    dev.only(SERVICE_ACCOUNT, namespace="spark", name=executor_sa)
    assert conf["spark.driver.host"] == "${env:POD_IP}"
    assert conf["spark.driver.bindAddress"] == "0.0.0.0"
    assert conf["spark.driver.port"].isdigit() and conf["spark.driver.blockManager.port"].isdigit()
    assert conf["spark.eventLog.enabled"] == "true"
    event_dir = conf["spark.eventLog.dir"].removeprefix("file://")
    # The notebook mounts the event-log volume where the event log is written.
    assert any(event_dir == m["mountPath"] or event_dir.startswith(m["mountPath"] + "/")
               for m in values["storage"]["extraVolumeMounts"] if not m.get("readOnly"))


def test_pod_ip_comes_from_the_downward_api():
    """spark.driver.host is ${env:POD_IP}; the variable must be the pod's own IP."""
    env = hub_values()["singleuser"]["extraEnv"]
    assert env["POD_IP"] == {"valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}


def test_notebooks_are_bound_to_the_spark_driver_role(dev):
    """A notebook may start executors in the Spark namespace, through the driver Role, and nothing more."""
    values = hub_chart(dev).plain_inputs["values"]
    notebook_sa = values["singleuser"]["serviceAccountName"]
    dev.only(SERVICE_ACCOUNT, namespace="jupyterhub", name=notebook_sa)
    driver_role = dev.only(ROLE, namespace="spark").plain_inputs["metadata"]["name"]
    bindings = [
        b for b in dev.of_type(ROLE_BINDING)
        if {"kind": "ServiceAccount", "name": notebook_sa, "namespace": "jupyterhub"} in b.plain_inputs["subjects"]
    ]
    assert len(bindings) == 1
    binding = bindings[0].plain_inputs
    assert binding["metadata"]["namespace"] == "spark"
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": driver_role}


# --- secrets ----------------------------------------------------------------------------------------


def secret_values(recording: offline.Recording) -> dict[str, Any]:
    values = hub_chart(recording).inputs["values"]
    return {
        "proxy.secretToken": values["proxy"]["secretToken"],
        "hub.cookieSecret": values["hub"]["cookieSecret"],
        "user_password": values["hub"]["config"]["SharedPasswordAuthenticator"]["user_password"],
    }


def test_chart_secrets_stay_secret(dev):
    """The proxy token, cookie secret and shared password are encrypted in state and masked in previews."""
    for key, value in secret_values(dev).items():
        assert rpc.is_rpc_secret(value), key
    assert dev.outputs["jupyterhub_password"] == offline.SECRET


def test_secrets_are_stable_across_runs(dev, run_stack):
    """A second `pulumi up` must not rotate the token, log everyone out, or change the password."""
    again = run_stack("dev")
    first = {k: offline.reveal(v) for k, v in secret_values(dev).items()}
    second = {k: offline.reveal(v) for k, v in secret_values(again).items()}
    assert first == second
    assert len(first["proxy.secretToken"]) == 64 and len(first["hub.cookieSecret"]) == 64  # 32 bytes, hex
    # SharedPasswordAuthenticator refuses a user_password shorter than 8 characters.
    assert len(first["user_password"]) >= 8


def test_admin_users_can_log_in():
    """SharedPasswordAuthenticator: admin_users must use admin_password (>= 32 characters, not the user password)."""
    shared = hub_values()["hub"]["config"]["SharedPasswordAuthenticator"]
    assert JupyterHubConfig().auth.admin_users
    admin_password = shared.get("admin_password")
    assert admin_password is not None and len(admin_password) >= 32
    assert admin_password != shared["user_password"]


# --- memory as KubeSpawner reads it -----------------------------------------------------------------


@pytest.mark.parametrize(
    "quantity",
    [
        "1Gi",
        "512Mi",
        "4Gi",
        "1500M",
        "2G",
    ],
)
def test_notebook_memory_means_what_the_config_says(quantity):
    """The limit and guarantee KubeSpawner applies are the bytes the config's Kubernetes quantity names."""
    config = JupyterHubConfig.model_validate({"singleuser": {"memory_guarantee": quantity, "memory_limit": quantity}})
    memory = hub_values(config)["singleuser"]["memory"]
    assert kubespawner_bytes(memory["guarantee"]) == bytes_of(quantity)
    assert kubespawner_bytes(memory["limit"]) == bytes_of(quantity)


# --- invalid input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, key",
    [
        ({"cull": {"timeout_seconds": 299}}, "cull.timeout_seconds"),
        ({"singleuser": {"memory_limit": "4"}}, "singleuser.memory_limit"),
        ({"singleuser": {"storage": {"capacity": "10"}}}, "singleuser.storage.capacity"),
        ({"singeluser": {}}, "singeluser"),
        ({"namespace": "Jupyter_Hub"}, "namespace"),
    ],
    ids=["cull-below-minimum", "memory-without-unit", "capacity-without-unit", "unknown-key", "namespace"],
)
def test_invalid_jupyterhub_config_names_the_key(raw, key):
    with pytest.raises(ValidationError, match=re.escape(key)):
        JupyterHubConfig.model_validate(raw)


@pytest.mark.reference
def test_notebook_pods_get_no_privileged_init_container_and_still_no_metadata_server():
    """The chart blocks the cloud metadata server with a privileged root init container unless told
    not to (values.yaml singleuser.cloudMetadata.blockWithIptables); our NetworkPolicy denies it instead."""
    from tools.schemas import load_yaml, merged, reference

    values = merged(load_yaml(reference("zero-to-jupyterhub-4.4.0/values.yaml")), hub_values())
    assert values["singleuser"]["cloudMetadata"]["blockWithIptables"] is False
    assert values["singleuser"]["networkPolicy"]["enabled"] is True
    assert values["singleuser"]["networkPolicy"]["egressAllowRules"]["cloudMetadataServer"] is False


# --- HTTPS at the load balancer (EKS) ---------------------------------------------------------------------

CERTIFICATE = "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


@pytest.mark.reference
def test_https_offload_values_pass_the_chart_schema():
    """z2jh's documented AWS offload: proxy.https offload, the ACM certificate on the https port, TCP behind it."""
    values = hub_values(JupyterHubConfig(https=HttpsOffload(acm_certificate_arn=CERTIFICATE)), service_type="LoadBalancer")
    proxy = values["proxy"]
    assert proxy["https"] == {"enabled": True, "type": "offload"}
    assert proxy["service"]["type"] == "LoadBalancer"
    annotations = proxy["service"]["annotations"]
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-ssl-cert"] == CERTIFICATE
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-ssl-ports"] == "https"  # the chart's port name
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-backend-protocol"] == "tcp"  # websockets
    # The chart's templates/proxy/service.yaml keeps port 80 (plain http) unless disableHttpPort.
    assert proxy["service"]["disableHttpPort"] is True
    assert chart_problems(values) == []


def test_without_https_the_proxy_has_no_tls_settings():
    proxy = hub_values()["proxy"]
    assert "https" not in proxy and "annotations" not in proxy["service"] and "disableHttpPort" not in proxy["service"]


@pytest.mark.parametrize("arn", [
    "arn:aws:iam::123456789012:server-certificate/hub",  # IAM, not ACM
    "arn:aws:acm:eu-west-1:123456789012:certificate/hub",  # not a certificate id
    "hub.example.com",
])
def test_https_needs_an_acm_certificate_arn(arn):
    with pytest.raises(ValidationError, match="acm_certificate_arn"):
        JupyterHubConfig.model_validate({"https": {"acm_certificate_arn": arn}})
