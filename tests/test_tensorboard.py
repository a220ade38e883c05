"""TensorBoard: config, the Deployment over the shared data volume, Service, NetworkPolicy, image.

Ground truth: Kubernetes' OpenAPI schema (kubernetes-validate, strict), the platform's mandatory
policies, Service semantics (a selector matches pod labels, a named targetPort names a container
port), TensorBoard's own flags (`tensorboard --helpfull`: `--logdir`, `--bind_all`, `--port`,
`--reload_interval`) and Dockerfile semantics (an `ARG` default, `${VAR}` in `USER`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
import pytest
from pydantic import ValidationError

from components.images import IMAGES_DIR
from components.kubernetes_types import SHARED_GROUP, bytes_of
from components.storage import SHARED_VOLUMES, PlatformStorage, StorageConfig
from components.tensorboard import (
    IMAGE_FOLDER,
    LOG_DIR,
    PORT,
    TENSORBOARD_UID,
    TENSORBOARD_VERSION,
    TensorBoard,
    TensorBoardConfig,
)
from policy.rules import Context, check
from tools import offline
from tools.render import manifest
from tools.schemas import validate_manifest

KUBERNETES_VERSION = "1.34.0"
K8S_PROVIDER = "pulumi:providers:kubernetes"
NAMESPACE = "kubernetes:core/v1:Namespace"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
PVC = "kubernetes:core/v1:PersistentVolumeClaim"
COMPONENT = "dataplatform:tensorboard:TensorBoard"

IMAGE_REF = "dataplatform/tensorboard:0123456789abcdef"
CUSTOM = TensorBoardConfig.model_validate({
    "namespace": "ml-logs",
    "resources": {"cpu_request": "250m", "cpu_limit": "1", "memory_request": "512Mi", "memory_limit": "2Gi"},
    "reload_interval_seconds": 60,
})

_recordings: dict[str, offline.Recording] = {}


def tensorboard_program(config: TensorBoardConfig):
    """TensorBoard alone, on an explicit provider, with the platform storage it claims from."""

    def program():
        provider = k8s.Provider("cluster-provider", kubeconfig="{}")
        on_cluster = pulumi.ResourceOptions(providers=[provider])
        storage = PlatformStorage(
            "storage", StorageConfig(), provisioner="k8s.io/minikube-hostpath",
            namespaces={config.namespace: ["shared_data"]}, opts=on_cluster,
        )
        tensorboard = TensorBoard("tensorboard", config, image=IMAGE_REF, pull_policy="IfNotPresent", storage=storage, opts=on_cluster)
        pulumi.export("namespace", tensorboard.namespace)
        pulumi.export("url", tensorboard.url)

    return program


def recording(run_program, key: str, config: TensorBoardConfig) -> offline.Recording:
    """One run per config for the whole module (each first run installs fresh mocks)."""
    if key not in _recordings:
        _recordings[key] = run_program(tensorboard_program(config))
    return _recordings[key]


@pytest.fixture
def default(run_program) -> offline.Recording:
    return recording(run_program, "default", TensorBoardConfig())


@pytest.fixture
def custom(run_program) -> offline.Recording:
    return recording(run_program, "custom", CUSTOM)


def container(deployment: offline.Registration) -> dict:
    [c] = deployment.plain_inputs["spec"]["template"]["spec"]["containers"]
    return c


def flags(args: list[str]) -> dict[str, str]:
    """TensorBoard's `--flag=value` / `--flag` arguments as a dict."""
    parsed = {}
    for arg in args:
        assert arg.startswith("--"), arg
        key, _, value = arg[2:].partition("=")
        parsed[key] = value
    return parsed


def provider_urn(reference: str) -> str:
    """A provider reference is `<urn>::<id>`."""
    return reference.rsplit("::", 1)[0]


# --- config -------------------------------------------------------------------------------------


def test_defaults(default):
    """Namespace `tensorboard`, small resources, one URL inside the cluster."""
    config = TensorBoardConfig()
    assert config.enabled and config.namespace == "tensorboard"
    assert config.requests() == (100, 256 * 2**20)
    deployment = default.only(DEPLOYMENT, namespace="tensorboard", name="tensorboard")
    c = container(deployment)
    assert c["image"] == IMAGE_REF and c["imagePullPolicy"] == "IfNotPresent"
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "500m", "memory": "1Gi"}}
    assert flags(c["args"])["reload_interval"] == str(config.reload_interval_seconds)
    default.only(NAMESPACE, name="tensorboard")
    assert default.outputs["namespace"] == "tensorboard"
    assert default.outputs["url"] == f"http://tensorboard.tensorboard.svc:{PORT}"


def test_custom_config(custom):
    """Namespace, resources and reload interval reach the objects, and the budget counts the requests."""
    assert CUSTOM.requests() == (250, bytes_of("512Mi"))
    custom.only(NAMESPACE, name="ml-logs")
    c = container(custom.only(DEPLOYMENT, namespace="ml-logs"))
    assert c["resources"] == {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "2Gi"}}
    assert flags(c["args"])["reload_interval"] == "60"
    for type_ in (SERVICE, NETWORK_POLICY, PVC):
        custom.only(type_, namespace="ml-logs")
    assert custom.outputs["url"] == f"http://tensorboard.ml-logs.svc:{PORT}"


def test_disabled_registers_nothing_and_requests_nothing(run_program):
    config = TensorBoardConfig(enabled=False)
    assert config.requests() == (0, 0)
    rec = run_program(tensorboard_program(config))
    [component] = rec.of_type(COMPONENT)
    assert [r for r in rec.resources if r.parent == component.urn] == []
    assert rec.outputs["namespace"] == rec.outputs["url"] == ""


@pytest.mark.parametrize(
    "raw, key",
    [
        ({"namespace": "TensorBoard"}, "namespace"),
        ({"reload_interval_seconds": 0}, "reload_interval_seconds"),
        ({"resources": {"memory_request": "1"}}, "resources.memory_request"),
        ({"logdir": "/tmp"}, "logdir"),
    ],
    ids=["namespace-not-dns-label", "reload-interval-zero", "memory-without-unit", "unknown-key"],
)
def test_invalid_config_names_the_key(raw, key):
    with pytest.raises(ValidationError, match=re.escape(key)):
        TensorBoardConfig.model_validate(raw)


# --- the logs it reads ----------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["default", "custom"])
def test_reads_the_log_dir_from_the_shared_data_claim_read_only(which, request):
    """TensorBoard sees the runs notebooks and pipeline steps write, and cannot change them."""
    rec: offline.Recording = request.getfixturevalue(which)
    namespace = "tensorboard" if which == "default" else "ml-logs"
    claim_name, mount_path = SHARED_VOLUMES["shared_data"]
    assert mount_path == "/mnt/shared-data"
    assert LOG_DIR == "/mnt/shared-data/tensorboard"

    deployment = rec.only(DEPLOYMENT, namespace=namespace)
    pod = deployment.plain_inputs["spec"]["template"]["spec"]
    claims = {v["name"]: v["persistentVolumeClaim"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    [mount] = [m for m in container(deployment)["volumeMounts"] if m["name"] in claims]
    assert mount["mountPath"] == mount_path and mount["readOnly"] is True
    assert claims[mount["name"]] == {"claimName": claim_name, "readOnly": True}

    # The claim exists in TensorBoard's namespace, bound to the PV PlatformStorage made for it.
    claim = rec.only(PVC, namespace=namespace, name=claim_name)
    assert claim.plain_inputs["spec"]["volumeName"] == f"storage-{claim_name}-{namespace}"
    assert claim.urn in deployment.depends_on

    logdir = flags(container(deployment)["args"])["logdir"]
    assert logdir == LOG_DIR
    assert Path(logdir).is_relative_to(mount["mountPath"])


def test_serves_on_all_interfaces_of_the_pod(default):
    """Without --bind_all TensorBoard listens on localhost only and the Service reaches nothing."""
    c = container(default.only(DEPLOYMENT, namespace="tensorboard"))
    parsed = flags(c["args"])
    assert "bind_all" in parsed and "host" not in parsed
    assert parsed["port"] == str(PORT)
    assert {"name": "http", "containerPort": PORT, "protocol": "TCP"} in c["ports"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["port"] in ("http", PORT)


# --- Kubernetes objects -----------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["default", "custom"])
def test_every_manifest_validates_and_passes_the_mandatory_policies(which, request):
    rec: offline.Recording = request.getfixturevalue(which)
    objects = rec.kubernetes_objects()
    assert {r.type for r in objects} >= {NAMESPACE, DEPLOYMENT, SERVICE, NETWORK_POLICY, PVC}
    for r in objects:
        obj = manifest(r.plain_inputs)
        assert validate_manifest(obj, KUBERNETES_VERSION) == []
        # Mandatory and advisory alike (labels, readiness probe): these are all our own objects.
        assert [str(v) for v in check(obj, Context(protect=r.protect))] == []


def test_pod_runs_restricted(default):
    """Non-root as the image's user in the shared group, no token, no escalation, read-only root."""
    deployment = default.only(DEPLOYMENT, namespace="tensorboard")
    pod = deployment.plain_inputs["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == TENSORBOARD_UID
    assert SHARED_GROUP in security["supplementalGroups"]
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    c = container(deployment)
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    [tmp] = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert "emptyDir" in volumes[tmp["name"]]
    namespace = default.only(NAMESPACE, name="tensorboard")
    assert namespace.plain_inputs["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_service_selects_the_pods_and_targets_the_named_port(default):
    deployment = default.only(DEPLOYMENT, namespace="tensorboard")
    service = default.only(SERVICE, namespace="tensorboard")
    template = deployment.plain_inputs["spec"]["template"]
    pod_labels = template["metadata"]["labels"]
    spec = service.plain_inputs["spec"]
    assert spec["type"] == "ClusterIP"
    for selector in (spec["selector"], deployment.plain_inputs["spec"]["selector"]["matchLabels"]):
        assert selector and selector.items() <= pod_labels.items()
    [port] = spec["ports"]
    assert port == {"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}
    assert port["targetPort"] in {p["name"] for p in container(deployment)["ports"]}
    assert default.outputs["url"] == f"http://{service.plain_inputs['metadata']['name']}.tensorboard.svc:{port['port']}"


def test_network_policy_opens_only_the_ui_port_and_no_egress(default):
    deployment = default.only(DEPLOYMENT, namespace="tensorboard")
    policy = default.only(NETWORK_POLICY, namespace="tensorboard").plain_inputs["spec"]
    pod_labels = deployment.plain_inputs["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    assert policy["ingress"] == [{"ports": [{"port": PORT, "protocol": "TCP"}]}]
    assert policy.get("egress", []) == []


def test_every_kubernetes_resource_uses_the_provider(default):
    """Nothing can land in whatever kubectl context is active on the machine running `pulumi up`."""
    [provider] = default.of_type(K8S_PROVIDER)
    [component] = default.of_type(COMPONENT)
    kubernetes = [r for r in default.resources if r.type.startswith("kubernetes:")]
    assert {r.type for r in kubernetes} >= {NAMESPACE, DEPLOYMENT, SERVICE, NETWORK_POLICY, PVC}
    for r in kubernetes:
        assert provider_urn(r.provider) == provider.urn, r.name
    own = [r for r in kubernetes if r.parent == component.urn]
    assert len(own) == 5
    for r in own:
        assert r.plain_inputs["metadata"]["name"], r.name  # explicit names, no random suffix


# --- image ----------------------------------------------------------------------------------------


def dockerfile_instructions() -> tuple[list[tuple[str, str]], dict[str, str]]:
    """(instructions, ARG defaults) of images/tensorboard/Dockerfile."""
    text = re.sub(r"\\\n", " ", (IMAGES_DIR / IMAGE_FOLDER / "Dockerfile").read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    args: dict[str, str] = {}
    for keyword, rest in instructions:
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args.setdefault(name.strip(), value.strip().strip('"'))
    return instructions, args


def resolve(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), value)


def test_dockerfile_builds_the_tensorboard_version_of_the_component():
    """`docker build` without args installs the release the stack passes as TENSORBOARD_VERSION."""
    instructions, args = dockerfile_instructions()
    assert args["TENSORBOARD_VERSION"] == TENSORBOARD_VERSION
    [run] = [rest for keyword, rest in instructions if keyword == "RUN" and "pip install" in rest]
    assert '"tensorboard==${TENSORBOARD_VERSION}"' in run


def test_dockerfile_user_is_numeric_non_root_in_the_shared_group():
    """runAsNonRoot can only verify a numeric user; the pod's runAsUser and the image agree."""
    instructions, args = dockerfile_instructions()
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users
    user, _, group = resolve(users[-1], args).partition(":")
    assert user.isdigit() and int(user) != 0
    assert int(user) == TENSORBOARD_UID
    assert int(group) == SHARED_GROUP


def test_dockerfile_base_is_pinned_and_header_names_the_build():
    instructions, args = dockerfile_instructions()
    [base] = [resolve(rest.split()[0], args) for keyword, rest in instructions if keyword == "FROM"]
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base), base
    assert [rest for keyword, rest in instructions if keyword == "ENTRYPOINT"] == ['["tensorboard"]']
    first = (IMAGES_DIR / IMAGE_FOLDER / "Dockerfile").read_text().splitlines()[0]
    assert first.startswith("# docker build ") and f"images/{IMAGE_FOLDER}" in first
