"""How the ML components meet in the dev stack: pipeline steps get the shared volumes in the
kubeflow namespace, and the pipeline runner may roll out a model in the serving namespace only."""

from __future__ import annotations

import ast

from components.pipelines import KFP_NAMESPACE, PIPELINE_RUNNER
from components.serving import ModelServingConfig
from tools.offline import ROOT

ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
PVC = "kubernetes:core/v1:PersistentVolumeClaim"


def test_pipeline_steps_get_the_shared_claims_in_the_kubeflow_namespace(run_stack):
    recording = run_stack("dev")
    claims = {(c.plain_inputs["metadata"]["namespace"], c.plain_inputs["metadata"]["name"]) for c in recording.of_type(PVC)}
    assert {(KFP_NAMESPACE, "shared-data"), (KFP_NAMESPACE, "spark-event-logs")} <= claims
    [cluster_scoped] = [r for r in recording.resources if r.name.endswith("-cluster-scoped")]
    for claim in recording.of_type(PVC):
        if claim.plain_inputs["metadata"]["namespace"] == KFP_NAMESPACE:
            # upstream's cluster-scoped resources create the namespace the claim lives in
            assert cluster_scoped.urn in claim.depends_on


def test_pipeline_runner_may_manage_inference_services_in_the_serving_namespace_only(run_stack):
    recording = run_stack("dev")
    serving = ModelServingConfig().serving_namespace
    [role] = [r for r in recording.of_type(ROLE) if r.plain_inputs["metadata"]["name"] == "inferenceservice-deployer"]
    assert role.plain_inputs["metadata"]["namespace"] == serving
    assert role.plain_inputs["rules"] == [{
        "apiGroups": ["serving.kserve.io"],
        "resources": ["inferenceservices"],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
    }]
    [binding] = [b for b in recording.of_type(BINDING) if b.plain_inputs["metadata"]["name"] == "inferenceservice-deployer"]
    assert binding.plain_inputs["metadata"]["namespace"] == serving
    assert binding.plain_inputs["roleRef"]["name"] == "inferenceservice-deployer"
    assert binding.plain_inputs["subjects"] == [{"kind": "ServiceAccount", "name": PIPELINE_RUNNER, "namespace": KFP_NAMESPACE}]


def test_no_deployer_rights_without_pipelines(run_stack):
    recording = run_stack("dev", {"dataplatform:kubeflow_pipelines": {"enabled": False}})
    assert not [r for r in recording.of_type(ROLE) if r.plain_inputs["metadata"]["name"] == "inferenceservice-deployer"]
    assert not [r for r in recording.resources if r.type == "kubernetes:kustomize/v2:Directory"]


def test_the_example_pipeline_deploys_into_the_stacks_serving_namespace():
    """The pipeline's `serving_namespace` default is where the stack runs InferenceServices."""
    tree = ast.parse((ROOT / "pipelines" / "train_and_serve.py").read_text())
    defaults = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and any(a.arg == "serving_namespace" for a in node.args.args):
            args = node.args.args[len(node.args.args) - len(node.args.defaults):]
            defaults = {a.arg: ast.literal_eval(d) for a, d in zip(args, node.args.defaults) if isinstance(d, ast.Constant)}
            break
    assert defaults.get("serving_namespace") == ModelServingConfig().serving_namespace
