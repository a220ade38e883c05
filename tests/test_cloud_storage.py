"""Cloud storage: the default gp3 StorageClass, the EFS class, the S3 buckets and the workloads' S3 policies.

Ground truth: Kubernetes' OpenAPI schema (kubernetes-validate) and the platform's mandatory policies
for the StorageClasses; the aws-ebs-csi-driver parameters (`type`, `encrypted` as a string) and the
default-class annotation `storageclass.kubernetes.io/is-default-class`; the aws-efs-csi-driver
dynamic provisioning parameters (`provisioningMode: efs-ap`, `fileSystemId`); the EFS API's
CreationInfo (owner uid, gid and octal `Permissions` matching `^[0-7]{3,4}$`, all three required) and
RootDirectory `Path` (at most four levels); S3's bucket naming
rules (as bootstrap/aws.py encodes them); the S3A connector's documented permissions (read/write:
get, put, delete, list bucket, list and abort multipart uploads; read: get and list).
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest
from pydantic import ValidationError

from components.cloud_storage import (
    BUCKET_PURPOSES,
    BucketNames,
    CloudStorage,
    CloudStorageArgs,
    bucket_arn,
    check_shared_backend,
    history_server_s3_policy,
    notebook_s3_policy,
    pipelines_s3_policy,
    s3_policy,
    spark_s3_policy,
)
from components.kubernetes_types import SHARED_FOLDER_MODE, SHARED_GROUP
from components.storage import SHARED_VOLUMES, EfsBackend, NfsBackend
from policy.rules import Context, check
from tools import offline
from tools.render import manifest
from tools.schemas import validate_manifest

KUBERNETES_VERSION = "1.34.0"
STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"
BUCKET = "aws:s3/bucket:Bucket"
ACCESS_POINT = "aws:efs/accessPoint:AccessPoint"
FILE_SYSTEM = "fs-0123456789abcdef0"
BUCKETS = {"event_logs": "acme-dp-event-logs", "artifacts": "acme-dp-artifacts", "data": "acme-dp-data"}
ARNS = {key: f"arn:aws:s3:::{name}" for key, name in BUCKETS.items()}
SETTINGS = {
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": "ownership",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": "public-access",
    "aws:s3/bucketVersioning:BucketVersioning": "versioning",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": "encryption",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": "lifecycle",
}

_recordings: dict[str, offline.Recording] = {}


# recording key -> (EFS file system given, the stack's shared backend)
PROGRAMS = {
    "default": (False, None),
    "efs": (True, None),
    "efs-nfs-shared": (True, NfsBackend(kind="nfs", server="nfs.example.internal", root="/exports/dataplatform")),
    "efs-shared": (True, EfsBackend(kind="efs")),
    "efs-shared-root": (True, EfsBackend(kind="efs", root="/platform/prod")),
}


def storage_program(efs: bool, shared_backend=None):
    def program():
        aws_provider = aws.Provider("aws", region="eu-west-1")
        cluster = k8s.Provider("k8s", kubeconfig="kubeconfig-of-the-test-cluster")
        storage = CloudStorage(
            "storage",
            CloudStorageArgs(buckets=BucketNames(**BUCKETS), shared_backend=shared_backend),
            aws_provider,
            partition="aws",
            efs_file_system_id=FILE_SYSTEM if efs else None,
            opts=pulumi.ResourceOptions(providers=[cluster]),
        )
        pulumi.export("storage_class", storage.storage_class)
        pulumi.export("shared_storage_class", storage.shared_storage_class)
        pulumi.export("event_log_dir", storage.event_log_dir)
        pulumi.export("efs_volume_handles", storage.efs_volume_handles)
        for which in ("spark", "history_server", "pipelines", "notebook"):
            pulumi.export(f"{which}_policy", getattr(storage, f"{which}_policy"))

    return program


@pytest.fixture
def record(run_program):
    def get(key: str) -> offline.Recording:
        if key not in _recordings:
            _recordings[key] = run_program(storage_program(*PROGRAMS[key]))
        return _recordings[key]

    return get


def storage_classes(recording: offline.Recording) -> dict[str, offline.Registration]:
    return {r.plain_inputs["metadata"]["name"]: r for r in recording.of_type(STORAGE_CLASS)}


# --- StorageClasses -----------------------------------------------------------------------------------


def test_default_storage_class_is_encrypted_gp3(record):
    recording = record("default")
    classes = storage_classes(recording)
    assert set(classes) == {"gp3"}
    gp3 = classes["gp3"].plain_inputs
    assert gp3["provisioner"] == "ebs.csi.aws.com"
    assert gp3["parameters"]["type"] == "gp3"
    assert gp3["parameters"]["encrypted"] == "true"  # a string: StorageClass parameters are map[string]string
    assert gp3["volumeBindingMode"] == "WaitForFirstConsumer"
    assert gp3["allowVolumeExpansion"] is True
    assert gp3["reclaimPolicy"] == "Retain"
    assert gp3["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}
    assert recording.outputs["storage_class"] == "gp3"
    assert recording.outputs["shared_storage_class"] is None


def test_efs_storage_class(record):
    recording = record("efs")
    classes = storage_classes(recording)
    assert set(classes) == {"gp3", "efs"}
    efs = classes["efs"].plain_inputs
    assert efs["provisioner"] == "efs.csi.aws.com"
    assert efs["parameters"]["provisioningMode"] == "efs-ap"
    assert efs["parameters"]["fileSystemId"] == FILE_SYSTEM
    assert efs["reclaimPolicy"] == "Retain"
    assert "annotations" not in efs["metadata"]  # exactly one default class
    assert recording.outputs["shared_storage_class"] == "efs"


@pytest.mark.parametrize("key", ["default", "efs", "efs-shared"])
def test_storage_classes_pass_the_kubernetes_schema_and_mandatory_policies(key, record):
    for resource in record(key).of_type(STORAGE_CLASS):
        obj = manifest(resource.plain_inputs)
        assert validate_manifest(obj, KUBERNETES_VERSION) == []
        mandatory = [v for v in check(obj, Context(protect=resource.protect)) if v.enforcement == "mandatory"]
        assert mandatory == [], mandatory


@pytest.mark.parametrize("key", ["default", "efs", "efs-shared"])
def test_every_resource_uses_its_explicit_provider(key, record):
    recording = record(key)
    [aws_provider] = recording.of_type("pulumi:providers:aws")
    [k8s_provider] = recording.of_type("pulumi:providers:kubernetes")
    kinds = {"aws": 0, "kubernetes": 0}
    for resource in recording.resources:
        if not resource.custom or resource.type.startswith("pulumi:providers:"):
            continue
        expected = {"aws": aws_provider, "kubernetes": k8s_provider}[resource.type.split(":")[0]]
        assert resource.provider.rsplit("::", 1)[0] == expected.urn, resource.name
        kinds[resource.type.split(":")[0]] += 1
    access_points = len(SHARED_VOLUMES) if key == "efs-shared" else 0
    assert kinds["aws"] == 3 * (1 + len(SETTINGS)) + 1 + access_points  # + the event-log prefix marker
    assert kinds["kubernetes"] == (1 if key == "default" else 2)


# --- buckets ---------------------------------------------------------------------------------------------


def test_buckets_are_named_protected_and_retained(record):
    """`pulumi destroy` stops at each bucket, and dropping one from the program leaves it in the account."""
    recording = record("default")
    buckets = {r.plain_inputs["bucket"]: r for r in recording.of_type(BUCKET)}
    assert set(buckets) == set(BUCKETS.values())
    for bucket in buckets.values():
        assert bucket.protect and bucket.retain_on_delete, bucket.name
        assert bucket.plain_inputs.get("forceDestroy") in (None, False)
    assert set(BUCKET_PURPOSES) == set(BUCKETS)


def settings_of(recording: offline.Recording, bucket: offline.Registration) -> dict[str, dict]:
    """Each setting resource of `bucket`, by kind, after checking it targets that bucket."""
    found = {}
    for type_, kind in SETTINGS.items():
        [setting] = [r for r in recording.of_type(type_) if r.parent == bucket.urn]
        assert setting.plain_inputs["bucket"] == f"{bucket.name}-id"
        # Retained with the bucket, so a bucket left behind keeps its protection.
        assert setting.retain_on_delete, setting.name
        found[kind] = setting.plain_inputs
    return found


def test_buckets_are_versioned_encrypted_private_and_owner_enforced(record):
    recording = record("default")
    for bucket in recording.of_type(BUCKET):
        settings = settings_of(recording, bucket)
        assert settings["versioning"]["versioningConfiguration"] == {"status": "Enabled"}
        [rule] = settings["encryption"]["rules"]
        assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] in ("aws:kms", "AES256")
        assert rule["bucketKeyEnabled"] is True
        block = settings["public-access"]
        assert all(block[flag] is True for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
        assert settings["ownership"]["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
        [lifecycle] = settings["lifecycle"]["rules"]
        assert lifecycle["status"] == "Enabled"
        assert lifecycle["noncurrentVersionExpiration"]["noncurrentDays"] > 0
        assert lifecycle["abortIncompleteMultipartUpload"]["daysAfterInitiation"] > 0


def test_event_log_dir_is_on_the_event_log_bucket(record):
    assert record("default").outputs["event_log_dir"] == f"s3a://{BUCKETS['event_logs']}/spark-events"


def test_event_log_dir_exists_before_any_spark_job(record):
    """Spark's event-log writer and history server refuse a missing log directory; on S3, S3A takes
    an empty `<prefix>/` object (a directory marker) for the directory."""
    recording = record("default")
    [bucket] = [r for r in recording.of_type(BUCKET) if r.plain_inputs["bucket"] == BUCKETS["event_logs"]]
    [marker] = recording.of_type("aws:s3/bucketObjectv2:BucketObjectv2")
    prefix = recording.outputs["event_log_dir"].removeprefix(f"s3a://{BUCKETS['event_logs']}/")
    assert marker.plain_inputs["bucket"] == f"{bucket.name}-id"
    assert marker.plain_inputs["key"] == f"{prefix}/"
    assert marker.plain_inputs["content"] == ""
    assert marker.retain_on_delete


@pytest.mark.parametrize(
    "names, key",
    [
        ({**BUCKETS, "data": "My_Bucket"}, "data"),
        ({**BUCKETS, "event_logs": "ab"}, "event_logs"),
        ({**BUCKETS, "artifacts": "192.168.1.1"}, "artifacts"),
        ({**BUCKETS, "data": "sthree-data"}, "data"),
        ({**BUCKETS, "data": "data-bucket-"}, "data"),
    ],
    ids=["uppercase-and-underscore", "too-short", "ip-address", "reserved-prefix", "ends-with-hyphen"],
)
def test_bucket_names_s3_would_refuse_name_the_key(names, key):
    with pytest.raises(ValidationError) as info:
        BucketNames(**names)
    [error] = info.value.errors()
    assert error["loc"] == (key,)
    assert "would be refused by S3" in error["msg"]


def test_two_purposes_cannot_share_a_bucket():
    with pytest.raises(ValidationError, match="event_logs and artifacts are both"):
        BucketNames(**{**BUCKETS, "artifacts": BUCKETS["event_logs"]})


# --- least-privilege policies -------------------------------------------------------------------------------

READ_WRITE = {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListBucket", "s3:ListBucketMultipartUploads"}
READ = {"s3:GetObject", "s3:ListBucket"}
OBJECT_ACTIONS = {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"}


def grants(policy: dict) -> dict[str, set[str]]:
    """bucket ARN -> actions the policy allows on it or its objects; checks the policy's shape on the way."""
    out: dict[str, set[str]] = {}
    assert policy["Version"] == "2012-10-17"
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow" and set(statement) == {"Sid", "Effect", "Action", "Resource"}
        for action in statement["Action"]:
            assert "*" not in action, action
            for resource in statement["Resource"]:
                assert resource != "*"
                objects = resource.endswith("/*")
                bucket = resource.removesuffix("/*")
                assert "*" not in bucket, resource
                assert (action in OBJECT_ACTIONS) == objects, (action, resource)  # object actions on objects only
                out.setdefault(bucket, set()).add(action)
    return out


POLICIES = {
    "spark": (spark_s3_policy(ARNS["event_logs"], ARNS["data"]), {ARNS["event_logs"]: READ_WRITE, ARNS["data"]: READ_WRITE}),
    "history_server": (history_server_s3_policy(ARNS["event_logs"]), {ARNS["event_logs"]: READ}),
    "pipelines": (
        pipelines_s3_policy(ARNS["artifacts"], ARNS["event_logs"]),
        {ARNS["artifacts"]: READ_WRITE, ARNS["event_logs"]: READ_WRITE},
    ),
    "notebook": (
        notebook_s3_policy(ARNS["event_logs"], ARNS["data"], ARNS["artifacts"]),
        {ARNS["event_logs"]: READ_WRITE, ARNS["data"]: READ_WRITE, ARNS["artifacts"]: READ},
    ),
}


@pytest.mark.parametrize("which", list(POLICIES))
def test_policies_grant_exactly_the_named_buckets(which, record):
    """No wildcard action or resource; only the buckets that workload needs, with the S3A action set."""
    policy, expected = POLICIES[which]
    assert grants(policy) == expected
    # The component hands the lead the same documents, as JSON, before anything exists.
    assert json.loads(record("default").outputs[f"{which}_policy"]) == policy


def test_policy_refuses_anything_but_bucket_arns():
    for bad in ("*", "arn:aws:s3:::*", "arn:aws:s3:::acme-dp-data/*", "acme-dp-data", None):
        with pytest.raises(ValueError, match="is not the ARN of one S3 bucket"):
            s3_policy(read_write=[bad])
    with pytest.raises(ValueError, match="both read_write and read_only"):
        s3_policy(read_write=[ARNS["data"]], read_only=[ARNS["data"]])


def test_bucket_arn_follows_the_partition():
    assert bucket_arn("acme-dp-data", "aws") == ARNS["data"]
    assert bucket_arn("acme-dp-data", "aws-cn") == "arn:aws-cn:s3:::acme-dp-data"
    assert grants(s3_policy(read_only=["arn:aws-cn:s3:::acme-dp-data"])) == {"arn:aws-cn:s3:::acme-dp-data": READ}


# --- EFS access points for the shared volumes --------------------------------------------------------------


def access_points(recording: offline.Recording) -> dict[str, offline.Registration]:
    """The access points by the claim name their resource name ends with."""
    found = {}
    for point in recording.of_type(ACCESS_POINT):
        [claim] = [c for c, _ in SHARED_VOLUMES.values() if point.name == f"storage-{c}"]
        found[claim] = point
    return found


@pytest.mark.parametrize("key, root", [("efs-shared", "/dataplatform"), ("efs-shared-root", "/platform/prod")])
def test_one_access_point_per_shared_volume_creates_a_group_writable_folder(key, root, record):
    """EFS creates each root directory on first mount as root:100, mode 2775, like the Minikube host folders."""
    points = access_points(record(key))
    assert set(points) == {claim for claim, _ in SHARED_VOLUMES.values()}
    for claim, point in points.items():
        inputs = point.plain_inputs
        assert inputs["fileSystemId"] == FILE_SYSTEM
        directory = inputs["rootDirectory"]
        assert directory["path"] == f"{root}/{claim}"
        assert directory["creationInfo"] == {"ownerUid": 0, "ownerGid": SHARED_GROUP, "permissions": "2775"}
        # No enforced identity: each pod keeps its own uid and its supplemental group 100.
        assert "posixUser" not in inputs


def test_access_point_settings_are_ones_efs_accepts(record):
    """The EFS API's own constraints: Permissions `^[0-7]{3,4}$`, a Path of at most four levels."""
    import re

    assert re.fullmatch(r"[0-7]{3,4}", SHARED_FOLDER_MODE) and int(SHARED_FOLDER_MODE, 8) & 0o2070 == 0o2070
    for point in record("efs-shared-root").of_type(ACCESS_POINT):
        path = point.plain_inputs["rootDirectory"]["path"]
        assert 1 <= len(path) <= 100 and 1 <= path.count("/") <= 4, path


def test_access_points_are_protected_retained_and_handed_over_as_volume_handles(record):
    """The PVs of every namespace mount through them: they outlive `pulumi destroy`, like the PVs do."""
    recording = record("efs-shared")
    points = access_points(recording)
    for point in points.values():
        assert point.protect and point.retain_on_delete, point.name
    handles = recording.outputs["efs_volume_handles"]
    assert handles == {
        volume: f"{FILE_SYSTEM}::{points[claim].name}-id" for volume, (claim, _) in SHARED_VOLUMES.items()
    }


@pytest.mark.parametrize("key", ["default", "efs", "efs-nfs-shared"])
def test_no_access_points_unless_the_shared_volumes_are_on_efs(key, record):
    recording = record(key)
    assert recording.of_type(ACCESS_POINT) == []
    assert recording.outputs["efs_volume_handles"] == {}


def test_efs_shared_backend_without_a_file_system_is_refused(run_program):
    with pytest.raises(Exception, match=r"storage.shared_backend.kind efs.*cluster.efs"):
        run_program(storage_program(False, EfsBackend(kind="efs")))


# --- EFS-backed shared volumes need EFS ------------------------------------------------------------------------


def test_efs_backend_without_efs_is_refused_naming_both_keys():
    with pytest.raises(ValueError) as info:
        check_shared_backend(efs_enabled=False, backend_kind="efs")
    assert "cluster.efs" in str(info.value) and "storage.shared_backend.kind" in str(info.value)


@pytest.mark.parametrize("efs_enabled, kind", [(True, "efs"), (False, "nfs"), (True, "nfs"), (False, "host_path")])
def test_other_backends_need_no_efs(efs_enabled, kind):
    check_shared_backend(efs_enabled=efs_enabled, backend_kind=kind)
