"""The guarantees the platform makes about every Kubernetes object, as pure functions.

Each rule takes one object (the props Pulumi sends for it: apiVersion, kind, metadata, spec...) and
the context Pulumi knows about it (is it protected, may it be exposed) and returns what is wrong,
each message naming the object, the rule and what to change. The same functions run in two places:
the CrossGuard pack (`policy/__main__.py`) on every object the real engine registers, Helm chart
children included, and `make render`, on the manifests rendered offline. No Pulumi import here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

WORKLOAD_POD_PATHS = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
LONG_RUNNING = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"}
CLUSTER_SCOPED = {
    "Namespace", "PersistentVolume", "StorageClass", "ClusterRole", "ClusterRoleBinding",
    "CustomResourceDefinition", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "PriorityClass", "IngressClass",
    "APIService", "CSIDriver", "RuntimeClass", "Node", "ClusterIssuer",
}


@dataclass(frozen=True)
class Exception_:
    """A named third-party object a rule does not apply to, and why."""

    chart: str
    kind: str
    name: str
    reason: str


# Third-party charts get exceptions only by name, each with its reason.
EXCEPTIONS: dict[str, list[Exception_]] = {
    "no-workload-cluster-role-binding": [
        Exception_("spark-operator", "ClusterRoleBinding", "spark-operator-controller",
                   "the operator's controller watches SparkApplications and the pods they create; its chart binds a ClusterRole"),
        Exception_("spark-operator", "ClusterRoleBinding", "spark-operator-webhook",
                   "the operator's webhook patches its own Mutating/ValidatingWebhookConfigurations, which are cluster-scoped"),
    ],
}


@dataclass(frozen=True)
class Context:
    """What the engine knows about an object beyond its props."""

    protect: bool = False
    allow_load_balancer: bool = False


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    enforcement: Literal["mandatory", "advisory"]
    check: Callable[[dict, Context], list[str]] = field(repr=False)


def describe(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{obj.get('kind')} {namespace + '/' if namespace else ''}{meta.get('name')}"


def _get(obj: Any, path: tuple[str, ...]) -> Any:
    for step in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(step)
    return obj


def pod_spec(obj: dict) -> dict | None:
    path = WORKLOAD_POD_PATHS.get(obj.get("kind", ""))
    spec = _get(obj, path) if path else None
    return spec if isinstance(spec, dict) else None


def containers(spec: dict) -> list[dict]:
    return [c for key in ("initContainers", "containers") for c in spec.get(key) or [] if isinstance(c, dict)]


def _chart(obj: dict) -> str:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    chart = labels.get("helm.sh/chart") or labels.get("chart") or ""
    return chart.rsplit("-", 1)[0] if chart else ""


def _excepted(rule: str, obj: dict) -> bool:
    meta = obj.get("metadata") or {}
    return any(
        e.chart == _chart(obj) and e.kind == obj.get("kind") and e.name == meta.get("name")
        for e in EXCEPTIONS.get(rule, [])
    )


def _pod_security(obj: dict, ctx: Context) -> list[str]:
    if obj.get("kind") == "SparkApplication":
        roles = [(role, (obj.get("spec") or {}).get(role) or {}) for role in ("driver", "executor")]
        problems = []
        for role, spec in roles:
            pod = spec.get("podSecurityContext") or {}
            container = spec.get("securityContext") or {}
            if not (container.get("runAsNonRoot") or pod.get("runAsNonRoot")):
                problems.append(f"spec.{role} does not set runAsNonRoot: true; set it in spec.{role}.securityContext")
            if container.get("allowPrivilegeEscalation") is not False:
                problems.append(f"spec.{role}.securityContext.allowPrivilegeEscalation must be false")
            if container.get("privileged"):
                problems.append(f"spec.{role}.securityContext.privileged must not be true")
        return problems
    spec = pod_spec(obj)
    if spec is None:
        return []
    pod = spec.get("securityContext") or {}
    pod_non_root = pod.get("runAsNonRoot") is True or (pod.get("runAsUser") or 0) > 0
    problems = []
    for c in containers(spec):
        sc = c.get("securityContext") or {}
        name = c.get("name")
        non_root = sc.get("runAsNonRoot") is True or (sc.get("runAsUser") or 0) > 0 or (
            pod_non_root and sc.get("runAsNonRoot") is not False and sc.get("runAsUser") != 0
        )
        if not non_root:
            problems.append(f"container {name} may run as root; set securityContext.runAsNonRoot: true (and a non-zero runAsUser)")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"container {name} must set securityContext.allowPrivilegeEscalation: false")
        if sc.get("privileged"):
            problems.append(f"container {name} is privileged; remove securityContext.privileged")
    return problems


def _host_access(obj: dict, ctx: Context) -> list[str]:
    spec = pod_spec(obj)
    if spec is None:
        return []
    problems = [f"spec.{key} is true; remove it" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]
    problems += [
        f"volume {v.get('name')} is a hostPath; use a PersistentVolumeClaim"
        for v in spec.get("volumes") or [] if isinstance(v, dict) and "hostPath" in v
    ]
    return problems


def _resources(obj: dict, ctx: Context) -> list[str]:
    spec = pod_spec(obj)
    if spec is None:
        return []
    problems = []
    for c in containers(spec):
        resources = c.get("resources") or {}
        missing = [
            f"{kind}.{resource}" for kind in ("requests", "limits") for resource in ("cpu", "memory")
            if not (resources.get(kind) or {}).get(resource)
        ]
        if missing:
            problems.append(f"container {c.get('name')} has no resources.{', resources.'.join(missing)}; set CPU and memory requests and limits")
    return problems


def image_is_pinned(image: str) -> bool:
    """`repo:tag` with a tag other than `latest`, or `repo@sha256:...`."""
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and last.rsplit(":", 1)[1] not in ("", "latest")


def _images(obj: dict, ctx: Context) -> list[str]:
    if obj.get("kind") == "SparkApplication":
        spec = obj.get("spec") or {}
        images = [("spec.image", spec.get("image"))] + [
            (f"spec.{role}.image", (spec.get(role) or {}).get("image")) for role in ("driver", "executor")
        ]
    else:
        spec = pod_spec(obj)
        images = [(f"container {c.get('name')}", c.get("image")) for c in containers(spec)] if spec else []
    return [
        f"{where} uses image {image!r}, which is not pinned; use a version tag or a digest (never latest)"
        for where, image in images if isinstance(image, str) and not image_is_pinned(image)
    ]


def _namespace(obj: dict, ctx: Context) -> list[str]:
    if obj.get("kind") in CLUSTER_SCOPED:
        return []
    namespace = (obj.get("metadata") or {}).get("namespace")
    if not namespace:
        return ["has no metadata.namespace and would land in the provider's default; set the component's namespace"]
    if namespace == "default":
        return ["is in the default namespace; put it in the component's own namespace"]
    return []


def _cluster_role_binding(obj: dict, ctx: Context) -> list[str]:
    if obj.get("kind") != "ClusterRoleBinding" or _excepted("no-workload-cluster-role-binding", obj):
        return []
    return [
        f"binds a ClusterRole to ServiceAccount {s.get('namespace')}/{s.get('name')}; use a Role and RoleBinding in its namespace"
        for s in obj.get("subjects") or [] if isinstance(s, dict) and s.get("kind") == "ServiceAccount"
    ]


def _data_volumes(obj: dict, ctx: Context) -> list[str]:
    kind = obj.get("kind")
    problems = []
    if kind == "PersistentVolume" and (obj.get("spec") or {}).get("persistentVolumeReclaimPolicy") != "Retain":
        problems.append("spec.persistentVolumeReclaimPolicy is not Retain; set it to Retain")
    if kind == "StorageClass" and obj.get("reclaimPolicy") != "Retain":
        problems.append("reclaimPolicy is not Retain, so deleting a claim deletes its data; set reclaimPolicy: Retain")
    if kind in ("PersistentVolume", "PersistentVolumeClaim") and not ctx.protect:
        problems.append("holds user data but is not protected; set protect=True (and retain_on_delete=True) on the resource")
    return problems


def _load_balancers(obj: dict, ctx: Context) -> list[str]:
    if obj.get("kind") != "Service" or ctx.allow_load_balancer:
        return []
    if (obj.get("spec") or {}).get("type") == "LoadBalancer":
        return ["is a LoadBalancer, but this stack's config does not allow exposure; use ClusterIP or NodePort, or set the cluster's service_type"]
    return []


def _readiness(obj: dict, ctx: Context) -> list[str]:
    if obj.get("kind") not in LONG_RUNNING:
        return []
    spec = pod_spec(obj) or {}
    return [
        f"container {c.get('name')} has no readinessProbe; add one so traffic waits for it"
        for c in spec.get("containers") or [] if isinstance(c, dict) and not c.get("readinessProbe")
    ]


def _labels(obj: dict, ctx: Context) -> list[str]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    missing = [k for k in ("app.kubernetes.io/name", "app.kubernetes.io/part-of") if k not in labels]
    return [f"has no {', '.join(missing)} label(s); add the recommended app.kubernetes.io/* labels"] if missing else []


RULES = [
    Rule("pod-security", "Containers run as non-root, with allowPrivilegeEscalation: false and never privileged.", "mandatory", _pod_security),
    Rule("no-host-access", "No hostPath volumes, hostNetwork, hostPID or hostIPC.", "mandatory", _host_access),
    Rule("resource-limits", "Every container has CPU and memory requests and limits.", "mandatory", _resources),
    Rule("pinned-images", "Images are pinned to a version tag or digest; never latest, never untagged.", "mandatory", _images),
    Rule("no-default-namespace", "Nothing is created in the default namespace.", "mandatory", _namespace),
    Rule("no-workload-cluster-role-binding", "No ClusterRoleBinding to a service account, except the named operators.", "mandatory", _cluster_role_binding),
    Rule("protected-data-volumes", "Volumes that hold user data are retained (reclaim policy Retain) and protected in Pulumi.", "mandatory", _data_volumes),
    Rule("load-balancers-only-where-allowed", "LoadBalancer Services only where the stack's config allows exposure.", "mandatory", _load_balancers),
    Rule("readiness-probes", "Long-running containers have readiness probes.", "advisory", _readiness),
    Rule("recommended-labels", "Objects carry the app.kubernetes.io/name and part-of labels.", "advisory", _labels),
]


@dataclass(frozen=True)
class Violation:
    rule: str
    enforcement: str
    object: str
    message: str

    def __str__(self) -> str:
        return f"{self.object}: [{self.rule}] {self.message}"


def check(obj: dict, ctx: Context) -> list[Violation]:
    """Every rule's findings for one object."""
    return [
        Violation(rule.name, rule.enforcement, describe(obj), message)
        for rule in RULES
        for message in rule.check(obj, ctx)
    ]
