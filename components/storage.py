"""Storage: the platform's StorageClass and the shared volumes Spark and notebooks both use.

The Spark event log and the shared data volume must be the same files for a notebook in the
JupyterHub namespace and a job in the Spark namespace. A PersistentVolume binds exactly one claim,
so each shared volume gets one pre-bound PV/PVC pair per namespace that mounts it, all pointing at
the same directory: a hostPath on the single Minikube node, a folder of an NFS export, or an EFS
access point (one per shared volume, made by CloudStorage on EKS) mounted through the EFS CSI
driver. Every one of these objects holds user data: reclaim policy `Retain`, `protect=True`,
`retain_on_delete=True`.
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


class EfsBackend(BaseModel):
    """Shared volumes on the EKS cluster's EFS file system (`cluster.efs: true`), one access point each."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["efs"] = Field(description="Shared-volume backend.")
    root: str = Field(
        "/dataplatform", max_length=64, pattern=r"^(/[A-Za-z0-9_-][A-Za-z0-9._-]*){1,3}$",
        description="Directory of the EFS file system under which each shared volume's access point "
        "gets its folder (at most three levels: an access point path has at most four).",
    )


SharedBackend = Annotated[Union[HostPathBackend, NfsBackend, EfsBackend], Field(discriminator="kind")]
"""One of the shared-volume backends, chosen by `kind`."""


class SharedVolumeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    capacity: ByteQuantity = Field(description="Size of the volume.")


class StorageConfig(BaseModel):
    """The `storage` config key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    class_name: DnsLabel = Field(
        "dataplatform", description="Name of the StorageClass for per-user and per-service volumes."
    )
    shared_backend: SharedBackend = Field(
        HostPathBackend(), description="Where the shared volumes live: `host_path`, `nfs` or `efs`."
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

EFS_CSI_DRIVER = "efs.csi.aws.com"


def shared_directories(config: StorageConfig) -> list[str]:
    """The node directories a host_path backend needs, one per shared volume."""
    if not isinstance(config.shared_backend, HostPathBackend):
        return []
    return [f"{config.shared_backend.root}/{claim}" for claim, _ in SHARED_VOLUMES.values()]


def shared_volume_path(root: str, volume: str) -> str:
    """The folder of shared `volume` under a backend's `root`: the same for every namespace."""
    claim, _ = SHARED_VOLUMES[volume]
    return f"{root}/{claim}"


def efs_volume_handle(file_system_id: str, access_point_id: str) -> str:
    """The EFS CSI driver's static volume handle for an access point: `<fs-id>::<fsap-id>`.

    aws-efs-csi-driver examples/kubernetes/efs/access_points: `[FileSystemId]:[Subpath]:[AccessPointId]`
    with the subpath empty (the access point's root directory is the volume); an access point given
    this way (rather than as an `accesspoint=` mount option) also turns on TLS.
    """
    return f"{file_system_id}::{access_point_id}"


def persistent_volume_spec(
    config: StorageConfig, volume: str, namespace: str, volume_handle: pulumi.Input[str] | None = None
) -> dict:
    """The spec of the PV that carries shared `volume` for `namespace`, pre-bound to its claim.

    `volume_handle` is the EFS CSI handle of the volume's access point (`efs_volume_handle`), required
    with an `efs` backend and refused with any other.
    """
    claim, _ = SHARED_VOLUMES[volume]
    backend = config.shared_backend
    if isinstance(backend, EfsBackend) != (volume_handle is not None):
        raise ValueError(
            f"shared volume {volume}: storage.shared_backend.kind {backend.kind} "
            + ("needs the EFS volume handle of its access point" if isinstance(backend, EfsBackend)
               else "takes no EFS volume handle")
        )
    if isinstance(backend, HostPathBackend):
        source = {"hostPath": {"path": shared_volume_path(backend.root, volume), "type": "Directory"}}
    elif isinstance(backend, NfsBackend):
        source = {"nfs": {"server": backend.server, "path": shared_volume_path(backend.root, volume)}}
    else:
        # Static provisioning (aws-efs-csi-driver examples/kubernetes/efs/static_provisioning): the
        # driver mounts what the handle names; capacity is required by Kubernetes and ignored by EFS.
        source = {"csi": {"driver": EFS_CSI_DRIVER, "volumeHandle": volume_handle}}
    return {
        "capacity": {"storage": getattr(config, volume).capacity},
        "accessModes": ["ReadWriteMany"],
        "persistentVolumeReclaimPolicy": "Retain",
        # No class: a static PV binds only a claim that also asks for no class (`""`), and a claim
        # asking for `""` is never given the default class nor dynamically provisioned.
        "storageClassName": "",
        "claimRef": {"namespace": namespace, "name": claim},
        **source,
    }


class PlatformStorage(pulumi.ComponentResource):
    """The platform's StorageClass and the PVs behind its shared volumes: one pre-bound PV for each
    (namespace, volume) pair in `namespaces` (namespace -> the SHARED_VOLUMES keys it mounts).

    With an `efs` backend, `efs_volume_handles` (SHARED_VOLUMES key -> EFS CSI volume handle, as
    CloudStorage's `efs_volume_handles`) names the access point of each volume mounted; every
    namespace's PV of a volume gets that volume's one handle, so all of them are the same folder.
    """

    storage_class: pulumi.Output[str]
    """Name of the StorageClass for per-user and per-service volumes."""

    def __init__(
        self,
        name: str,
        args: StorageConfig,
        provisioner: str,
        namespaces: Mapping[str, Sequence[str]],
        storage_class: pulumi.Input[str] | None = None,
        efs_volume_handles: Mapping[str, pulumi.Input[str]] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("dataplatform:storage:PlatformStorage", name, None, opts)
        self._config = args
        handles = dict(efs_volume_handles or {})
        mounted = {volume for volumes in namespaces.values() for volume in volumes}
        if isinstance(args.shared_backend, EfsBackend):
            missing = sorted(mounted - handles.keys())
            if missing:
                raise ValueError(
                    f"storage.shared_backend.kind efs: no EFS volume handle for {', '.join(missing)}; pass "
                    "CloudStorage's efs_volume_handles (the cluster needs cluster.efs: true)"
                )
        elif handles:
            raise ValueError(
                f"efs_volume_handles given, but storage.shared_backend.kind is {args.shared_backend.kind}, not efs"
            )
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
                    spec=persistent_volume_spec(args, volume, namespace, handles.get(volume)),
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
