"""Cloud storage: the default gp3 StorageClass, the EFS class, the S3 buckets and the workloads' S3 policies.

Ground truth: Kubernetes' OpenAPI schema (kubernetes-validate) and the platform's mandatory policies
for the StorageClasses; the aws-ebs-csi-driver parameters (`type`, `encrypted` as a string) and the
default-class annotation `storageclass.kubernetes.io/is-default-class`; the aws-efs-csi-driver
dynamic provisioning parameters (`provisioningMode: efs-ap`, `fileSystemId`); S3's bucket naming
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
from policy.rules import Context, check
from tools import offline
from tools.render import manifest
from tools.schemas import validate_manifest

KUBERNETES_VERSION = "1.34.0"
STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"
BUCKET = "aws:s3/bucket:Bucket"
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


def storage_program(efs: bool):
    def program():
        aws_provider = aws.Provider("aws", region="eu-west-1")
        cluster = k8s.Provider("k8s", kubeconfig="kubeconfig-of-the-test-cluster")
        storage = CloudStorage(
            "storage",
            CloudStorageArgs(buckets=BucketNames(**BUCKETS)),
            aws_provider,
            partition="aws",
            efs_file_system_id=FILE_SYSTEM if efs else None,
            opts=pulumi.ResourceOptions(providers=[cluster]),
        )
        pulumi.export("storage_class", storage.storage_class)
        pulumi.export("shared_storage_class", storage.shared_storage_class)
        pulumi.export("event_log_dir", storage.event_log_dir)
        for which in ("spark", "history_server", "pipelines", "notebook"):
            pulumi.export(f"{which}_policy", getattr(storage, f"{which}_policy"))

    return program


@pytest.fixture
def record(run_program):
    def get(key: str) -> offline.Recording:
        if key not in _recordings:
            _recordings[key] = run_program(storage_program(efs=key == "efs"))
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


@pytest.mark.parametrize("key", ["default", "efs"])
def test_storage_classes_pass_the_kubernetes_schema_and_mandatory_policies(key, record):
    for resource in record(key).of_type(STORAGE_CLASS):
        obj = manifest(resource.plain_inputs)
        assert validate_manifest(obj, KUBERNETES_VERSION) == []
        mandatory = [v for v in check(obj, Context(protect=resource.protect)) if v.enforcement == "mandatory"]
        assert mandatory == [], mandatory


@pytest.mark.parametrize("key", ["default", "efs"])
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
    assert kinds["aws"] == 3 * (1 + len(SETTINGS)) and kinds["kubernetes"] == (2 if key == "efs" else 1)


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
    "pipelines": (pipelines_s3_policy(ARNS["artifacts"]), {ARNS["artifacts"]: READ_WRITE}),
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


# --- EFS-backed shared volumes need EFS ------------------------------------------------------------------------


def test_efs_backend_without_efs_is_refused_naming_both_keys():
    with pytest.raises(ValueError) as info:
        check_shared_backend(efs_enabled=False, backend_kind="efs")
    assert "cluster.efs" in str(info.value) and "storage.shared_backend.kind" in str(info.value)


@pytest.mark.parametrize("efs_enabled, kind", [(True, "efs"), (False, "nfs"), (True, "nfs"), (False, "host_path")])
def test_other_backends_need_no_efs(efs_enabled, kind):
    check_shared_backend(efs_enabled=efs_enabled, backend_kind=kind)
