"""Storage: the platform's StorageClass and the shared volumes Spark and notebooks both use.

The Spark event log and the shared data volume must be the same files for a notebook in the
JupyterHub namespace and a job in the Spark namespace. A PersistentVolume binds exactly one claim,
so each shared volume gets one pre-bound PV/PVC pair per namespace that mounts it, all pointing at
the same directory (a hostPath on the single Minikube node, or an NFS export). Every one of these
objects holds user data: reclaim policy `Retain`, `protect=True`, `retain_on_delete=True`.
"""

from __future__ import annotations

from typing import Annotated, Literal, Mapping, Sequence, Union

import pulumi
import pulumi_kubernetes as k8s
from pydantic import BaseModel, ConfigDict, Field

from components.kubernetes_types import ByteQuantity, DnsLabel, labels


class HostPathBackend(BaseModel):
    """Shared volumes as directories on a single node (Minikube, kind, Docker Desktop)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["host_path"] = Field("host_path", description="Shared-volume backend.")
    root: str = Field(
        "/data/dataplatform", pattern=r"^/[A-Za-z0-9._/-]+$",
        description="Directory on the node under which each shared volume gets a folder "
        "(Minikube keeps /data across restarts).",
    )


class NfsBackend(BaseModel):
    """Shared volumes as folders of an NFS export, for multi-node clusters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["nfs"] = Field(description="Shared-volume backend.")
    server: str = Field(min_length=1, description="NFS server host name or IP.")
    root: str = Field(pattern=r"^/[A-Za-z0-9._/-]+$", description="Exported directory on the server.")


class SharedVolumeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    capacity: ByteQuantity = Field(description="Size of the volume.")


class StorageConfig(BaseModel):
    """The `storage` config key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    class_name: DnsLabel = Field(
        "dataplatform", description="Name of the StorageClass for per-user and per-service volumes."
    )
    shared_backend: Annotated[Union[HostPathBackend, NfsBackend], Field(discriminator="kind")] = Field(
        HostPathBackend(), description="Where the shared volumes live: `host_path` or `nfs`."
    )
    event_logs: SharedVolumeConfig = Field(
        SharedVolumeConfig(capacity="5Gi"), description="Spark event-log volume."
    )
    shared_data: SharedVolumeConfig = Field(
        SharedVolumeConfig(capacity="20Gi"), description="Shared data volume for notebooks and jobs."
    )


# key -> (claim name in every namespace, mount path in every pod). The same path everywhere lets a
# notebook hand a Spark job a `file://` path it just wrote.
SHARED_VOLUMES = {
    "event_logs": ("spark-event-logs", "/mnt/spark-events"),
    "shared_data": ("shared-data", "/mnt/shared-data"),
}


STATIC_CLAIM_REQUEST = "1Mi"


def shared_directories(config: StorageConfig) -> list[str]:
    """The node directories a host_path backend needs, one per shared volume."""
    if not isinstance(config.shared_backend, HostPathBackend):
        return []
    return [f"{config.shared_backend.root}/{claim}" for claim, _ in SHARED_VOLUMES.values()]


def persistent_volume_spec(config: StorageConfig, volume: str, namespace: str) -> dict:
    """The spec of the PV that carries shared `volume` for `namespace`, pre-bound to its claim."""
    claim, _ = SHARED_VOLUMES[volume]
    backend = config.shared_backend
    path = f"{backend.root}/{claim}"
    source = (
        {"hostPath": {"path": path, "type": "Directory"}}
        if isinstance(backend, HostPathBackend)
        else {"nfs": {"server": backend.server, "path": path}}
    )
    return {
        "capacity": {"storage": getattr(config, volume).capacity},
        "accessModes": ["ReadWriteMany"],
        "persistentVolumeReclaimPolicy": "Retain",
        "storageClassName": "",
        "claimRef": {"namespace": namespace, "name": claim},
        **source,
    }


class PlatformStorage(pulumi.ComponentResource):
    """The platform's StorageClass and the PVs behind its shared volumes: one pre-bound PV for each
    (namespace, volume) pair in `namespaces` (namespace -> the SHARED_VOLUMES keys it mounts)."""

    storage_class: pulumi.Output[str]
    """Name of the StorageClass for per-user and per-service volumes."""

    def __init__(
        self,
        name: str,
        args: StorageConfig,
        provisioner: str,
        namespaces: Mapping[str, Sequence[str]],
        storage_class: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("dataplatform:storage:PlatformStorage", name, None, opts)
        self._config = args
        keep = pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True)
        if storage_class is None:  # else the cluster kind brings its own (EKS: CloudStorage's gp3)
            storage_class = k8s.storage.v1.StorageClass(
                f"{name}-class",
                metadata={"name": args.class_name, "labels": labels(args.class_name, "storage")},
                provisioner=provisioner,
                reclaim_policy="Retain",
                volume_binding_mode="WaitForFirstConsumer",
                opts=pulumi.ResourceOptions(parent=self),
            ).metadata.name
        for namespace, volumes in namespaces.items():
            for volume in volumes:
                claim, _ = SHARED_VOLUMES[volume]
                pv_name = f"{name}-{claim}-{namespace}"
                k8s.core.v1.PersistentVolume(
                    pv_name,
                    metadata={"name": pv_name, "labels": labels(claim, "storage")},
                    spec=persistent_volume_spec(args, volume, namespace),
                    opts=keep,
                )
        self.storage_class = pulumi.Output.from_input(storage_class)
        self.register_outputs({"storage_class": self.storage_class})

    def claim(self, volume: str, namespace: pulumi.Input[str], parent: pulumi.Resource) -> k8s.core.v1.PersistentVolumeClaim:
        """The claim, in `namespace`, on the PV this component made for it; owned by `parent`."""
        claim, _ = SHARED_VOLUMES[volume]
        return k8s.core.v1.PersistentVolumeClaim(
            f"{parent._name}-{claim}",
            metadata={"name": claim, "namespace": namespace, "labels": labels(claim, "storage")},
            spec={
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "volumeName": pulumi.Output.from_input(namespace).apply(
                    lambda ns: f"{self._name}-{claim}-{ns}"
                ),
                # The PV carries the size. A claim pre-bound to a static PV cannot be resized (only
                # dynamically provisioned claims can), so it asks for a constant that any PV satisfies
                # and growing `storage.<volume>.capacity` updates the PV alone.
                "resources": {"requests": {"storage": STATIC_CLAIM_REQUEST}},
            },
            opts=pulumi.ResourceOptions(parent=parent, depends_on=[self], protect=True, retain_on_delete=True),
        )


def protect_data_volumes(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
    """A transform for Helm charts: claims a chart creates (the hub's database, say) hold data too,
    so they get the same protection as the platform's own volumes."""
    if args.type_ not in ("kubernetes:core/v1:PersistentVolumeClaim", "kubernetes:core/v1:PersistentVolume"):
        return None
    return pulumi.ResourceTransformResult(
        props=args.props,
        opts=pulumi.ResourceOptions.merge(args.opts, pulumi.ResourceOptions(protect=True, retain_on_delete=True)),
    )
