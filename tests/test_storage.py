"""Storage: the StorageClass, and the pre-bound PV/PVC pairs behind the shared volumes.

Ground truth: Kubernetes' PersistentVolume binding rules (a PV with `claimRef` binds only that
claim; a claim with `volumeName` binds only that PV; `storageClassName: ""` pairs only with ""), and
the PersistentVolumeClaimResize admission plugin (plugin/pkg/admission/storage/persistentvolume/resize),
which refuses to grow a claim unless its StorageClass is non-empty and allows volume expansion.
"""

from __future__ import annotations

import copy
import re
import shlex

import pytest
from pydantic import ValidationError

from components.kubernetes_types import bytes_of
from components.storage import HostPathBackend, NfsBackend, SharedVolumeConfig, StorageConfig, persistent_volume_spec
from tools import offline

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
    ],
    ids=["capacity-without-unit", "nested-capacity", "root-not-absolute", "nested-root", "nfs-root",
         "unknown-backend", "class-name", "unknown-key"],
)
def test_invalid_storage_config_names_the_key(model, raw, key):
    with pytest.raises(ValidationError, match=re.escape(key)):
        model.model_validate(raw)
