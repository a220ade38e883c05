"""The guarantees the platform makes about every Kubernetes object, as pure functions.

Each rule takes one object (the props Pulumi sends for it: apiVersion, kind, metadata, spec...) and
the context Pulumi knows about it (is it protected, may it be exposed) and returns what is wrong,
each message naming the object, the rule and what to change. The same functions run in two places:
the CrossGuard pack (`policy/__main__.py`) on every object the real engine registers, Helm chart
children included, and `make render`, on the manifests rendered offline. No Pulumi import here.

Third-party objects a mandatory rule cannot hold (upstream gives no value to fix them) are named in
`EXCEPTIONS`: rule -> (source, kind, name, reason), the source read from the object's own labels by
`source()`. Each rule in `RULES` already leaves its excepted objects out, so the pack, `check()` and
`make render` apply the same exceptions.
"""

from __future__ import annotations

import re
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
    # KServe's cluster-scoped custom resources (kserve-runtime-configs' runtimes, kserve-resources'
    # default storage container): the engine registers them without a namespace.
    "ClusterServingRuntime", "ClusterStorageContainer",
}


@dataclass(frozen=True)
class Exception_:
    """A named third-party object a rule does not apply to, and why.

    `source` is what `source()` reads from the object's labels (the Helm chart's name, or the
    upstream project's own label); `kind` and `name` are matched exactly, never as patterns.
    """

    source: str
    kind: str
    name: str
    reason: str


# Sources, as `source()` derives them from the labels upstream puts on every object.
SPARK_OPERATOR = "spark-operator"  # helm.sh/chart: spark-operator-2.5.2
CERT_MANAGER = "cert-manager"  # helm.sh/chart: cert-manager-v1.20.2
KSERVE = "kserve"  # kserve-resources v0.20.0 renders kustomize output: app.kubernetes.io/name: kserve, no Helm labels
KUBEFLOW_PIPELINES = "kubeflow-pipelines"  # env/platform-agnostic: application-crd-id: kubeflow-pipelines

_NO_LIMITS = "upstream manifest sets no resources.limits (requests only, or none); kustomize offers no value to set them"



# Third-party objects get exceptions only by name, each with its reason. Which upstream objects need
# one, and the upstream files that show it, are in tests/test_policy_upstream.py.
EXCEPTIONS: dict[str, list[Exception_]] = {
    "no-workload-cluster-role-binding": [
        # Spark operator 2.5.2 (charts/spark-operator-chart/templates/{controller,webhook}/rbac.yaml).
        Exception_(SPARK_OPERATOR, "ClusterRoleBinding", "spark-operator-controller",
                   "with spark.jobNamespaces set its ClusterRole only gets nodes and CRDs; pod and SparkApplication rights come from a Role in the spark namespace"),
        Exception_(SPARK_OPERATOR, "ClusterRoleBinding", "spark-operator-webhook",
                   "the webhook updates its own Mutating/ValidatingWebhookConfigurations (cluster-scoped, by resourceName) and reads pods, quotas and Spark CRs"),
        # cert-manager v1.20.2 (deploy/charts/cert-manager/templates/rbac.yaml, cainjector-rbac.yaml, webhook-rbac.yaml), release cert-manager.
        Exception_(CERT_MANAGER, "ClusterRoleBinding", "cert-manager-controller-issuers",
                   "cert-manager's controller reconciles Issuers and their Secrets in every namespace KServe (or anyone) creates them in"),
        Exception_(CERT_MANAGER, "ClusterRoleBinding", "cert-manager-controller-clusterissuers",
                   "ClusterIssuers are cluster-scoped; the controller reconciles them and their Secrets"),
        Exception_(CERT_MANAGER, "ClusterRoleBinding", "cert-manager-controller-certificates",
                   "the controller issues Certificates (e.g. KServe's serving-cert) and writes their Secrets in the Certificate's namespace"),
        Exception_(CERT_MANAGER, "ClusterRoleBinding", "cert-manager-controller-orders",
                   "ACME Orders controller; part of cert-manager's controller, bound cluster-wide by the chart"),
        Exception_(CERT_MANAGER, "ClusterRoleBinding", "cert-manager-controller-challenges",
                   "ACME Challenges controller; part of cert-manager's controller, bound cluster-wide by the chart"),
        Exception_(CERT_MANAGER, "ClusterRoleBinding", "cert-manager-controller-ingress-shim",
                   "creates Certificates for annotated Ingresses/Gateways in any namespace; part of cert-manager's controller"),
        Exception_(CERT_MANAGER, "ClusterRoleBinding", "cert-manager-controller-approve:cert-manager-io",
                   "approves CertificateRequests for cert-manager.io issuers (signers are cluster-scoped)"),
        Exception_(CERT_MANAGER, "ClusterRoleBinding", "cert-manager-controller-certificatesigningrequests",
                   "signs Kubernetes CertificateSigningRequests (cluster-scoped) and runs SubjectAccessReviews"),
        Exception_(CERT_MANAGER, "ClusterRoleBinding", "cert-manager-cainjector",
                   "injects CA bundles into webhook configurations, APIServices and CRDs, all cluster-scoped (KServe's webhooks need it)"),
        Exception_(CERT_MANAGER, "ClusterRoleBinding", "cert-manager-webhook:subjectaccessreviews",
                   "the webhook may only create SubjectAccessReviews, which are cluster-scoped"),
        # KServe v0.20.0 kserve-resources (charts/kserve-resources/files/kserve/resources.yaml), namespace kserve.
        Exception_(KSERVE, "ClusterRoleBinding", "kserve-manager-rolebinding",
                   "the KServe controller reconciles InferenceServices and their Deployments/Services/HPAs in the serving namespace and its own webhook configurations"),
        Exception_(KSERVE, "ClusterRoleBinding", "kserve-proxy-rolebinding",
                   "the controller's kube-rbac-proxy may only create TokenReviews and SubjectAccessReviews, which are cluster-scoped"),
        # Kubeflow Pipelines 2.17 cluster-scoped-resources. Upstream gives these no application-crd-id
        # label: they match only once the component labels its cluster-scoped children with it.
        Exception_(KUBEFLOW_PIPELINES, "ClusterRoleBinding", "kubeflow-pipelines-cache-deployer-clusterrolebinding",
                   "the cache deployer creates and approves a CertificateSigningRequest and the cache MutatingWebhookConfiguration, all cluster-scoped"),
        Exception_(KUBEFLOW_PIPELINES, "ClusterRoleBinding", "ml-pipeline-configmap-manager",
                   "the API server creates ConfigMaps and manages only `kfp-pipeline-config` by name, in whichever namespace a run uses"),
    ],
}
"""Rule name -> its exceptions. Every mandatory rule can have them; `RULES` applies them."""


def exception_for(rule: str, obj: dict) -> Exception_ | None:
    """The exception of `rule` that names `obj` (same source, kind and name), if any."""
    meta = obj.get("metadata") or {}
    where = (source(obj), obj.get("kind"), meta.get("name"))
    return next((e for e in EXCEPTIONS.get(rule, []) if (e.source, e.kind, e.name) == where), None)


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


_CHART_LABEL = re.compile(r"^(?P<chart>.+?)-v?\d+(?:\.\d+)*(?:[-+_].*)?$")


def source(obj: dict) -> str:
    """Where an object comes from, read from the labels its upstream puts on it ("" if none).

    In order: a Helm chart's `helm.sh/chart` (or legacy `chart`) label, without its version
    (`jupyterhub-4.4.0`, `cert-manager-v1.20.2`, `kserve-resources-v0.20.0-rc0`); Kubeflow Pipelines'
    `application-crd-id` (`kubeflow-pipelines`, from env/platform-agnostic's kustomization);
    `app.kubernetes.io/part-of` (`dataplatform` for the stack's own objects); and last
    `app.kubernetes.io/name`, for charts that render upstream kustomize output without Helm labels
    (KServe 0.20: `kserve`).
    """
    labels = (obj.get("metadata") or {}).get("labels") or {}
    chart = labels.get("helm.sh/chart") or labels.get("chart")
    if chart:
        match = _CHART_LABEL.match(chart)
        return match.group("chart") if match else chart
    for key in ("application-crd-id", "app.kubernetes.io/part-of", "app.kubernetes.io/name"):
        if labels.get(key):
            return labels[key]
    return ""


def excepted(rule: str, obj: dict) -> bool:
    """Whether `EXCEPTIONS` names `obj` for `rule`."""
    return exception_for(rule, obj) is not None


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
    if obj.get("kind") == "SparkApplication":
        # The operator makes the driver and executor pods from these fields: `cores` and `memory`
        # become the requests (and memory plus overhead the memory limit); without `coreLimit`
        # Spark sets no CPU limit at all.
        problems = []
        for role in ("driver", "executor"):
            spec = (obj.get("spec") or {}).get(role) or {}
            missing = [field for field in ("cores", "coreLimit", "memory") if not spec.get(field)]
            if missing:
                problems.append(f"spec.{role} has no {', '.join(missing)}; set spec.{role}.cores, coreLimit and memory")
        return problems
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
    if obj.get("kind") != "ClusterRoleBinding":
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


def _unless_excepted(rule: str, check: Callable[[dict, Context], list[str]]) -> Callable[[dict, Context], list[str]]:
    """`check`, except for the objects `EXCEPTIONS` names for `rule`."""

    def checked(obj: dict, ctx: Context) -> list[str]:
        return [] if excepted(rule, obj) else check(obj, ctx)

    checked.__name__ = checked.__qualname__ = check.__name__
    checked.__doc__ = check.__doc__
    return checked


def _rule(name: str, description: str, enforcement: Literal["mandatory", "advisory"], check: Callable[[dict, Context], list[str]]) -> Rule:
    return Rule(name, description, enforcement, _unless_excepted(name, check))


RULES = [
    _rule("pod-security", "Containers run as non-root, with allowPrivilegeEscalation: false and never privileged.", "mandatory", _pod_security),
    _rule("no-host-access", "No hostPath volumes, hostNetwork, hostPID or hostIPC.", "mandatory", _host_access),
    _rule("resource-limits", "Every container has CPU and memory requests and limits.", "mandatory", _resources),
    _rule("pinned-images", "Images are pinned to a version tag or digest; never latest, never untagged.", "mandatory", _images),
    _rule("no-default-namespace", "Nothing is created in the default namespace.", "mandatory", _namespace),
    _rule("no-workload-cluster-role-binding", "No ClusterRoleBinding to a service account, except the named operators.", "mandatory", _cluster_role_binding),
    _rule("protected-data-volumes", "Volumes that hold user data are retained (reclaim policy Retain) and protected in Pulumi.", "mandatory", _data_volumes),
    _rule("load-balancers-only-where-allowed", "LoadBalancer Services only where the stack's config allows exposure.", "mandatory", _load_balancers),
    _rule("readiness-probes", "Long-running containers have readiness probes.", "advisory", _readiness),
    _rule("recommended-labels", "Objects carry the app.kubernetes.io/name and part-of labels.", "advisory", _labels),
]
"""Every rule; each `check` already leaves out the objects `EXCEPTIONS` names for that rule."""


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
