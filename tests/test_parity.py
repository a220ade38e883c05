"""Dev (Minikube) and prod (EKS) deploy the same logical platform: the same components, the same
Kubernetes objects in the same namespaces, the same charts at the same versions. Only the cluster,
storage, image delivery and exposure may differ."""

from __future__ import annotations

import pytest

from tools import offline

PLATFORM_COMPONENTS = {
    "dataplatform:spark:SparkOnKubernetes",
    "dataplatform:jupyterhub:JupyterHub",
    "dataplatform:pipelines:KubeflowPipelines",
    "dataplatform:serving:ModelServing",
    "dataplatform:tensorboard:TensorBoard",
}
# Where the environments may differ, by design.
ENVIRONMENT_KINDS = {"StorageClass", "PersistentVolume"}

_recordings: dict[str, offline.Recording] = {}


@pytest.fixture
def stacks(run_stack) -> dict[str, offline.Recording]:
    for stack in ("dev", "prod"):
        if stack not in _recordings:
            _recordings[stack] = run_stack(stack)
    return _recordings


# Spark drivers (jobs and notebooks) write event logs to the event-log volume on Minikube and to S3 on
# EKS, so only dev claims that volume in the Spark and JupyterHub namespaces.
EVENT_LOG_CLAIMS = {("PersistentVolumeClaim", namespace, "spark-event-logs") for namespace in ("spark", "jupyterhub")}


def platform_objects(recording: offline.Recording) -> set[tuple[str, str, str]]:
    return {
        (r.inputs["kind"], r.inputs["metadata"].get("namespace", ""), r.inputs["metadata"]["name"])
        for r in recording.kubernetes_objects()
        if r.inputs["kind"] not in ENVIRONMENT_KINDS
    }


def test_same_components(stacks):
    dev, prod = ({r.type for r in stacks[s].resources} & PLATFORM_COMPONENTS for s in ("dev", "prod"))
    assert dev == prod == PLATFORM_COMPONENTS


def test_same_kubernetes_objects_in_the_same_namespaces(stacks):
    dev, prod = platform_objects(stacks["dev"]), platform_objects(stacks["prod"])
    assert EVENT_LOG_CLAIMS <= dev and not EVENT_LOG_CLAIMS & prod
    assert dev - EVENT_LOG_CLAIMS == prod


def test_same_charts_and_kustomizations_at_the_same_versions(stacks):
    def releases(recording):
        charts = {(c.inputs["name"], c.inputs["chart"], c.inputs["version"], c.inputs["namespace"]) for c in recording.charts()}
        kustomize = {r.inputs["directory"] for r in recording.of_type("kubernetes:kustomize/v2:Directory")}
        return charts, kustomize

    assert releases(stacks["dev"]) == releases(stacks["prod"])


def test_only_the_environment_differs(stacks):
    """Cluster kind, storage and how images arrive differ; nothing else is environment-specific."""
    dev_cluster = {r.type for r in stacks["dev"].resources if r.type.startswith("dataplatform:cluster:")}
    prod_cluster = {r.type for r in stacks["prod"].resources if r.type.startswith("dataplatform:cluster:")}
    assert dev_cluster == {"dataplatform:cluster:MinikubeCluster"} and prod_cluster == {"dataplatform:cluster:EksCluster"}
    dev_images = {i.plain_inputs["imageName"] for i in stacks["dev"].of_type("docker:index/image:Image")}
    prod_images = {i.plain_inputs["imageName"] for i in stacks["prod"].of_type("docker:index/image:Image")}
    assert all(i.startswith("dataplatform/") for i in dev_images)
    assert all(".dkr.ecr." in i for i in prod_images)
    assert {i.split("/")[-1].split(":")[0] for i in dev_images} == {i.split("/")[-1].split(":")[0] for i in prod_images}
    assert not [r for r in stacks["dev"].resources if r.type.startswith("aws:")]
