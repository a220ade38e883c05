"""Storage: the StorageClass, and the pre-bound PV/PVC pairs behind the shared volumes.

Ground truth: Kubernetes' PersistentVolume binding rules (a PV with `claimRef` binds only that
claim; a claim with `volumeName` binds only that PV; `storageClassName: ""` pairs only with ""), and
the PersistentVolumeClaimResize admission plugin (plugin/pkg/admission/storage/persistentvolume/resize),
which refuses to grow a claim unless its StorageClass is non-empty and allows volume expansion; the
aws-efs-csi-driver's static provisioning (examples/kubernetes/efs/static_provisioning, access_points):
a PV with `csi.driver: efs.csi.aws.com` and `volumeHandle: "<FileSystemId>::<AccessPointId>"`, and
its static examples' empty `storageClassName` on PV and claim (aws-efs-csi-driver PR #423).
"""

from __future__ import annotations

import copy
import re
import shlex

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest
from pydantic import ValidationError

from components.cloud_storage import EBS_PROVISIONER, BucketNames, CloudStorage, CloudStorageArgs
from components.kubernetes_types import bytes_of
from components.stack import ConfigError, parse_stack_config, raw_stack_config
from components.storage import (
    SHARED_VOLUMES,
    EfsBackend,
    HostPathBackend,
    NfsBackend,
    PlatformStorage,
    SharedVolumeConfig,
    StorageConfig,
    efs_volume_handle,
    persistent_volume_spec,
)
from policy.rules import Context, check
from tools import offline
from tools.render import manifest
from tools.schemas import validate_manifest

PV = "kubernetes:core/v1:PersistentVolume"
PVC = "kubernetes:core/v1:PersistentVolumeClaim"
STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"
COMMAND = "command:local:Command"

DEV_STORAGE = {
    "class_name": "dataplatform",
    "shared_backend": {"kind": "host_path", "root": "/data/dataplatform"},
    "event_logs": {"capacity": "5Gi"},
    "shared_data": {"capacity": "20Gi"},
}
NFS_STORAGE = {**DEV_STORAGE, "shared_backend": {"kind": "nfs", "server": "nfs.example.internal", "root": "/exports/dataplatform"}}
GROWN_STORAGE = {**DEV_STORAGE, "event_logs": {"capacity": "10Gi"}}
EFS_STORAGE = {**DEV_STORAGE, "shared_backend": {"kind": "efs"}}
FILE_SYSTEM = "fs-0123456789abcdef0"
HANDLE = f"{FILE_SYSTEM}::fsap-0123456789abcdef0"
# What __main__.py mounts where (with every ML component on).
NAMESPACES = {
    "spark": ["event_logs", "shared_data"],
    "jupyterhub": ["event_logs", "shared_data"],
    "tensorboard": ["shared_data"],
    "models": ["shared_data"],
    "kubeflow": ["event_logs", "shared_data"],
}

_recordings: dict[str, offline.Recording] = {}


def stack(run_stack, key: str, storage: dict | None = None) -> offline.Recording:
    if key not in _recordings:
        _recordings[key] = run_stack("dev", {"dataplatform:storage": storage} if storage else None)
    return _recordings[key]


@pytest.fixture
def dev(run_stack) -> offline.Recording:
    return stack(run_stack, "dev")


@pytest.fixture
def nfs(run_stack) -> offline.Recording:
    return stack(run_stack, "nfs", NFS_STORAGE)


@pytest.fixture
def grown(run_stack) -> offline.Recording:
    return stack(run_stack, "grown", GROWN_STORAGE)


def pvs(recording: offline.Recording) -> list[offline.Registration]:
    found = recording.of_type(PV)
    assert found
    return found


def pvcs(recording: offline.Recording) -> list[offline.Registration]:
    found = recording.of_type(PVC)
    assert found
    return found


def without_capacity(inputs: dict) -> dict:
    out = copy.deepcopy(inputs)
    del out["spec"]["capacity"]
    return out


# --- PersistentVolumes ------------------------------------------------------------------------------


def test_every_pv_keeps_its_data(dev):
    """Deleting a claim, a namespace or the stack never deletes user data."""
    for pv in pvs(dev):
        assert pv.plain_inputs["spec"]["persistentVolumeReclaimPolicy"] == "Retain", pv.name
        assert pv.protect is True, pv.name
        assert pv.retain_on_delete is True, pv.name


def test_every_pv_is_pre_bound_to_an_existing_claim(dev):
    """A PV's claimRef names a claim the stack creates, so no other claim can take the volume."""
    claims = {(c.plain_inputs["metadata"]["namespace"], c.plain_inputs["metadata"]["name"]) for c in pvcs(dev)}
    refs = set()
    for pv in pvs(dev):
        ref = pv.plain_inputs["spec"]["claimRef"]
        refs.add((ref["namespace"], ref["name"]))
    assert refs == claims
    assert len(refs) == len(pvs(dev))  # one PV per claim: a PV binds exactly one claim


def test_every_claim_is_protected_and_bound_to_its_own_pv(dev):
    """Each claim names (volumeName) the PV whose claimRef names it back, with a matching class and size."""
    by_name = {pv.plain_inputs["metadata"]["name"]: pv.plain_inputs for pv in pvs(dev)}
    for claim in pvcs(dev):
        assert claim.protect is True and claim.retain_on_delete is True, claim.name
        meta, spec = claim.plain_inputs["metadata"], claim.plain_inputs["spec"]
        pv = by_name[spec["volumeName"]]["spec"]
        assert pv["claimRef"] == {"namespace": meta["namespace"], "name": meta["name"]}
        assert spec["storageClassName"] == pv["storageClassName"] == ""
        assert set(spec["accessModes"]) <= set(pv["accessModes"])
        assert bytes_of(spec["resources"]["requests"]["storage"]) <= bytes_of(pv["capacity"]["storage"])


def test_the_same_claim_in_both_namespaces_is_the_same_directory(dev):
    """A notebook and a Spark job see the same files: the PVs behind one claim name share one source."""
    sources: dict[str, set] = {}
    for pv in pvs(dev):
        spec = pv.plain_inputs["spec"]
        sources.setdefault(spec["claimRef"]["name"], set()).add(repr(spec["hostPath"]))
    assert sources and all(len(s) == 1 for s in sources.values()), sources
    mounts: dict[str, set] = {}
    for pv in pvs(dev):
        ref = pv.plain_inputs["spec"]["claimRef"]
        mounts.setdefault(ref["namespace"], set()).add(ref["name"])
    # Spark and notebooks share both volumes; the ML components read and write shared data only.
    assert mounts["spark"] == mounts["jupyterhub"] == {"spark-event-logs", "shared-data"}
    assert mounts["tensorboard"] == mounts["models"] == {"shared-data"}


def test_host_directories_exist_before_any_pv(dev):
    """hostPath type Directory fails to mount a missing folder: Minikube creates every one first."""
    [mkdir] = [c for c in dev.of_type(COMMAND) if c.name.endswith("-host-dirs")]
    remote = shlex.split(mkdir.plain_inputs["create"])[-1]
    created = set(shlex.split(remote))
    for pv in pvs(dev):
        host_path = pv.plain_inputs["spec"]["hostPath"]
        assert host_path["type"] == "Directory"
        assert host_path["path"] in created
    [provider] = dev.of_type("pulumi:providers:kubernetes")
    assert mkdir.urn in provider.depends_on


# --- StorageClass ---------------------------------------------------------------------------------


def test_storage_class_retains_and_uses_minikube_provisioner(dev):
    [storage_class] = dev.of_type(STORAGE_CLASS)
    inputs = storage_class.plain_inputs
    assert inputs["metadata"]["name"] == "dataplatform"
    assert inputs["reclaimPolicy"] == "Retain"
    assert inputs["provisioner"] == "k8s.io/minikube-hostpath"


# --- backends -----------------------------------------------------------------------------------------


def test_nfs_backend_gives_an_nfs_source():
    config = StorageConfig.model_validate(NFS_STORAGE)
    spec = persistent_volume_spec(config, "event_logs", "spark")
    assert "hostPath" not in spec
    assert spec["nfs"]["server"] == "nfs.example.internal"
    assert spec["nfs"]["path"].startswith("/exports/dataplatform/")
    assert spec["claimRef"]["namespace"] == "spark"
    assert spec["persistentVolumeReclaimPolicy"] == "Retain"


def test_nfs_stack_mounts_nfs_and_creates_no_host_directories(nfs):
    for pv in pvs(nfs):
        spec = pv.plain_inputs["spec"]
        assert "hostPath" not in spec
        assert spec["nfs"]["server"] == "nfs.example.internal"
    assert not [c for c in nfs.of_type(COMMAND) if c.name.endswith("-host-dirs")]


def test_host_path_backend_is_the_default():
    spec = persistent_volume_spec(StorageConfig(), "shared_data", "jupyterhub")
    assert spec["hostPath"]["path"].startswith("/data/dataplatform/")
    assert "nfs" not in spec


def test_efs_backend_gives_a_static_efs_csi_source():
    """The EFS CSI driver mounts the access point the handle names; the PV stays RWX, Retain, classless, pre-bound."""
    config = StorageConfig.model_validate(EFS_STORAGE)
    spec = persistent_volume_spec(config, "shared_data", "jupyterhub", HANDLE)
    assert spec["csi"] == {"driver": "efs.csi.aws.com", "volumeHandle": HANDLE}
    assert "hostPath" not in spec and "nfs" not in spec
    assert spec["accessModes"] == ["ReadWriteMany"]
    assert spec["persistentVolumeReclaimPolicy"] == "Retain"
    assert spec["storageClassName"] == ""
    assert spec["claimRef"] == {"namespace": "jupyterhub", "name": "shared-data"}
    assert spec["capacity"] == {"storage": "20Gi"}


def test_efs_volume_handle_is_file_system_and_access_point_with_no_subpath():
    assert efs_volume_handle(FILE_SYSTEM, "fsap-0123456789abcdef0") == HANDLE


def test_efs_backend_root_defaults_to_dataplatform():
    assert StorageConfig.model_validate(EFS_STORAGE).shared_backend == EfsBackend(kind="efs", root="/dataplatform")


def test_a_volume_handle_goes_with_the_efs_backend_only():
    """An EFS PV without its access point would not mount; a handle beside hostPath or NFS is a wiring mistake."""
    with pytest.raises(ValueError, match="storage.shared_backend.kind efs needs the EFS volume handle"):
        persistent_volume_spec(StorageConfig.model_validate(EFS_STORAGE), "event_logs", "spark")
    with pytest.raises(ValueError, match="storage.shared_backend.kind nfs takes no EFS volume handle"):
        persistent_volume_spec(StorageConfig.model_validate(NFS_STORAGE), "event_logs", "spark", HANDLE)


def efs_program(storage: dict = EFS_STORAGE, handles: bool = True):
    """CloudStorage's access points handed to PlatformStorage, as __main__.py wires them on EKS, and a
    claim in every namespace as the components make them."""

    def program():
        config = StorageConfig.model_validate(storage)
        aws_provider = aws.Provider("aws", region="eu-west-1")
        cluster = k8s.Provider("k8s", kubeconfig="kubeconfig-of-the-test-cluster")
        on_cluster = pulumi.ResourceOptions(providers=[cluster])
        cloud = CloudStorage(
            "cloud-storage",
            CloudStorageArgs(
                buckets=BucketNames(event_logs="acme-dp-event-logs", artifacts="acme-dp-artifacts", data="acme-dp-data"),
                shared_backend=config.shared_backend,
            ),
            aws_provider,
            partition="aws",
            efs_file_system_id=FILE_SYSTEM,
            opts=on_cluster,
        )
        platform = PlatformStorage(
            "storage",
            config,
            provisioner=EBS_PROVISIONER,
            namespaces=NAMESPACES,
            storage_class=cloud.storage_class,
            efs_volume_handles=cloud.efs_volume_handles if handles else None,
            opts=on_cluster,
        )
        for namespace, volumes in NAMESPACES.items():
            consumer = pulumi.ComponentResource("test:index:Consumer", f"consumer-{namespace}", None, on_cluster)
            for volume in volumes:
                platform.claim(volume, namespace, consumer)

    return program


@pytest.fixture
def efs(run_program) -> offline.Recording:
    if "efs" not in _recordings:
        _recordings["efs"] = run_program(efs_program())
    return _recordings["efs"]


def test_efs_pvs_mount_their_volume_through_the_efs_csi_driver(efs):
    """Every (namespace, volume) PV: static EFS CSI, RWX, Retain, protected and retained, pre-bound."""
    found = set()
    for pv in pvs(efs):
        spec = pv.plain_inputs["spec"]
        assert spec["csi"]["driver"] == "efs.csi.aws.com"
        assert spec["csi"]["volumeHandle"].startswith(f"{FILE_SYSTEM}::")
        assert "hostPath" not in spec and "nfs" not in spec
        assert spec["accessModes"] == ["ReadWriteMany"]
        assert spec["persistentVolumeReclaimPolicy"] == "Retain" and spec["storageClassName"] == ""
        assert pv.protect is True and pv.retain_on_delete is True, pv.name
        found.add((spec["claimRef"]["namespace"], spec["claimRef"]["name"]))
    expected = {(ns, SHARED_VOLUMES[v][0]) for ns, volumes in NAMESPACES.items() for v in volumes}
    assert found == expected and len(pvs(efs)) == len(expected)


def test_every_namespace_mounts_the_same_access_point_for_the_same_volume(efs):
    """A notebook, a Spark job, TensorBoard and a model server see the same files: one access point per
    volume, and every PV of that volume names it."""
    points = {p.name: p for p in efs.of_type("aws:efs/accessPoint:AccessPoint")}
    handles: dict[str, set[str]] = {}
    for pv in pvs(efs):
        spec = pv.plain_inputs["spec"]
        handles.setdefault(spec["claimRef"]["name"], set()).add(spec["csi"]["volumeHandle"])
    assert set(handles) == {claim for claim, _ in SHARED_VOLUMES.values()}
    for claim, found in handles.items():
        point = points[f"cloud-storage-{claim}"]
        assert found == {f"{point.plain_inputs['fileSystemId']}::{point.name}-id"}, claim
        assert point.plain_inputs["rootDirectory"]["path"] == f"/dataplatform/{claim}"
    assert len(set().union(*handles.values())) == len(SHARED_VOLUMES)  # different volumes, different folders


def test_efs_claims_bind_their_own_pv(efs):
    by_name = {pv.plain_inputs["metadata"]["name"]: pv.plain_inputs["spec"] for pv in pvs(efs)}
    for claim in pvcs(efs):
        meta, spec = claim.plain_inputs["metadata"], claim.plain_inputs["spec"]
        pv = by_name[spec["volumeName"]]
        assert pv["claimRef"] == {"namespace": meta["namespace"], "name": meta["name"]}
        assert spec["storageClassName"] == pv["storageClassName"] == ""
        assert claim.protect is True and claim.retain_on_delete is True, claim.name


def test_efs_manifests_pass_the_kubernetes_schema_and_mandatory_policies(efs):
    objects = efs.kubernetes_objects()
    assert {r.inputs["kind"] for r in objects} >= {"PersistentVolume", "PersistentVolumeClaim"}
    for registration in objects:
        obj = manifest(registration.plain_inputs)
        assert validate_manifest(obj, "1.34.0") == [], obj["metadata"]
        mandatory = [v for v in check(obj, Context(protect=registration.protect)) if v.enforcement == "mandatory"]
        assert mandatory == [], [str(v) for v in mandatory]


def test_efs_backend_without_volume_handles_is_refused(run_program):
    with pytest.raises(Exception, match=r"storage.shared_backend.kind efs: no EFS volume handle for event_logs, shared_data"):
        run_program(efs_program(handles=False))


def test_volume_handles_with_another_backend_are_refused(run_program):
    """Handles for an nfs backend mean CloudStorage and PlatformStorage were given different backends."""

    def program():
        PlatformStorage(
            "storage", StorageConfig.model_validate(NFS_STORAGE), provisioner=EBS_PROVISIONER,
            namespaces={"spark": ["event_logs"]}, efs_volume_handles={"event_logs": HANDLE},
        )

    with pytest.raises(Exception, match="efs_volume_handles given, but storage.shared_backend.kind is nfs"):
        run_program(program)


# --- growing a volume -----------------------------------------------------------------------------


def test_growing_a_volume_updates_the_pv_in_place(dev, grown):
    """Only spec.capacity changes; the PV keeps its URN, so Pulumi updates it instead of replacing it."""
    before = {pv.urn: pv.plain_inputs for pv in pvs(dev)}
    after = {pv.urn: pv.plain_inputs for pv in pvs(grown)}
    assert before.keys() == after.keys()
    changed = 0
    for urn, old in before.items():
        new = after[urn]
        assert without_capacity(old) == without_capacity(new), urn
        if old["spec"]["capacity"] != new["spec"]["capacity"]:
            changed += 1
            assert new["spec"]["capacity"]["storage"] == "10Gi"
            assert new["spec"]["claimRef"]["name"] == "spark-event-logs"
    # the event-log PV of every namespace that mounts the event log
    assert changed == len([pv for pv in pvs(grown) if pv.plain_inputs["spec"]["claimRef"]["name"] == "spark-event-logs"]) >= 2


def test_growing_a_volume_does_not_resize_static_claims(dev, grown):
    """A claim whose request grows must have a StorageClass that allows expansion; a static claim must stay as it is."""
    classes = {sc.plain_inputs["metadata"]["name"]: sc.plain_inputs for sc in grown.of_type(STORAGE_CLASS)}
    before = {c.urn: c.plain_inputs["spec"] for c in pvcs(dev)}
    for claim in pvcs(grown):
        old, new = before[claim.urn], claim.plain_inputs["spec"]
        if bytes_of(new["resources"]["requests"]["storage"]) > bytes_of(old["resources"]["requests"]["storage"]):
            storage_class = new["storageClassName"]
            assert storage_class, f"{claim.name}: static claim (storageClassName '') cannot be resized"
            assert classes[storage_class].get("allowVolumeExpansion") is True


# --- invalid input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, raw, key",
    [
        (SharedVolumeConfig, {"capacity": "10"}, "capacity"),
        (StorageConfig, {"event_logs": {"capacity": "10"}}, "event_logs.capacity"),
        (HostPathBackend, {"root": "data/dataplatform"}, "root"),
        (StorageConfig, {"shared_backend": {"kind": "host_path", "root": "relative/path"}}, "shared_backend.host_path.root"),
        (NfsBackend, {"kind": "nfs", "server": "nfs", "root": "exports"}, "root"),
        (StorageConfig, {"shared_backend": {"kind": "ceph"}}, "shared_backend"),
        (StorageConfig, {"class_name": "Fast_SSD"}, "class_name"),
        (StorageConfig, {"eventlogs": {"capacity": "5Gi"}}, "eventlogs"),
        (StorageConfig, {"shared_backend": {"kind": "efs", "root": "dataplatform"}}, "shared_backend.efs.root"),
        (StorageConfig, {"shared_backend": {"kind": "efs", "root": "/a/b/c/d"}}, "shared_backend.efs.root"),
        (StorageConfig, {"shared_backend": {"kind": "efs", "root": "/.hidden"}}, "shared_backend.efs.root"),
        (StorageConfig, {"shared_backend": {"kind": "efs", "file_system_id": "fs-1"}}, "shared_backend.efs.file_system_id"),
    ],
    ids=["capacity-without-unit", "nested-capacity", "root-not-absolute", "nested-root", "nfs-root",
         "unknown-backend", "class-name", "unknown-key", "efs-root-not-absolute", "efs-root-too-deep",
         "efs-root-hidden", "efs-unknown-key"],
)
def test_invalid_storage_config_names_the_key(model, raw, key):
    with pytest.raises(ValidationError, match=re.escape(key)):
        model.model_validate(raw)


def stack_raw(stack: str, **changes) -> dict:
    raw = raw_stack_config(offline.stack_settings(stack))
    for area, values in changes.items():
        raw[area] = {**raw.get(area, {}), **values}
    return raw


def refusal(raw: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(raw)
    [problem] = caught.value.problems
    return problem


EFS_BACKEND = {"shared_backend": {"kind": "efs"}}
EXISTING = {"kind": "existing", "context": "ctx", "image_registry": "ghcr.io/acme"}


def test_efs_backend_on_eks_with_efs_is_valid():
    config = parse_stack_config(stack_raw("prod", storage=EFS_BACKEND, cluster={"efs": True}))
    assert config.storage.shared_backend.kind == "efs" and config.cluster.efs is True


@pytest.mark.parametrize(
    "cluster",
    [{"efs": False}, None, EXISTING],
    ids=["eks-without-efs", "minikube", "existing-cluster"],
)
def test_efs_backend_without_an_efs_file_system_is_refused_naming_both_keys(cluster):
    """An EFS-backed volume requested with no EFS: refused before anything is registered."""
    raw = stack_raw("prod" if cluster == {"efs": False} else "dev", storage=EFS_BACKEND)
    if cluster == EXISTING:
        raw["cluster"] = EXISTING
    elif cluster:
        raw["cluster"] = {**raw["cluster"], **cluster}
    problem = refusal(raw)
    assert problem.startswith("dataplatform:storage.shared_backend.kind efs"), problem
    assert "dataplatform:cluster.efs" in problem and "dataplatform:cluster.kind eks" in problem


def test_eks_with_efs_may_keep_its_shared_volumes_on_nfs_but_not_on_host_paths():
    nfs = {"shared_backend": {"kind": "nfs", "server": "nfs.example.internal", "root": "/exports/dataplatform"}}
    assert parse_stack_config(stack_raw("prod", storage=nfs, cluster={"efs": True})).storage.shared_backend.kind == "nfs"
    problem = refusal(stack_raw("prod", storage={"shared_backend": {"kind": "host_path"}}, cluster={"efs": True}))
    assert "dataplatform:storage.shared_backend.kind host_path" in problem and "dataplatform:cluster" in problem
    assert "use shared_backend.kind nfs or efs (with cluster.efs: true)" in problem


def test_prod_keeps_its_shared_volumes_on_efs():
    config = parse_stack_config(raw_stack_config(offline.stack_settings("prod")))
    assert config.cluster.kind == "eks" and config.cluster.efs is True
    assert config.storage.shared_backend == EfsBackend(kind="efs")


def test_prod_stack_mounts_every_shared_volume_from_one_access_point(run_stack):
    """The real program on the prod config: CloudStorage's handles reach PlatformStorage (__main__.py wiring)."""
    prod = run_stack("prod")
    points = {p.name: p for p in prod.of_type("aws:efs/accessPoint:AccessPoint")}
    [file_system] = prod.of_type("aws:efs/fileSystem:FileSystem")
    handles: dict[str, set[str]] = {}
    for pv in pvs(prod):
        spec = pv.plain_inputs["spec"]
        assert spec["csi"]["driver"] == "efs.csi.aws.com" and pv.protect and pv.retain_on_delete, pv.name
        handles.setdefault(spec["claimRef"]["name"], set()).add(spec["csi"]["volumeHandle"])
    assert set(handles) == {claim for claim, _ in SHARED_VOLUMES.values()}
    for claim, found in handles.items():
        [point] = [p for name, p in points.items() if name.endswith(f"-{claim}")]
        assert point.plain_inputs["fileSystemId"] == f"{file_system.name}-id"
        assert found == {f"{file_system.name}-id::{point.name}-id"}, claim
