"""The policies against the third-party objects the stack deploys through Helm charts and kustomize.

Under mocks a `helm.v4.Chart` or `kustomize.v2.Directory` renders no children, but the CrossGuard pack
runs every rule on each child the real engine registers. So these tests hold the rules to copies of
upstream objects: the labels, names and offending fields their templates produce with our values.

Ground truth, read upstream (paths in each project's repository):
- zero-to-jupyterhub 4.4.0: jupyterhub/values.yaml (pinned in reference/) and the 4.x
  template layout of hub/deployment.yaml (`securityContext` from `hub.podSecurityContext`, the hub container's
  from `hub.containerSecurityContext`, `resources` from `hub.resources`) and proxy/deployment.yaml
  (chp container from `proxy.chp.containerSecurityContext` and `proxy.chp.resources`); labels
  `chart`/`helm.sh/chart: jupyterhub-4.4.0`.
- Kubeflow Spark operator 2.5.2: charts/spark-operator-chart/values.yaml (pinned) and templates/
  _helpers.tpl (labels), controller/{deployment,rbac}.yaml, webhook/{deployment,rbac}.yaml.
- cert-manager v1.20.2: deploy/charts/cert-manager/templates/{rbac,cainjector-rbac,webhook-rbac}.yaml
  and _helpers.tpl (`labels`: helm.sh/chart cert-manager-v1.20.2).
- KServe v0.20.0: charts/kserve-resources/files/kserve/resources.yaml (kustomize output, labels
  app.kubernetes.io/{name,component}: kserve, no Helm labels), templates/_resources.tpl (adds none),
  files/kserve/deployment-patch.yaml and charts/_common/kserve-resources-specific.yaml (defaults).
- Kubeflow Pipelines 2.17: manifests/kustomize/env/platform-agnostic/kustomization.yaml (labels
  `application-crd-id: kubeflow-pipelines` on everything it builds), cluster-scoped-resources/
  kustomization.yaml (no such label), the Deployment files named in each exception's reason.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from components.jupyterhub import JupyterHubConfig, jupyterhub_values
from components.kubernetes_types import labels as own_labels
from components.serving import CertManagerConfig, ModelServingConfig, cert_manager_values, kserve_values
from components.spark import SparkConfig, operator_values
from policy.rules import (
    CERT_MANAGER,
    EXCEPTIONS,
    KSERVE,
    KUBEFLOW_PIPELINES,
    RULES,
    SPARK_OPERATOR,
    Context,
    check,
    exception_for,
    source,
)
from tools.schemas import reference

MANDATORY = {r.name for r in RULES if r.enforcement == "mandatory"}


def mandatory(obj: dict, ctx: Context = Context()) -> list[str]:
    return [str(v) for v in check(obj, ctx) if v.enforcement == "mandatory"]


def rules_hit(obj: dict, ctx: Context = Context()) -> set[str]:
    return {v.rule for v in check(obj, ctx)}


def helm_merge(defaults: Any, values: Any) -> Any:
    """Values as a chart's templates see them: its values.yaml overlaid with ours (null deletes)."""
    if not isinstance(defaults, dict) or not isinstance(values, dict):
        return copy.deepcopy(values)
    merged = copy.deepcopy(defaults)
    for key, value in values.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = helm_merge(defaults.get(key), value)
    return merged


# --- labels exactly as each upstream sets them ------------------------------------------------------

def spark_operator_labels(component: str) -> dict:
    # templates/_helpers.tpl "spark-operator.labels" + controller/_helpers.tpl component
    return {
        "helm.sh/chart": "spark-operator-2.5.2",
        "app.kubernetes.io/name": "spark-operator",
        "app.kubernetes.io/instance": "spark-operator",
        "app.kubernetes.io/version": "2.5.2",
        "app.kubernetes.io/managed-by": "Helm",
        "app.kubernetes.io/component": component,
    }


def z2jh_labels(component: str) -> dict:
    # jupyterhub.labels in 4.x (as a rendered 4.2.0 hub Deployment shows them)
    return {
        "app": "jupyterhub", "component": component, "release": "jupyterhub", "heritage": "Helm",
        "chart": "jupyterhub-4.4.0", "helm.sh/chart": "jupyterhub-4.4.0",
        "app.kubernetes.io/name": "jupyterhub", "app.kubernetes.io/instance": "jupyterhub",
        "app.kubernetes.io/component": component, "app.kubernetes.io/managed-by": "Helm",
    }


def cert_manager_labels(name: str, component: str) -> dict:
    # rbac.yaml metadata.labels + _helpers.tpl "labels"
    return {
        "app": name, "app.kubernetes.io/name": name, "app.kubernetes.io/instance": "cert-manager",
        "app.kubernetes.io/component": component, "app.kubernetes.io/version": "v1.20.2",
        "app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": "cert-manager-v1.20.2",
    }


KSERVE_LABELS = {"app.kubernetes.io/component": "kserve", "app.kubernetes.io/name": "kserve"}
KFP_LABELS = {"application-crd-id": "kubeflow-pipelines"}


def crb(name: str, labels: dict, sa: str, namespace: str) -> dict:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": dict(labels)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}],
    }


def deployment(name: str, namespace: str, labels: dict, pod: dict) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": {"metadata": {"labels": {"app": name}}, "spec": pod}},
    }


def renamed(obj: dict, name: str) -> dict:
    other = copy.deepcopy(obj)
    other["metadata"]["name"] = name
    return other


def relabelled(obj: dict, labels: dict) -> dict:
    other = copy.deepcopy(obj)
    other["metadata"]["labels"] = dict(labels)
    return other


# --- source() ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (z2jh_labels("hub"), "jupyterhub"),
        (spark_operator_labels("controller"), SPARK_OPERATOR),
        (cert_manager_labels("cainjector", "cainjector"), CERT_MANAGER),
        ({"helm.sh/chart": "kserve-resources-v0.20.0-rc0"}, "kserve-resources"),
        (KSERVE_LABELS, KSERVE),
        ({**KFP_LABELS, "app": "ml-pipeline"}, KUBEFLOW_PIPELINES),
        (own_labels("spark-history-server", "spark"), "dataplatform"),
        ({"app": "ml-pipeline"}, ""),
        ({}, ""),
    ],
)
def test_source_is_read_from_the_labels_upstream_sets(labels, expected):
    assert source({"metadata": {"labels": labels}}) == expected


# --- the exceptions table itself -------------------------------------------------------------------

def test_exceptions_are_by_exact_name_with_a_reason_and_only_for_mandatory_rules():
    for rule, entries in EXCEPTIONS.items():
        assert rule in MANDATORY, rule
        keys = [(e.source, e.kind, e.name) for e in entries]
        assert len(keys) == len(set(keys)), f"{rule}: duplicate exception"
        for e in entries:
            assert e.source and e.kind and e.name, e
            assert not set(e.name) & set("*?[]{}"), f"{e.name}: exceptions name one object, no patterns"
            assert e.reason.strip() and "\n" not in e.reason, e


def violating(rule: str, kind: str, name: str, labels: dict) -> dict:
    """An object of `kind` named `name` that breaks `rule` unless excepted."""
    if rule == "no-workload-cluster-role-binding":
        return crb(name, labels, name, "elsewhere")
    if rule == "resource-limits":
        pod = {"securityContext": {"runAsNonRoot": True},
               "containers": [{"name": "main", "image": "example/x:1.0", "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                               "securityContext": {"allowPrivilegeEscalation": False}}]}
        if kind == "Deployment":
            return deployment(name, "kubeflow", labels, pod)
        if kind == "Job":
            return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "kubeflow", "labels": dict(labels)},
                    "spec": {"template": {"spec": pod}}}
    raise AssertionError(f"no violating example for {rule} {kind}")


def labels_of(source_name: str) -> dict:
    """Labels by which `source()` finds `source_name`, as that upstream sets them."""
    return {
        SPARK_OPERATOR: spark_operator_labels("controller"),
        CERT_MANAGER: cert_manager_labels("cert-manager", "controller"),
        KSERVE: KSERVE_LABELS,
        KUBEFLOW_PIPELINES: KFP_LABELS,
    }[source_name]


EVERY_EXCEPTION = [(rule, e) for rule, entries in EXCEPTIONS.items() for e in entries]


@pytest.mark.parametrize(("rule", "exc"), EVERY_EXCEPTION, ids=[f"{r}:{e.source}/{e.kind}/{e.name}" for r, e in EVERY_EXCEPTION])
def test_each_exception_excepts_its_object_and_no_other(rule, exc):
    obj = violating(rule, exc.kind, exc.name, labels_of(exc.source))
    assert source(obj) == exc.source
    assert exception_for(rule, obj) == exc
    assert rule not in rules_hit(obj)
    # Another name from the same source, the same name from elsewhere, and our own object of that
    # name are all held to the rule.
    assert rule in rules_hit(renamed(obj, exc.name + "-other"))
    assert rule in rules_hit(relabelled(obj, {"helm.sh/chart": "something-1.0.0"}))
    assert rule in rules_hit(relabelled(obj, own_labels(exc.name, "impostor")))


def test_pack_applies_the_exceptions_too():
    """CrossGuard calls each rule's own `check`, not `check()`: the exception must hold there."""
    binding = violating("no-workload-cluster-role-binding", "ClusterRoleBinding", "spark-operator-controller", labels_of(SPARK_OPERATOR))
    rule = next(r for r in RULES if r.name == "no-workload-cluster-role-binding")
    assert rule.check(binding, Context()) == []
    assert rule.check(renamed(binding, "my-binding"), Context())


# --- Kubeflow Spark operator 2.5.2 -----------------------------------------------------------------

def test_spark_operator_cluster_role_bindings_are_excepted_by_name():
    # controller/rbac.yaml and webhook/rbac.yaml; release spark-operator in namespace spark
    controller = crb("spark-operator-controller", spark_operator_labels("controller"), "spark-operator-controller", "spark")
    webhook = crb("spark-operator-webhook", spark_operator_labels("webhook"), "spark-operator-webhook", "spark")
    assert mandatory(controller) == [] and mandatory(webhook) == []
    # The chart's own spark RBAC is off in our values; were it on, nothing would except it.
    assert "no-workload-cluster-role-binding" in rules_hit(crb("spark-operator-spark", spark_operator_labels("spark"), "spark-operator-spark", "spark"))


@pytest.mark.reference
@pytest.mark.parametrize("component", ["controller", "webhook"])
def test_spark_operator_deployments_with_our_values_need_no_exception(component):
    values = helm_merge(yaml.safe_load(reference("spark-operator-2.5.2/values.yaml").read_text()), operator_values(SparkConfig()))
    part = values[component]
    # controller/deployment.yaml, webhook/deployment.yaml: image "%s/%s:%s" with tag defaulting to appVersion
    image = f"{values['image']['registry']}/{values['image']['repository']}:{values['image']['tag'] or '2.5.2'}"
    obj = deployment(f"spark-operator-{component}", "spark", spark_operator_labels(component), {
        "serviceAccountName": f"spark-operator-{component}",
        "securityContext": part["podSecurityContext"],
        "containers": [{"name": f"spark-operator-{component}", "image": image, "resources": part["resources"],
                        "securityContext": part["securityContext"], "volumeMounts": part["volumeMounts"]}],
        "volumes": part["volumes"],
    })
    assert mandatory(obj) == []
    # Without our resources the chart's default `resources: {}` would break resource-limits.
    bare = copy.deepcopy(obj)
    bare["spec"]["template"]["spec"]["containers"][0].pop("resources")
    assert "resource-limits" in rules_hit(bare)


# --- zero-to-jupyterhub 4.4.0 ----------------------------------------------------------------------

def hub_values() -> dict:
    return jupyterhub_values(
        JupyterHubConfig(), SparkConfig(),
        notebook_image="registry.example/dataplatform/notebook:0123456789abcdef", pull_policy="IfNotPresent",
        storage_class="dataplatform", service_type="NodePort", proxy_secret_token="a" * 64, cookie_secret="b" * 64,
        user_password="c" * 24, admin_password="d" * 40,
    )


@pytest.fixture(scope="module")
def z2jh_values() -> dict:
    return helm_merge(yaml.safe_load(reference("zero-to-jupyterhub-4.4.0/values.yaml").read_text()), hub_values())


@pytest.mark.reference
def test_z2jh_hub_deployment_as_rendered_with_our_values_needs_no_exception(z2jh_values):
    hub = z2jh_values["hub"]
    obj = deployment("hub", "jupyterhub", z2jh_labels("hub"), {
        "serviceAccountName": "hub",
        "securityContext": hub["podSecurityContext"],
        "containers": [{"name": "hub", "image": f"{hub['image']['name']}:4.4.0",  # chartpress sets the tag at release
                        "resources": hub["resources"], "securityContext": hub["containerSecurityContext"]}],
        "volumes": [{"name": "config", "configMap": {"name": "hub"}}, {"name": "secret", "secret": {"secretName": "hub"}},
                    {"name": "pvc", "persistentVolumeClaim": {"claimName": "hub-db-dir"}}],
    })
    assert mandatory(obj) == []
    # The chart's defaults are what make it pass: run as uid 1000 without privilege escalation.
    assert hub["containerSecurityContext"]["allowPrivilegeEscalation"] is False
    assert hub["podSecurityContext"]["runAsNonRoot"] is True
    assert exception_for("pod-security", obj) is None and exception_for("resource-limits", obj) is None


@pytest.mark.reference
def test_z2jh_proxy_deployment_as_rendered_with_our_values_needs_no_exception(z2jh_values):
    chp = z2jh_values["proxy"]["chp"]
    obj = deployment("proxy", "jupyterhub", z2jh_labels("proxy"), {
        "serviceAccountName": "proxy",
        "containers": [{"name": "chp", "image": f"{chp['image']['name']}:{chp['image']['tag']}",
                        "resources": chp["resources"], "securityContext": chp["containerSecurityContext"]}],
    })
    assert mandatory(obj) == []


@pytest.mark.reference
def test_z2jh_parts_that_would_need_exceptions_stay_off(z2jh_values):
    """Every optional z2jh workload ships `resources: {}`; our values keep each of them off, so none
    of them is registered and none needs an exception."""
    defaults = yaml.safe_load(reference("zero-to-jupyterhub-4.4.0/values.yaml").read_text())
    assert defaults["prePuller"]["resources"] == defaults["scheduling"]["userScheduler"]["resources"] == {}
    assert defaults["scheduling"]["userPlaceholder"]["resources"] == defaults["proxy"]["traefik"]["resources"] == {}
    assert z2jh_values["prePuller"]["hook"]["enabled"] is False
    assert z2jh_values["prePuller"]["continuous"]["enabled"] is False
    assert z2jh_values["scheduling"]["userScheduler"]["enabled"] is False
    assert z2jh_values["scheduling"]["userPlaceholder"]["enabled"] is False
    assert z2jh_values["proxy"]["https"]["enabled"] is False  # no autohttps (traefik, secret-sync)
    assert z2jh_values["ingress"]["enabled"] is False and z2jh_values["httpRoute"]["enabled"] is False


def test_z2jh_proxy_public_is_a_load_balancer_only_where_the_config_allows():
    # proxy/service.yaml: type from proxy.service.type; no exception, the pack config decides.
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "proxy-public", "namespace": "jupyterhub", "labels": z2jh_labels("proxy-public")},
               "spec": {"type": "LoadBalancer"}}
    assert "load-balancers-only-where-allowed" in rules_hit(service)
    assert "load-balancers-only-where-allowed" not in rules_hit(service, Context(allow_load_balancer=True))


# --- cert-manager v1.20.2 --------------------------------------------------------------------------

CERT_MANAGER_BINDINGS = [
    # (binding name, service account, component) for release "cert-manager"
    *[(f"cert-manager-controller-{part}", "cert-manager", "controller")
      for part in ("issuers", "clusterissuers", "certificates", "orders", "challenges", "ingress-shim")],
    ("cert-manager-controller-approve:cert-manager-io", "cert-manager", "cert-manager"),
    ("cert-manager-controller-certificatesigningrequests", "cert-manager", "cert-manager"),
    ("cert-manager-cainjector", "cert-manager-cainjector", "cainjector"),
    ("cert-manager-webhook:subjectaccessreviews", "cert-manager-webhook", "webhook"),
]


@pytest.mark.parametrize(("name", "sa", "component"), CERT_MANAGER_BINDINGS)
def test_cert_manager_cluster_role_bindings_are_excepted_by_name(name, sa, component):
    app = {"cainjector": "cainjector", "webhook": "webhook"}.get(component, "cert-manager")
    obj = crb(name, cert_manager_labels(app, component), sa, "cert-manager")
    assert mandatory(obj) == []
    assert "no-workload-cluster-role-binding" in rules_hit(renamed(obj, name.replace("cert-manager", "cm")))


def test_cert_manager_values_give_every_deployment_requests_and_limits():
    values = cert_manager_values(CertManagerConfig())
    for resources in (values["resources"], values["webhook"]["resources"], values["cainjector"]["resources"]):
        assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])
    assert values["startupapicheck"]["enabled"] is False  # its Job and its RBAC are never rendered


# --- KServe v0.20.0 --------------------------------------------------------------------------------

def test_kserve_cluster_role_bindings_are_excepted_by_name():
    # files/kserve/resources.yaml (+ clusterrolebinding-patch.yaml: subject namespace = release namespace)
    manager = crb("kserve-manager-rolebinding", KSERVE_LABELS, "kserve-controller-manager", "kserve")
    proxy = crb("kserve-proxy-rolebinding", KSERVE_LABELS, "kserve-controller-manager", "kserve")
    assert mandatory(manager) == [] and mandatory(proxy) == []


# charts/_common/kserve-resources-specific.yaml defaults the controller's pod and both containers to these.
KSERVE_POD_SECURITY = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
KSERVE_CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "privileged": False,
                             "readOnlyRootFilesystem": True, "runAsNonRoot": True}


def test_kserve_controller_deployment_with_our_values_needs_no_exception():
    controller = kserve_values(ModelServingConfig())["kserve"]["controller"]
    obj = deployment("kserve-controller-manager", "kserve", {**KSERVE_LABELS, "app.kubernetes.io/name": "kserve-controller-manager"}, {
        "serviceAccountName": "kserve-controller-manager",
        "securityContext": KSERVE_POD_SECURITY,
        "containers": [
            {"name": "kube-rbac-proxy", "image": "quay.io/brancz/kube-rbac-proxy:v0.18.0",
             "resources": controller["rbacProxy"]["resources"], "securityContext": KSERVE_CONTAINER_SECURITY},
            {"name": "manager", "image": "kserve/kserve-controller:v0.20.0",
             "resources": controller["resources"], "securityContext": KSERVE_CONTAINER_SECURITY},
        ],
        "volumes": [{"name": "cert", "secret": {"secretName": "kserve-webhook-server-cert"}}],
    })
    assert mandatory(obj) == []


def test_kserve_cluster_scoped_resources_need_no_namespace():
    # kserve-runtime-configs' ClusterServingRuntimes and kserve-resources' default ClusterStorageContainer
    for kind, name in (("ClusterServingRuntime", "kserve-sklearnserver"), ("ClusterStorageContainer", "default")):
        obj = {"apiVersion": "serving.kserve.io/v1alpha1", "kind": kind, "metadata": {"name": name, "labels": KSERVE_LABELS}, "spec": {}}
        assert "no-default-namespace" not in rules_hit(obj)


# --- Kubeflow Pipelines 2.17 -----------------------------------------------------------------------

def kfp_deployment(name: str, requests: dict | None, pod_security: dict | None = None) -> dict:
    """A KFP Deployment as upstream writes it: non-root (PSS restricted), requests at most."""
    container = {
        "name": name, "image": f"ghcr.io/kubeflow/kfp-{name}:2.17.2",
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 0,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if requests:
        container["resources"] = {"requests": requests}
    pod = {"securityContext": pod_security or {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}, "containers": [container]}
    return deployment(name, "kubeflow", {**KFP_LABELS, "app": name}, pod)


def test_kfp_deployments_without_limits_get_them_from_the_components_transform():
    """Upstream KFP sets requests but no limits (base/pipeline/ml-pipeline-apiserver-deployment.yaml:
    250m/500Mi); no exception covers that: the component's transform fills the ceilings in."""
    import pulumi

    from components.pipelines import DEFAULT_LIMITS, fill_missing_limits

    api = kfp_deployment("ml-pipeline", {"cpu": "250m", "memory": "500Mi"})
    assert "resource-limits" in rules_hit(api)
    result = fill_missing_limits(pulumi.ResourceTransformArgs(
        custom=True, type_="kubernetes:apps/v1:Deployment", name="ml-pipeline", props=api, opts=pulumi.ResourceOptions()))
    fixed = result.props
    assert fixed["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "250m", "memory": "500Mi"}, "limits": DEFAULT_LIMITS}
    assert mandatory(fixed) == []
    assert "resource-limits" in rules_hit(api), "the transform must not change its input"
    # The transform adds limits only: the same object running privileged is still refused.
    privileged = copy.deepcopy(fixed)
    privileged["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] = True
    assert {v.rule for v in check(privileged, Context()) if v.enforcement == "mandatory"} == {"pod-security"}


def test_the_limits_transform_keeps_upstream_limits_and_skips_other_kinds():
    import pulumi

    from components.pipelines import fill_missing_limits

    driver = kfp_deployment("ml-pipeline-driver", {"cpu": "100m", "memory": "128Mi"})
    driver["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] = {"cpu": "500m", "memory": "512Mi"}
    result = fill_missing_limits(pulumi.ResourceTransformArgs(
        custom=True, type_="kubernetes:apps/v1:Deployment", name="d", props=driver, opts=pulumi.ResourceOptions()))
    assert result.props["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "500m", "memory": "512Mi"}
    service = pulumi.ResourceTransformArgs(custom=True, type_="kubernetes:core/v1:Service", name="s", props={}, opts=pulumi.ResourceOptions())
    assert fill_missing_limits(service) is None


def test_kfp_cluster_scoped_objects_get_the_kfp_label_from_the_component():
    import pulumi

    from components.pipelines import label_as_kfp

    binding = crb("ml-pipeline-configmap-manager", {}, "ml-pipeline", "kubeflow")
    assert "no-workload-cluster-role-binding" in rules_hit(binding)
    labelled = label_as_kfp(pulumi.ResourceTransformArgs(
        custom=True, type_="kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding", name="b", props=binding, opts=pulumi.ResourceOptions())).props
    assert "no-workload-cluster-role-binding" not in rules_hit(labelled)


def test_kfp_driver_sets_limits_and_needs_no_exception():
    # base/pipeline/ml-pipeline-driver-deployment.yaml: requests 100m/128Mi, limits 500m/512Mi
    driver = kfp_deployment("ml-pipeline-driver", {"cpu": "100m", "memory": "128Mi"})
    driver["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] = {"cpu": "500m", "memory": "512Mi"}
    assert mandatory(driver) == []
    assert exception_for("resource-limits", driver) is None


def test_kfp_cluster_scoped_bindings_need_the_components_label():
    """cluster-scoped-resources/kustomization.yaml sets no application-crd-id, so upstream's two
    ClusterRoleBindings are excepted only once the component labels that Directory's children."""
    cache_deployer = crb("kubeflow-pipelines-cache-deployer-clusterrolebinding", {}, "kubeflow-pipelines-cache-deployer-sa", "kubeflow")
    configmap_manager = crb("ml-pipeline-configmap-manager", {"app": "ml-pipeline"}, "ml-pipeline", "kubeflow")
    for binding in (cache_deployer, configmap_manager):
        assert "no-workload-cluster-role-binding" in rules_hit(binding)  # as upstream ships it
        labelled = relabelled(binding, {**binding["metadata"]["labels"], **KFP_LABELS})
        assert mandatory(labelled) == []
