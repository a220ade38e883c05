"""The platform's policies: each rule passes a compliant object and names a violating one, the pack
wires every rule, and `make render` fails on a mandatory violation."""

from __future__ import annotations

import copy

import pulumi
import pulumi_kubernetes as k8s
import pytest

from policy.rules import RULES, Context, check, image_is_pinned

COMPLIANT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "apps", "labels": {"app.kubernetes.io/name": "web", "app.kubernetes.io/part-of": "dataplatform"}},
    "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "securityContext": {"runAsNonRoot": True, "runAsUser": 1000},
                "containers": [{
                    "name": "web",
                    "image": "nginxinc/nginx-unprivileged:1.27.3",
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}},
                    "securityContext": {"allowPrivilegeEscalation": False},
                    "readinessProbe": {"httpGet": {"path": "/", "port": 8080}},
                }],
            },
        },
    },
}


def broken(path: str, value) -> dict:
    """COMPLIANT with one field changed (`a.b.0.c` paths; value None deletes)."""
    obj = copy.deepcopy(COMPLIANT)
    *steps, last = path.split(".")
    node = obj
    for step in steps:
        node = node[int(step)] if step.isdigit() else node[step]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return obj


POD = "spec.template.spec"
CONTAINER = f"{POD}.containers.0"


def rules_hit(obj: dict, ctx: Context = Context()) -> set[str]:
    return {v.rule for v in check(obj, ctx)}


def test_compliant_object_passes_every_rule():
    assert check(COMPLIANT, Context()) == []


@pytest.mark.parametrize(
    ("path", "value", "rule", "fix"),
    [
        (f"{POD}.securityContext", {}, "pod-security", "runAsNonRoot: true"),
        (f"{CONTAINER}.securityContext", {"allowPrivilegeEscalation": True}, "pod-security", "allowPrivilegeEscalation: false"),
        (f"{CONTAINER}.securityContext", {"allowPrivilegeEscalation": False, "privileged": True}, "pod-security", "privileged"),
        (f"{CONTAINER}.securityContext", {"allowPrivilegeEscalation": False, "runAsUser": 0}, "pod-security", "may run as root"),
        (f"{POD}.hostNetwork", True, "no-host-access", "hostNetwork"),
        (f"{POD}.hostPID", True, "no-host-access", "hostPID"),
        (f"{POD}.volumes", [{"name": "root", "hostPath": {"path": "/"}}], "no-host-access", "PersistentVolumeClaim"),
        (f"{CONTAINER}.resources", {"requests": {"cpu": "100m"}}, "resource-limits", "limits.memory"),
        (f"{CONTAINER}.image", "nginx:latest", "pinned-images", "never latest"),
        (f"{CONTAINER}.image", "nginx", "pinned-images", "not pinned"),
        ("metadata.namespace", "default", "no-default-namespace", "own namespace"),
        ("metadata.namespace", None, "no-default-namespace", "metadata.namespace"),
        (f"{CONTAINER}.readinessProbe", None, "readiness-probes", "readinessProbe"),
        ("metadata.labels", {}, "recommended-labels", "app.kubernetes.io"),
    ],
)
def test_each_violation_names_object_rule_and_fix(path, value, rule, fix):
    violations = [v for v in check(broken(path, value), Context()) if v.rule == rule]
    assert violations, f"{rule} missed {path}={value!r}"
    text = str(violations[0])
    namespace = value if path == "metadata.namespace" and value else "apps"
    assert text.startswith(f"Deployment {namespace}/web: [{rule}]") or (value is None and path == "metadata.namespace")
    assert fix in text


def test_advisory_and_mandatory_levels():
    levels = {r.name: r.enforcement for r in RULES}
    assert levels["readiness-probes"] == levels["recommended-labels"] == "advisory"
    assert {n for n, level in levels.items() if level == "mandatory"} == {
        "pod-security", "no-host-access", "resource-limits", "pinned-images", "no-default-namespace",
        "no-workload-cluster-role-binding", "protected-data-volumes", "load-balancers-only-where-allowed",
    }


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("dataplatform/spark:ec225acff26b0cae", True),
        ("ghcr.io/kubeflow/spark-operator/controller:2.5.2", True),
        ("quay.io/jupyterhub/k8s-hub@sha256:" + "a" * 64, True),
        ("localhost:5000/spark", False),
        ("spark:latest", False),
        ("spark", False),
    ],
)
def test_image_pinning(image, pinned):
    assert image_is_pinned(image) is pinned


def test_cluster_role_binding_to_service_account_is_refused_except_named_operators():
    crb = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "spark-operator-controller", "labels": {"helm.sh/chart": "spark-operator-2.5.2"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "x"},
        "subjects": [{"kind": "ServiceAccount", "name": "spark-operator-controller", "namespace": "spark"}],
    }
    assert "no-workload-cluster-role-binding" not in rules_hit(crb)
    other = copy.deepcopy(crb)
    other["metadata"] = {"name": "notebook-admin", "labels": {}}
    assert "no-workload-cluster-role-binding" in rules_hit(other)
    # The exception is by chart *and* name: the same name from another chart is not excepted.
    impostor = copy.deepcopy(crb)
    impostor["metadata"]["labels"] = {"helm.sh/chart": "something-1.0.0"}
    assert "no-workload-cluster-role-binding" in rules_hit(impostor)


def test_data_volumes_must_be_retained_and_protected():
    pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "data"},
          "spec": {"persistentVolumeReclaimPolicy": "Delete", "capacity": {"storage": "1Gi"}}}
    assert len([v for v in check(pv, Context(protect=False)) if v.rule == "protected-data-volumes"]) == 2
    pv["spec"]["persistentVolumeReclaimPolicy"] = "Retain"
    assert "protected-data-volumes" not in rules_hit(pv, Context(protect=True))
    storage_class = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "x"}, "provisioner": "p"}
    assert "protected-data-volumes" in rules_hit(storage_class)


def test_load_balancer_only_where_config_allows():
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "apps"}, "spec": {"type": "LoadBalancer"}}
    assert "load-balancers-only-where-allowed" in rules_hit(service, Context(allow_load_balancer=False))
    assert "load-balancers-only-where-allowed" not in rules_hit(service, Context(allow_load_balancer=True))


def test_spark_application_pods_are_held_to_pod_security():
    app = {"apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication", "metadata": {"name": "a", "namespace": "spark"},
           "spec": {"image": "spark:latest", "driver": {}, "executor": {"securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False}}}}
    hits = [v for v in check(app, Context()) if v.rule in ("pod-security", "pinned-images")]
    assert {v.rule for v in hits} == {"pod-security", "pinned-images"}
    assert all("spec.driver" in v.message or "spec.image" in v.message for v in hits)


def test_spark_application_pods_need_cpu_and_memory_requests_and_limits():
    """Spark sets a pod's CPU limit only from coreLimit: a SparkApplication without it runs unbounded."""
    role = {"cores": 1, "coreLimit": "1", "memory": "1024m"}
    app = {"apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication", "metadata": {"name": "a", "namespace": "spark"},
           "spec": {"driver": dict(role), "executor": {k: v for k, v in role.items() if k != "coreLimit"}}}
    [hit] = [v for v in check(app, Context()) if v.rule == "resource-limits"]
    assert "spec.executor has no coreLimit" in hit.message
    app["spec"]["executor"]["coreLimit"] = "1"
    assert [v for v in check(app, Context()) if v.rule == "resource-limits"] == []


def test_pack_wires_every_rule_with_its_level_and_reports_through_the_pulumi_policy_api():
    import pulumi_policy
    from policy import pack

    policies = {p.name: p for p in pack.policies()}
    assert set(policies) == {r.name for r in RULES}
    assert policies["pod-security"].enforcement_level == pulumi_policy.EnforcementLevel.MANDATORY
    assert policies["readiness-probes"].enforcement_level == pulumi_policy.EnforcementLevel.ADVISORY
    reported = []
    bad = broken(f"{CONTAINER}.image", "nginx:latest")
    args = pulumi_policy.ResourceValidationArgs(
        "kubernetes:apps/v1:Deployment", bad, "urn:pulumi:dev::dataplatform::kubernetes:apps/v1:Deployment::web", "web",
        pulumi_policy.PolicyResourceOptions(protect=False, ignore_changes=[], delete_before_replace=None, aliases=[],
                                            custom_timeouts=None, additional_secret_outputs=[]),
        None,
    )
    policies["pinned-images"].validate(args, lambda message, urn=None: reported.append(message))
    assert reported and "nginx:latest" in reported[0] and reported[0].startswith("Deployment apps/web")
    reported.clear()
    aws = pulumi_policy.ResourceValidationArgs("aws:s3/bucket:Bucket", {"kind": "x"}, "urn", "b", args.opts, None)
    policies["pinned-images"].validate(aws, lambda message, urn=None: reported.append(message))
    assert reported == []


def _bad_program():
    provider = k8s.Provider("p", kubeconfig="{}")
    k8s.apps.v1.Deployment(
        "bad",
        metadata={"name": "bad", "namespace": "default"},
        spec={
            "selector": {"matchLabels": {"app": "bad"}},
            "template": {
                "metadata": {"labels": {"app": "bad"}},
                "spec": {"hostNetwork": True, "containers": [{"name": "c", "image": "busybox:latest", "securityContext": {"privileged": True}}]},
            },
        },
        opts=pulumi.ResourceOptions(provider=provider),
    )
    k8s.core.v1.PersistentVolume(
        "data", metadata={"name": "data"},
        spec={"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Delete", "hostPath": {"path": "/d"}},
        opts=pulumi.ResourceOptions(provider=provider),
    )


def test_render_verification_fails_on_each_mandatory_violation(run_program, tmp_path):
    """A deliberately bad object, registered through the SDK, fails `make render`'s checks."""
    from components.stack import StackConfig
    from tools import render

    recording = run_program(_bad_program)
    manifests = render.write(recording, tmp_path)
    problems, _ = render.verify(recording, manifests, StackConfig(), tmp_path)
    policy_lines = [p for p in problems if p.startswith("policy: ")]
    for rule in ("pod-security", "no-host-access", "resource-limits", "pinned-images", "no-default-namespace", "protected-data-volumes"):
        assert any(f"[{rule}]" in line for line in policy_lines), rule
    assert any(line.startswith("policy: Deployment default/bad: [pinned-images]") for line in policy_lines)


def test_chart_transform_protects_chart_volumes():
    from components.storage import protect_data_volumes

    opts = pulumi.ResourceOptions()
    pvc = pulumi.ResourceTransformArgs(custom=True, type_="kubernetes:core/v1:PersistentVolumeClaim", name="hub-db-dir", props={}, opts=opts)
    result = protect_data_volumes(pvc)
    assert result is not None and result.opts.protect is True and result.opts.retain_on_delete is True
    deployment = pulumi.ResourceTransformArgs(custom=True, type_="kubernetes:apps/v1:Deployment", name="hub", props={}, opts=opts)
    assert protect_data_volumes(deployment) is None


def _labelled(obj: dict, labels: dict) -> dict:
    obj = copy.deepcopy(obj)
    obj["metadata"]["labels"] = labels
    return obj


CHART = {"helm.sh/chart": "some-chart-1.2.3"}
MANDATORY_VIOLATIONS = {
    "pod-security": broken(f"{CONTAINER}.securityContext", {"privileged": True}),
    "no-host-access": broken(f"{POD}.hostNetwork", True),
    "resource-limits": broken(f"{CONTAINER}.resources", {}),
    "pinned-images": broken(f"{CONTAINER}.image", "nginx:latest"),
    "no-default-namespace": broken("metadata.namespace", "default"),
    "no-workload-cluster-role-binding": {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "web"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "x"},
        "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": "apps"}],
    },
    "protected-data-volumes": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "web", "namespace": "apps"}, "spec": {}},
    "load-balancers-only-where-allowed": {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "apps"}, "spec": {"type": "LoadBalancer"}},
}


@pytest.mark.parametrize("rule", sorted(MANDATORY_VIOLATIONS))
def test_every_mandatory_rule_honours_a_named_exception(rule, monkeypatch):
    """The exception lookup is not special to one rule: name an object for any mandatory rule and
    that rule, and only for that object, lets it through."""
    from policy.rules import EXCEPTIONS, Exception_

    obj = _labelled(MANDATORY_VIOLATIONS[rule], CHART)
    assert rule in rules_hit(obj)
    monkeypatch.setitem(EXCEPTIONS, rule, [Exception_("some-chart", obj["kind"], "web", "test: upstream gives no value for it")])
    assert rule not in rules_hit(obj)
    assert rule in rules_hit(_labelled(obj, {"helm.sh/chart": "other-chart-1.2.3"}))
    renamed = copy.deepcopy(obj)
    renamed["metadata"]["name"] = "web2"
    assert rule in rules_hit(renamed)
    # The rule's own check (what the CrossGuard pack calls) honours it as well.
    assert next(r for r in RULES if r.name == rule).check(obj, Context()) == []
