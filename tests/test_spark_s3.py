"""Spark on S3 (EKS): event logs in S3, reached through IRSA roles; the shared volume everywhere else.

Ground truth: Hadoop's S3A authentication docs (hadoop-aws `authentication.md`, 3.4+: the default
provider chain has no web-identity provider and ends with the node's instance role), the AWS SDK v2
provider that reads the token EKS's pod identity webhook projects
(`software.amazon.awssdk.auth.credentials.WebIdentityTokenFileCredentialsProvider`), the EKS annotation
`eks.amazonaws.com/role-arn`, Spark's `spark.eventLog.dir` / `spark.history.fs.logDirectory`, and the
Spark operator's SparkApplication CRD.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest

from components.jupyterhub import JupyterHub, JupyterHubConfig, jupyterhub_values
from components.spark import (
    ANALYTICS_ACCELERATOR_VERSION,
    AWS_SDK_VERSION,
    HADOOP_VERSION,
    HISTORY_SERVER_SERVICE_ACCOUNT,
    S3EventLog,
    SparkConfig,
    SparkOnKubernetes,
    SparkS3Roles,
    spark_defaults,
    spark_pi,
)
from components.storage import SHARED_VOLUMES, PlatformStorage, StorageConfig
from policy.rules import Context, check
from tools import offline
from tools.render import manifest
from tools.schemas import validate_manifest

KUBERNETES_VERSION = "1.34.0"
IMAGE_REF = "registry.example/dataplatform/spark:0123456789abcdef"
NOTEBOOK_IMAGE = "registry.example/dataplatform/notebook:0123456789abcdef"
WEB_IDENTITY = "software.amazon.awssdk.auth.credentials.WebIdentityTokenFileCredentialsProvider"
ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
EVENT_LOG = S3EventLog("s3a://acme-event-logs/spark-events", region="eu-west-1")
ROLES = SparkS3Roles(
    driver="arn:aws:iam::123456789012:role/spark-driver",
    executor="arn:aws:iam::123456789012:role/spark-executor",
    history_server="arn:aws:iam::123456789012:role/spark-history",
)
NOTEBOOK_ROLE = "arn:aws:iam::123456789012:role/notebook"
EVENT_LOG_CLAIM = SHARED_VOLUMES["event_logs"][0]

SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
PVC = "kubernetes:core/v1:PersistentVolumeClaim"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
SPARK_APPLICATION = "kubernetes:sparkoperator.k8s.io/v1beta2:SparkApplication"

_recordings: dict[str, offline.Recording] = {}


def platform_program(event_log=None, roles=None, notebook_role=None):
    """Spark and JupyterHub on one PlatformStorage, with the event log (and roles) given, or as today."""
    on_s3 = {"event_log": event_log, "s3_roles": roles} if event_log else {}
    hub_on_s3 = {"spark_event_log": event_log, "notebook_role_arn": notebook_role} if event_log else {}
    volumes = ["shared_data"] if event_log else ["event_logs", "shared_data"]

    def program():
        storage = PlatformStorage(
            "storage", StorageConfig(), provisioner="ebs.csi.aws.com",
            namespaces={"spark": volumes, "jupyterhub": volumes},
        )
        spark = SparkOnKubernetes(
            "spark", SparkConfig(), image=IMAGE_REF, pull_policy="IfNotPresent", storage=storage, **on_s3
        )
        JupyterHub(
            "jupyterhub", JupyterHubConfig(), SparkConfig(),
            notebook_image=NOTEBOOK_IMAGE, spark_image=IMAGE_REF, pull_policy="IfNotPresent",
            service_type="LoadBalancer", storage=storage,
            spark_driver_role=spark.driver_role, spark_namespace=spark.namespace, **hub_on_s3,
        )

    return program


@pytest.fixture
def on_s3(run_program) -> offline.Recording:
    if "s3" not in _recordings:
        _recordings["s3"] = run_program(platform_program(EVENT_LOG, ROLES, NOTEBOOK_ROLE))
    return _recordings["s3"]


@pytest.fixture
def stack(run_stack):
    """The real program on a stack's own config, run once per stack for this module."""

    def recorded(name: str) -> offline.Recording:
        if name not in _recordings:
            _recordings[name] = run_stack(name)
        return _recordings[name]

    return recorded


@pytest.fixture
def on_volume(run_program) -> offline.Recording:
    if "volume" not in _recordings:
        _recordings["volume"] = run_program(platform_program())
    return _recordings["volume"]


def history_pod(recording: offline.Recording) -> dict:
    return recording.only(DEPLOYMENT, namespace="spark", name="spark-history-server").plain_inputs["spec"]["template"]["spec"]


def history_opts(pod: dict) -> dict[str, str]:
    opts = next(e["value"] for e in pod["containers"][0]["env"] if e["name"] == "SPARK_HISTORY_OPTS")
    return dict(arg.removeprefix("-D").split("=", 1) for arg in shlex.split(opts))


def spark_conf(text: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in text.splitlines() if line.strip())


def event_log_volume_keys(conf: dict[str, str]) -> list[str]:
    return [key for key in conf if f"persistentVolumeClaim.{EVENT_LOG_CLAIM}." in key]


# --- where event logs go -------------------------------------------------------------------------------


def test_notebook_spark_defaults_write_to_s3_with_the_pod_role():
    """A notebook's driver logs to the S3 prefix and authenticates with its IRSA token, not the node's role."""
    defaults = spark_defaults(SparkConfig(), IMAGE_REF, "IfNotPresent", event_log=EVENT_LOG)
    assert defaults["spark.eventLog.enabled"] == "true"
    assert defaults["spark.eventLog.dir"] == "s3a://acme-event-logs/spark-events"
    assert defaults["spark.hadoop.fs.s3a.aws.credentials.provider"] == WEB_IDENTITY
    assert defaults["spark.hadoop.fs.s3a.endpoint.region"] == "eu-west-1"
    assert event_log_volume_keys(defaults) == []


def test_sparkapplication_writes_to_s3_and_mounts_no_event_log_claim(on_s3):
    conf = on_s3.only(SPARK_APPLICATION).plain_inputs["spec"]["sparkConf"]
    assert conf["spark.eventLog.dir"] == EVENT_LOG.dir
    assert conf["spark.hadoop.fs.s3a.aws.credentials.provider"] == WEB_IDENTITY
    assert event_log_volume_keys(conf) == []


@pytest.mark.reference
def test_s3_sparkapplication_validates_against_the_operator_crd(on_s3):
    spec = spark_pi(SparkConfig(), IMAGE_REF, "IfNotPresent", EVENT_LOG)
    app = {"apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
           "metadata": {"name": "spark-pi", "namespace": "spark"}, "spec": spec}
    assert validate_manifest(app, KUBERNETES_VERSION) == []
    assert validate_manifest(on_s3.only(SPARK_APPLICATION).plain_inputs, KUBERNETES_VERSION) == []


def test_history_server_reads_the_s3_prefix_jobs_and_notebooks_write(on_s3):
    """Every finished job and notebook session shows up: all three use one s3a prefix."""
    notebooks = spark_conf(on_s3.only(CONFIG_MAP, namespace="jupyterhub", name="spark-defaults")
                           .plain_inputs["data"]["spark-defaults.conf"])
    jobs = on_s3.only(SPARK_APPLICATION).plain_inputs["spec"]["sparkConf"]
    history = history_opts(history_pod(on_s3))
    assert notebooks["spark.eventLog.dir"] == jobs["spark.eventLog.dir"] == history["spark.history.fs.logDirectory"] == EVENT_LOG.dir
    assert history["spark.hadoop.fs.s3a.aws.credentials.provider"] == WEB_IDENTITY
    assert history["spark.hadoop.fs.s3a.endpoint.region"] == EVENT_LOG.region


def test_history_server_mounts_no_claim_and_may_reach_s3(on_s3):
    pod = history_pod(on_s3)
    assert [v for v in pod["volumes"] if "persistentVolumeClaim" in v] == []
    assert {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]} == {"/tmp"}
    egress = on_s3.only(NETWORK_POLICY, namespace="spark", name="spark-history-server").plain_inputs["spec"]["egress"]
    ports = {(p["port"], p["protocol"]) for rule in egress for p in rule.get("ports", [])}
    assert {(443, "TCP"), (53, "UDP")} <= ports  # S3 and STS over HTTPS, and their names


def test_no_event_log_claim_where_event_logs_are_on_s3(on_s3):
    """Neither namespace claims the event-log volume; both keep the shared-data volume."""
    claims = {(r.plain_inputs["metadata"]["namespace"], r.plain_inputs["metadata"]["name"]) for r in on_s3.of_type(PVC)}
    assert claims == {("spark", "shared-data"), ("jupyterhub", "shared-data")}
    values = jupyterhub_values(
        JupyterHubConfig(), SparkConfig(), notebook_image=NOTEBOOK_IMAGE, pull_policy="IfNotPresent",
        storage_class="gp3", service_type="LoadBalancer", proxy_secret_token="a" * 64, cookie_secret="b" * 64,
        user_password="c" * 24, admin_password="d" * 40, event_log=EVENT_LOG,
    )
    mounted = {v.get("persistentVolumeClaim", {}).get("claimName") for v in values["singleuser"]["storage"]["extraVolumes"]}
    assert EVENT_LOG_CLAIM not in mounted and "shared-data" in mounted


# --- IRSA -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "namespace, name, role",
    [
        ("spark", SparkConfig().driver_service_account, ROLES.driver),
        ("spark", SparkConfig().executor_service_account, ROLES.executor),
        ("spark", HISTORY_SERVER_SERVICE_ACCOUNT, ROLES.history_server),
        ("jupyterhub", "notebook", NOTEBOOK_ROLE),
    ],
    ids=["driver", "executor", "history-server", "notebook"],
)
def test_service_accounts_carry_their_role(on_s3, namespace, name, role):
    sa = on_s3.only(SERVICE_ACCOUNT, namespace=namespace, name=name)
    assert sa.plain_inputs["metadata"]["annotations"] == {ROLE_ANNOTATION: role}


def test_pods_run_as_the_annotated_service_accounts(on_s3):
    """The role is only used if the pods run as the service account that carries it."""
    app = on_s3.only(SPARK_APPLICATION).plain_inputs["spec"]
    assert app["driver"]["serviceAccount"] == SparkConfig().driver_service_account
    assert app["executor"]["serviceAccount"] == SparkConfig().executor_service_account
    assert history_pod(on_s3)["serviceAccountName"] == HISTORY_SERVER_SERVICE_ACCOUNT
    notebooks = spark_conf(on_s3.only(CONFIG_MAP, namespace="jupyterhub", name="spark-defaults")
                           .plain_inputs["data"]["spark-defaults.conf"])
    assert notebooks["spark.kubernetes.authenticate.executor.serviceAccountName"] == SparkConfig().executor_service_account


def test_executor_and_history_server_still_get_no_api_token(on_s3):
    """IRSA does not need the API token: the pod identity webhook mounts its own projected token."""
    for name in (SparkConfig().executor_service_account, HISTORY_SERVER_SERVICE_ACCOUNT):
        assert on_s3.only(SERVICE_ACCOUNT, namespace="spark", name=name).plain_inputs["automountServiceAccountToken"] is False
    assert history_pod(on_s3)["automountServiceAccountToken"] is False


def test_every_object_passes_the_mandatory_policies(on_s3):
    for r in on_s3.kubernetes_objects():
        obj = manifest(r.plain_inputs)
        assert [str(v) for v in check(obj, Context(protect=r.protect)) if v.enforcement == "mandatory"] == []


def test_an_s3_event_log_needs_roles():
    with pytest.raises(ValueError, match="s3_roles"):
        SparkOnKubernetes("spark", SparkConfig(), image=IMAGE_REF, pull_policy="IfNotPresent", storage=None, event_log=EVENT_LOG)
    with pytest.raises(ValueError, match="notebook_role_arn"):
        JupyterHub(
            "jupyterhub", JupyterHubConfig(), SparkConfig(), notebook_image=NOTEBOOK_IMAGE, spark_image=IMAGE_REF,
            pull_policy="IfNotPresent", service_type="NodePort", storage=None, spark_driver_role="spark-driver",
            spark_namespace="spark", spark_event_log=EVENT_LOG,
        )


@pytest.mark.parametrize("url", ["s3://acme-event-logs/spark-events", "s3a://acme-event-logs", "file:///mnt/spark-events"])
def test_an_s3_event_log_is_an_s3a_prefix(url):
    with pytest.raises(ValueError, match="s3a://<bucket>/<prefix>"):
        S3EventLog(url, region="eu-west-1")


# --- without S3: as before ------------------------------------------------------------------------------


def test_without_s3_event_logs_stay_on_the_shared_volume(on_volume):
    conf = on_volume.only(SPARK_APPLICATION).plain_inputs["spec"]["sparkConf"]
    assert conf["spark.eventLog.dir"] == "file:///mnt/spark-events"
    assert event_log_volume_keys(conf) and not any(key.startswith("spark.hadoop.fs.s3a.") for key in conf)
    assert history_opts(history_pod(on_volume))["spark.history.fs.logDirectory"] == "file:///mnt/spark-events"
    assert [v["persistentVolumeClaim"]["claimName"] for v in history_pod(on_volume)["volumes"] if "persistentVolumeClaim" in v] == [EVENT_LOG_CLAIM]
    assert on_volume.only(NETWORK_POLICY, namespace="spark", name="spark-history-server").plain_inputs["spec"]["egress"] == []
    for namespace in ("spark", "jupyterhub"):
        on_volume.only(PVC, namespace=namespace, name=EVENT_LOG_CLAIM)


def test_without_s3_no_service_account_has_a_role(on_volume):
    for sa in on_volume.of_type(SERVICE_ACCOUNT):
        assert ROLE_ANNOTATION not in sa.plain_inputs["metadata"].get("annotations", {}), sa.name


# --- the images -----------------------------------------------------------------------------------------


def dockerfile_args(folder: str) -> dict[str, str]:
    text = (offline.ROOT / "images" / folder / "Dockerfile").read_text()
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))


# The SHA-1 Maven Central publishes beside each jar (`<jar>.sha1`), as recorded by two unrelated
# projects that pin these same jars.
MAVEN = "https://repo1.maven.org/maven2"
MAVEN_SHA1 = {
    f"{MAVEN}/org/apache/hadoop/hadoop-aws/3.5.0/hadoop-aws-3.5.0.jar": "9e594525d264c0db653c7f68da98b245f7d61ea5",
    f"{MAVEN}/software/amazon/awssdk/bundle/2.35.4/bundle-2.35.4.jar": "7252265e3970b214708e68a8b74a8fa8c875af1e",
    f"{MAVEN}/software/amazon/s3/analyticsaccelerator/analyticsaccelerator-s3/1.3.1/analyticsaccelerator-s3-1.3.1.jar":
        "6c9bd0f6c440c9a78e82d272f5f0252d942419f6",
}


def fetched_jars(folder: str) -> tuple[dict[str, str], str]:
    """The builder stage's downloads (URL -> pinned SHA-1 of the file it is saved as), ARGs
    substituted, and where the final stage copies them."""
    text = (offline.ROOT / "images" / folder / "Dockerfile").read_text()
    args = dockerfile_args(folder)
    resolve = lambda value: re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], value)  # noqa: E731
    assert not re.search(r"^ADD ", text, re.MULTILINE), "jars are fetched and checked in the builder stage, not ADDed"
    urls = [resolve(u) for u in re.findall(r'^\s+"(\$\{MAVEN\}/\S+\.jar)" \\$', text, re.MULTILINE)]
    checked = {resolve(path): resolve(sha) for sha, path in re.findall(r'^\s+"(\$\{\w+_SHA1\})" "(/tmp/s3a/\S+)"', text, re.MULTILINE)}
    assert "sha1sum --check --strict -" in text
    [dest] = re.findall(r"^COPY --from=s3a-connector /tmp/s3a/ (\S+)/$", text, re.MULTILINE)
    return {url: checked[f"/tmp/s3a/{url.rsplit('/', 1)[1]}"] for url in urls}, resolve(dest)


@pytest.mark.parametrize("folder, jars", [("spark", "/opt/spark/jars"), ("notebook", "/usr/local/lib/python3.10/site-packages/pyspark/jars")])
def test_images_add_the_s3a_connector_of_sparks_hadoop(folder, jars):
    """hadoop-aws must be the Hadoop release Spark ships, with the SDK bundle and accelerator that
    release uses, each checked against Maven Central's own checksum."""
    args = dockerfile_args(folder)
    assert (args["HADOOP_VERSION"], args["AWS_SDK_VERSION"], args["ANALYTICS_ACCELERATOR_VERSION"]) == (
        HADOOP_VERSION, AWS_SDK_VERSION, ANALYTICS_ACCELERATOR_VERSION
    )
    assert fetched_jars(folder) == (MAVEN_SHA1, jars)
    # The build itself checks that the Hadoop client it adds to is HADOOP_VERSION.
    text = (offline.ROOT / "images" / folder / "Dockerfile").read_text()
    assert "hadoop-client-api-${HADOOP_VERSION}.jar" in text
    # Only a build with S3A_CONNECTOR=true downloads anything (the SDK bundle is over 600 MB).
    assert args["S3A_CONNECTOR"] == "false"
    assert 'case "${S3A_CONNECTOR}" in true) ;; false) exit 0 ;;' in text


@pytest.mark.parametrize("name, connector", [("dev", "false"), ("prod", "true")])
def test_images_carry_the_s3a_connector_exactly_where_spark_uses_s3(stack, name, connector):
    recording = stack(name)
    images = {r.name: r.plain_inputs["build"]["args"] for r in recording.of_type("docker:index/image:Image")}
    for name in ("spark-image-image", "notebook-image-image"):
        assert images[name]["S3A_CONNECTOR"] == connector, name
        assert images[name]["SPARK_VERSION"] == SparkConfig().version


# --- prod: __main__ hands Spark and JupyterHub the S3 event log and their roles ---------------------------------


def test_prod_roles_trust_exactly_the_annotated_service_accounts(stack):
    """Each annotated service account's role can be assumed by that namespace/service account alone."""
    recording = stack("prod")
    annotated = {
        (sa.plain_inputs["metadata"]["namespace"], sa.plain_inputs["metadata"]["name"]):
            offline.reveal(sa.inputs["metadata"]["annotations"][ROLE_ANNOTATION])
        for sa in recording.of_type(SERVICE_ACCOUNT)
        if ROLE_ANNOTATION in sa.inputs["metadata"].get("annotations", {})
    }
    wanted = {("spark", "spark-driver"), ("spark", "spark-executor"), ("spark", HISTORY_SERVER_SERVICE_ACCOUNT), ("jupyterhub", "notebook")}
    assert wanted <= annotated.keys()
    roles = {f"arn:aws:iam::{offline.MOCK_AWS_ACCOUNT}:role/{r.name}": r for r in recording.of_type("aws:iam/role:Role")}
    for (namespace, name), arn in annotated.items():
        trust = json.loads(offline.reveal(roles[arn].inputs["assumeRolePolicy"]))
        subjects = [v for s in trust["Statement"] for k, v in s["Condition"]["StringEquals"].items() if k.endswith(":sub")]
        assert subjects == [f"system:serviceaccount:{namespace}:{name}"], arn


def test_prod_spark_and_notebooks_log_to_the_event_log_bucket(stack):
    """The real program on the prod config: every driver writes to, and the history server reads, the S3 prefix."""
    recording = stack("prod")
    [bucket] = [b for b in recording.of_type("aws:s3/bucket:Bucket") if "event-logs" in b.name]
    wanted = f"s3a://{bucket.plain_inputs['bucket']}/spark-events"
    bucket_arn = f"arn:aws:s3:::{bucket.plain_inputs['bucket']}"
    notebooks = spark_conf(recording.only(CONFIG_MAP, namespace="jupyterhub", name="spark-defaults")
                           .plain_inputs["data"]["spark-defaults.conf"])
    jobs = recording.only(SPARK_APPLICATION).plain_inputs["spec"]["sparkConf"]
    history = history_opts(history_pod(recording))
    assert notebooks["spark.eventLog.dir"] == jobs["spark.eventLog.dir"] == history["spark.history.fs.logDirectory"] == wanted
    assert jobs["spark.hadoop.fs.s3a.endpoint.region"] == "eu-west-1"
    # What a pipeline run is given as `spark_event_log_dir` (README), and what its role may write.
    assert recording.outputs["spark_event_log_dir"] == wanted
    [runner] = [r for r in recording.of_type("aws:iam/rolePolicy:RolePolicy") if r.name.endswith("-pipeline-runner")]
    policy = json.loads(offline.reveal(runner.inputs["policy"]))
    writable = {arn for st in policy["Statement"] if "s3:PutObject" in st["Action"] for arn in st["Resource"]}
    assert f"{bucket_arn}/*" in writable
