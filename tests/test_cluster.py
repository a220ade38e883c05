"""The cluster: the `minikube start` command line, the kubeconfig secret, one explicit provider for everything.

Ground truth: Minikube's CLI (`--kubernetes-version` takes a `v` prefix, `--memory` a number with a
unit, `--addons` repeats), and Pulumi's resource options (a replacement is create-before-delete
unless `deleteBeforeReplace` is set; `additionalSecretOutputs` keeps an output encrypted in state).
"""

from __future__ import annotations

import re
import shlex

import pytest
from pydantic import TypeAdapter, ValidationError

from components.cluster import ClusterConfig, ExistingClusterConfig, MinikubeClusterConfig
from tools import offline

COMMAND = "command:local:Command"
K8S_PROVIDER = "pulumi:providers:kubernetes"
DOCKER_PROVIDER = "pulumi:providers:docker"
IMAGE = "docker:index/image:Image"
EXISTING = {"kind": "existing", "context": "my-ctx", "image_registry": "ghcr.io/acme"}

_recordings: dict[str, offline.Recording] = {}
_options: dict[str, dict[str, dict]] = {}


def record_options(monkeypatch, into: dict[str, dict]) -> None:
    """Also keep the resource options the Recording does not (additionalSecretOutputs, deleteBeforeReplace)."""
    register = offline.RecordingMonitor.RegisterResource

    def record(self, request):
        into[request.name] = {
            "additional_secret_outputs": list(request.additionalSecretOutputs),
            "delete_before_replace": request.deleteBeforeReplace,
        }
        return register(self, request)

    monkeypatch.setattr(offline.RecordingMonitor, "RegisterResource", record)


@pytest.fixture
def dev(run_stack, monkeypatch) -> offline.Recording:
    if "dev" not in _recordings:
        record_options(monkeypatch, _options.setdefault("dev", {}))
        _recordings["dev"] = run_stack("dev")
    return _recordings["dev"]


@pytest.fixture
def dev_options(dev) -> dict[str, dict]:
    """Options of each resource of the dev stack, by resource name."""
    return _options["dev"]


@pytest.fixture
def existing(run_stack) -> offline.Recording:
    if "existing" not in _recordings:
        _recordings["existing"] = run_stack("dev", {
            "dataplatform:cluster": EXISTING,
            # host_path volumes need Minikube to create their folders; elsewhere they are NFS.
            "dataplatform:storage": {"shared_backend": {"kind": "nfs", "server": "nfs.example.internal", "root": "/exports/dataplatform"}},
        })
    return _recordings["existing"]


def provider_urn(reference: str) -> str:
    """A provider reference is `<urn>::<id>`."""
    return reference.rsplit("::", 1)[0]


def start_command(recording: offline.Recording) -> offline.Registration:
    [start] = [c for c in recording.of_type(COMMAND) if c.plain_inputs.get("create", "").startswith("minikube start")]
    return start


# --- minikube start -------------------------------------------------------------------------------


def test_start_command_has_every_setting():
    """`minikube start` gets the profile, version, size, driver and addons the config names."""
    config = MinikubeClusterConfig(
        profile="lab", cpus=6, memory="12Gi", disk="40Gi", driver="docker", addons=("metrics-server", "ingress"),
        cni="cilium",
    )
    args = shlex.split(config.start_command())
    assert args[:2] == ["minikube", "start"]
    for flag in (
        "--profile=lab",
        "--kubernetes-version=v1.34.0",
        "--cpus=6",
        "--memory=12288mb",
        "--disk-size=40960mb",
        "--driver=docker",
        "--cni=cilium",
        "--addons=metrics-server",
        "--addons=ingress",
    ):
        assert flag in args, flag


def test_start_command_defaults():
    args = shlex.split(MinikubeClusterConfig().start_command())
    assert "--profile=dataplatform" in args
    assert "--kubernetes-version=v1.34.0" in args
    assert "--memory=16384mb" in args
    assert "--cpus=8" in args
    # Minikube's default CNI enforces no NetworkPolicy; the platform's isolation relies on them.
    assert "--cni=calico" in args


def test_dev_stack_starts_and_deletes_its_profile(dev):
    """`pulumi destroy` removes the Minikube profile the stack created, and only that one."""
    start = start_command(dev).plain_inputs
    assert "--profile=dataplatform" in shlex.split(start["create"])
    assert "--cpus=8" in shlex.split(start["create"]) and "--memory=16384mb" in shlex.split(start["create"])
    delete = shlex.split(start["delete"])
    assert delete[:2] == ["minikube", "delete"]
    assert "--profile=dataplatform" in delete


def test_changing_the_profile_deletes_before_it_starts_again(dev, dev_options):
    """Create and delete act on the same profile name, so a replacement must delete first."""
    start = start_command(dev)
    assert dev_options[start.name]["delete_before_replace"] is True


# --- kubeconfig -----------------------------------------------------------------------------------


def test_kubeconfig_is_secret(dev, dev_options):
    """The cluster's credentials are encrypted in state and masked in output."""
    recording = dev
    [kubeconfig] = [c for c in recording.of_type(COMMAND) if c.plain_inputs["create"].startswith("kubectl config view")]
    assert "--context=dataplatform" in shlex.split(kubeconfig.plain_inputs["create"])
    assert "stdout" in dev_options[kubeconfig.name]["additional_secret_outputs"]
    [provider] = recording.of_type(K8S_PROVIDER)
    assert offline.rpc.is_rpc_secret(provider.inputs["kubeconfig"])
    assert recording.outputs["kubeconfig"] == offline.SECRET


# --- one explicit provider ------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["dev", "existing"])
def test_every_kubernetes_resource_uses_the_cluster_provider(which, request):
    """Nothing can land in whatever kubectl context is active on the machine running `pulumi up`."""
    recording: offline.Recording = request.getfixturevalue(which)
    [provider] = [p for p in recording.of_type(K8S_PROVIDER) if p.name == "cluster-provider"]
    kubernetes = [r for r in recording.resources if r.type.startswith("kubernetes:")]
    assert len(kubernetes) > 20
    for resource in kubernetes:
        reference = resource.provider or resource.providers.get("kubernetes", "")
        assert provider_urn(reference) == provider.urn, resource.name
        if resource.type == "kubernetes:helm.sh/v4:Chart":
            assert provider_urn(resource.providers["kubernetes"]) == provider.urn, resource.name


def test_images_are_built_by_the_cluster_docker_provider(dev):
    """On Minikube, images go into the profile's own Docker daemon, where its kubelet finds them."""
    [docker] = dev.of_type(DOCKER_PROVIDER)
    images = dev.of_type(IMAGE)
    assert {i.plain_inputs["imageName"].split(":")[0] for i in images} >= {"dataplatform/spark", "dataplatform/notebook"}
    for image in images:
        assert provider_urn(image.provider) == docker.urn
        assert image.plain_inputs["skipPush"] is True


# --- an existing cluster ----------------------------------------------------------------------------


def test_existing_cluster_stack_pushes_images_and_uses_a_load_balancer(existing):
    assert not [c for c in existing.of_type(COMMAND) if "minikube" in c.plain_inputs["create"]]
    [kubeconfig] = existing.of_type(COMMAND)
    assert "--context=my-ctx" in shlex.split(kubeconfig.plain_inputs["create"])

    images = existing.of_type(IMAGE)
    assert {i.plain_inputs["imageName"].split(":")[0] for i in images} >= {"ghcr.io/acme/spark", "ghcr.io/acme/notebook"}
    for image in images:
        assert image.plain_inputs["skipPush"] is False
        assert image.plain_inputs["imageName"].startswith("ghcr.io/acme/")
    assert existing.outputs["spark_image"].startswith("ghcr.io/acme/")

    [hub] = [c for c in existing.charts() if c.plain_inputs["chart"] == "jupyterhub"]
    assert hub.plain_inputs["values"]["proxy"]["service"]["type"] == "LoadBalancer"
    [storage_class] = existing.of_type("kubernetes:storage.k8s.io/v1:StorageClass")
    assert storage_class.plain_inputs["provisioner"] == ExistingClusterConfig(**EXISTING).storage_provisioner
    assert existing.outputs["kubeconfig"] == offline.SECRET


# --- invalid input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, key",
    [
        ({"kind": "minikube", "kubernetes_version": "v1.34.0"}, "kubernetes_version"),
        ({"kind": "minikube", "kubernetes_version": "1.20.0"}, "kubernetes_version"),
        ({"kind": "minikube", "cpus": 1}, "cpus"),
        ({"kind": "minikube", "driver": "foo"}, "driver"),
        ({"kind": "minikube", "memory": "8"}, "memory"),
        ({"kind": "minikube", "profile": "My_Profile"}, "profile"),
        ({"kind": "minikube", "nodes": 3}, "nodes"),
        ({"kind": "kind"}, "kind"),
        ({"kind": "existing", "image_registry": "ghcr.io/acme"}, "context"),
        ({"kind": "existing", "context": "ctx", "image_registry": "ghcr.io/acme", "kubernetes_version": "1.27.3"}, "kubernetes_version"),
    ],
    ids=["v-prefix", "unsupported-minor", "one-cpu", "unknown-driver", "memory-without-unit", "profile",
         "unknown-key", "unknown-kind", "missing-context", "existing-version"],
)
def test_invalid_cluster_config_names_the_key(raw, key):
    with pytest.raises(ValidationError, match=re.escape(key)):
        TypeAdapter(ClusterConfig).validate_python(raw)
