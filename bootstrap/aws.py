"""The AWS side of a cloud stack that has to exist before Pulumi can run: the state bucket and the secrets key.

This is the one place the project calls AWS directly (boto3); everything else is Pulumi resources.

    python -m bootstrap.aws bootstrap --stack prod --region eu-west-1 --bucket acme-dataplatform-state
    python -m bootstrap.aws preflight --stack prod --region eu-west-1 --bucket acme-dataplatform-state

`bootstrap` creates, or verifies, idempotently:

- the S3 bucket of the Pulumi state backend: versioning Enabled, default encryption (SSE-S3, AES256,
  when the bucket has none; the bucket can hold several stacks, the KMS key belongs to one), all four
  public access block settings on, ACLs disabled (object ownership BucketOwnerEnforced), and a
  lifecycle rule that expires noncurrent versions after `NONCURRENT_VERSION_DAYS` days and aborts
  incomplete multipart uploads after `ABORT_MULTIPART_DAYS` days;
- a symmetric KMS key with automatic rotation and an alias (default `alias/dataplatform-<stack>`),
  the stack's secrets provider;

and prints the `pulumi login` and `pulumi stack init --secrets-provider` lines to use. A second run
changes nothing and says so. It adds what is missing and never deletes or weakens an existing bucket
or key: a bucket whose versioning is off or suspended, whose public access block someone turned off,
that lives in another region or belongs to another account is refused, as is an alias whose key is
disabled, pending deletion or not a customer-managed symmetric key; an existing encryption,
lifecycle or ownership setting is left as it is.

`preflight`, run before `pulumi up`, checks that the credentials work (prints the account and ARN),
that the region exists, that the state bucket still has versioning Enabled, default encryption and
all public access blocked, and that the secrets key is enabled.

Every refusal is one line on stderr naming the bucket or key, and exit code 1.

Settings (a flag wins over its environment variable):

    --stack       the Pulumi stack name (Makefile: STACK)
    --region      AWS_REGION, else AWS_DEFAULT_REGION
    --bucket      STATE_BUCKET
    --kms-alias   KMS_ALIAS, else alias/dataplatform-<stack>
    --org         PULUMI_ORG, printed as the `pulumi stack init <org>/<stack>` prefix (none by default)

Credentials come from boto3's usual chain (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
SSO, instance roles); AWS_ENDPOINT_URL points every client at another endpoint (the tests' moto).
"""

from __future__ import annotations

import argparse
import difflib
import functools
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Sequence

import boto3
import botocore.session
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

NONCURRENT_VERSION_DAYS = 90
ABORT_MULTIPART_DAYS = 7
LIFECYCLE_RULE_ID = "dataplatform-state-old-versions"
PUBLIC_ACCESS_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
OBJECT_OWNERSHIP = "BucketOwnerEnforced"
DEFAULT_KMS_ALIAS = "alias/dataplatform-{stack}"

# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html (general purpose buckets)
BUCKET_NAME_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
BUCKET_NAME_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")

_CLIENT_CONFIG = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=30)


class BootstrapError(Exception):
    """A refusal or failure, said in one line that names the bucket or key."""


# --- local validation: nothing here calls AWS ---------------------------------------------------


def validate_bucket_name(name: str) -> None:
    """Refuse a name S3 would refuse for a general purpose bucket, with the rule it breaks."""
    reason = _bucket_name_problem(name)
    if reason:
        raise BootstrapError(f"bucket name {name!r} would be refused by S3: {reason}")


def _bucket_name_problem(name: str) -> str | None:
    if not 3 <= len(name) <= 63:
        return f"it must be 3 to 63 characters long (it has {len(name)})"
    if not re.fullmatch(r"[a-z0-9.-]+", name):
        return "only lowercase letters, digits, dots (.) and hyphens (-) are allowed"
    if not (name[0].isalnum() and name[-1].isalnum()):
        return "it must begin and end with a letter or digit"
    if ".." in name:
        return "it must not contain two adjacent dots"
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name):
        return "it must not be formatted as an IP address"
    for prefix in BUCKET_NAME_RESERVED_PREFIXES:
        if name.startswith(prefix):
            return f"the prefix {prefix!r} is reserved"
    for suffix in BUCKET_NAME_RESERVED_SUFFIXES:
        if name.endswith(suffix):
            return f"the suffix {suffix!r} is reserved"
    return None


@functools.cache
def known_regions() -> frozenset[str]:
    """Every region the installed botocore knows: S3's endpoints in each partition plus the partitions' region lists."""
    session = boto3.session.Session()
    regions: set[str] = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions("s3", partition_name=partition))
    partitions = botocore.session.get_session().get_component("data_loader").load_data("partitions")
    for partition in partitions["partitions"]:
        # The lists also hold pseudo-regions such as "aws-global"; the partition's own pattern leaves them out.
        pattern = re.compile(partition["regionRegex"])
        regions.update(region for region in partition.get("regions", {}) if pattern.match(region))
    return frozenset(regions)


def validate_region(region: str) -> None:
    """Refuse a region botocore does not know, suggesting the nearest names."""
    regions = known_regions()
    if region in regions:
        return
    close = difflib.get_close_matches(region, sorted(regions), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known regions: {', '.join(sorted(regions))}"
    raise BootstrapError(f"region {region!r} does not exist{hint}")


def validate_kms_alias(alias: str) -> None:
    """Refuse an alias KMS would refuse, or one of AWS's own (alias/aws/...), which a stack cannot use."""
    if not re.fullmatch(r"alias/[A-Za-z0-9/_-]+", alias) or len(alias) > 256:
        raise BootstrapError(
            f"KMS alias {alias!r} is not valid: it must be alias/<name>, the name made of letters, "
            "digits, '/', '_' and '-', 256 characters at most"
        )
    if alias.startswith("alias/aws/"):
        raise BootstrapError(f"KMS alias {alias!r} is reserved for AWS managed keys; choose your own, e.g. alias/dataplatform-prod")


def validate_stack(stack: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", stack):
        raise BootstrapError(f"stack name {stack!r} is not a Pulumi stack name (letters, digits, '-', '_', '.')")


def pulumi_commands(*, bucket: str, region: str, kms_alias: str, stack: str, org: str | None = None) -> list[str]:
    """The exact `pulumi login` and `pulumi stack init` lines for this bucket and key, quoted for a shell."""
    stack_ref = f"{org}/{stack}" if org else stack
    return [
        f'pulumi login "s3://{bucket}?region={region}&awssdk=v2"',
        f'pulumi stack init {stack_ref} --secrets-provider="awskms://{kms_alias}?region={region}"',
    ]


# --- reading a bucket's settings: None where the bucket has no such configuration ------------------


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _http_status(error: ClientError) -> int | None:
    return error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _bucket_region(s3: BaseClient, name: str, account_id: str) -> str | None:
    """The region of bucket `name` if this account owns it, None if no bucket has that name; refuse anyone else's."""
    try:
        response = s3.head_bucket(Bucket=name, ExpectedBucketOwner=account_id)
    except ClientError as error:
        status, code = _http_status(error), _error_code(error)
        if status == 404 or code in ("404", "NoSuchBucket"):
            return None
        if status == 403 or code in ("403", "AccessDenied", "Forbidden"):
            raise BootstrapError(
                f"bucket {name!r} exists but does not belong to account {account_id} (HeadBucket with that "
                "expected owner was refused: 403; if it is yours, these credentials may not read it); "
                "bucket names are global, so choose another name"
            ) from None
        headers = error.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        if headers.get("x-amz-bucket-region"):
            return headers["x-amz-bucket-region"]
        raise
    return response.get("BucketRegion") or response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-bucket-region")


def _absent_as_none(call: Any, missing_code: str, **kwargs: Any) -> dict | None:
    try:
        return call(**kwargs)
    except ClientError as error:
        if _error_code(error) == missing_code:
            return None
        raise


def _versioning_status(s3: BaseClient, name: str, owner: dict) -> str | None:
    """'Enabled', 'Suspended', or None for a bucket whose versioning was never turned on."""
    return s3.get_bucket_versioning(Bucket=name, **owner).get("Status")


def _encryption_algorithm(s3: BaseClient, name: str, owner: dict) -> str | None:
    response = _absent_as_none(
        s3.get_bucket_encryption, "ServerSideEncryptionConfigurationNotFoundError", Bucket=name, **owner
    )
    for rule in (response or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", []):
        algorithm = rule.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm")
        if algorithm:
            return algorithm
    return None


def _public_access_block(s3: BaseClient, name: str, owner: dict) -> dict | None:
    response = _absent_as_none(s3.get_public_access_block, "NoSuchPublicAccessBlockConfiguration", Bucket=name, **owner)
    return None if response is None else response["PublicAccessBlockConfiguration"]


def _object_ownership(s3: BaseClient, name: str, owner: dict) -> str | None:
    response = _absent_as_none(s3.get_bucket_ownership_controls, "OwnershipControlsNotFoundError", Bucket=name, **owner)
    rules = (response or {}).get("OwnershipControls", {}).get("Rules", [])
    return rules[0]["ObjectOwnership"] if rules else None


def _lifecycle_rules(s3: BaseClient, name: str, owner: dict) -> list | None:
    response = _absent_as_none(
        s3.get_bucket_lifecycle_configuration, "NoSuchLifecycleConfiguration", Bucket=name, **owner
    )
    return None if response is None else response.get("Rules", [])


def lifecycle_rule() -> dict:
    """Old state versions are kept `NONCURRENT_VERSION_DAYS` days; abandoned uploads are cleaned up."""
    return {
        "ID": LIFECYCLE_RULE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "NoncurrentVersionExpiration": {"NoncurrentDays": NONCURRENT_VERSION_DAYS},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_MULTIPART_DAYS},
    }


def _enable_versioning_command(name: str) -> str:
    return f"aws s3api put-bucket-versioning --bucket {name} --versioning-configuration Status=Enabled"


def _block_public_access_command(name: str) -> str:
    flags = ",".join(f"{flag}=true" for flag in PUBLIC_ACCESS_FLAGS)
    return f"aws s3api put-public-access-block --bucket {name} --public-access-block-configuration {flags}"


# --- the state bucket ---------------------------------------------------------------------------


def ensure_state_bucket(s3: BaseClient, name: str, region: str, account_id: str) -> list[str]:
    """Create bucket `name` in `region` for account `account_id`, or verify it; return what was changed.

    Missing settings are added; settings someone chose are kept (encryption, ownership, lifecycle) or,
    where they are weaker than a state bucket needs (versioning, public access), refused.
    """
    validate_bucket_name(name)
    owner = {"ExpectedBucketOwner": account_id}
    changes: list[str] = []

    existing_region = _bucket_region(s3, name, account_id)
    if existing_region is None:
        if _create_bucket(s3, name, region):
            changes.append(f"created bucket {name} in {region} (ACLs disabled: {OBJECT_OWNERSHIP})")
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"}, **owner)
            changes.append(f"enabled versioning on bucket {name}")
    elif existing_region != region:
        raise BootstrapError(
            f"bucket {name!r} is in region {existing_region}, not {region}: pass --region {existing_region} "
            "or choose another bucket name"
        )

    status = _versioning_status(s3, name, owner)
    if status != "Enabled":
        state = "suspended" if status == "Suspended" else "off"
        raise BootstrapError(
            f"bucket {name!r} has versioning {state}; the state bucket needs it Enabled and the bootstrap "
            f"does not change an existing bucket's versioning. Enable it yourself "
            f"(`{_enable_versioning_command(name)}`) and re-run"
        )

    block = _public_access_block(s3, name, owner)
    if block is None:
        s3.put_public_access_block(
            Bucket=name, PublicAccessBlockConfiguration={flag: True for flag in PUBLIC_ACCESS_FLAGS}, **owner
        )
        changes.append(f"blocked all public access to bucket {name}")
    else:
        off = [flag for flag in PUBLIC_ACCESS_FLAGS if not block.get(flag)]
        if off:
            raise BootstrapError(
                f"bucket {name!r} has public access block {', '.join(f'{flag}=false' for flag in off)}; the "
                "state bucket must block all public access and the bootstrap does not override a setting "
                f"someone chose. Block it yourself (`{_block_public_access_command(name)}`) and re-run"
            )

    if _encryption_algorithm(s3, name, owner) is None:
        s3.put_bucket_encryption(
            Bucket=name,
            ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
            **owner,
        )
        changes.append(f"turned on default encryption (SSE-S3, AES256) for bucket {name}")

    if _object_ownership(s3, name, owner) is None:
        s3.put_bucket_ownership_controls(
            Bucket=name, OwnershipControls={"Rules": [{"ObjectOwnership": OBJECT_OWNERSHIP}]}, **owner
        )
        changes.append(f"disabled ACLs on bucket {name} (object ownership {OBJECT_OWNERSHIP})")

    if _lifecycle_rules(s3, name, owner) is None:
        s3.put_bucket_lifecycle_configuration(
            Bucket=name, LifecycleConfiguration={"Rules": [lifecycle_rule()]}, **owner
        )
        changes.append(
            f"added lifecycle rule {LIFECYCLE_RULE_ID} to bucket {name} (noncurrent versions expire after "
            f"{NONCURRENT_VERSION_DAYS} days, incomplete uploads aborted after {ABORT_MULTIPART_DAYS})"
        )
    return changes


def _create_bucket(s3: BaseClient, name: str, region: str) -> bool:
    """Create the bucket; False if it turned out to exist already and be ours (a concurrent run)."""
    kwargs: dict[str, Any] = {"Bucket": name, "ObjectOwnership": OBJECT_OWNERSHIP}
    if region != "us-east-1":  # S3 refuses a LocationConstraint of us-east-1
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**kwargs)
    except ClientError as error:
        if _error_code(error) == "BucketAlreadyOwnedByYou":
            return False
        if _error_code(error) == "BucketAlreadyExists":
            raise BootstrapError(
                f"bucket {name!r} already exists in another account; bucket names are global, so choose another name"
            ) from None
        raise
    s3.get_waiter("bucket_exists").wait(Bucket=name, WaiterConfig={"Delay": 2, "MaxAttempts": 30})
    return True


def check_state_bucket(s3: BaseClient, name: str, region: str, account_id: str) -> str:
    """Preflight: the state bucket is ours, in `region`, versioned, encrypted and private; a summary line."""
    validate_bucket_name(name)
    owner = {"ExpectedBucketOwner": account_id}
    existing_region = _bucket_region(s3, name, account_id)
    if existing_region is None:
        raise BootstrapError(f"state bucket {name!r} does not exist in account {account_id}: run `make bootstrap` first")
    if existing_region != region:
        raise BootstrapError(f"state bucket {name!r} is in region {existing_region}, not {region}")

    problems = []
    status = _versioning_status(s3, name, owner)
    if status != "Enabled":
        problems.append(f"versioning is {status or 'off'} (`{_enable_versioning_command(name)}`)")
    algorithm = _encryption_algorithm(s3, name, owner)
    if algorithm is None:
        problems.append("default encryption is off")
    block = _public_access_block(s3, name, owner)
    off = list(PUBLIC_ACCESS_FLAGS) if block is None else [f for f in PUBLIC_ACCESS_FLAGS if not block.get(f)]
    if off:
        problems.append(f"public access is not blocked ({', '.join(off)} off)")
    if problems:
        raise BootstrapError(f"state bucket {name!r} is not safe for Pulumi state: {'; '.join(problems)}")
    return f"state bucket {name}: versioning Enabled, default encryption {algorithm}, all public access blocked"


# --- the secrets key ----------------------------------------------------------------------------


def ensure_secrets_key(kms: BaseClient, alias: str, stack: str) -> tuple[str, list[str]]:
    """Create the stack's secrets key behind `alias`, or verify it; return its ARN and what was changed."""
    validate_kms_alias(alias)
    changes: list[str] = []
    metadata = _key_metadata(kms, alias)
    if metadata is None:
        metadata = kms.create_key(
            Description=f"Pulumi secrets provider of the dataplatform stack {stack}",
            KeyUsage="ENCRYPT_DECRYPT",
            KeySpec="SYMMETRIC_DEFAULT",
            Tags=[{"TagKey": "dataplatform:stack", "TagValue": stack}],
        )["KeyMetadata"]
        kms.create_alias(AliasName=alias, TargetKeyId=metadata["KeyId"])
        changes.append(f"created KMS key {metadata['Arn']} with alias {alias}")
    else:
        _refuse_unusable_key(kms, alias, metadata)
    if not kms.get_key_rotation_status(KeyId=metadata["KeyId"])["KeyRotationEnabled"]:
        kms.enable_key_rotation(KeyId=metadata["KeyId"])
        changes.append(f"enabled automatic rotation of key {alias} ({metadata['KeyId']})")
    return metadata["Arn"], changes


def check_secrets_key(kms: BaseClient, alias: str) -> str:
    """Preflight: the alias names an enabled customer-managed symmetric key; a summary line."""
    validate_kms_alias(alias)
    metadata = _key_metadata(kms, alias)
    if metadata is None:
        raise BootstrapError(f"KMS alias {alias} does not exist in {kms.meta.region_name}: run `make bootstrap` first")
    _refuse_unusable_key(kms, alias, metadata)
    return f"secrets key {alias}: {metadata['Arn']} Enabled"


def _key_metadata(kms: BaseClient, alias: str) -> dict | None:
    try:
        return kms.describe_key(KeyId=alias)["KeyMetadata"]
    except ClientError as error:
        if _error_code(error) == "NotFoundException":
            return None
        raise


def _refuse_unusable_key(kms: BaseClient, alias: str, metadata: dict) -> None:
    key_id, state, region = metadata["KeyId"], metadata.get("KeyState"), kms.meta.region_name
    where = f"KMS alias {alias} points to key {key_id}"
    if state == "Disabled":
        raise BootstrapError(
            f"{where}, which is disabled; the bootstrap does not re-enable keys. If it is the right key: "
            f"`aws kms enable-key --key-id {key_id} --region {region}`; otherwise pass another --kms-alias"
        )
    if state == "PendingDeletion":
        raise BootstrapError(
            f"{where}, which is pending deletion (on {metadata.get('DeletionDate')}); to keep it: "
            f"`aws kms cancel-key-deletion --key-id {key_id} --region {region}` then "
            f"`aws kms enable-key --key-id {key_id} --region {region}`; otherwise pass another --kms-alias"
        )
    if state != "Enabled":
        raise BootstrapError(f"{where}, which is in state {state}, not Enabled")
    if metadata.get("KeyManager") != "CUSTOMER":
        raise BootstrapError(f"{where}, an AWS managed key; a stack needs a customer managed key")
    # Absent fields read as CreateKey's defaults (moto leaves KeyUsage out when it was not passed).
    spec, usage = metadata.get("KeySpec", "SYMMETRIC_DEFAULT"), metadata.get("KeyUsage", "ENCRYPT_DECRYPT")
    if spec != "SYMMETRIC_DEFAULT" or usage != "ENCRYPT_DECRYPT":
        raise BootstrapError(
            f"{where}, a {spec} key for {usage}; Pulumi's awskms "
            "secrets provider needs a SYMMETRIC_DEFAULT key for ENCRYPT_DECRYPT"
        )
    if metadata.get("Origin") != "AWS_KMS":
        raise BootstrapError(
            f"{where}, whose key material comes from {metadata.get('Origin')}; automatic rotation needs "
            "key material KMS generated (Origin AWS_KMS)"
        )


def caller_identity(sts: BaseClient) -> tuple[str, str]:
    """(account, ARN) of the credentials in use."""
    identity = sts.get_caller_identity()
    return identity["Account"], identity["Arn"]


# --- the commands -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    stack: str
    region: str
    bucket: str
    kms_alias: str
    org: str | None


def resolve_settings(args: argparse.Namespace, environ: dict[str, str]) -> Settings:
    """Flags, else environment variables, else defaults; validated before any AWS call."""
    validate_stack(args.stack)
    region = args.region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise BootstrapError("no region: pass --region or set AWS_REGION")
    bucket = args.bucket or environ.get("STATE_BUCKET")
    if not bucket:
        raise BootstrapError("no state bucket: pass --bucket or set STATE_BUCKET")
    kms_alias = args.kms_alias or environ.get("KMS_ALIAS") or DEFAULT_KMS_ALIAS.format(stack=args.stack)
    settings = Settings(args.stack, region, bucket, kms_alias, args.org or environ.get("PULUMI_ORG") or None)
    validate_region(settings.region)
    validate_bucket_name(settings.bucket)
    validate_kms_alias(settings.kms_alias)
    return settings


def _clients(region: str) -> tuple[BaseClient, BaseClient, BaseClient]:
    session = boto3.session.Session(region_name=region)
    return tuple(session.client(service, config=_CLIENT_CONFIG) for service in ("s3", "kms", "sts"))  # type: ignore[return-value]


def run_bootstrap(settings: Settings, say: Any = print) -> None:
    """Status lines through `say`; the two pulumi lines printed bare so they can be copied."""
    s3, kms, sts = _clients(settings.region)
    account, arn = caller_identity(sts)
    say(f"account {account} ({arn}), region {settings.region}")
    changes = ensure_state_bucket(s3, settings.bucket, settings.region, account)
    key_arn, key_changes = ensure_secrets_key(kms, settings.kms_alias, settings.stack)
    changes += key_changes
    for change in changes:
        say(f"changed: {change}")
    if not changes:
        say(f"no changes: bucket {settings.bucket} and key {settings.kms_alias} ({key_arn}) are already set up")
    say("next, from this repository (the lines alone, to copy):")
    for line in pulumi_commands(
        bucket=settings.bucket, region=settings.region, kms_alias=settings.kms_alias, stack=settings.stack, org=settings.org
    ):
        print(line, flush=True)


def run_preflight(settings: Settings, say: Any = print) -> None:
    s3, kms, sts = _clients(settings.region)
    account, arn = caller_identity(sts)
    say(f"caller: account {account}, {arn}")
    say(f"region {settings.region}: known")
    say(check_state_bucket(s3, settings.bucket, settings.region, account))
    say(check_secrets_key(kms, settings.kms_alias))
    say("preflight passed")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bootstrap.aws", description="Create or check the AWS state bucket and secrets key of a stack."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for command, text in (
        ("bootstrap", "create or verify the state bucket and the secrets key, and print the pulumi lines"),
        ("preflight", "check identity, region, state bucket and key before `pulumi up`"),
    ):
        sub = commands.add_parser(command, help=text, description=text)
        sub.add_argument("--stack", required=True, help="Pulumi stack name, e.g. prod")
        sub.add_argument("--region", help="AWS region (default: $AWS_REGION, then $AWS_DEFAULT_REGION)")
        sub.add_argument("--bucket", help="state bucket name (default: $STATE_BUCKET)")
        sub.add_argument("--kms-alias", help="secrets key alias (default: $KMS_ALIAS, then alias/dataplatform-<stack>)")
        sub.add_argument("--org", help="organization prefix for `pulumi stack init` (default: $PULUMI_ORG)")
    return parser


def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> int:
    """Run a command; every failure is one line on stderr and exit code 1, never a traceback."""
    args = build_parser().parse_args(argv)
    label = f"{args.command} {args.stack}"

    def say(line: str) -> None:
        print(f"{label}: {line}", flush=True)

    settings: Settings | None = None
    try:
        settings = resolve_settings(args, dict(os.environ if environ is None else environ))
        (run_bootstrap if args.command == "bootstrap" else run_preflight)(settings, say)
    except BootstrapError as error:
        message = str(error)
    except ClientError as error:
        where = f"bucket {settings.bucket}, key {settings.kms_alias}" if settings else "settings"
        message = (
            f"AWS refused {error.operation_name} ({where}): {_error_code(error)}: "
            f"{error.response.get('Error', {}).get('Message', '')}".rstrip(": ")
        )
    except BotoCoreError as error:  # no credentials, no endpoint, waiter gave up, ...
        message = str(error)
    else:
        return 0
    print(f"{label}: error: {' '.join(message.split())}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
