"""Cloud storage on EKS: the default StorageClass, the shared EFS class, and the platform's S3 buckets.

Per-user and per-service volumes are EBS gp3, encrypted, created where the pod lands
(`WaitForFirstConsumer`, since an EBS volume lives in one availability zone) and growable. A shared
ReadWriteMany class on EFS exists when `cluster.efs` asks for one; with `storage.shared_backend.kind
efs` the platform's own shared volumes live there too, one EFS access point each, whose volume
handles PlatformStorage's statically provisioned PVs mount. Spark event logs, pipeline
artifacts and data live in S3: one bucket each, versioned, encrypted by default, every kind of public
access blocked and ACLs disabled. All three hold what nobody can recreate (the event logs are the
only record of finished applications the history server shows), so each is `protect`ed and
`retain_on_delete`: `pulumi destroy` stops at them, and removing them from the program leaves them
in the account. Their settings (versioning, encryption, public access block, ownership) are retained
with them, so a bucket left behind is never a weakened one.

Workloads reach the buckets through service-account roles (IRSA) whose policies come from the pure
functions below: exactly the S3 actions the S3A connector needs, on exactly the named buckets.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from bootstrap.aws import ABORT_MULTIPART_DAYS, NONCURRENT_VERSION_DAYS, BootstrapError, validate_bucket_name
from components.kubernetes_types import SHARED_FOLDER_MODE, SHARED_FOLDER_OWNER, SHARED_GROUP, DnsLabel, labels
from components.storage import SHARED_VOLUMES, EfsBackend, SharedBackend, efs_volume_handle, shared_volume_path

EBS_PROVISIONER = "ebs.csi.aws.com"
EVENT_LOG_PREFIX = "spark-events"
EFS_PROVISIONER = "efs.csi.aws.com"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


def _check_bucket_name(value: str) -> str:
    try:
        validate_bucket_name(value)
    except BootstrapError as error:
        raise ValueError(str(error)) from None
    return value


BucketName = Annotated[str, AfterValidator(_check_bucket_name)]
"""A general purpose S3 bucket name S3 would accept (the bootstrap's own rules)."""


class BucketNames(BaseModel):
    """The platform's S3 buckets. Bucket names are global across all AWS accounts: choose your own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_logs: BucketName = Field(description="Bucket of the Spark event logs the history server reads.")
    artifacts: BucketName = Field(description="Bucket of pipeline artifacts (models, datasets, metrics).")
    data: BucketName = Field(description="Bucket of the platform's data, shared by notebooks and jobs.")

    @model_validator(mode="after")
    def _distinct(self) -> BucketNames:
        seen: dict[str, str] = {}
        for key in BUCKET_PURPOSES:
            name = getattr(self, key)
            if name in seen:
                raise ValueError(
                    f"{seen[name]} and {key} are both {name!r}: each needs its own bucket, so that each "
                    "workload's role can be given exactly the buckets it needs"
                )
            seen[name] = key
        return self


# key -> what the bucket holds. Every one is protected and retained: none of it can be recreated.
BUCKET_PURPOSES = {
    "event_logs": "Spark event logs, the only record of finished applications",
    "artifacts": "pipeline artifacts",
    "data": "the platform's data",
}


def check_shared_backend(efs_enabled: bool, backend_kind: str) -> None:
    """Refuse shared volumes on EFS when the cluster has no EFS file system.

    For the stack's config validator: `check_shared_backend(cluster is eks and cluster.efs,
    storage.shared_backend.kind)`. Shared volumes on EFS need the file system only an eks cluster
    with `efs: true` creates. (An eks cluster with EFS may still keep them on an `nfs` server of its
    own; `host_path` off Minikube is refused by the stack's own rule.)
    """
    if backend_kind == "efs" and not efs_enabled:
        raise ValueError(
            "dataplatform:storage.shared_backend.kind efs needs an EFS file system, which only "
            "dataplatform:cluster.kind eks with dataplatform:cluster.efs true creates, and this cluster has "
            "none; set cluster.efs: true on an eks cluster, or use shared_backend.kind nfs"
        )


# --- StorageClasses: pure ---------------------------------------------------------------------------


def default_storage_class(name: str) -> dict:
    """The cluster's default StorageClass: encrypted gp3 EBS volumes, kept when their claim goes."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": name,
            "labels": labels(name, "storage"),
            "annotations": {DEFAULT_CLASS_ANNOTATION: "true"},
        },
        "provisioner": EBS_PROVISIONER,
        # aws-ebs-csi-driver docs/parameters.md: `type`, `encrypted` (a string), the CSI fsType key.
        "parameters": {"type": "gp3", "encrypted": "true", "csi.storage.k8s.io/fstype": "ext4"},
        "reclaimPolicy": "Retain",
        # An EBS volume lives in one availability zone: create it where the pod is scheduled.
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": True,
    }


def efs_storage_class(name: str, file_system_id: pulumi.Input[str]) -> dict:
    """The shared ReadWriteMany StorageClass: one EFS access point per claim on `file_system_id`."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name, "labels": labels(name, "storage")},
        "provisioner": EFS_PROVISIONER,
        # aws-efs-csi-driver docs: dynamic provisioning creates an access point per volume
        # (provisioningMode efs-ap) under basePath; the access point enforces one POSIX identity for
        # every client, so every pod that mounts the volume reads and writes the same files.
        "parameters": {
            "provisioningMode": "efs-ap",
            "fileSystemId": file_system_id,
            "directoryPerms": "700",
            "basePath": "/dataplatform",
        },
        "reclaimPolicy": "Retain",
        "volumeBindingMode": "Immediate",
    }


# --- EFS access points: pure ----------------------------------------------------------------------

def efs_access_point_root(backend: EfsBackend, volume: str) -> dict:
    """The `root_directory` of shared `volume`'s access point: `<root>/<claim>`, which EFS creates on
    the first mount (with `creation_info`) if it does not exist, and leaves as it is if it does.

    No `posix_user`: the access point passes each client's own uid and gids through, as hostPath and
    NFS do, instead of making every pod one user.
    """
    return {
        "path": shared_volume_path(backend.root, volume),
        "creation_info": {
            "owner_uid": SHARED_FOLDER_OWNER,
            "owner_gid": SHARED_GROUP,
            "permissions": SHARED_FOLDER_MODE,
        },
    }


# --- IAM policies: pure -----------------------------------------------------------------------------

# What the S3A connector needs for read/write access to a bucket, per its documentation (Hadoop
# "Working with IAM Role permissions", repeated in Cloudera's "IAM Role permissions for working with
# S3"): get, put and delete objects, list the bucket, and list and abort multipart uploads, which
# the S3A committers and failed large writes need. Read-only access is get objects and list the bucket.
LIST_BUCKET = ("s3:ListBucket",)
LIST_UPLOADS = ("s3:ListBucketMultipartUploads",)
READ_OBJECTS = ("s3:GetObject",)
WRITE_OBJECTS = ("s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload")

_BUCKET_ARN = re.compile(r"^arn:aws[a-z-]*:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def bucket_arn(bucket: str, partition: str) -> str:
    """`arn:<partition>:s3:::<bucket>`."""
    return f"arn:{partition}:s3:::{bucket}"


def s3_policy(read_write: Sequence[str] = (), read_only: Sequence[str] = ()) -> dict:
    """An IAM policy granting read/write on the `read_write` buckets and read on the `read_only` ones.

    Arguments are bucket ARNs; nothing else is granted, and no action or resource is a wildcard
    beyond the objects of a named bucket (`<arn>/*`).
    """
    for arn in (*read_write, *read_only):
        if not isinstance(arn, str) or not _BUCKET_ARN.match(arn):
            raise ValueError(f"{arn!r} is not the ARN of one S3 bucket (arn:aws:s3:::<bucket>)")
    both = set(read_write) & set(read_only)
    if both:
        raise ValueError(f"{sorted(both)} given as both read_write and read_only")
    buckets = sorted({*read_write, *read_only})
    statements = [
        {"Sid": "ListBuckets", "Effect": "Allow", "Action": list(LIST_BUCKET), "Resource": buckets},
        {"Sid": "ReadObjects", "Effect": "Allow", "Action": list(READ_OBJECTS), "Resource": [f"{b}/*" for b in buckets]},
    ]
    if read_write:
        writable = sorted(read_write)
        statements += [
            {"Sid": "ListMultipartUploads", "Effect": "Allow", "Action": list(LIST_UPLOADS), "Resource": writable},
            {"Sid": "WriteObjects", "Effect": "Allow", "Action": list(WRITE_OBJECTS), "Resource": [f"{b}/*" for b in writable]},
        ]
    return {"Version": "2012-10-17", "Statement": statements}


def spark_s3_policy(event_log_bucket_arn: str, data_bucket_arn: str) -> dict:
    """Spark drivers and executors: write event logs, read and write data."""
    return s3_policy(read_write=[event_log_bucket_arn, data_bucket_arn])


def history_server_s3_policy(event_log_bucket_arn: str) -> dict:
    """The Spark history server: read the event logs (its cleaner is off, so it never deletes)."""
    return s3_policy(read_only=[event_log_bucket_arn])


def pipelines_s3_policy(artifact_bucket_arn: str, event_log_bucket_arn: str) -> dict:
    """Pipeline runs: read and write their artifacts; their Spark steps write event logs."""
    return s3_policy(read_write=[artifact_bucket_arn, event_log_bucket_arn])


def notebook_s3_policy(event_log_bucket_arn: str, data_bucket_arn: str, artifact_bucket_arn: str) -> dict:
    """Notebooks: Spark drivers themselves (event logs, data read/write) that also read pipeline artifacts."""
    return s3_policy(read_write=[event_log_bucket_arn, data_bucket_arn], read_only=[artifact_bucket_arn])


# --- the component ----------------------------------------------------------------------------------


class CloudStorageArgs(BaseModel):
    """What CloudStorage makes: the StorageClass names and the buckets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    storage_class: DnsLabel = Field("gp3", description="Name of the default (EBS gp3) StorageClass.")
    shared_storage_class: DnsLabel = Field("efs", description="Name of the shared (EFS) StorageClass.")
    buckets: BucketNames = Field(description="The platform's S3 buckets.")
    shared_backend: SharedBackend | None = Field(
        None,
        description="The stack's `storage.shared_backend`: with kind efs, one EFS access point per shared "
        "volume; any other kind (or None), none.",
    )


class CloudStorage(pulumi.ComponentResource):
    """The default EBS StorageClass, the optional EFS StorageClass and the platform's S3 buckets.

    Kubernetes objects use the provider the component's `opts` name (the cluster's); every AWS
    resource uses `aws_provider`.
    """

    storage_class: pulumi.Output[str]
    """Name of the default StorageClass (encrypted gp3)."""
    shared_storage_class: pulumi.Output[str] | None
    """Name of the EFS StorageClass, or None without EFS."""
    efs_access_points: dict[str, aws.efs.AccessPoint]
    """The shared volumes' EFS access points by SHARED_VOLUMES key; empty unless the shared backend is efs."""
    efs_volume_handles: dict[str, pulumi.Output[str]]
    """The EFS CSI volume handle (`<fs-id>::<fsap-id>`) of each access point, for PlatformStorage."""
    buckets: dict[str, aws.s3.Bucket]
    """The buckets by key: event_logs, artifacts, data."""
    bucket_arns: dict[str, str]
    """The buckets' ARNs by key, known before anything is created."""
    event_log_dir: str
    """`spark.eventLog.dir` / `spark.history.fs.logDirectory` on S3 (`s3a://<bucket>/spark-events`)."""
    spark_policy: str
    """IAM policy JSON for Spark's service accounts."""
    history_server_policy: str
    """IAM policy JSON for the Spark history server's service account."""
    pipelines_policy: str
    """IAM policy JSON for the pipeline runs' service account."""
    notebook_policy: str
    """IAM policy JSON for the notebook servers' service account."""

    def __init__(
        self,
        name: str,
        args: CloudStorageArgs,
        aws_provider: aws.Provider,
        partition: str,
        efs_file_system_id: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("dataplatform:storage:CloudStorage", name, None, opts)
        gp3 = default_storage_class(args.storage_class)
        storage_class = k8s.storage.v1.StorageClass(
            f"{name}-class",
            metadata=gp3["metadata"],
            provisioner=gp3["provisioner"],
            parameters=gp3["parameters"],
            reclaim_policy=gp3["reclaimPolicy"],
            volume_binding_mode=gp3["volumeBindingMode"],
            allow_volume_expansion=gp3["allowVolumeExpansion"],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.storage_class = storage_class.metadata.name
        self.shared_storage_class = None
        if efs_file_system_id is not None:
            efs = efs_storage_class(args.shared_storage_class, efs_file_system_id)
            shared = k8s.storage.v1.StorageClass(
                f"{name}-shared-class",
                metadata=efs["metadata"],
                provisioner=efs["provisioner"],
                parameters=efs["parameters"],
                reclaim_policy=efs["reclaimPolicy"],
                volume_binding_mode=efs["volumeBindingMode"],
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.shared_storage_class = shared.metadata.name

        self.efs_access_points = {}
        if isinstance(args.shared_backend, EfsBackend):
            if efs_file_system_id is None:
                raise ValueError(
                    "dataplatform:storage.shared_backend.kind efs needs the EFS file system of "
                    "dataplatform:cluster.efs true: pass CloudStorage its efs_file_system_id"
                )
            for volume, (claim, _) in SHARED_VOLUMES.items():
                self.efs_access_points[volume] = aws.efs.AccessPoint(
                    f"{name}-{claim}",
                    file_system_id=efs_file_system_id,
                    root_directory=efs_access_point_root(args.shared_backend, volume),
                    tags={"Name": f"{name}-{claim}"},
                    # The PVs of every namespace mount the volume through it: replacing or deleting it
                    # would strand them (their volumeHandle cannot change), so it stays like they do.
                    opts=pulumi.ResourceOptions(
                        parent=self, provider=aws_provider, protect=True, retain_on_delete=True
                    ),
                )
        self.efs_volume_handles = {
            volume: pulumi.Output.all(point.file_system_id, point.id).apply(lambda ids: efs_volume_handle(*ids))
            for volume, point in self.efs_access_points.items()
        }

        self.buckets = {
            key: self._bucket(f"{name}-{key.replace('_', '-')}", getattr(args.buckets, key), aws_provider)
            for key in BUCKET_PURPOSES
        }
        self.bucket_arns = {key: bucket_arn(getattr(args.buckets, key), partition) for key in BUCKET_PURPOSES}
        arns = self.bucket_arns
        self.event_log_dir = f"s3a://{args.buckets.event_logs}/{EVENT_LOG_PREFIX}"
        # Spark's event-log writer and history server both refuse a log directory that does not
        # exist, and on S3 a prefix exists only once something is under it: S3A takes an empty
        # `<prefix>/` object for a directory (its "directory marker").
        aws.s3.BucketObjectv2(
            f"{name}-event-log-prefix",
            bucket=self.buckets["event_logs"].id,
            key=f"{EVENT_LOG_PREFIX}/",
            content="",
            opts=pulumi.ResourceOptions(parent=self.buckets["event_logs"], provider=aws_provider, retain_on_delete=True),
        )
        self.spark_policy = json.dumps(spark_s3_policy(arns["event_logs"], arns["data"]))
        self.history_server_policy = json.dumps(history_server_s3_policy(arns["event_logs"]))
        self.pipelines_policy = json.dumps(pipelines_s3_policy(arns["artifacts"], arns["event_logs"]))
        self.notebook_policy = json.dumps(notebook_s3_policy(arns["event_logs"], arns["data"], arns["artifacts"]))
        self.register_outputs({
            "storage_class": self.storage_class,
            "bucket_arns": self.bucket_arns,
            "event_log_dir": self.event_log_dir,
            "efs_volume_handles": self.efs_volume_handles,
        })

    def _bucket(self, name: str, bucket: str, aws_provider: aws.Provider) -> aws.s3.Bucket:
        """A bucket with versioning, default encryption, all public access blocked and ACLs disabled."""
        # pulumi-aws 7: s3.Bucket is the bucket alone (s3.BucketV2 is its deprecated alias); each
        # setting is a resource of its own.
        resource = aws.s3.Bucket(
            name,
            bucket=bucket,
            opts=pulumi.ResourceOptions(parent=self, provider=aws_provider, protect=True, retain_on_delete=True),
        )
        # The settings stay with a retained bucket: deleting them would leave it unversioned, public-able.
        setting = pulumi.ResourceOptions(parent=resource, provider=aws_provider, retain_on_delete=True)
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership", bucket=resource.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=setting
        )
        aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=resource.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=setting,
        )
        aws.s3.BucketVersioning(
            f"{name}-versioning", bucket=resource.id, versioning_configuration={"status": "Enabled"}, opts=setting
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=resource.id,
            # SSE-KMS with the account's AWS managed key (aws/s3): its key policy lets every principal of
            # the account use it through S3, so the workloads' policies need no KMS statement. The
            # bucket key cuts the KMS requests (and their cost) per object.
            rules=[{
                "apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms"},
                "bucket_key_enabled": True,
            }],
            opts=setting,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=resource.id,
            rules=[{
                "id": "old-versions-and-incomplete-uploads",
                "status": "Enabled",
                "filter": {},
                "noncurrent_version_expiration": {"noncurrent_days": NONCURRENT_VERSION_DAYS},
                "abort_incomplete_multipart_upload": {"days_after_initiation": ABORT_MULTIPART_DAYS},
            }],
            opts=setting,
        )
        return resource
