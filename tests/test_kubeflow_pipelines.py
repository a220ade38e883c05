"""Kubeflow Pipelines: upstream manifests at the pinned release, applied in order; the UI Service; budget.

Expected values come from kubeflow/pipelines: the install commands of the KFP operator guide
(cluster-scoped-resources, then env/platform-agnostic, `?ref=<release>`), kustomize's remote-target
syntax (examples/remoteBuild.md: `<repo>//<folder>?ref=<tag>`), upstream's UI Service
(manifests/kustomize/base/pipeline/ml-pipeline-ui-service.yaml: port 80 -> 3000, selector
`app: ml-pipeline-ui`), the API server Service (ml-pipeline-apiserver-service.yaml: `ml-pipeline`,
http 8888), the e2e-test.yml Kubernetes matrix (v1.29.2, v1.34.0) and Kubernetes' own OpenAPI schema.

Under Pulumi's mocks a kustomize.v2.Directory is a remote component that renders no children, so
these tests check what we hand it: the directory URL with its pinned ref, the namespace, the order.
"""

from __future__ import annotations

import re

import pulumi
import pulumi_kubernetes as k8s
import pytest
from pydantic import ValidationError

from components.kubernetes_types import bytes_of, millicores_of
from components.pipelines import (
    KFP_NAMESPACE,
    KFP_RELEASES,
    KFP_REQUESTS,
    KFP_VERSION,
    KubeflowPipelines,
    KubeflowPipelinesConfig,
    api_url,
    check_kubernetes_support,
    kustomize_url,
)
from policy.rules import Context, check
from tools import offline
from tools.render import manifest
from tools.schemas import validate_manifest

KUBERNETES_VERSION = "1.34.0"
DIRECTORY = "kubernetes:kustomize/v2:Directory"
SERVICE = "kubernetes:core/v1:Service"
COMPONENT = "dataplatform:pipelines:KubeflowPipelines"
PROVIDER = "pulumi:providers:kubernetes"

# The remote targets upstream's install guide applies, in this order, for release 2.17.2.
UPSTREAM_CLUSTER_SCOPED = "https://github.com/kubeflow/pipelines//manifests/kustomize/cluster-scoped-resources?ref=2.17.2"
UPSTREAM_ENV = "https://github.com/kubeflow/pipelines//manifests/kustomize/env/platform-agnostic?ref=2.17.2"
# manifests/kustomize/base/pipeline/ml-pipeline-ui-service.yaml
UPSTREAM_UI_SELECTOR = {"app": "ml-pipeline-ui"}
UPSTREAM_UI_PORT, UPSTREAM_UI_TARGET_PORT = 80, 3000

_recordings: dict[tuple, offline.Recording] = {}


def kfp_program(config: KubeflowPipelinesConfig, service_type: str):
    def program():
        provider = k8s.Provider("k8s", kubeconfig="kubeconfig-of-the-test-cluster")
        kfp = KubeflowPipelines("kfp", config, service_type=service_type, opts=pulumi.ResourceOptions(providers=[provider]))
        pulumi.export("namespace", kfp.namespace)
        pulumi.export("ui_service", kfp.ui_service)
        pulumi.export("api_url", kfp.api_url)

    return program


@pytest.fixture
def record(run_program):
    """The recording of the component for (config, cluster service type), run once per pair."""

    def get(config: KubeflowPipelinesConfig = KubeflowPipelinesConfig(), service_type: str = "NodePort") -> offline.Recording:
        key = (config, service_type)
        if key not in _recordings:
            _recordings[key] = run_program(kfp_program(config, service_type))
        return _recordings[key]

    return get


def directories(recording: offline.Recording) -> dict[str, offline.Registration]:
    return {r.name: r for r in recording.of_type(DIRECTORY)}


def ui_service(recording: offline.Recording) -> offline.Registration:
    [service] = recording.of_type(SERVICE)
    return service


# --- the upstream manifests ---------------------------------------------------------------------


def test_remote_targets_use_kustomize_syntax_at_the_pinned_release():
    assert kustomize_url("manifests/kustomize/cluster-scoped-resources", KFP_VERSION) == UPSTREAM_CLUSTER_SCOPED
    assert kustomize_url("manifests/kustomize/env/platform-agnostic", KFP_VERSION) == UPSTREAM_ENV


def test_defaults_apply_both_upstream_directories_at_the_pinned_ref(record):
    """Cluster-scoped resources and the platform-agnostic environment, both at the pinned tag, in `kubeflow`."""
    found = directories(record())
    assert set(found) == {"kfp-cluster-scoped", "kfp-env"}
    assert found["kfp-cluster-scoped"].inputs["directory"] == UPSTREAM_CLUSTER_SCOPED
    assert found["kfp-env"].inputs["directory"] == UPSTREAM_ENV
    for directory in found.values():
        assert directory.inputs["directory"].endswith(f"?ref={KFP_VERSION}")
        assert directory.inputs["namespace"] == KFP_NAMESPACE == "kubeflow"


def test_environment_waits_for_the_cluster_scoped_resources(record):
    """The CRDs and the Namespace exist before the environment that uses them: one-pass first `pulumi up`."""
    found = directories(record())
    assert found["kfp-cluster-scoped"].urn in found["kfp-env"].depends_on
    assert found["kfp-env"].urn not in found["kfp-cluster-scoped"].depends_on
    assert found["kfp-env"].urn in ui_service(record()).depends_on


def test_everything_is_a_child_on_the_explicit_provider(record):
    """No resource may fall back to a default provider, i.e. whatever kubeconfig context is active."""
    recording = record()
    [component] = recording.of_type(COMPONENT)
    [provider] = recording.of_type(PROVIDER)
    provider_ref = f"{provider.urn}::{provider.name}-id"
    children = [r for r in recording.resources if r.type not in (COMPONENT, PROVIDER)]
    assert {r.type for r in children} == {DIRECTORY, SERVICE}
    for child in children:
        assert child.parent == component.urn, child.name
        assert child.provider == provider_ref, child.name


# --- the UI -------------------------------------------------------------------------------------------


def test_ui_service_selects_the_upstream_ui_pods(record):
    """Our Service reaches the pods upstream's `ml-pipeline-ui` Service reaches, on the same ports
    (manifests/kustomize/base/pipeline/ml-pipeline-ui-service.yaml)."""
    inputs = ui_service(record()).plain_inputs
    assert inputs["metadata"]["name"] == "ml-pipeline-ui-external"
    assert inputs["metadata"]["namespace"] == "kubeflow"
    assert inputs["spec"]["selector"] == UPSTREAM_UI_SELECTOR
    [port] = inputs["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (UPSTREAM_UI_PORT, UPSTREAM_UI_TARGET_PORT)


@pytest.mark.parametrize("service_type", ["NodePort", "ClusterIP"])
def test_ui_service_follows_the_cluster_service_type(record, service_type):
    """NodePort on Minikube, whatever the existing cluster is configured with elsewhere."""
    assert ui_service(record(service_type=service_type)).plain_inputs["spec"]["type"] == service_type


def test_ui_is_not_on_a_load_balancer_unless_asked_for(record):
    """KFP standalone has no login: on a LoadBalancer cluster its UI stays ClusterIP (kubectl port-forward)."""
    assert ui_service(record(service_type="LoadBalancer")).plain_inputs["spec"]["type"] == "ClusterIP"
    config = KubeflowPipelinesConfig(ui_service_type="LoadBalancer")
    assert ui_service(record(config, "LoadBalancer")).plain_inputs["spec"]["type"] == "LoadBalancer"


def test_configured_ui_service_type_overrides_the_cluster_default(record):
    config = KubeflowPipelinesConfig(ui_service_type="ClusterIP")
    assert ui_service(record(config, "LoadBalancer")).plain_inputs["spec"]["type"] == "ClusterIP"
    config = KubeflowPipelinesConfig(ui_service_type="NodePort")
    assert ui_service(record(config, "ClusterIP")).plain_inputs["spec"]["type"] == "NodePort"


@pytest.mark.parametrize("service_type", ["NodePort", "LoadBalancer", "ClusterIP"])
def test_ui_service_passes_the_policies_and_the_kubernetes_schema(record, service_type):
    """The object the API server gets is valid for Kubernetes 1.34 and breaks no platform policy
    (a LoadBalancer only where the cluster's service type allows exposure)."""
    service = ui_service(record(service_type=service_type))
    obj = manifest(service.plain_inputs)
    assert validate_manifest(obj, KUBERNETES_VERSION) == []
    allowed = Context(protect=service.protect, allow_load_balancer=service_type == "LoadBalancer")
    assert [str(v) for v in check(obj, allowed)] == []


def test_outputs(record):
    outputs = record().outputs
    assert outputs["namespace"] == "kubeflow"
    assert outputs["ui_service"] == "ml-pipeline-ui-external"
    # manifests/kustomize/base/pipeline/ml-pipeline-apiserver-service.yaml: Service ml-pipeline, http 8888
    assert outputs["api_url"] == api_url() == "http://ml-pipeline.kubeflow.svc.cluster.local:8888"


# --- resource budget ------------------------------------------------------------------------------------


def test_budget_is_the_sum_of_the_declared_requests():
    """What config validation adds for KFP is exactly what KFP_REQUESTS declares, and something."""
    cpu = sum(millicores_of(c) for c, _ in KFP_REQUESTS.values())
    memory = sum(bytes_of(m) for _, m in KFP_REQUESTS.values())
    assert KubeflowPipelinesConfig().requests() == (cpu, memory)
    assert all(millicores_of(c) > 0 and bytes_of(m) > 0 for c, m in KFP_REQUESTS.values())
    assert cpu > 0 and memory > 0
    assert KubeflowPipelinesConfig(enabled=False).requests() == (0, 0)


def test_budget_covers_the_database_object_store_and_workflow_engine():
    """The heaviest pods the environment starts are counted: MySQL, SeaweedFS (the object store since
    KFP 2.15, not MinIO), Argo's workflow controller, the API server."""
    assert {"mysql", "seaweedfs", "workflow-controller", "ml-pipeline", "ml-pipeline-ui"} <= set(KFP_REQUESTS)
    assert "minio" not in KFP_REQUESTS


# --- Kubernetes support -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kubernetes_version", ["1.29.2", "1.34.0"])
def test_kubernetes_versions_upstream_tests_are_accepted(kubernetes_version):
    """e2e-test.yml runs KFP on kind v1.29.2 and v1.34.0."""
    check_kubernetes_support(KFP_VERSION, kubernetes_version)


@pytest.mark.parametrize("kubernetes_version", ["1.28.9", "1.35.0"])
def test_kubernetes_versions_outside_the_range_are_refused_naming_both(kubernetes_version):
    low, high = KFP_RELEASES[KFP_VERSION]
    with pytest.raises(ValueError) as refused:
        check_kubernetes_support(KFP_VERSION, kubernetes_version)
    message = str(refused.value)
    assert KFP_VERSION in message and kubernetes_version in message
    assert f"1.{low}" in message and f"1.{high}" in message
    assert not message.startswith(("kubeflow_pipelines", "cluster", "dataplatform:"))  # the caller prefixes the keys


def test_unknown_kfp_release_or_bad_kubernetes_version_is_refused():
    with pytest.raises(ValueError, match="1.8.5"):
        check_kubernetes_support("1.8.5", KUBERNETES_VERSION)
    with pytest.raises(ValueError, match="one.thirty-four"):
        check_kubernetes_support(KFP_VERSION, "one.thirty-four")


# --- invalid config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, key",
    [
        ({"version": "1.8.5"}, "version"),
        ({"versions": KFP_VERSION}, "versions"),
        ({"ui_service_type": "Ingress"}, "ui_service_type"),
        ({"enabled": "sometimes"}, "enabled"),
    ],
    ids=["unsupported-version", "unknown-key", "not-a-service-type", "not-a-bool"],
)
def test_invalid_config_names_the_key(raw, key):
    with pytest.raises(ValidationError, match=re.escape(key)):
        KubeflowPipelinesConfig.model_validate(raw)


def test_config_is_frozen():
    with pytest.raises(ValidationError):
        KubeflowPipelinesConfig().enabled = False  # type: ignore[misc]


def test_namespace_is_readable_but_not_configurable():
    """Other areas must not claim `kubeflow`; the stack's clash check reads it from the config."""
    assert KubeflowPipelinesConfig().namespace == "kubeflow"
    with pytest.raises(ValidationError, match="namespace"):
        KubeflowPipelinesConfig.model_validate({"namespace": "pipelines"})


def test_pipeline_runner_gets_its_iam_role_by_transform():
    """On EKS the runs reach S3 through the pipeline-runner service account's IRSA role."""
    import pulumi

    from components.pipelines import PIPELINE_RUNNER, annotate_pipeline_runner

    transform = annotate_pipeline_runner("arn:aws:iam::123456789012:role/runner")
    runner = pulumi.ResourceTransformArgs(
        custom=True, type_="kubernetes:core/v1:ServiceAccount", name="sa",
        props={"metadata": {"name": PIPELINE_RUNNER, "namespace": "kubeflow"}}, opts=pulumi.ResourceOptions())
    result = transform(runner)
    assert result.props["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/runner"}
    other = pulumi.ResourceTransformArgs(
        custom=True, type_="kubernetes:core/v1:ServiceAccount", name="sa",
        props={"metadata": {"name": "ml-pipeline", "namespace": "kubeflow"}}, opts=pulumi.ResourceOptions())
    assert transform(other) is None


def test_prod_creates_the_pipeline_runner_role_for_exactly_that_service_account(run_stack):
    import json

    from tools.offline import reveal

    recording = run_stack("prod")
    roles = [r for r in recording.of_type("aws:iam/role:Role") if r.name.endswith("-pipeline-runner")]
    assert len(roles) == 1
    trust = json.loads(reveal(roles[0].inputs["assumeRolePolicy"]))
    conditions = json.dumps(trust)
    assert "system:serviceaccount:kubeflow:pipeline-runner" in conditions
