"""The stack's whole configuration: one pydantic model, validated once before any resource exists.

Each area is one top-level Pulumi config key (`dataplatform:cluster`, `dataplatform:storage`,
`dataplatform:spark`, `dataplatform:jupyterhub`), so `pulumi config set --path spark.executor.instances 4`
works. Errors are reported one per problem, each naming the full config key, the bad value and what
is allowed.
"""

from __future__ import annotations

import json
import typing
from typing import Annotated, Any, ClassVar, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from components.cloud_storage import check_shared_backend
from components.cluster import ExistingClusterConfig, MinikubeClusterConfig
from components.eks import EksClusterConfig
from components.jupyterhub import JupyterHubConfig
from components.kubernetes_types import bytes_of
from components.spark import SparkConfig
from components.pipelines import KubeflowPipelinesConfig, check_kubernetes_support
from components.serving import ModelServingConfig
from components.storage import StorageConfig
from components.tensorboard import TensorBoardConfig

PROJECT = "dataplatform"

# What Kubernetes itself runs on a Minikube node (control plane, CoreDNS, kube-proxy, storage
# provisioner, metrics-server, the CNI's node agent) before any of our pods: requests as the addons
# declare them, rounded up.
MINIKUBE_SYSTEM_MILLICORES = 1250
MINIKUBE_SYSTEM_BYTES = 1536 * 2**20


ClusterConfig = Annotated[
    Union[MinikubeClusterConfig, ExistingClusterConfig, EksClusterConfig], Field(discriminator="kind")
]


CROSS_AREA_SEPARATOR = "\n"
"""Between the problems StackConfig's cross-area rules report in one error; each becomes its own."""


class StackConfig(BaseModel):
    """All of the stack's configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cluster: ClusterConfig = Field(MinikubeClusterConfig(), description="The Kubernetes cluster.")
    storage: StorageConfig = Field(StorageConfig(), description="StorageClass and shared volumes.")
    spark: SparkConfig = Field(SparkConfig(), description="Spark on Kubernetes.")
    jupyterhub: JupyterHubConfig = Field(JupyterHubConfig(), description="JupyterHub.")
    kubeflow_pipelines: KubeflowPipelinesConfig = Field(KubeflowPipelinesConfig(), description="Kubeflow Pipelines.")
    model_serving: ModelServingConfig = Field(
        ModelServingConfig(), description="KServe model serving (standard mode) and cert-manager."
    )
    tensorboard: TensorBoardConfig = Field(
        TensorBoardConfig(), description="TensorBoard over the training logs on the shared data volume."
    )

    @model_validator(mode="after")
    def _cross_area(self) -> StackConfig:
        """Run every cross-area rule and report each one that fails, not just the first."""
        problems = []
        for check in (
            self._check_versions_match, self._check_kfp_supports_kubernetes,
            self._check_load_balancers_where_the_cluster_has_them, self._check_namespaces_differ,
            self._check_host_paths_need_minikube, self._check_efs_backend_needs_efs, self._check_fits_minikube,
            self._check_hub_https,
        ):
            try:
                check()
            except ValueError as error:
                problems.append(str(error))
        if problems:
            raise ValueError(CROSS_AREA_SEPARATOR.join(problems))
        return self

    def _check_versions_match(self) -> StackConfig:
        pyspark = self.jupyterhub.notebook.pyspark_version
        if pyspark != self.spark.version:
            raise ValueError(
                f"{PROJECT}:spark.version {self.spark.version} does not match "
                f"{PROJECT}:jupyterhub.notebook.pyspark_version {pyspark}: a notebook's PySpark must "
                "equal the Spark version of the executors it starts"
            )
        return self

    # Areas whose `requests()` count towards the Minikube budget, and the namespace keys each owns.
    AREAS: ClassVar[dict[str, tuple[str, ...]]] = {
        "spark": ("namespace",),
        "jupyterhub": ("namespace",),
        "kubeflow_pipelines": ("namespace",),
        "model_serving": ("namespace", "serving_namespace", "cert_manager.namespace"),
        "tensorboard": ("namespace",),
    }

    def enabled_areas(self) -> list[str]:
        return [area for area in self.AREAS if getattr(getattr(self, area), "enabled", True)]

    def _check_kfp_supports_kubernetes(self) -> StackConfig:
        kfp = self.kubeflow_pipelines
        if kfp.enabled:
            try:
                check_kubernetes_support(kfp.version, self.cluster.kubernetes_version)
            except ValueError as error:
                raise ValueError(
                    f"{PROJECT}:kubeflow_pipelines.version {kfp.version} and "
                    f"{PROJECT}:cluster.kubernetes_version {self.cluster.kubernetes_version}: {error}"
                ) from None
        return self

    def _check_load_balancers_where_the_cluster_has_them(self) -> StackConfig:
        kfp = self.kubeflow_pipelines
        cluster_type = getattr(self.cluster, "service_type", "NodePort")
        if kfp.enabled and kfp.ui_service_type == "LoadBalancer" and cluster_type != "LoadBalancer":
            raise ValueError(
                f"{PROJECT}:kubeflow_pipelines.ui_service_type LoadBalancer needs a cluster that exposes "
                f"services that way, but {PROJECT}:cluster (kind {self.cluster.kind}) uses {cluster_type}: "
                "leave ui_service_type unset, or use NodePort or ClusterIP"
            )
        return self

    def _check_namespaces_differ(self) -> StackConfig:
        owners: dict[str, list[str]] = {}
        for area in self.enabled_areas():
            for key in self.AREAS[area]:
                value = getattr(self, area)
                for step in key.split("."):
                    value = getattr(value, step)
                # KFP's namespace is not a key: upstream fixes it (components/pipelines.py KFP_NAMESPACE).
                owner = f"{PROJECT}:{area} (its fixed namespace)" if area == "kubeflow_pipelines" else f"{PROJECT}:{area}.{key}"
                owners.setdefault(value, []).append(owner)
        clashes = [f"{' and '.join(keys)} are all {ns!r}" for ns, keys in owners.items() if len(keys) > 1]
        if clashes:
            raise ValueError("; ".join(clashes) + ": give each component its own namespace")
        return self

    def _check_host_paths_need_minikube(self) -> StackConfig:
        if self.storage.shared_backend.kind == "host_path" and not isinstance(self.cluster, MinikubeClusterConfig):
            raise ValueError(
                f"{PROJECT}:storage.shared_backend.kind host_path needs its node folders created, which "
                f"only {PROJECT}:cluster.kind minikube does; with cluster.kind {self.cluster.kind!r} use "
                "shared_backend.kind nfs"
                + (" or efs (with cluster.efs: true)" if isinstance(self.cluster, EksClusterConfig) else "")
            )
        return self

    def _check_efs_backend_needs_efs(self) -> StackConfig:
        efs = isinstance(self.cluster, EksClusterConfig) and self.cluster.efs
        check_shared_backend(efs, self.storage.shared_backend.kind)
        return self

    def _check_hub_https(self) -> StackConfig:
        https, cluster = self.jupyterhub.https, self.cluster
        if not isinstance(cluster, EksClusterConfig):
            if https is not None:
                raise ValueError(
                    f"{PROJECT}:jupyterhub.https offloads TLS to an AWS load balancer, which only "
                    f"{PROJECT}:cluster.kind eks has (this cluster is kind {cluster.kind}): remove jupyterhub.https"
                )
            return self
        if https is None and cluster.service_type == "LoadBalancer":
            raise ValueError(
                f"{PROJECT}:jupyterhub.https.acm_certificate_arn is required: with {PROJECT}:cluster.kind eks and "
                f"{PROJECT}:cluster.service_type LoadBalancer the hub is on the internet, and without HTTPS its "
                "passwords and tokens would cross it in clear text"
            )
        if https is not None and cluster.service_type != "LoadBalancer":
            raise ValueError(
                f"{PROJECT}:jupyterhub.https ends TLS at a load balancer, but {PROJECT}:cluster.service_type is "
                f"{cluster.service_type}: set it to LoadBalancer, or remove jupyterhub.https"
            )
        if https is not None and cluster.account_id and https.account != cluster.account_id:
            raise ValueError(
                f"{PROJECT}:jupyterhub.https.acm_certificate_arn belongs to account {https.account}, but the stack "
                f"deploys to {PROJECT}:cluster.account_id {cluster.account_id}: a load balancer can only use its own account's certificates"
            )
        if https is not None and https.region != cluster.region:
            raise ValueError(
                f"{PROJECT}:jupyterhub.https.acm_certificate_arn is in region {https.region}, but the load balancer "
                f"is in {PROJECT}:cluster.region {cluster.region}: use a certificate of that region"
            )
        return self

    def _check_fits_minikube(self) -> StackConfig:
        cluster = self.cluster
        if not isinstance(cluster, MinikubeClusterConfig):
            return self
        needs = {area: getattr(self, area).requests() for area in self.enabled_areas()}
        needs["Kubernetes system"] = (MINIKUBE_SYSTEM_MILLICORES, MINIKUBE_SYSTEM_BYTES)
        cpu = sum(c for c, _ in needs.values())
        memory = sum(m for _, m in needs.values())
        if cpu > cluster.cpus * 1000 or memory > bytes_of(cluster.memory):
            parts = ", ".join(
                f"{PROJECT + ':' + area if area in self.AREAS else area} {c / 1000:.2f} CPUs/{m / 2**30:.2f} GiB"
                for area, (c, m) in needs.items()
            )
            raise ValueError(
                f"the enabled components request {cpu / 1000:.2f} CPUs and {memory / 2**30:.2f} GiB ({parts}), "
                f"more than the Minikube profile has: {PROJECT}:cluster.cpus {cluster.cpus}, "
                f"{PROJECT}:cluster.memory {cluster.memory}. Raise those, shrink the components (e.g. "
                f"{PROJECT}:spark.executor.instances {self.spark.executor.instances}), or disable some"
            )
        return self


class ConfigError(Exception):
    """The stack's config is invalid; `problems` holds one message per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid stack configuration:\n" + "\n".join(f"  - {p}" for p in problems))


def _steps(loc: tuple, raw: Any) -> tuple:
    """A pydantic error location without the union tags pydantic adds (`cluster.eks.region` ->
    `cluster.region`): the path of the key as the user wrote it."""
    steps, node = [], raw
    for step in loc:
        if isinstance(node, dict) and step not in node and node.get("kind") == step:
            continue  # the tag pydantic adds for a discriminated union member
        steps.append(step)
        node = node.get(step) if isinstance(node, dict) else (node[step] if isinstance(node, list) and isinstance(step, int) and step < len(node) else None)
    return tuple(steps)


def _key(steps: tuple) -> str:
    """The full config key of a path from `_steps`."""
    return f"{PROJECT}:" + ".".join(map(str, steps)) if steps else PROJECT


def _model_at(steps: tuple, raw: Any) -> Any:
    """The pydantic model that holds the key at `steps` (a union member chosen by the raw `kind`)."""
    model: Any = StackConfig
    node = raw
    for step in steps[:-1]:
        fields = getattr(model, "model_fields", None) or {}
        if step not in fields:
            return None
        node = node.get(step) if isinstance(node, dict) else None
        model = _member(fields[step].annotation, node)
    return model


def _member(annotation: Any, node: Any) -> Any:
    """The model `annotation` names for `node`: itself, its one model (Optional), or the union
    member whose `kind` is the node's."""
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if isinstance(annotation, type):
        return annotation
    models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
    for candidate in models:
        kind = candidate.model_fields.get("kind")
        if kind is not None and isinstance(node, dict) and node.get("kind") in typing.get_args(kind.annotation):
            return candidate
    return models[0] if len(models) == 1 else None


def _allowed_keys(steps: tuple, raw: Any) -> list[str]:
    return sorted(getattr(_model_at(steps, raw), "model_fields", {}))


def _description(steps: tuple, raw: Any) -> str:
    field = getattr(_model_at(steps, raw), "model_fields", {}).get(steps[-1]) if steps else None
    return (field.description or "") if field is not None else ""


def _problem(error: dict, raw: dict) -> str:
    steps = _steps(error["loc"], raw)
    key = _key(steps)
    kind, message = error["type"], error["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(steps, raw)
        return f"{key}: unknown key" + (f"; allowed keys here: {', '.join(allowed)}" if allowed else "")
    if kind == "union_tag_invalid":
        ctx = error["ctx"]
        return f"{key}.{ctx['discriminator'].strip(chr(39))}: {ctx['tag']!r} does not match any of the expected tags: {ctx['expected_tags']}"
    if kind == "missing":
        return f"{key}: required key is missing"
    if not error["loc"]:
        return message  # a cross-area rule's, split by parse_stack_config
    if kind == "string_pattern_mismatch" and _description(steps, raw):
        return (
            f"{key}: {error['input']!r} is not allowed here ({_description(steps, raw).rstrip('.')}); "
            f"it must match the pattern {error['ctx']['pattern']}"
        )
    if isinstance(error["input"], dict):
        return f"{key}: {message}"  # a rule across that object's keys: the message names them
    return f"{key}: {message} (got {error['input']!r})"


def parse_stack_config(raw: dict[str, Any]) -> StackConfig:
    """Validate the stack's config areas; raise ConfigError naming every problem."""
    try:
        return StackConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [_problem(e, raw) for e in exc.errors()]
        raise ConfigError([p for problem in problems for p in problem.split(CROSS_AREA_SEPARATOR)]) from None


def load_stack_config() -> StackConfig:
    """The stack's config as the engine (or the mock runtime) hands it to the program."""
    from pulumi.runtime import config as runtime_config

    settings = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return parse_stack_config(raw_stack_config(settings))


def raw_stack_config(settings: dict[str, Any]) -> dict[str, Any]:
    """This project's areas out of the engine's `project:key -> value` config map (values are JSON)."""
    raw: dict[str, Any] = {}
    for full_key, value in settings.items():
        namespace, _, key = full_key.partition(":")
        if not key:  # Pulumi would refuse it too; silently dropping it would validate a different stack
            raise ConfigError([f"{full_key}: a config key needs its namespace: write {PROJECT}:{full_key}"])
        if namespace != PROJECT:
            continue
        try:
            raw[key] = json.loads(value) if isinstance(value, str) else value
        except json.JSONDecodeError:
            raw[key] = value
    return raw
