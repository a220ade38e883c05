"""Model serving: cert-manager and KServe 0.20 charts, the example InferenceService, the serving budget.

Expected values come from upstream: the InferenceService CRD of KServe v0.20.0 pinned in
reference/kserve-0.20.0/, the keys of the charts' own values files (cert-manager/cert-manager
deploy/charts/cert-manager/values.yaml; kserve/kserve charts/_common/*.yaml, which make up
charts/kserve-resources/values.yaml, and charts/kserve-runtime-configs/values.yaml), KServe's
standard-mode naming of the predictor Service (`<isvc>-predictor`, port 80) and its InferenceService
name rule (IsvcNameFmt `[a-z]([-a-z0-9]*[a-z0-9])?`).
"""

from __future__ import annotations

import copy
import re

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml
from pulumi.runtime.sync_await import _sync_await
from pydantic import ValidationError

from components import serving
from components.kubernetes_types import bytes_of, millicores_of
from components.serving import (
    CertManagerConfig,
    InferenceServiceConfig,
    ModelServing,
    ModelServingConfig,
    cert_manager_values,
    example_url,
    inference_service,
    kserve_values,
    runtime_values,
)
from components.storage import PlatformStorage, StorageConfig, protect_data_volumes
from policy.rules import Context, check
from tools import offline
from tools.schemas import unknown_value_keys, validate_manifest

KUBERNETES_VERSION = "1.34.0"
ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
NAMESPACE = "kubernetes:core/v1:Namespace"
PVC = "kubernetes:core/v1:PersistentVolumeClaim"
CHART = "kubernetes:helm.sh/v4:Chart"
PROVIDER = "pulumi:providers:kubernetes"

# The keys we set, as they stand in cert-manager/cert-manager deploy/charts/cert-manager/values.yaml
# (read at the stored revision 001eb00d, a 1.17+ chart; the same keys at tag v1.20.2, which we pin).
# An empty map is a map the chart leaves open (`resources: {}`).
UPSTREAM_CERT_MANAGER_VALUES = yaml.safe_load("""
crds:
  enabled: false
  keep: true
resources: {}
webhook:
  resources: {}
cainjector:
  enabled: true
  resources: {}
startupapicheck:
  enabled: true
""")

# The keys we set, as they stand in kserve/kserve charts/_common/kserve-resources-specific.yaml
# (merged with charts/_common/common-sections.yaml, kserve.version v0.20.0-rc0, into
# charts/kserve-resources/values.yaml by the release).
UPSTREAM_KSERVE_VALUES = yaml.safe_load("""
kserve:
  version: v0.20.0-rc0
  controller:
    deploymentMode: Knative
    rbacProxy:
      resources:
        limits: {cpu: 100m, memory: 300Mi}
        requests: {cpu: 100m, memory: 300Mi}
    gateway:
      disableIngressCreation: false
      disableIstioVirtualHost: false
    resources:
      limits: {cpu: 100m, memory: 300Mi}
      requests: {cpu: 100m, memory: 300Mi}
""")

# kserve/kserve charts/kserve-runtime-configs/values.yaml: the runtimes render only when enabled.
UPSTREAM_RUNTIME_VALUES = yaml.safe_load("""
kserve:
  llmisvcConfigs:
    enabled: false
  servingruntime:
    enabled: false
""")

CUSTOM = ModelServingConfig.model_validate({
    "namespace": "kserve-system",
    "serving_namespace": "inference",
    "cert_manager": {"namespace": "certs"},
    "example": {"name": "churn", "model_format": "xgboost", "storage_uri": "s3://models/churn/v3"},
})

_recordings: dict[str, offline.Recording] = {}


def serving_program(config: ModelServingConfig, outputs: dict | None = None):
    """ModelServing alone, on an explicit provider; its outputs land in `outputs` (not exported: the
    mock runtime's stack outputs outlive one run)."""

    def program():
        provider = k8s.Provider("cluster-provider", kubeconfig="{}")
        on_cluster = pulumi.ResourceOptions(providers=[provider])
        storage = PlatformStorage(
            "storage", StorageConfig(), provisioner="k8s.io/minikube-hostpath",
            namespaces={config.serving_namespace: ["shared_data"]}, opts=on_cluster,
        )
        component = ModelServing("serving", config, storage=storage, opts=on_cluster)
        if outputs is not None:
            outputs["component"] = component

    return program


def run_serving(run_program, config: ModelServingConfig) -> offline.Recording:
    """Run the component; the recording's `outputs` are the component's own outputs, resolved."""
    captured: dict = {}
    recording = run_program(serving_program(config, captured))
    component = captured["component"]
    for name in ("namespace", "serving_namespace", "example_url"):
        recording.outputs[name] = _sync_await(getattr(component, name).future())
    return recording


def recording_of(run_program, which: str, config: ModelServingConfig) -> offline.Recording:
    if which not in _recordings:
        _recordings[which] = run_serving(run_program, config)
    return _recordings[which]


@pytest.fixture
def defaults(run_program) -> offline.Recording:
    return recording_of(run_program, "defaults", ModelServingConfig())


@pytest.fixture
def custom(run_program) -> offline.Recording:
    return recording_of(run_program, "custom", CUSTOM)


def chart(recording: offline.Recording, release: str) -> offline.Registration:
    [found] = [c for c in recording.of_type(CHART) if c.plain_inputs["name"] == release]
    return found


def requested(resources: dict) -> tuple[int, int]:
    return millicores_of(resources["requests"]["cpu"]), bytes_of(resources["requests"]["memory"])


# --- config -----------------------------------------------------------------------------------------


def test_defaults():
    """KServe 0.20.0 in `kserve`, models in `models`, cert-manager on, a scikit-learn model on shared data."""
    config = ModelServingConfig()
    assert config.enabled and config.cert_manager.enabled
    assert (config.namespace, config.serving_namespace, config.cert_manager.namespace) == ("kserve", "models", "cert-manager")
    assert config.version == "0.20.0"
    assert config.example == InferenceServiceConfig()
    assert config.example.name == "sklearn-iris"
    assert config.example.model_format == "sklearn"
    assert config.example.storage_uri == "pvc://shared-data/models/sklearn-iris"


def test_budget_is_what_the_charts_and_the_model_request():
    """The Minikube fit check and the deployment use the same numbers: the sum of every request we set."""
    config = ModelServingConfig()
    cm = cert_manager_values(config.cert_manager)
    controller = kserve_values(config)["kserve"]["controller"]
    isvc = inference_service(config.example, "models")
    parts = [
        cm["resources"], cm["webhook"]["resources"], cm["cainjector"]["resources"],
        controller["resources"], controller["rbacProxy"]["resources"],
        isvc["spec"]["predictor"]["model"]["resources"],
    ]
    assert config.requests() == (sum(requested(p)[0] for p in parts), sum(requested(p)[1] for p in parts))
    without_example = config.model_copy(update={"example": None})
    assert without_example.requests() == (config.requests()[0] - 100, config.requests()[1] - 512 * 2**20)
    assert ModelServingConfig(enabled=False).requests() == (0, 0)


def test_storage_uri_schemes_kserve_loads_are_accepted():
    for uri in ("pvc://shared-data/m", "s3://b/m", "gs://b/m", "hdfs://nn/m", "webhdfs://nn/m",
                "hf://org/model", "https://example.com/m.joblib", "http://minio.minio:9000/m", "oci://registry/m:1"):
        assert InferenceServiceConfig(storage_uri=uri).storage_uri == uri


@pytest.mark.parametrize(
    "raw, key",
    [
        ({"example": {"storage_uri": "ftp://x"}}, "example.storage_uri"),
        ({"example": {"storage_uri": "file:///tmp/m"}}, "example.storage_uri"),
        ({"example": {"storage_uri": "/mnt/shared-data/models/m"}}, "example.storage_uri"),
        ({"example": {"storage_uri": "pvc://other-claim/models/m"}}, "example.storage_uri"),
        ({"cert_manager": {"enabled": False}}, "model_serving.cert_manager.enabled"),
        ({"serving_namespace": "Models_NS"}, "serving_namespace"),
        ({"namespace": "models"}, "model_serving.serving_namespace"),
        ({"example": {"name": "1-model"}}, "example.name"),
        ({"example": {"model_format": "onnx"}}, "example.model_format"),
        ({"replicas": 2}, "replicas"),
        ({"version": "0.14.0"}, "version"),
        ({"cert_manager": {"version": "1.12.0"}}, "cert_manager.version"),
    ],
    ids=["ftp-uri", "file-uri", "bare-path", "other-claim", "serving-without-cert-manager", "namespace-not-dns-label",
         "shared-namespace", "name-starts-with-digit", "unknown-format", "unknown-key", "old-kserve", "old-cert-manager"],
)
def test_invalid_model_serving_config_names_the_key(raw, key):
    with pytest.raises(ValidationError, match=re.escape(key)):
        ModelServingConfig.model_validate(raw)


def test_serving_without_cert_manager_names_both_keys():
    with pytest.raises(ValidationError) as error:
        ModelServingConfig.model_validate({"enabled": True, "cert_manager": {"enabled": False}})
    assert "model_serving.enabled" in str(error.value) and "model_serving.cert_manager.enabled" in str(error.value)
    # Turned off altogether, nothing needs cert-manager.
    assert ModelServingConfig.model_validate({"enabled": False, "cert_manager": {"enabled": False}}).requests() == (0, 0)


# --- chart values -----------------------------------------------------------------------------------


def test_cert_manager_values_are_keys_of_the_chart():
    """Keys of cert-manager/cert-manager deploy/charts/cert-manager/values.yaml (tag v1.20.2): a typo
    would be ignored by Helm, and e.g. a misspelt `startupapicheck` would leave a hook Job nobody runs."""
    values = cert_manager_values(CertManagerConfig())
    assert unknown_value_keys(values, UPSTREAM_CERT_MANAGER_VALUES) == []
    broken = copy.deepcopy(values)
    broken["crd"] = {"enabled": True}
    broken["webhook"]["resource"] = {}
    assert sorted(unknown_value_keys(broken, UPSTREAM_CERT_MANAGER_VALUES)) == ["crd", "webhook.resource"]


def test_cert_manager_values_install_crds_and_run_no_hooks():
    values = cert_manager_values(CertManagerConfig())
    assert values["crds"] == {"enabled": True}
    assert values["startupapicheck"] == {"enabled": False}
    for resources in (values["resources"], values["webhook"]["resources"], values["cainjector"]["resources"]):
        assert set(resources) == {"requests", "limits"}


def test_kserve_values_are_keys_of_the_chart():
    """Keys of kserve/kserve charts/_common/{common-sections,kserve-resources-specific}.yaml (the
    kserve-resources values.yaml of v0.20) and charts/kserve-runtime-configs/values.yaml."""
    assert unknown_value_keys(kserve_values(ModelServingConfig()), UPSTREAM_KSERVE_VALUES) == []
    assert unknown_value_keys(runtime_values(ModelServingConfig()), UPSTREAM_RUNTIME_VALUES) == []
    broken = copy.deepcopy(kserve_values(ModelServingConfig()))
    broken["kserve"]["controller"]["deployment_mode"] = "Standard"
    assert unknown_value_keys(broken, UPSTREAM_KSERVE_VALUES) == ["kserve.controller.deployment_mode"]


def test_kserve_runs_in_standard_mode_without_ingress():
    """No Knative, no Istio: standard mode, and no Ingress objects for an ingress class nobody serves."""
    controller = kserve_values(ModelServingConfig())["kserve"]["controller"]
    assert controller["deploymentMode"] == "Standard"
    assert controller["gateway"]["disableIngressCreation"] is True
    assert runtime_values(ModelServingConfig())["kserve"]["servingruntime"]["enabled"] is True


# --- the InferenceService ---------------------------------------------------------------------------


@pytest.mark.reference
@pytest.mark.parametrize("config", [InferenceServiceConfig(), CUSTOM.example], ids=["default", "custom"])
def test_inference_service_validates_against_the_kserve_crd(config):
    """The API server would accept the object as it is (no field pruned, no type refused)."""
    assert validate_manifest(inference_service(config, "models"), KUBERNETES_VERSION) == []


@pytest.mark.reference
@pytest.mark.parametrize(
    "breakage, field",
    [
        (lambda spec: spec["predictor"]["model"].update(storageURI="pvc://shared-data/m"), "spec.predictor.model"),
        (lambda spec: spec["predictor"].update(minReplicas="1"), "spec.predictor.minReplicas"),
        (lambda spec: spec["predictor"]["model"]["modelFormat"].pop("name"), "spec.predictor.model.modelFormat"),
        (lambda spec: spec.pop("predictor"), "predictor"),
    ],
    ids=["unknown-field", "replicas-as-string", "format-without-name", "no-predictor"],
)
def test_a_broken_inference_service_is_refused(breakage, field):
    obj = copy.deepcopy(inference_service(InferenceServiceConfig(), "models"))
    breakage(obj["spec"])
    problems = validate_manifest(obj, KUBERNETES_VERSION)
    assert problems and any(field in p for p in problems), problems


def test_inference_service_selects_standard_mode_and_a_runtime():
    isvc = inference_service(InferenceServiceConfig(), "models")
    assert isvc["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Standard"}
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "sklearn"}
    assert model["runtime"] == "kserve-sklearnserver"
    assert model["securityContext"]["runAsNonRoot"] is True
    assert model["securityContext"]["allowPrivilegeEscalation"] is False
    # Group 100 owns the shared-data volume the model is read from.
    assert 100 in isvc["spec"]["predictor"]["securityContext"]["supplementalGroups"]


def test_example_url_is_the_predictor_service():
    assert example_url("sklearn-iris", "models") == (
        "http://sklearn-iris-predictor.models.svc.cluster.local/v1/models/sklearn-iris:predict"
    )


# --- the component ------------------------------------------------------------------------------------


def test_component_defaults(defaults):
    """Namespaces, charts pinned to the releases, the model in `models` on the shared-data claim."""
    names = {r.plain_inputs["metadata"]["name"] for r in defaults.of_type(NAMESPACE)}
    assert names == {"kserve", "models", "cert-manager"}
    assert {c.plain_inputs["name"]: (c.plain_inputs["chart"], c.plain_inputs["version"], c.plain_inputs["namespace"])
            for c in defaults.of_type(CHART)} == {
        "cert-manager": ("cert-manager", "v1.20.2", "cert-manager"),
        "kserve-crd": ("oci://ghcr.io/kserve/charts/kserve-crd", "v0.20.0", "kserve"),
        "kserve": ("oci://ghcr.io/kserve/charts/kserve-resources", "v0.20.0", "kserve"),
        "kserve-runtime-configs": ("oci://ghcr.io/kserve/charts/kserve-runtime-configs", "v0.20.0", "kserve"),
    }
    assert chart(defaults, "cert-manager").plain_inputs["repositoryOpts"] == {"repo": "https://charts.jetstack.io"}
    isvc = defaults.only(ISVC, namespace="models", name="sklearn-iris")
    assert isvc.plain_inputs["spec"]["predictor"]["model"]["storageUri"] == "pvc://shared-data/models/sklearn-iris"
    defaults.only(PVC, namespace="models", name="shared-data")
    assert defaults.outputs["example_url"] == example_url("sklearn-iris", "models")
    assert (defaults.outputs["namespace"], defaults.outputs["serving_namespace"]) == ("kserve", "models")


def test_component_custom(custom):
    """Other namespaces and another model reach the objects, the charts and the URL."""
    names = {r.plain_inputs["metadata"]["name"] for r in custom.of_type(NAMESPACE)}
    assert names == {"kserve-system", "inference", "certs"}
    assert chart(custom, "cert-manager").plain_inputs["namespace"] == "certs"
    for release in ("kserve-crd", "kserve", "kserve-runtime-configs"):
        assert chart(custom, release).plain_inputs["namespace"] == "kserve-system"
    isvc = custom.only(ISVC, namespace="inference", name="churn")
    model = isvc.plain_inputs["spec"]["predictor"]["model"]
    assert (model["modelFormat"]["name"], model["runtime"], model["storageUri"]) == ("xgboost", "kserve-xgbserver", "s3://models/churn/v3")
    custom.only(PVC, namespace="inference", name="shared-data")
    assert custom.outputs["example_url"] == "http://churn-predictor.inference.svc.cluster.local/v1/models/churn:predict"


def test_chart_values_are_the_pure_functions(defaults):
    assert chart(defaults, "cert-manager").plain_inputs["values"] == cert_manager_values(CertManagerConfig())
    assert chart(defaults, "kserve").plain_inputs["values"] == kserve_values(ModelServingConfig())
    assert chart(defaults, "kserve-runtime-configs").plain_inputs["values"] == runtime_values(ModelServingConfig())


def test_first_up_on_an_empty_cluster_goes_in_order(defaults):
    """cert-manager -> CRDs -> controller -> runtimes -> InferenceService, each waiting for the one before."""
    cert_manager, crds, controller, runtimes = (
        chart(defaults, r) for r in ("cert-manager", "kserve-crd", "kserve", "kserve-runtime-configs")
    )
    assert cert_manager.urn in controller.depends_on
    assert crds.urn in controller.depends_on
    assert controller.urn in runtimes.depends_on
    isvc = defaults.only(ISVC)
    for prerequisite in (crds, controller, runtimes):
        assert prerequisite.urn in isvc.depends_on
    assert defaults.only(PVC, namespace="models").urn in isvc.depends_on
    namespaces = {r.plain_inputs["metadata"]["name"]: r.urn for r in defaults.of_type(NAMESPACE)}
    assert namespaces["cert-manager"] in cert_manager.depends_on
    assert namespaces["kserve"] in crds.depends_on


def test_charts_protect_data_volumes(run_program, monkeypatch):
    """Claims a chart might create get the same protection as the platform's own volumes."""
    seen = {}
    real = k8s.helm.v4.Chart

    def spy(resource_name, *args, opts=None, **kwargs):
        seen[resource_name] = opts.transforms
        return real(resource_name, *args, opts=opts, **kwargs)

    monkeypatch.setattr(serving.k8s.helm.v4, "Chart", spy)
    run_program(serving_program(ModelServingConfig()))
    assert len(seen) == 4
    assert all(protect_data_volumes in transforms for transforms in seen.values())


def test_every_kubernetes_resource_uses_the_parents_provider(defaults):
    [provider] = [p for p in defaults.of_type(PROVIDER) if p.name == "cluster-provider"]
    kubernetes = [r for r in defaults.resources if r.type.startswith("kubernetes:")]
    assert len(kubernetes) >= 9
    for resource in kubernetes:
        reference = resource.provider or resource.providers.get("kubernetes", "")
        assert reference.rsplit("::", 1)[0] == provider.urn, resource.name


def test_every_child_belongs_to_the_component(defaults):
    [component] = defaults.of_type("dataplatform:serving:ModelServing")
    children = [r for r in defaults.resources if r.parent == component.urn]
    assert {r.type for r in children} == {NAMESPACE, CHART, PVC, ISVC}


@pytest.mark.reference
@pytest.mark.parametrize("which", ["defaults", "custom"])
def test_manifests_are_valid_and_pass_the_mandatory_policies(which, request):
    recording: offline.Recording = request.getfixturevalue(which)
    [component] = recording.of_type("dataplatform:serving:ModelServing")
    objects = [r for r in recording.kubernetes_objects() if r.parent == component.urn]
    assert {r.plain_inputs["kind"] for r in objects} == {"Namespace", "PersistentVolumeClaim", "InferenceService"}
    for registration in objects:
        obj = registration.plain_inputs
        assert validate_manifest(obj, KUBERNETES_VERSION) == [], obj["metadata"]
        mandatory = [v for v in check(obj, Context(protect=registration.protect)) if v.enforcement == "mandatory"]
        assert mandatory == [], [str(v) for v in mandatory]


def test_without_example_there_is_no_inference_service(run_program):
    recording = run_serving(run_program, ModelServingConfig(example=None))
    assert recording.of_type(ISVC) == []
    assert recording.outputs["example_url"] == ""
    assert len(recording.of_type(CHART)) == 4


def test_disabled_registers_nothing_on_the_cluster(run_program):
    recording = run_serving(run_program, ModelServingConfig(enabled=False))
    [component] = recording.of_type("dataplatform:serving:ModelServing")
    assert [r for r in recording.resources if r.parent == component.urn] == []
    assert [recording.outputs[k] for k in ("namespace", "serving_namespace", "example_url")] == ["", "", ""]
