"""TensorBoard: one read-only viewer of the training logs everything on the platform writes.

Notebooks and pipeline steps mount the shared data volume at the same path and write their event
files under `LOG_DIR` (`/mnt/shared-data/tensorboard/<model>/<run>/`); TensorBoard mounts that same
volume read-only in its own namespace, through the pre-bound claim `PlatformStorage` makes there, and
lists every run it finds. It serves the UI on one port and calls nothing, so its NetworkPolicy opens
that port and no egress.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
from pydantic import BaseModel, ConfigDict, Field

from components.kubernetes_types import (
    RESTRICTED_CONTAINER,
    SHARED_GROUP,
    Namespace,
    Resources,
    bytes_of,
    labels,
    millicores_of,
    component_namespace,
)
from components.storage import SHARED_VOLUMES, PlatformStorage

TENSORBOARD_VERSION = "2.21.0"
"""TensorBoard release installed in images/tensorboard (build arg TENSORBOARD_VERSION)."""
TENSORBOARD_UID = 10001
"""The image's numeric user: above the range of host and notebook users, primary group SHARED_GROUP."""
IMAGE_FOLDER = "tensorboard"
"""The image's folder under `images/`."""
PORT = 6006
"""TensorBoard's own default port."""
NAME = "tensorboard"
"""Name of the Deployment, Service and NetworkPolicy, and so the Service's DNS name."""

SHARED_DATA_CLAIM, SHARED_DATA_PATH = SHARED_VOLUMES["shared_data"]
LOG_SUBDIR = "tensorboard"
"""Folder of the shared data volume that holds TensorBoard event files, one subfolder per run."""
LOG_DIR = f"{SHARED_DATA_PATH}/{LOG_SUBDIR}"
"""Where notebooks and pipeline steps write TensorBoard logs, and where TensorBoard reads them."""


class TensorBoardConfig(BaseModel):
    """The `tensorboard` config key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Run TensorBoard over the training logs on the shared data volume.")
    namespace: Namespace = Field("tensorboard", description="Namespace of TensorBoard.")
    resources: Resources = Field(
        Resources(cpu_request="100m", cpu_limit="500m", memory_request="256Mi", memory_limit="1Gi"),
        description="TensorBoard container resources.",
    )
    reload_interval_seconds: int = Field(
        30, ge=5, le=3600,
        description="How often TensorBoard rescans the log folder for new runs and events (`--reload_interval`).",
    )

    def requests(self) -> tuple[int, int]:
        """(millicores, bytes) TensorBoard asks the scheduler for; nothing when disabled."""
        if not self.enabled:
            return 0, 0
        return millicores_of(self.resources.cpu_request), bytes_of(self.resources.memory_request)


def tensorboard_args(config: TensorBoardConfig) -> list[str]:
    """The `tensorboard` command line: every run under LOG_DIR, on all interfaces of the pod."""
    return [
        f"--logdir={LOG_DIR}",
        "--bind_all",
        f"--port={PORT}",
        f"--reload_interval={config.reload_interval_seconds}",
    ]


class TensorBoard(pulumi.ComponentResource):
    """TensorBoard's namespace, its read-only claim on the shared data volume, Deployment, Service and NetworkPolicy."""

    namespace: pulumi.Output[str]
    """The TensorBoard namespace (empty when disabled)."""
    url: pulumi.Output[str]
    """In-cluster URL of TensorBoard (empty when disabled)."""

    def __init__(
        self,
        name: str,
        args: TensorBoardConfig,
        image: pulumi.Input[str],
        pull_policy: str,
        storage: PlatformStorage,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("dataplatform:tensorboard:TensorBoard", name, None, opts)
        self.namespace = pulumi.Output.from_input("")
        self.url = pulumi.Output.from_input("")
        if args.enabled:
            self._deploy(name, args, image, pull_policy, storage)
        self.register_outputs({"namespace": self.namespace, "url": self.url})

    def _deploy(self, name: str, args: TensorBoardConfig, image: pulumi.Input[str], pull_policy: str, storage: PlatformStorage) -> None:
        child = pulumi.ResourceOptions(parent=self)
        # The pod below meets the "restricted" Pod Security Standard; the namespace enforces it.
        ns = component_namespace(f"{name}-namespace", args.namespace, "tensorboard", self, enforce_restricted=True)
        namespace = ns.metadata.name
        shared_data = storage.claim("shared_data", namespace, self)

        app = labels(NAME, "tensorboard")
        selector = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "dataplatform"}
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={"name": NAME, "namespace": namespace, "labels": app},
            spec={
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": app},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "securityContext": {
                            "runAsUser": TENSORBOARD_UID, "runAsGroup": SHARED_GROUP, "runAsNonRoot": True,
                            "supplementalGroups": [SHARED_GROUP], "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [{
                            "name": "tensorboard",
                            "image": image,
                            "imagePullPolicy": pull_policy,
                            "args": tensorboard_args(args),
                            "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "initialDelaySeconds": 5, "periodSeconds": 10},
                            "livenessProbe": {"httpGet": {"path": "/", "port": "http"}, "initialDelaySeconds": 30, "periodSeconds": 30},
                            "resources": args.resources.to_kubernetes(),
                            "securityContext": {**RESTRICTED_CONTAINER, "readOnlyRootFilesystem": True},
                            "volumeMounts": [
                                {"name": "shared-data", "mountPath": SHARED_DATA_PATH, "readOnly": True},
                                # TensorBoard keeps its instance info and the data server's port file in $TMPDIR.
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }],
                        "volumes": [
                            {"name": "shared-data", "persistentVolumeClaim": {"claimName": shared_data.metadata.name, "readOnly": True}},
                            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
                        ],
                    },
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[shared_data]),
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata={"name": NAME, "namespace": namespace, "labels": app},
            spec={
                "podSelector": {"matchLabels": selector},
                "policyTypes": ["Ingress", "Egress"],
                # The UI only; TensorBoard reads its logs from a volume and calls nothing.
                "ingress": [{"ports": [{"port": PORT, "protocol": "TCP"}]}],
                "egress": [],
            },
            opts=child,
        )
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata={"name": NAME, "namespace": namespace, "labels": app},
            spec={
                "type": "ClusterIP",
                "selector": selector,
                "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
            },
            opts=child,
        )
        self.namespace = namespace
        self.url = pulumi.Output.concat("http://", service.metadata.name, ".", namespace, f".svc:{PORT}")
