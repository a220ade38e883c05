"""Kubeflow Pipelines standalone: the upstream release manifests, the UI exposed per cluster kind.

Deployed the way upstream documents it (kubeflow.org, Pipelines > Operator guides > Installation):
first `manifests/kustomize/cluster-scoped-resources` (the `kubeflow` Namespace, the CRDs, the
ClusterRoles), then `manifests/kustomize/env/platform-agnostic` (API server, UI, persistence agent,
scheduled-workflow controller, cache, ML Metadata, Argo's workflow controller, MySQL, and since KFP
2.15 SeaweedFS as the in-cluster S3 object store in place of MinIO), both at the pinned release tag,
through `pulumi_kubernetes.kustomize.v2.Directory`. The second waits for the first, so the CRDs exist
before anything uses them and a first `pulumi up` on an empty cluster succeeds in one pass.

What we add: one Service, `ml-pipeline-ui-external`, of the cluster's service type (NodePort on
Minikube), in front of upstream's ClusterIP-only UI; and the resource budget of everything the
platform-agnostic environment starts, declared once (`KFP_REQUESTS`) so the stack config can refuse
a Minikube profile too small for it.
"""

from __future__ import annotations

import copy
import re
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s
from pydantic import BaseModel, ConfigDict, Field

from components.kubernetes_types import bytes_of, labels, millicores_of
from components.storage import PlatformStorage, protect_data_volumes

KFP_VERSION = "2.17.2"
"""Kubeflow Pipelines release whose manifests are applied (git tag of kubeflow/pipelines, no `v`)."""

# Kubeflow Pipelines release -> (lowest, highest) Kubernetes 1.x minor its release is tested against:
# the kind clusters of kubeflow/pipelines' .github/workflows/e2e-test.yml matrix (k8s_version
# v1.29.2 and v1.34.0).
KFP_RELEASES: dict[str, tuple[int, int]] = {
    "2.17.2": (29, 34),
}
KFP_VERSIONS = tuple(KFP_RELEASES)

KFP_REPOSITORY = "https://github.com/kubeflow/pipelines"
CLUSTER_SCOPED_PATH = "manifests/kustomize/cluster-scoped-resources"
ENV_PATH = "manifests/kustomize/env/platform-agnostic"

KFP_NAMESPACE = "kubeflow"
"""The namespace Kubeflow Pipelines runs in. Fixed, not configurable: every upstream kustomization
(cluster-scoped-resources, env/platform-agnostic, and the bases under them) sets `namespace: kubeflow`,
and manifests spell it out besides (env/platform-agnostic/kustomization.yaml asks anyone changing it to
also edit base/cache-deployer/cluster-scoped/cache-deployer-clusterrolebinding.yaml; the API server's
object-store host is `seaweedfs.kubeflow`). Another namespace would mean patching upstream's
kustomizations, which this component deliberately does not do. Upstream's cluster-scoped-resources
creates the Namespace itself (cluster-scoped-resources/namespace.yaml), so this component does not."""

# Upstream's UI: Service `ml-pipeline-ui`, ClusterIP, port 80 -> pod port 3000, selecting
# `app: ml-pipeline-ui` (manifests/kustomize/base/pipeline/ml-pipeline-ui-service.yaml; the pod
# listens on containerPort 3000 in ml-pipeline-ui-deployment.yaml).
UI_SELECTOR = {"app": "ml-pipeline-ui"}
UI_PORT = 80
UI_CONTAINER_PORT = 3000
UI_SERVICE = "ml-pipeline-ui-external"

# Upstream's API server: Service `ml-pipeline`, http 8888 and grpc 8887
# (manifests/kustomize/base/pipeline/ml-pipeline-apiserver-service.yaml).
API_SERVICE = "ml-pipeline"
API_PORT = 8888

ServiceType = Literal["NodePort", "LoadBalancer", "ClusterIP"]
SERVICE_TYPES: tuple[str, ...] = ("NodePort", "LoadBalancer", "ClusterIP")

# A container that declares no requests still takes memory and some CPU; we count this floor for it.
REQUEST_FLOOR = ("10m", "32Mi")

# CPU and memory requests of every Deployment env/platform-agnostic starts, per Deployment (the main
# containers' requests; an init container's requests never add to a pod's, they only count if
# larger). Read from kubeflow/pipelines, manifests/kustomize/:
#   base/pipeline/kustomization.yaml                                   (which Deployments: incl. driver, visualization)
#   base/pipeline/ml-pipeline-apiserver-deployment.yaml                250m / 500Mi
#   base/pipeline/ml-pipeline-persistenceagent-deployment.yaml         120m / 500Mi
#   base/pipeline/ml-pipeline-scheduledworkflow-deployment.yaml        none -> REQUEST_FLOOR
#   base/pipeline/ml-pipeline-ui-deployment.yaml                       10m / 70Mi
#   base/pipeline/ml-pipeline-viewer-crd-deployment.yaml               none -> REQUEST_FLOOR
#   base/pipeline/ml-pipeline-visualization-deployment.yaml            30m / 500Mi
#   base/pipeline/ml-pipeline-driver-deployment.yaml                   100m / 128Mi
#   base/pipeline/metadata-writer/metadata-writer-deployment.yaml      none -> REQUEST_FLOOR
#   base/cache/cache-deployment.yaml                                   none -> REQUEST_FLOOR
#   base/cache-deployer/cache-deployer-deployment.yaml                 none -> REQUEST_FLOOR
#   base/metadata/base/metadata-grpc-deployment.yaml                   none -> REQUEST_FLOOR
#   base/metadata/base/metadata-envoy-deployment.yaml                  none -> REQUEST_FLOOR
#   third-party/argo/base/workflow-controller-deployment-patch.yaml    100m / 500Mi (Argo v3.7)
#   third-party/mysql/base/mysql-deployment.yaml                       100m / 800Mi
#   third-party/seaweedfs/base/seaweedfs/seaweedfs-deployment.yaml     32m / 128Mi
# No StatefulSets: the single-pod SeaweedFS is a Deployment. Jobs (SeaweedFS admin user, UI signing
# key) finish and are not counted.
KFP_REQUESTS: dict[str, tuple[str, str]] = {
    "ml-pipeline": ("250m", "500Mi"),
    "ml-pipeline-persistenceagent": ("120m", "500Mi"),
    "ml-pipeline-scheduledworkflow": REQUEST_FLOOR,
    "ml-pipeline-ui": ("10m", "70Mi"),
    "ml-pipeline-viewer-crd": REQUEST_FLOOR,
    "ml-pipeline-visualizationserver": ("30m", "500Mi"),
    "ml-pipeline-driver": ("100m", "128Mi"),
    "metadata-writer": REQUEST_FLOOR,
    "cache-server": REQUEST_FLOOR,
    "cache-deployer-deployment": REQUEST_FLOOR,
    "metadata-grpc-deployment": REQUEST_FLOOR,
    "metadata-envoy-deployment": REQUEST_FLOOR,
    "workflow-controller": ("100m", "500Mi"),
    "mysql": ("100m", "800Mi"),
    "seaweedfs": ("32m", "128Mi"),
}


def kustomize_url(path: str, version: str) -> str:
    """A kustomize remote target for `path` of kubeflow/pipelines at tag `version`: the repository, `//`
    where the repository ends and the folder begins, and `?ref=` (kustomize's examples/remoteBuild.md,
    which kustomize.v2.Directory accepts as `directory`)."""
    return f"{KFP_REPOSITORY}//{path}?ref={version}"


def api_url(namespace: str = KFP_NAMESPACE) -> str:
    """In-cluster URL of the KFP API server (what `kfp.Client(host=...)` takes inside the cluster)."""
    return f"http://{API_SERVICE}.{namespace}.svc.cluster.local:{API_PORT}"


def _kubernetes_minor(kubernetes_version: str) -> int:
    match = re.fullmatch(r"v?1\.(\d+)(?:\.\d+)?", kubernetes_version)
    if not match:
        raise ValueError(f"{kubernetes_version!r} is not a Kubernetes version (MAJOR.MINOR.PATCH, e.g. 1.34.0)")
    return int(match.group(1))


def check_kubernetes_support(kfp_version: str, kubernetes_version: str) -> None:
    """Refuse a Kubernetes version the KFP release is not tested against upstream.

    The message names both versions and the supported range but no config key, so a caller can
    prefix the keys it read them from (`dataplatform:kubeflow_pipelines.version`,
    `dataplatform:cluster.kubernetes_version`).
    """
    if kfp_version not in KFP_RELEASES:
        known = ", ".join(KFP_RELEASES)
        raise ValueError(f"Kubeflow Pipelines {kfp_version} has no known Kubernetes range (known releases: {known})")
    low, high = KFP_RELEASES[kfp_version]
    minor = _kubernetes_minor(kubernetes_version)
    if not low <= minor <= high:
        raise ValueError(
            f"Kubeflow Pipelines {kfp_version} supports Kubernetes 1.{low} to 1.{high} (the versions its "
            f"release is tested against upstream), not Kubernetes {kubernetes_version}"
        )


class KubeflowPipelinesConfig(BaseModel):
    """The `kubeflow_pipelines` config key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Deploy Kubeflow Pipelines (standalone, platform-agnostic manifests).")
    version: Literal[KFP_VERSIONS] = Field(  # type: ignore[valid-type]
        KFP_VERSION, description="Kubeflow Pipelines release whose upstream manifests are applied."
    )
    ui_service_type: ServiceType | None = Field(
        None,
        description="Service type of the KFP UI (`ml-pipeline-ui-external`); unset means the cluster's "
        "service type (NodePort on Minikube), except ClusterIP where that is LoadBalancer: standalone KFP "
        "has no login, so it is never put on a load balancer unless asked for.",
    )

    @property
    def namespace(self) -> str:
        """The namespace KFP occupies (read-only, `KFP_NAMESPACE`), for the stack's namespace-clash check."""
        return KFP_NAMESPACE

    def requests(self) -> tuple[int, int]:
        """(millicores, bytes) the platform-agnostic environment asks the scheduler for; (0, 0) when disabled."""
        if not self.enabled:
            return 0, 0
        cpu = sum(millicores_of(c) for c, _ in KFP_REQUESTS.values())
        memory = sum(bytes_of(m) for _, m in KFP_REQUESTS.values())
        return cpu, memory


def ui_service_type(config: KubeflowPipelinesConfig, cluster_service_type: str) -> str:
    """The UI Service's type: the configured one, else the cluster's, but never a LoadBalancer by
    default: KFP standalone has no authentication, and anyone who reaches the UI can run pipelines
    as the pipeline runner (with its S3 and InferenceService rights)."""
    default = "ClusterIP" if cluster_service_type == "LoadBalancer" else cluster_service_type
    chosen = config.ui_service_type or default
    if chosen not in SERVICE_TYPES:
        raise ValueError(f"{chosen!r} is not a Service type for the KFP UI: use one of {', '.join(SERVICE_TYPES)}")
    return chosen


def ui_service_spec(service_type: str) -> dict:
    """Spec of our Service in front of upstream's UI pods: same selector and ports as `ml-pipeline-ui`."""
    return {
        "type": service_type,
        "selector": dict(UI_SELECTOR),
        "ports": [{"name": "http", "port": UI_PORT, "targetPort": UI_CONTAINER_PORT, "protocol": "TCP"}],
    }


# The shared volumes pipeline steps mount: the example pipeline's Spark step writes its event log,
# the training step reads and writes shared data (pipelines/train_and_serve.py).
PIPELINE_VOLUMES = ("event_logs", "shared_data")
PIPELINE_RUNNER = "pipeline-runner"  # the service account upstream's workflows run as


# Upstream's env objects carry this label; its cluster-scoped ones do not, so the policies could not
# tell KFP's ClusterRoleBindings from anyone else's. The transform below adds it.
KFP_SOURCE_LABEL = {"application-crd-id": "kubeflow-pipelines"}
# Upstream KFP containers declare requests but no limits; these ceilings, well above every request in
# KFP_REQUESTS, bound a runaway pod without starving a healthy one.
DEFAULT_LIMITS = {"cpu": "2", "memory": "2Gi"}
_POD_PATHS = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
}


def label_as_kfp(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
    """Mark an upstream cluster-scoped KFP object as KFP's, so its named policy exceptions apply."""
    if not args.type_.startswith("kubernetes:") or not isinstance(args.props.get("metadata"), dict):
        return None
    metadata = dict(args.props["metadata"])
    metadata["labels"] = {**(metadata.get("labels") or {}), **KFP_SOURCE_LABEL}
    return pulumi.ResourceTransformResult(props={**args.props, "metadata": metadata}, opts=args.opts)


def annotate_pipeline_runner(role_arn: pulumi.Input[str]):
    """A transform that gives upstream's `pipeline-runner` service account an IAM role (EKS IRSA), so
    pipeline steps reach S3 through that role, never through static keys."""

    def transform(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
        metadata = args.props.get("metadata") if isinstance(args.props, dict) else None
        if args.type_ != "kubernetes:core/v1:ServiceAccount" or not isinstance(metadata, dict) or metadata.get("name") != PIPELINE_RUNNER:
            return None
        annotations = {**(metadata.get("annotations") or {}), "eks.amazonaws.com/role-arn": role_arn}
        return pulumi.ResourceTransformResult(props={**args.props, "metadata": {**metadata, "annotations": annotations}}, opts=args.opts)

    return transform


def fill_missing_limits(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
    """Give every upstream KFP container without CPU/memory limits the DEFAULT_LIMITS it lacks."""
    kind = args.type_.rsplit(":", 1)[-1]
    if not args.type_.startswith("kubernetes:") or kind not in _POD_PATHS:
        return None
    props = copy.deepcopy(dict(args.props))
    spec = props
    for step in _POD_PATHS[kind]:
        spec = spec.get(step) if isinstance(spec, dict) else None
    if not isinstance(spec, dict):
        return None
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        resources = container.setdefault("resources", {})
        limits = resources.setdefault("limits", {})
        for resource, ceiling in DEFAULT_LIMITS.items():
            limits.setdefault(resource, ceiling)
    return pulumi.ResourceTransformResult(props=props, opts=args.opts)


class KubeflowPipelines(pulumi.ComponentResource):
    """Kubeflow Pipelines standalone from the upstream manifests, with its UI reachable from outside.

    `args.enabled` is the stack's switch: build this component only when it is true.
    """

    namespace: pulumi.Output[str]
    """The namespace KFP runs in (`kubeflow`, fixed by the upstream manifests)."""
    ui_service: pulumi.Output[str]
    """Name of the Service, in the KFP namespace, that exposes the UI (port 80)."""
    api_url: pulumi.Output[str]
    """In-cluster URL of the KFP API server; depends on the environment Directory."""

    def __init__(
        self,
        name: str,
        args: KubeflowPipelinesConfig,
        service_type: str,
        storage: PlatformStorage | None = None,
        pipeline_runner_role_arn: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        """With `storage`, pipeline steps (which run in the kubeflow namespace) get the platform's
        shared-data and Spark event-log claims there."""
        super().__init__("dataplatform:pipelines:KubeflowPipelines", name, None, opts)
        exposed_as = ui_service_type(args, service_type)
        cluster_scoped = k8s.kustomize.v2.Directory(
            f"{name}-cluster-scoped",
            directory=kustomize_url(CLUSTER_SCOPED_PATH, args.version),
            namespace=KFP_NAMESPACE,
            opts=pulumi.ResourceOptions(parent=self, transforms=[label_as_kfp]),
        )
        env = k8s.kustomize.v2.Directory(
            f"{name}-env",
            directory=kustomize_url(ENV_PATH, args.version),
            namespace=KFP_NAMESPACE,
            # The CRDs and the Namespace come from the cluster-scoped resources; MySQL's and SeaweedFS's
            # claims hold every run's metadata and artifacts, so they get the platform's volume protection.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster_scoped], transforms=[
                protect_data_volumes,
                fill_missing_limits,
                *([annotate_pipeline_runner(pipeline_runner_role_arn)] if pipeline_runner_role_arn is not None else []),
            ]),
        )
        if storage is not None:
            # The Namespace comes from upstream's cluster-scoped resources.
            namespace = cluster_scoped.urn.apply(lambda _: KFP_NAMESPACE)
            for volume in PIPELINE_VOLUMES:
                storage.claim(volume, namespace, self)
        service = k8s.core.v1.Service(
            f"{name}-ui-external",
            metadata={"name": UI_SERVICE, "namespace": KFP_NAMESPACE, "labels": labels(UI_SERVICE, "pipelines")},
            spec=ui_service_spec(exposed_as),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[env]),
        )
        self.namespace = service.metadata.namespace
        self.ui_service = service.metadata.name
        self.api_url = env.urn.apply(lambda _: api_url())
        self.register_outputs({"namespace": self.namespace, "ui_service": self.ui_service, "api_url": self.api_url})
