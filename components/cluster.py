"""The Kubernetes cluster the platform runs on, and the one provider every resource uses.

Two kinds share one interface (`Cluster`): a Minikube profile the stack starts and deletes itself,
and an existing cluster named by its kubeconfig context. Either way the rest of the stack gets an
explicit `pulumi_kubernetes.Provider` built from a kubeconfig captured for that cluster alone, so
nothing can land in whatever context happens to be active on the machine running `pulumi up`.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Annotated, Literal, Union

import pulumi
import pulumi_docker as docker
import pulumi_kubernetes as k8s
from pulumi_command import local
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from components.kubernetes_types import SHARED_FOLDER_MODE, SHARED_FOLDER_OWNER, SHARED_GROUP, ByteQuantity, DnsLabel, bytes_of

# Minor versions that both the zero-to-jupyterhub chart (kubeVersion >=1.28) and the Kubernetes
# schemas we validate against (kubernetes-validate 1.25-1.37) cover.
SUPPORTED_KUBERNETES_MINORS = range(28, 38)
DEFAULT_KUBERNETES_VERSION = "1.34.0"


def _check_kubernetes_version(value: str) -> str:
    match = re.fullmatch(r"1\.(\d+)\.(\d+)", value)
    if not match or int(match.group(1)) not in SUPPORTED_KUBERNETES_MINORS:
        low, high = SUPPORTED_KUBERNETES_MINORS[0], SUPPORTED_KUBERNETES_MINORS[-1]
        raise ValueError(
            f"{value!r} is not a supported Kubernetes version: use MAJOR.MINOR.PATCH "
            f"between 1.{low}.0 and 1.{high}.x (no 'v' prefix)"
        )
    return value


KubernetesVersion = Annotated[str, AfterValidator(_check_kubernetes_version)]


class MinikubeClusterConfig(BaseModel):
    """A local Minikube profile, created on `pulumi up` and deleted on `pulumi destroy`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["minikube"] = Field("minikube", description="Cluster kind.")
    profile: DnsLabel = Field("dataplatform", description="Minikube profile name (`minikube -p`).")
    kubernetes_version: KubernetesVersion = Field(
        DEFAULT_KUBERNETES_VERSION, description="Kubernetes version Minikube starts."
    )
    cpus: int = Field(8, ge=2, le=64, description="CPUs given to the Minikube node.")
    memory: ByteQuantity = Field("16Gi", description="Memory given to the Minikube node.")
    disk: ByteQuantity = Field("40Gi", description="Disk size of the Minikube node.")
    driver: Literal["docker", "podman", "kvm2", "qemu2", "hyperkit", "vfkit", "virtualbox", "hyperv"] = (
        Field("docker", description="Minikube driver (`minikube start --driver`).")
    )
    addons: tuple[Literal["metrics-server", "ingress", "dashboard", "registry"], ...] = Field(
        ("metrics-server",), description="Extra Minikube addons to enable."
    )
    cni: Literal["calico", "cilium"] = Field(
        "calico",
        description="CNI plugin (`minikube start --cni`). The platform isolates notebooks and services with "
        "NetworkPolicies, which Minikube's default CNI does not enforce; these two do.",
    )

    def start_command(self) -> str:
        """The `minikube start` command line for this profile."""
        args = [
            "minikube", "start",
            f"--profile={self.profile}",
            f"--kubernetes-version=v{self.kubernetes_version}",
            f"--cpus={self.cpus}",
            f"--memory={bytes_of(self.memory) // 2**20}mb",
            f"--disk-size={bytes_of(self.disk) // 2**20}mb",
            f"--driver={self.driver}",
            f"--cni={self.cni}",
            *(f"--addons={addon}" for addon in self.addons),
        ]
        return shlex.join(args)


class ExistingClusterConfig(BaseModel):
    """A cluster someone else runs, reached through a named kubeconfig context."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["existing"] = Field(description="Cluster kind.")
    context: str = Field(min_length=1, description="kubeconfig context of the cluster.")
    kubernetes_version: KubernetesVersion = Field(
        DEFAULT_KUBERNETES_VERSION, description="The cluster's Kubernetes version (schemas are checked against it)."
    )
    storage_provisioner: str = Field(
        "rancher.io/local-path", min_length=1,
        description="CSI/provisioner name for the platform's StorageClass.",
    )
    image_registry: str = Field(
        min_length=1, description="Registry the stack pushes images to, e.g. ghcr.io/acme/dataplatform."
    )
    service_type: Literal["LoadBalancer", "NodePort", "ClusterIP"] = Field(
        "LoadBalancer", description="Service type for user-facing endpoints (JupyterHub proxy)."
    )


ClusterConfig = Annotated[
    Union[MinikubeClusterConfig, ExistingClusterConfig], Field(discriminator="kind")
]


@dataclass(frozen=True)
class ImageDelivery:
    """How images reach the cluster: built by `docker_provider`, pushed to `registry` unless None,
    authenticating with `credentials` when given (else the Docker CLI's own login)."""

    docker_provider: docker.Provider
    registry: pulumi.Input[str] | None
    pull_policy: Literal["IfNotPresent", "Always", "Never"]
    credentials: docker.RegistryArgs | None = None
    platform: str | None = None  # e.g. linux/amd64; None: whatever the building daemon runs


class Cluster(pulumi.ComponentResource):
    """What every cluster kind gives the rest of the stack."""

    provider: k8s.Provider
    """The explicit Kubernetes provider every Kubernetes resource of the stack uses."""
    kubeconfig: pulumi.Output[str]
    """The cluster's self-contained kubeconfig (a secret)."""
    kubernetes_version: str
    """The cluster's Kubernetes version, MAJOR.MINOR.PATCH."""
    images: ImageDelivery
    """How the stack's images reach the cluster."""
    storage_provisioner: str
    """Provisioner for the platform's default StorageClass."""
    service_type: str
    """Service type for user-facing endpoints."""

    def _connect(self, name: str, kubeconfig: pulumi.Output[str], ready: list[pulumi.Resource]) -> None:
        self.kubeconfig = pulumi.Output.secret(kubeconfig)
        self.provider = k8s.Provider(
            f"{name}-provider",
            kubeconfig=self.kubeconfig,
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=ready),
        )
        self.register_outputs({"kubeconfig": self.kubeconfig, "kubernetes_version": self.kubernetes_version})


def _kubeconfig_command(context: str) -> str:
    return shlex.join(["kubectl", "config", "view", "--flatten", "--minify", f"--context={context}"])


class MinikubeCluster(Cluster):
    """A Minikube profile started by `minikube start` and removed by `minikube delete`.

    Images are built straight into the profile's own Docker daemon and never pushed, so pods use
    them with `imagePullPolicy: IfNotPresent`. `host_dirs` are created on the node, group 100
    (users) writable, for the platform's shared hostPath volumes.
    """

    def __init__(
        self,
        name: str,
        args: MinikubeClusterConfig,
        host_dirs: list[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("dataplatform:cluster:MinikubeCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        profile = shlex.quote(args.profile)
        start = local.Command(
            f"{name}-start",
            create=args.start_command(),
            delete=f"minikube delete --profile={profile}",
            # Minikube cannot resize a profile: a new shape means delete, then start again, which
            # loses everything on the node, the shared volumes included. So the profile is protected:
            # such a change (and `pulumi destroy`) stops until someone unprotects it on purpose.
            triggers=[args.start_command()],
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True, protect=True),
        )
        after_start = pulumi.ResourceOptions(parent=self, depends_on=[start])
        kubeconfig = local.Command(
            f"{name}-kubeconfig",
            create=_kubeconfig_command(args.profile),
            triggers=[start.id],
            opts=pulumi.ResourceOptions.merge(after_start, pulumi.ResourceOptions(additional_secret_outputs=["stdout"])),
        )
        docker_env = f"minikube --profile={profile} docker-env --shell none"
        docker_host = local.Command(
            f"{name}-docker-host",
            create=f"{docker_env} | sed -n 's/^DOCKER_HOST=//p'",
            triggers=[start.id],
            opts=after_start,
        )
        docker_cert_path = local.Command(
            f"{name}-docker-cert-path",
            create=f"{docker_env} | sed -n 's/^DOCKER_CERT_PATH=//p'",
            triggers=[start.id],
            opts=after_start,
        )
        ready: list[pulumi.Resource] = [kubeconfig]
        if host_dirs:
            mkdir = shlex.join([
                "sudo", "install", "-d", "-o", str(SHARED_FOLDER_OWNER), "-g", str(SHARED_GROUP), "-m", SHARED_FOLDER_MODE,
                *host_dirs,
            ])
            ready.append(local.Command(
                f"{name}-host-dirs",
                create=f"minikube --profile={profile} ssh -- {shlex.quote(mkdir)}",
                triggers=[start.id, *host_dirs],
                opts=after_start,
            ))
        self.kubernetes_version = args.kubernetes_version
        self.storage_provisioner = "k8s.io/minikube-hostpath"
        self.service_type = "NodePort"
        self.images = ImageDelivery(
            docker_provider=docker.Provider(
                f"{name}-docker",
                host=docker_host.stdout,
                cert_path=docker_cert_path.stdout,
                opts=child,
            ),
            registry=None,
            pull_policy="IfNotPresent",
        )
        self._connect(name, kubeconfig.stdout, ready)


class ExistingCluster(Cluster):
    """A cluster reached through a kubeconfig context; images are pushed to `image_registry`."""

    def __init__(
        self,
        name: str,
        args: ExistingClusterConfig,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("dataplatform:cluster:ExistingCluster", name, None, opts)
        kubeconfig = local.Command(
            f"{name}-kubeconfig",
            create=_kubeconfig_command(args.context),
            triggers=[args.context],
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["stdout"]),
        )
        self.kubernetes_version = args.kubernetes_version
        self.storage_provisioner = args.storage_provisioner
        self.service_type = args.service_type
        self.images = ImageDelivery(
            docker_provider=docker.Provider(f"{name}-docker", opts=pulumi.ResourceOptions(parent=self)),
            registry=args.image_registry,
            pull_policy="IfNotPresent",
        )
        self._connect(name, kubeconfig.stdout, [kubeconfig])
