"""Spark on Kubernetes: spark-defaults, the SparkPi SparkApplication, driver RBAC, operator values, history server.

Expected values come from upstream: the Spark operator chart's own Role for the `spark` service
account (charts/spark-operator-chart/templates/spark/rbac.yaml, v2.5.2), the operator's
SparkApplication CRD and values.yaml pinned in reference/, and Spark's configuration
documentation (JVM memory strings, `spark.history.fs.logDirectory`).
"""

from __future__ import annotations

import copy
import re
import shlex
from decimal import Decimal

import pytest
import yaml
from pydantic import ValidationError

from components.spark import SparkConfig, SparkOnKubernetes, operator_values, spark_defaults, spark_pi
from components.storage import PlatformStorage, StorageConfig
from tools import offline
from tools.schemas import reference, unknown_value_keys, validate_manifest

KUBERNETES_VERSION = "1.34.0"
ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
SPARK_APPLICATION = "kubernetes:sparkoperator.k8s.io/v1beta2:SparkApplication"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
PVC = "kubernetes:core/v1:PersistentVolumeClaim"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
IMAGE = "docker:index/image:Image"

# The Role the Spark operator chart v2.5.2 grants its `spark` service account in every job
# namespace (charts/spark-operator-chart/templates/spark/rbac.yaml), i.e. what a driver needs.
UPSTREAM_SPARK_ROLE_RULES = yaml.safe_load("""
- apiGroups:
  - ""
  resources:
  - pods
  - configmaps
  - persistentvolumeclaims
  - services
  verbs:
  - get
  - list
  - watch
  - create
  - update
  - patch
  - delete
  - deletecollection
""")

IMAGE_REF = "registry.example/dataplatform/spark:0123456789abcdef"
CUSTOM = SparkConfig.model_validate(
    {"namespace": "analytics", "executor": {"instances": 4, "cores": 2, "memory": "2Gi"}}
)

_recordings: dict[str, offline.Recording] = {}


def jvm_bytes(memory: str) -> int:
    """Bytes a JVM memory string means to Spark (`spark.executor.memory`: k, m, g, t are powers of 1024)."""
    match = re.fullmatch(r"(\d+)([kmgt])b?", memory.lower())
    assert match, f"{memory!r} is not a JVM memory string with a unit"
    return int(Decimal(match.group(1)) * 1024 ** "kmgt".index(match.group(2)) * 1024)


def normalised(rules: list[dict]) -> list[tuple]:
    """RBAC rules compared as the API server evaluates them: order inside a rule does not matter."""
    return sorted(
        tuple(tuple(sorted(set(r.get(field, [])))) for field in ("apiGroups", "resources", "verbs", "resourceNames"))
        for r in rules
    )


def sparkapplication(spec: dict) -> dict:
    return {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {"name": "spark-pi", "namespace": "spark"},
        "spec": spec,
    }


def spark_program(config: SparkConfig, image: str = IMAGE_REF):
    def program():
        storage = PlatformStorage(
            "storage", StorageConfig(), provisioner="k8s.io/minikube-hostpath",
            namespaces={config.namespace: ["event_logs", "shared_data"], "jupyterhub": ["event_logs", "shared_data"]},
        )
        SparkOnKubernetes("spark", config, image=image, pull_policy="IfNotPresent", storage=storage)

    return program


@pytest.fixture
def dev(run_stack) -> offline.Recording:
    """The dev stack, run once per module (mocks are installed afresh by the first test that needs it)."""
    if "dev" not in _recordings:
        _recordings["dev"] = run_stack("dev")
    return _recordings["dev"]


@pytest.fixture
def custom(run_program) -> offline.Recording:
    """SparkOnKubernetes alone, with the CUSTOM config."""
    if "custom" not in _recordings:
        _recordings["custom"] = run_program(spark_program(CUSTOM))
    return _recordings["custom"]


def operator_chart(recording: offline.Recording) -> offline.Registration:
    charts = [c for c in recording.charts() if c.plain_inputs["chart"] == "spark-operator"]
    assert len(charts) == 1
    return charts[0]


def spark_image(recording: offline.Recording) -> offline.Registration:
    images = [i for i in recording.of_type(IMAGE) if i.plain_inputs["build"]["context"].endswith("/images/spark")]
    assert len(images) == 1
    return images[0]


def history_opts(deployment: offline.Registration) -> dict[str, str]:
    """The `-Dkey=value` system properties the history server container is started with."""
    container = deployment.plain_inputs["spec"]["template"]["spec"]["containers"][0]
    opts = next(e["value"] for e in container["env"] if e["name"] == "SPARK_HISTORY_OPTS")
    return dict(arg.removeprefix("-D").split("=", 1) for arg in shlex.split(opts))


# --- spark-defaults and the SparkPi spec, pure ---------------------------------------------------


def test_defaults():
    """The documented defaults: namespace `spark`, one 1-core 1 GiB executor, event logging on."""
    config = SparkConfig()
    defaults = spark_defaults(config, IMAGE_REF, "IfNotPresent")
    assert config.namespace == "spark"
    assert defaults["spark.master"] == "k8s://https://kubernetes.default.svc:443"
    assert defaults["spark.submit.deployMode"] == "client"
    assert defaults["spark.kubernetes.namespace"] == "spark"
    assert defaults["spark.kubernetes.container.image"] == IMAGE_REF
    assert defaults["spark.executor.instances"] == "1"
    assert defaults["spark.executor.cores"] == "1"
    assert jvm_bytes(defaults["spark.executor.memory"]) == 2**30
    assert defaults["spark.eventLog.enabled"] == "true"
    assert config.history_server.enabled and config.example_job


def test_custom_config_reaches_spark_defaults():
    """A notebook's executors get the namespace, count and size the config asks for."""
    defaults = spark_defaults(CUSTOM, IMAGE_REF, "IfNotPresent")
    assert defaults["spark.kubernetes.namespace"] == "analytics"
    assert defaults["spark.executor.instances"] == "4"
    assert defaults["spark.executor.cores"] == "2"
    # Spark's running-on-kubernetes.html: without spark.kubernetes.executor.limit.cores no CPU limit is set.
    assert defaults["spark.kubernetes.executor.limit.cores"] == "2"
    assert jvm_bytes(defaults["spark.executor.memory"]) == 2 * 2**30
    assert defaults["spark.kubernetes.authenticate.executor.serviceAccountName"] == CUSTOM.executor_service_account


@pytest.mark.reference
def test_custom_config_reaches_the_sparkapplication(custom):
    """The example job runs in the configured namespace with the configured executors."""
    app = custom.only(SPARK_APPLICATION)
    inputs = app.plain_inputs
    assert inputs["metadata"]["namespace"] == "analytics"
    executor = inputs["spec"]["executor"]
    assert executor["instances"] == 4
    assert executor["cores"] == 2
    assert executor["coreLimit"] == "2"  # the CRD's coreLimit: the pods' CPU limit, a quantity string
    assert inputs["spec"]["driver"]["coreLimit"] == str(CUSTOM.driver.cores)
    assert jvm_bytes(executor["memory"]) == 2 * 2**30
    assert validate_manifest(inputs, KUBERNETES_VERSION) == []


@pytest.mark.reference
def test_spark_pi_validates_against_the_operator_crd():
    """The operator's API server would accept the SparkPi spec (no field pruned, no type refused)."""
    spec = spark_pi(SparkConfig(), IMAGE_REF, "IfNotPresent")
    assert validate_manifest(sparkapplication(spec), KUBERNETES_VERSION) == []


@pytest.mark.reference
@pytest.mark.parametrize(
    "breakage, field",
    [
        (lambda spec: spec["driver"].update(coress=1), "spec.driver"),
        (lambda spec: spec["executor"].update(cores="1"), "spec.executor.cores"),
        (lambda spec: spec.pop("mainApplicationFile"), "mainApplicationFile"),
        (lambda spec: spec.update(type="Rust"), "spec.type"),
    ],
    ids=["unknown-field", "cores-as-string", "missing-required", "bad-enum"],
)
def test_a_broken_sparkapplication_is_refused(breakage, field):
    """The CRD check is strict enough to catch the mistakes the API server would prune or refuse."""
    spec = copy.deepcopy(spark_pi(SparkConfig(), IMAGE_REF, "IfNotPresent"))
    breakage(spec)
    problems = validate_manifest(sparkapplication(spec), KUBERNETES_VERSION)
    assert problems and any(field in p for p in problems), problems


# --- operator chart values ------------------------------------------------------------------------


@pytest.mark.reference
def test_operator_values_are_keys_of_the_chart():
    """Every value we set is one the chart reads; a typo would be silently ignored by Helm."""
    chart_defaults = yaml.safe_load(reference("spark-operator-2.5.2/values.yaml").read_text())
    assert unknown_value_keys(operator_values(SparkConfig()), chart_defaults) == []
    broken = copy.deepcopy(operator_values(SparkConfig()))
    broken["spark"]["jobNamespace"] = ["spark"]  # singular: not a key of the chart
    broken["controller"]["replica"] = 2
    assert sorted(unknown_value_keys(broken, chart_defaults)) == ["controller.replica", "spark.jobNamespace"]


def test_operator_watches_exactly_the_spark_namespace():
    """The operator only picks up SparkApplications in the platform's Spark namespace."""
    assert operator_values(SparkConfig())["spark"]["jobNamespaces"] == ["spark"]
    assert operator_values(CUSTOM)["spark"]["jobNamespaces"] == ["analytics"]


def test_operator_chart_is_installed_in_the_spark_namespace(custom):
    chart = operator_chart(custom)
    assert chart.plain_inputs["namespace"] == "analytics"
    assert chart.plain_inputs["values"]["spark"]["jobNamespaces"] == ["analytics"]
    assert chart.plain_inputs["version"] == "2.5.2"


# --- RBAC -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["dev", "custom"])
def test_driver_role_grants_what_the_operator_chart_grants(which, request):
    """The driver may manage exactly the objects Spark creates for a job, and only in the job namespace."""
    recording: offline.Recording = request.getfixturevalue(which)
    namespace = "spark" if which == "dev" else "analytics"
    role = recording.only(ROLE, namespace=namespace)
    assert normalised(role.plain_inputs["rules"]) == normalised(UPSTREAM_SPARK_ROLE_RULES)

    binding = recording.only(ROLE_BINDING, namespace=namespace, name="spark-driver")
    ref = binding.plain_inputs["roleRef"]
    assert ref == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.plain_inputs["metadata"]["name"]}
    sa = SparkConfig().driver_service_account
    assert binding.plain_inputs["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}]
    recording.only(SERVICE_ACCOUNT, namespace=namespace, name=sa)


def test_no_cluster_wide_rbac(dev):
    """Nothing the stack defines itself grants rights outside a namespace."""
    kinds = {r.type for r in dev.resources}
    assert "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole" not in kinds
    assert "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding" not in kinds
    for r in dev.of_type(ROLE) + dev.of_type(ROLE_BINDING):
        assert r.plain_inputs["metadata"].get("namespace"), r.name


def test_executor_service_account_has_no_token(dev):
    """Executors run arbitrary user code; they get no API credentials."""
    sa = dev.only(SERVICE_ACCOUNT, namespace="spark", name=SparkConfig().executor_service_account)
    assert sa.plain_inputs["automountServiceAccountToken"] is False


# --- the SparkPi SparkApplication in the stack ------------------------------------------------------


@pytest.mark.reference
def test_sparkapplication_waits_for_the_operator_and_uses_the_built_image(dev):
    """The job is sent only once the operator (CRD, webhook) is installed, and runs the image the stack built."""
    app = dev.only(SPARK_APPLICATION)
    assert operator_chart(dev).urn in app.depends_on
    image = spark_image(dev)
    assert app.plain_inputs["spec"]["image"] == image.plain_inputs["imageName"]
    assert image.urn in app.depends_on
    assert app.plain_inputs["spec"]["driver"]["serviceAccount"] == SparkConfig().driver_service_account
    assert validate_manifest(app.plain_inputs, KUBERNETES_VERSION) == []


def test_example_job_can_be_turned_off(run_program):
    recording = run_program(spark_program(SparkConfig(example_job=False)))
    assert recording.of_type(SPARK_APPLICATION) == []


# --- history server -----------------------------------------------------------------------------------


def test_history_server_reads_the_event_log_jobs_and_notebooks_write(dev):
    """Every finished job shows up in the history server: all three use one event-log folder on one volume."""
    written_by_notebooks = spark_defaults(SparkConfig(), IMAGE_REF, "IfNotPresent")["spark.eventLog.dir"]
    app_conf = dev.only(SPARK_APPLICATION).plain_inputs["spec"]["sparkConf"]
    written_by_jobs = app_conf["spark.eventLog.dir"]
    deployment = dev.only(DEPLOYMENT, namespace="spark")
    read_by_history = history_opts(deployment)["spark.history.fs.logDirectory"]
    assert written_by_notebooks == written_by_jobs == read_by_history
    assert read_by_history.startswith("file:///")
    folder = read_by_history.removeprefix("file://")

    # The history server mounts the event-log claim at a path that contains that folder ...
    pod = deployment.plain_inputs["spec"]["template"]["spec"]
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    mounts = {m["mountPath"]: claims[m["name"]] for m in pod["containers"][0]["volumeMounts"] if m["name"] in claims}
    [history_claim] = [claim for path, claim in mounts.items() if folder == path or folder.startswith(path + "/")]
    dev.only(PVC, namespace="spark", name=history_claim)

    # ... and the SparkPi driver mounts that same claim at that same path.
    prefix = f"spark.kubernetes.driver.volumes.persistentVolumeClaim.{history_claim}"
    assert app_conf[f"{prefix}.options.claimName"] == history_claim
    driver_path = app_conf[f"{prefix}.mount.path"]
    assert folder == driver_path or folder.startswith(driver_path + "/")


def test_history_server_container_is_production_ready(dev):
    """Requests/limits, a readiness probe and a non-root user on every container."""
    deployment = dev.only(DEPLOYMENT, namespace="spark")
    pod = deployment.plain_inputs["spec"]["template"]["spec"]
    for container in pod["containers"]:
        resources = container["resources"]
        assert set(resources["requests"]) == {"cpu", "memory"}
        assert set(resources["limits"]) == {"cpu", "memory"}
        assert "readinessProbe" in container
        run_as_non_root = container.get("securityContext", {}).get("runAsNonRoot", pod.get("securityContext", {}).get("runAsNonRoot"))
        assert run_as_non_root is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert validate_manifest(deployment.plain_inputs, KUBERNETES_VERSION) == []


def test_history_service_selects_the_history_pods(dev):
    """The history URL reaches the history server's pods (selector and port line up)."""
    deployment = dev.only(DEPLOYMENT, namespace="spark")
    service = dev.only(SERVICE, namespace="spark", name=deployment.plain_inputs["metadata"]["name"])
    template = deployment.plain_inputs["spec"]["template"]
    pod_labels = template["metadata"]["labels"]
    for selector in (service.plain_inputs["spec"]["selector"], deployment.plain_inputs["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= pod_labels.items()
    port_names = {p["name"] for p in template["spec"]["containers"][0]["ports"]}
    assert {p["targetPort"] for p in service.plain_inputs["spec"]["ports"]} <= port_names
    assert dev.outputs["spark_history_url"] == f"http://{service.plain_inputs['metadata']['name']}.spark.svc:18080"


def test_notebook_executors_can_write_the_shared_data_volume():
    """Executors started from a notebook must be able to write /mnt/shared-data (group 100, mode 2775)."""
    defaults = spark_defaults(SparkConfig(), IMAGE_REF, "IfNotPresent")
    assert any(k.startswith("spark.kubernetes.executor.volumes.") for k in defaults)
    # Spark has no property for a pod's supplementalGroups; only an executor pod template can set it.
    assert "spark.kubernetes.executor.podTemplateFile" in defaults


# --- invalid input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, key",
    [
        ({"namespace": "Spark_Jobs"}, "namespace"),
        ({"executor": {"memory": "10"}}, "executor.memory"),
        ({"executor": {"instances": 0}}, "executor.instances"),
        ({"executors": {"instances": 2}}, "executors"),
        ({"version": "3.5.0"}, "version"),
    ],
    ids=["namespace-not-dns-label", "memory-without-unit", "zero-executors", "unknown-key", "unsupported-version"],
)
def test_invalid_spark_config_names_the_key(raw, key):
    with pytest.raises(ValidationError, match=re.escape(key)):
        SparkConfig.model_validate(raw)

