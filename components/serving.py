"""Model serving: KServe in its standard (raw deployment) mode, cert-manager, and an example model.

KServe's standard mode (called `RawDeployment` before KServe 0.15) turns an InferenceService into a
plain Deployment, Service and HorizontalPodAutoscaler, so it needs neither Knative nor Istio. Its
admission webhooks still need TLS certificates, which the KServe chart asks cert-manager for
(`Issuer` + `Certificate`, CA injected into the webhook configurations by cert-manager's cainjector),
so cert-manager is installed first. KServe 0.20 ships as separate charts: `kserve-crd` (the CRDs),
`kserve-resources` (controller, webhooks, `inferenceservice-config`) and `kserve-runtime-configs` (the
ClusterServingRuntimes: the model servers an InferenceService's `modelFormat` is matched against).
Every chart and custom resource depends on what serves it, so a first `pulumi up` on an empty
cluster goes through in one pass:

    cert-manager -> kserve-crd -> kserve-resources -> kserve-runtime-configs -> example InferenceService

The example InferenceService serves a scikit-learn model from the platform's shared-data volume
(`pvc://shared-data/...`), which KServe mounts read-only into the model server at `/mnt/models`; a
notebook or pipeline step writes the model to `/mnt/shared-data/<path>` and it is served from there.
"""

from __future__ import annotations

from typing import Literal, Sequence
from urllib.parse import urlsplit

import pulumi
import pulumi_kubernetes as k8s
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from components.kubernetes_types import (
    RESTRICTED_CONTAINER,
    SHARED_GROUP,
    DnsLabel,
    Namespace,
    Resources,
    bytes_of,
    labels,
    millicores_of,
    component_namespace,
)
from components.storage import SHARED_VOLUMES, PlatformStorage, protect_data_volumes

KSERVE_VERSION = "0.20.0"
"""KServe release; its InferenceService CRD is the one pinned in reference/kserve-0.20.0/."""
KSERVE_CHARTS = {
    # The official OCI charts of the release (KServe's own hack/setup/infra/manage.kserve-helm.sh
    # installs kserve-crd and kserve-resources this way; kserve-runtime-configs holds the runtimes).
    "crd": "oci://ghcr.io/kserve/charts/kserve-crd",
    "controller": "oci://ghcr.io/kserve/charts/kserve-resources",
    "runtimes": "oci://ghcr.io/kserve/charts/kserve-runtime-configs",
}
CERT_MANAGER_VERSION = "1.20.2"
"""cert-manager release (KServe's documentation asks for 1.15.0 or newer)."""
CERT_MANAGER_CHART = {"repository": "https://charts.jetstack.io", "chart": "cert-manager"}

DEPLOYMENT_MODE = "Standard"
"""KServe's name for raw deployment mode since 0.15 (`RawDeployment` is the deprecated alias)."""
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"

# Model format -> the ClusterServingRuntime of kserve-runtime-configs that serves it. Several
# runtimes claim `sklearn` (sklearnserver, mlserver, predictiveserver); naming one keeps the choice
# out of KServe's priority rules.
RUNTIMES = {
    "sklearn": "kserve-sklearnserver",
    "xgboost": "kserve-xgbserver",
    "lightgbm": "kserve-lgbserver",
}

# URI schemes KServe 0.20 can load a model from: pvc:// is mounted by the controller itself, oci://
# runs as a modelcar (kserve.storage.enableModelcar, on by default), the rest go through the storage
# initializer's default ClusterStorageContainer (supportedUriFormats: gs://, s3://, hdfs://, hf://,
# webhdfs://, https?://, Azure blob/file over https).
STORAGE_URI_SCHEMES = ("pvc", "s3", "gs", "hdfs", "webhdfs", "hf", "https", "http", "oci")

SHARED_DATA_CLAIM, SHARED_DATA_PATH = SHARED_VOLUMES["shared_data"]
PREDICTOR_SUFFIX = "-predictor"
"""KServe names the predictor's Service `<isvc>-predictor` in standard mode (port 80)."""


def _check_storage_uri(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.scheme not in STORAGE_URI_SCHEMES or "://" not in uri:
        raise ValueError(
            f"{uri!r} is not a model URI KServe can load: use one of "
            f"{', '.join(s + '://' for s in STORAGE_URI_SCHEMES)}"
        )
    if not parts.netloc:
        raise ValueError(f"{uri!r} has nothing after {parts.scheme}://: name the claim, bucket or host")
    if parts.scheme == "pvc" and parts.netloc != SHARED_DATA_CLAIM:
        raise ValueError(
            f"{uri!r} names claim {parts.netloc!r}, but the only claim in the serving namespace is the "
            f"platform's shared-data volume: use pvc://{SHARED_DATA_CLAIM}/<path> (a notebook sees it at "
            f"{SHARED_DATA_PATH}/<path>)"
        )
    return uri


class InferenceServiceConfig(BaseModel):
    """The example model KServe serves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: DnsLabel = Field(
        "sklearn-iris", max_length=63 - len(PREDICTOR_SUFFIX),
        description="InferenceService name; starts with a letter (KServe's rule) and leaves room for `-predictor`.",
    )
    model_format: Literal["sklearn", "xgboost", "lightgbm"] = Field(
        "sklearn", description="Model format; picks the KServe runtime that serves it."
    )
    storage_uri: str = Field(
        f"pvc://{SHARED_DATA_CLAIM}/models/sklearn-iris",
        description="Where the model is: `pvc://shared-data/<path>` (the platform's shared-data volume, "
        "`/mnt/shared-data/<path>` in notebooks and jobs) or an `s3://`, `gs://`, `hdfs://`, `webhdfs://`, "
        "`hf://`, `https://`, `http://` or `oci://` URI.",
    )
    resources: Resources = Field(
        Resources(cpu_request="100m", cpu_limit="1", memory_request="512Mi", memory_limit="1Gi"),
        description="Model server container resources.",
    )

    @field_validator("name")
    @classmethod
    def _starts_with_letter(cls, value: str) -> str:
        # KServe's webhook refuses names outside [a-z]([-a-z0-9]*[a-z0-9])? (IsvcNameFmt).
        if not value[0].isalpha():
            raise ValueError(f"{value!r} does not start with a letter, which KServe requires of an InferenceService name")
        return value

    @field_validator("storage_uri")
    @classmethod
    def _supported_scheme(cls, value: str) -> str:
        return _check_storage_uri(value)


class CertManagerConfig(BaseModel):
    """cert-manager, which issues the certificates of KServe's webhooks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Install cert-manager (model serving needs it).")
    namespace: Namespace = Field("cert-manager", description="Namespace of cert-manager.")
    version: Literal["1.20.2"] = Field(CERT_MANAGER_VERSION, description="cert-manager chart version.")
    controller_resources: Resources = Field(
        Resources(cpu_request="50m", cpu_limit="200m", memory_request="96Mi", memory_limit="256Mi"),
        description="cert-manager controller resources.",
    )
    webhook_resources: Resources = Field(
        Resources(cpu_request="20m", cpu_limit="100m", memory_request="32Mi", memory_limit="128Mi"),
        description="cert-manager webhook resources.",
    )
    cainjector_resources: Resources = Field(
        Resources(cpu_request="20m", cpu_limit="200m", memory_request="96Mi", memory_limit="256Mi"),
        description="cert-manager CA injector resources.",
    )

    def parts(self) -> list[Resources]:
        """The resources of cert-manager's three deployments."""
        return [self.controller_resources, self.webhook_resources, self.cainjector_resources]


class ModelServingConfig(BaseModel):
    """The `model_serving` config key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Run KServe and the example model.")
    namespace: Namespace = Field("kserve", description="Namespace of the KServe controller.")
    serving_namespace: Namespace = Field("models", description="Namespace the InferenceServices run in.")
    version: Literal["0.20.0"] = Field(KSERVE_VERSION, description="KServe release (its charts are tagged `v` + this).")
    cert_manager: CertManagerConfig = Field(CertManagerConfig(), description="cert-manager.")
    controller_resources: Resources = Field(
        Resources(cpu_request="100m", cpu_limit="500m", memory_request="300Mi", memory_limit="600Mi"),
        description="KServe controller (manager container) resources.",
    )
    rbac_proxy_resources: Resources = Field(
        Resources(cpu_request="20m", cpu_limit="100m", memory_request="32Mi", memory_limit="128Mi"),
        description="KServe controller's kube-rbac-proxy sidecar resources.",
    )
    example: InferenceServiceConfig | None = Field(
        InferenceServiceConfig(), description="The example InferenceService; null for none."
    )

    @model_validator(mode="after")
    def _needs_cert_manager(self) -> ModelServingConfig:
        if self.enabled and not self.cert_manager.enabled:
            raise ValueError(
                "model_serving.enabled is true but model_serving.cert_manager.enabled is false: KServe's "
                "webhooks get their TLS certificates from cert-manager; enable cert-manager or disable model serving"
            )
        return self

    @model_validator(mode="after")
    def _namespaces_differ(self) -> ModelServingConfig:
        keys = {"model_serving.namespace": self.namespace, "model_serving.serving_namespace": self.serving_namespace}
        if self.cert_manager.enabled:
            keys["model_serving.cert_manager.namespace"] = self.cert_manager.namespace
        seen: dict[str, str] = {}
        for key, namespace in keys.items():
            if namespace in seen:
                raise ValueError(f"{seen[namespace]} and {key} are both {namespace!r}: give each its own namespace")
            seen[namespace] = key
        return self

    def requests(self) -> tuple[int, int]:
        """(millicores, bytes) the enabled parts ask the scheduler for: cert-manager's controller,
        webhook and cainjector, the KServe controller pod (manager and kube-rbac-proxy) and the
        example's model server. The same `Resources` are what the chart values and the
        InferenceService set."""
        if not self.enabled:
            return 0, 0
        parts = [self.controller_resources, self.rbac_proxy_resources]
        if self.cert_manager.enabled:
            parts += self.cert_manager.parts()
        if self.example is not None:
            parts.append(self.example.resources)
        return sum(millicores_of(r.cpu_request) for r in parts), sum(bytes_of(r.memory_request) for r in parts)


def cert_manager_values(config: CertManagerConfig) -> dict:
    """Values for the jetstack cert-manager chart.

    Keys checked against deploy/charts/cert-manager/values.yaml of cert-manager/cert-manager
    (`crds.enabled`, `resources`, `webhook.resources`, `cainjector.resources`,
    `startupapicheck.enabled`; unchanged across the 1.15-1.20 releases).
    """
    return {
        "crds": {"enabled": True},
        "resources": config.controller_resources.to_kubernetes(),
        "webhook": {"resources": config.webhook_resources.to_kubernetes()},
        "cainjector": {"resources": config.cainjector_resources.to_kubernetes()},
        # A post-install Helm hook (a Job waiting for the webhook); helm.v4.Chart runs no hooks, and
        # Pulumi already waits for the webhook Deployment to be ready.
        "startupapicheck": {"enabled": False},
    }


def kserve_values(config: ModelServingConfig) -> dict:
    """Values for `kserve-resources`: standard mode, no Ingress objects (no Istio, no ingress class;
    models are reached in-cluster through their predictor Service), and our resources.

    Keys checked against kserve/kserve charts/_common/common-sections.yaml (kserve.version
    v0.20.0-rc0) and charts/_common/kserve-resources-specific.yaml, which the release merges into
    charts/kserve-resources/values.yaml.
    """
    return {
        "kserve": {
            "controller": {
                "deploymentMode": DEPLOYMENT_MODE,
                "gateway": {"disableIngressCreation": True},
                "resources": config.controller_resources.to_kubernetes(),
                "rbacProxy": {"resources": config.rbac_proxy_resources.to_kubernetes()},
            },
        },
    }


def runtime_values(config: ModelServingConfig) -> dict:
    """Values for `kserve-runtime-configs`: its ClusterServingRuntimes are off unless asked for."""
    return {"kserve": {"servingruntime": {"enabled": True}}}


def inference_service(config: InferenceServiceConfig, namespace: pulumi.Input[str]) -> dict:
    """The `serving.kserve.io/v1beta1` InferenceService for `config`, in standard deployment mode."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": config.name,
            "namespace": namespace,
            "labels": labels(config.name, "model-serving"),
            "annotations": {DEPLOYMENT_MODE_ANNOTATION: DEPLOYMENT_MODE},
        },
        "spec": {
            "predictor": {
                "minReplicas": 1,
                "maxReplicas": 1,
                "securityContext": {
                    "runAsNonRoot": True,
                    "supplementalGroups": [SHARED_GROUP],
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "model": {
                    "modelFormat": {"name": config.model_format},
                    "runtime": RUNTIMES[config.model_format],
                    "storageUri": config.storage_uri,
                    "resources": config.resources.to_kubernetes(),
                    "securityContext": RESTRICTED_CONTAINER,
                },
            },
        },
    }


def example_url(name: str, namespace: str) -> str:
    """In-cluster URL of a model's V1 predict endpoint (the predictor Service listens on port 80)."""
    return f"http://{name}{PREDICTOR_SUFFIX}.{namespace}.svc.cluster.local/v1/models/{name}:predict"


# What a pipeline step needs to roll out a model: manage InferenceServices in the serving namespace
# and watch them become Ready; nothing else, nowhere else.
DEPLOYER_RULES = [
    {
        "apiGroups": ["serving.kserve.io"],
        "resources": ["inferenceservices"],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
    }
]


class ModelServing(pulumi.ComponentResource):
    """cert-manager, KServe (CRDs, controller, runtimes) in standard mode, the serving namespace and
    its shared-data claim, and the example InferenceService."""

    namespace: pulumi.Output[str]
    """Namespace of the KServe controller (empty when disabled)."""
    serving_namespace: pulumi.Output[str]
    """Namespace the InferenceServices run in (empty when disabled)."""
    example_url: pulumi.Output[str]
    """In-cluster predict URL of the example model (empty without one)."""

    def __init__(
        self,
        name: str,
        args: ModelServingConfig,
        storage: PlatformStorage,
        deployers: Sequence[tuple[str, str]] = (),
        opts: pulumi.ResourceOptions | None = None,
    ):
        """`deployers`: (namespace, service account) pairs that may manage InferenceServices in the
        serving namespace, e.g. the Kubeflow pipeline runner that deploys a trained model."""
        super().__init__("dataplatform:serving:ModelServing", name, None, opts)
        self.namespace = pulumi.Output.from_input("")
        self.serving_namespace = pulumi.Output.from_input("")
        self.example_url = pulumi.Output.from_input("")
        if args.enabled:
            self._build(name, args, storage, deployers)
        self.register_outputs({
            "namespace": self.namespace, "serving_namespace": self.serving_namespace, "example_url": self.example_url,
        })

    def _namespace(self, name: str, name_in_cluster: str) -> k8s.core.v1.Namespace:
        return component_namespace(name, name_in_cluster, "model-serving", self)

    def _chart(self, name: str, release: str, chart: str, version: str, namespace, values: dict,
               depends_on: list, repository: str | None = None) -> k8s.helm.v4.Chart:
        return k8s.helm.v4.Chart(
            name,
            name=release,
            chart=chart,
            version=version,
            repository_opts={"repo": repository} if repository else None,
            namespace=namespace,
            values=values,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on, transforms=[protect_data_volumes]),
        )

    def _build(self, name: str, args: ModelServingConfig, storage: PlatformStorage, deployers: Sequence[tuple[str, str]]) -> None:
        kserve_ns = self._namespace(f"{name}-namespace", args.namespace)
        serving_ns = self._namespace(f"{name}-serving-namespace", args.serving_namespace)

        # The KServe chart creates cert-manager Issuers and Certificates: cert-manager's CRDs and
        # webhook must be serving first. (Serving without cert-manager is refused by the config.)
        cert_manager_ns = self._namespace(f"{name}-cert-manager-namespace", args.cert_manager.namespace)
        cert_manager = self._chart(
            f"{name}-cert-manager", "cert-manager", CERT_MANAGER_CHART["chart"], f"v{args.cert_manager.version}",
            cert_manager_ns.metadata.name, cert_manager_values(args.cert_manager), [cert_manager_ns],
            repository=CERT_MANAGER_CHART["repository"],
        )
        version = f"v{args.version}"
        crds = self._chart(
            f"{name}-kserve-crd", "kserve-crd", KSERVE_CHARTS["crd"], version,
            kserve_ns.metadata.name, {}, [kserve_ns],
        )
        controller = self._chart(
            f"{name}-kserve", "kserve", KSERVE_CHARTS["controller"], version,
            kserve_ns.metadata.name, kserve_values(args), [kserve_ns, crds, cert_manager],
        )
        # ClusterServingRuntimes are checked by the controller's webhook.
        runtimes = self._chart(
            f"{name}-kserve-runtimes", "kserve-runtime-configs", KSERVE_CHARTS["runtimes"], version,
            kserve_ns.metadata.name, runtime_values(args), [crds, controller],
        )

        serving_namespace = serving_ns.metadata.name
        shared_data = storage.claim("shared_data", serving_namespace, self)
        if deployers:
            role = k8s.rbac.v1.Role(
                f"{name}-deployer",
                metadata={"name": "inferenceservice-deployer", "namespace": serving_namespace, "labels": labels("inferenceservice-deployer", "model-serving")},
                rules=DEPLOYER_RULES,
                opts=pulumi.ResourceOptions(parent=self),
            )
            k8s.rbac.v1.RoleBinding(
                f"{name}-deployer-binding",
                metadata={"name": "inferenceservice-deployer", "namespace": serving_namespace, "labels": labels("inferenceservice-deployer", "model-serving")},
                role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.metadata.name},
                subjects=[{"kind": "ServiceAccount", "name": sa, "namespace": ns} for ns, sa in deployers],
                opts=pulumi.ResourceOptions(parent=self),
            )

        if args.example is not None:
            isvc = inference_service(args.example, serving_namespace)
            k8s.apiextensions.CustomResource(
                f"{name}-{args.example.name}",
                api_version=isvc["apiVersion"],
                kind=isvc["kind"],
                metadata=isvc["metadata"],
                spec=isvc["spec"],
                # The CRD, the controller's webhooks and the runtime must exist before the first model.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[crds, controller, runtimes, shared_data]),
            )
            self.example_url = serving_namespace.apply(lambda ns: example_url(args.example.name, ns))

        self.namespace = kserve_ns.metadata.name
        self.serving_namespace = serving_namespace
