"""The AWS bootstrap and preflight (`bootstrap/aws.py`) against moto: in-process and as a real moto_server.

Every test that talks to "AWS" runs twice, once under `mock_aws()` and once against a `moto.server`
process this module starts on 127.0.0.1 and stops. Credentials are dummies and the AWS config files
point at an empty file, so nothing here can reach real AWS.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import boto3
import botocore.loaders
import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from bootstrap import aws as bootstrap_aws
from bootstrap.aws import (
    ABORT_MULTIPART_DAYS,
    NONCURRENT_VERSION_DAYS,
    PUBLIC_ACCESS_FLAGS,
    BootstrapError,
    ensure_state_bucket,
    known_regions,
    main,
    validate_bucket_name,
    validate_kms_alias,
    validate_region,
)

ACCOUNT = "123456789012"  # moto's account for the dummy credentials
STRANGER = "111111111111"  # another account, for buckets that are not ours
REGION = "eu-west-1"
BUCKET = "acme-dataplatform-state"
ALIAS = "alias/dataplatform-prod"
BOOTSTRAP = ["bootstrap", "--stack", "prod", "--region", REGION, "--bucket", BUCKET]
PREFLIGHT = ["preflight", "--stack", "prod", "--region", REGION, "--bucket", BUCKET]
LOGIN_LINE = f'pulumi login "s3://{BUCKET}?region={REGION}&awssdk=v2"'
STACK_INIT_LINE = f'pulumi stack init prod --secrets-provider="awskms://{ALIAS}?region={REGION}"'


# --- isolation from the machine's AWS setup ---------------------------------------------------


def _offline_environ(base: dict[str, str], empty_file: Path) -> dict[str, str]:
    """`base` without any AWS or proxy setting, with dummy credentials and empty AWS config files."""
    drop = ("AWS_", "STATE_BUCKET", "KMS_ALIAS", "PULUMI_ORG", "MOTO_")
    environ = {
        key: value
        for key, value in base.items()
        if not key.startswith(drop) and key.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_CONFIG_FILE=str(empty_file),
        AWS_SHARED_CREDENTIALS_FILE=str(empty_file),
        AWS_EC2_METADATA_DISABLED="true",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        # A bucket of another account answers HeadBucket with 403, as S3 does when no policy lets us in.
        MOTO_S3_ALLOW_CROSSACCOUNT_ACCESS="false",
    )
    return environ


@pytest.fixture(autouse=True)
def offline_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "aws-empty-config"
    empty.write_text("")
    environ = _offline_environ(dict(os.environ), empty)
    for key in list(os.environ):
        if key not in environ:
            monkeypatch.delenv(key)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)


_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_GETADDRINFO = socket.getaddrinfo


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Belt and braces: a name lookup for anything but this machine (an AWS endpoint) fails the test."""

    def getaddrinfo(host, *args, **kwargs):
        if host not in _LOOPBACK:
            pytest.fail(f"a test tried to reach {host}")
        return _GETADDRINFO(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


_BOTO3_SESSION = boto3.session.Session
_SHARED_LOADER = botocore.loaders.create_loader()


@pytest.fixture(autouse=True)
def shared_botocore_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore parses each service model anew for every session (~0.1 s a client) and these tests build
    a few hundred clients, so every boto3 session here reads the models through one loader."""

    def session(*args, **kwargs):
        if kwargs.get("botocore_session") is None:
            core = botocore.session.Session()
            core.register_component("data_loader", _SHARED_LOADER)
            kwargs["botocore_session"] = core
        made = _BOTO3_SESSION(*args, **kwargs)
        paths = _SHARED_LOADER.search_paths  # boto3 appends its own data folder for each session
        paths[:] = list(dict.fromkeys(paths))
        return made

    monkeypatch.setattr(boto3.session, "Session", session)


# --- moto, in-process and as a server -----------------------------------------------------------

_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> bool:
    try:
        with _NO_PROXY_OPENER.open(url, timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `python -m moto.server` process on 127.0.0.1 and a free port; its URL. Always terminated."""
    folder = tmp_path_factory.mktemp("moto-server")
    empty = folder / "aws-empty-config"
    empty.write_text("")
    environ = _offline_environ(dict(os.environ), empty)
    for attempt in range(3):  # the free port can be taken between probing and binding
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log = (folder / f"server-{attempt}.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env=environ,
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and process.poll() is None:
                if _get(f"{url}/moto-api/data.json"):
                    break
                time.sleep(0.1)
            if process.poll() is None and _get(f"{url}/moto-api/data.json"):
                yield url
                return
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            log.close()
    pytest.fail(f"moto_server did not start; see {folder}")


@dataclass
class Aws:
    """Where the clients of one test go; `client(service, account=...)` acts as another account."""

    mode: str
    clients: dict = field(default_factory=dict)

    def client(self, service: str, account: str | None = None, region: str = REGION):
        if (service, account, region) not in self.clients:  # a client takes ~0.1 s to build
            self.clients[service, account, region] = self._new_client(service, account, region)
        return self.clients[service, account, region]

    @staticmethod
    def _new_client(service: str, account: str | None, region: str):
        client = boto3.session.Session(region_name=region).client(service)
        if account:
            def as_account(request, **_):
                request.headers["x-moto-account-id"] = account

            client.meta.events.register("before-sign.*.*", as_account)
        return client


@pytest.fixture(params=["in-process", "moto_server"])
def aws(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    if request.param == "in-process":
        with mock_aws():
            yield Aws("in-process")
    else:
        url = request.getfixturevalue("moto_server")
        request_reset = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
        with _NO_PROXY_OPENER.open(request_reset, timeout=10):
            pass
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        yield Aws("moto_server")


# --- helpers ------------------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> str:
    assert code == 1
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _read(call, **kwargs) -> dict | str:
    """A Get* response without its metadata, or the error code when the configuration is absent."""
    try:
        response = call(**kwargs)
    except ClientError as error:
        return error.response["Error"]["Code"]
    response.pop("ResponseMetadata", None)
    return response


def bucket_settings(s3, name: str = BUCKET) -> dict:
    return {
        "region": s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"],
        "versioning": _read(s3.get_bucket_versioning, Bucket=name),
        "encryption": _read(s3.get_bucket_encryption, Bucket=name),
        "public_access_block": _read(s3.get_public_access_block, Bucket=name),
        "ownership": _read(s3.get_bucket_ownership_controls, Bucket=name),
        "lifecycle": _read(s3.get_bucket_lifecycle_configuration, Bucket=name),
        "tags": _read(s3.get_bucket_tagging, Bucket=name),
        "policy": _read(s3.get_bucket_policy, Bucket=name),
        "objects": [o["Key"] for o in s3.list_objects_v2(Bucket=name).get("Contents", [])],
    }


def key_settings(kms, alias: str = ALIAS) -> dict:
    target = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}.get(alias)
    metadata = kms.describe_key(KeyId=target)["KeyMetadata"] if target else None
    return {
        "target": target,
        "metadata": metadata,
        "rotation": kms.get_key_rotation_status(KeyId=target)["KeyRotationEnabled"] if target else None,
        "keys": sorted(k["KeyId"] for k in kms.list_keys()["Keys"]),
    }


def create_versioned_bucket(s3, name: str = BUCKET, region: str = REGION) -> None:
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


# --- local validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("ab", "3 to 63 characters"),
        ("a" * 64, "3 to 63 characters"),
        ("Acme-State", "lowercase"),
        ("acme_state", "lowercase"),
        ("acme state", "lowercase"),
        ("-acme-state", "begin and end"),
        ("acme-state.", "begin and end"),
        ("acme..state", "two adjacent dots"),
        ("192.168.5.4", "IP address"),
        ("xn--acme-state", "'xn--'"),
        ("sthree-acme", "'sthree-'"),
        ("sthree-configurator-acme", "'sthree-'"),
        ("amzn-s3-demo-acme", "'amzn-s3-demo-'"),
        ("acme-state-s3alias", "'-s3alias'"),
        ("acme-state--ol-s3", "'--ol-s3'"),
        ("acme-state.mrap", "'.mrap'"),
        ("acme-state--x-s3", "'--x-s3'"),
        ("acme-state--table-s3", "'--table-s3'"),
    ],
)
def test_bucket_names_s3_would_refuse_are_refused_with_the_rule(name, reason):
    with pytest.raises(BootstrapError, match="would be refused by S3") as caught:
        validate_bucket_name(name)
    assert name in str(caught.value) and reason in str(caught.value)


@pytest.mark.parametrize("name", ["abc", "acme-dataplatform-state", "acme.state.2026", "1acme", "a" * 63])
def test_bucket_names_s3_accepts_pass(name):
    validate_bucket_name(name)


def test_bad_bucket_name_is_a_one_line_error_before_any_aws_call(capsys, monkeypatch):
    monkeypatch.setattr(bootstrap_aws, "_clients", lambda region: pytest.fail("AWS was called"))
    code, out, err = run(capsys, ["bootstrap", "--stack", "prod", "--region", REGION, "--bucket", "Acme_State"])
    assert_one_line_error(code, err, "bootstrap prod: error:", "'Acme_State'", "would be refused by S3")
    assert out == ""


def test_regions_are_botocores_own():
    session = boto3.session.Session()
    for partition in session.get_available_partitions():
        for region in session.get_available_regions("s3", partition_name=partition):
            validate_region(region)
    assert {"us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1"} <= known_regions()
    # partitions.json's pseudo-regions are endpoints, not places a bucket can live
    assert not {"aws-global", "aws-cn-global", "aws-us-gov-global"} & known_regions()


@pytest.mark.parametrize("region", ["eu-west-9", "mars-north-1", "EU-WEST-1", "aws-global", "eu-west"])
def test_a_region_that_does_not_exist_is_refused(region, capsys, monkeypatch):
    with pytest.raises(BootstrapError, match=f"region '{region}' does not exist"):
        validate_region(region)
    monkeypatch.setattr(bootstrap_aws, "_clients", lambda region: pytest.fail("AWS was called"))
    code, _, err = run(capsys, ["preflight", "--stack", "prod", "--region", region, "--bucket", BUCKET])
    assert_one_line_error(code, err, f"region '{region}' does not exist")


def test_a_misspelt_region_gets_a_suggestion():
    with pytest.raises(BootstrapError, match="did you mean .*eu-west-1"):
        validate_region("eu-wset-1")


@pytest.mark.parametrize("alias", ["dataplatform-prod", "alias/has.dot", "alias/", "alias/aws/s3"])
def test_kms_aliases_kms_would_refuse_or_aws_reserves_are_refused(alias):
    with pytest.raises(BootstrapError, match="KMS alias"):
        validate_kms_alias(alias)


def test_missing_region_or_bucket_is_a_one_line_error(capsys):
    code, _, err = run(capsys, ["bootstrap", "--stack", "prod", "--bucket", BUCKET])
    assert_one_line_error(code, err, "no region", "AWS_REGION")
    code, _, err = run(capsys, ["bootstrap", "--stack", "prod", "--region", REGION])
    assert_one_line_error(code, err, "no state bucket", "STATE_BUCKET")


# --- create and re-run --------------------------------------------------------------------------


def test_bootstrap_creates_the_state_bucket_and_secrets_key(aws, capsys):
    code, out, err = run(capsys, BOOTSTRAP)
    assert code == 0, err

    s3 = aws.client("s3")
    settings = bucket_settings(s3)
    assert settings["region"] == REGION
    assert settings["versioning"]["Status"] == "Enabled"
    [rule] = settings["encryption"]["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert settings["public_access_block"]["PublicAccessBlockConfiguration"] == {flag: True for flag in PUBLIC_ACCESS_FLAGS}
    assert settings["ownership"]["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    [lifecycle] = settings["lifecycle"]["Rules"]
    assert lifecycle["Status"] == "Enabled"
    assert lifecycle["NoncurrentVersionExpiration"]["NoncurrentDays"] == NONCURRENT_VERSION_DAYS
    assert lifecycle["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == ABORT_MULTIPART_DAYS

    key = key_settings(aws.client("kms"))
    assert key["metadata"]["KeyState"] == "Enabled"
    assert key["metadata"]["KeyManager"] == "CUSTOMER"
    assert key["metadata"]["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert key["metadata"]["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert key["rotation"] is True
    assert len(key["keys"]) == 1

    lines = out.splitlines()
    assert f"bootstrap prod: changed: created bucket {BUCKET} in {REGION} (ACLs disabled: BucketOwnerEnforced)" in lines
    assert any(line.startswith(f"bootstrap prod: changed: created KMS key {key['metadata']['Arn']}") for line in lines)
    assert lines[-2:] == [LOGIN_LINE, STACK_INIT_LINE]


def test_bootstrap_in_us_east_1_and_with_an_org(aws, capsys):
    """us-east-1 is the one region S3 refuses a LocationConstraint for."""
    code, out, err = run(
        capsys, ["bootstrap", "--stack", "prod", "--region", "us-east-1", "--bucket", BUCKET, "--org", "organization"]
    )
    assert code == 0, err
    assert bucket_settings(aws.client("s3", region="us-east-1"))["region"] == "us-east-1"
    assert out.splitlines()[-1] == (
        f'pulumi stack init organization/prod --secrets-provider="awskms://{ALIAS}?region=us-east-1"'
    )


def test_rerun_changes_nothing_and_says_so(aws, capsys, monkeypatch):
    """Settings come from the environment this time, as `make bootstrap` passes them."""
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("STATE_BUCKET", BUCKET)
    code, _, err = run(capsys, ["bootstrap", "--stack", "prod"])
    assert code == 0, err
    s3, kms = aws.client("s3"), aws.client("kms")
    before = bucket_settings(s3), key_settings(kms)

    code, out, err = run(capsys, ["bootstrap", "--stack", "prod"])
    assert code == 0, err
    assert (bucket_settings(s3), key_settings(kms)) == before
    assert "changed:" not in out
    assert f"bootstrap prod: no changes: bucket {BUCKET} and key {ALIAS}" in out
    assert out.splitlines()[-2:] == [LOGIN_LINE, STACK_INIT_LINE]


def test_an_existing_bucket_keeps_its_own_stricter_settings(aws, capsys):
    """The bootstrap never weakens a bucket: its lifecycle, encryption, ownership, tags and objects stay."""
    s3, kms = aws.client("s3"), aws.client("kms")
    create_versioned_bucket(s3)
    bucket_key = kms.create_key(Description="the bucket's own key")["KeyMetadata"]["Arn"]
    s3.put_bucket_encryption(
        Bucket=BUCKET,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": bucket_key},
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    s3.put_bucket_lifecycle_configuration(
        Bucket=BUCKET,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "stricter",
                    "Status": "Enabled",
                    "Filter": {"Prefix": ""},
                    "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                }
            ]
        },
    )
    s3.put_public_access_block(Bucket=BUCKET, PublicAccessBlockConfiguration={f: True for f in PUBLIC_ACCESS_FLAGS})
    s3.put_bucket_ownership_controls(Bucket=BUCKET, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerPreferred"}]})
    s3.put_bucket_tagging(Bucket=BUCKET, Tagging={"TagSet": [{"Key": "team", "Value": "data"}]})
    s3.put_object(Bucket=BUCKET, Key=".pulumi/stacks/dataplatform/prod.json", Body=b"{}")
    before = bucket_settings(s3)

    code, out, err = run(capsys, BOOTSTRAP)
    assert code == 0, err
    assert bucket_settings(s3) == before
    assert f"bucket {BUCKET}" not in "".join(line for line in out.splitlines() if "changed:" in line)


def test_an_existing_versioned_bucket_gets_what_it_lacks(aws, capsys):
    s3 = aws.client("s3")
    create_versioned_bucket(s3)
    s3.put_object(Bucket=BUCKET, Key="kept.txt", Body=b"x")

    code, out, err = run(capsys, BOOTSTRAP)
    assert code == 0, err
    settings = bucket_settings(s3)
    assert settings["public_access_block"]["PublicAccessBlockConfiguration"] == {f: True for f in PUBLIC_ACCESS_FLAGS}
    assert "ServerSideEncryptionConfiguration" in settings["encryption"]
    assert settings["lifecycle"]["Rules"][0]["NoncurrentVersionExpiration"]["NoncurrentDays"] == NONCURRENT_VERSION_DAYS
    assert settings["objects"] == ["kept.txt"]
    assert "changed: created bucket" not in out
    assert f"changed: blocked all public access to bucket {BUCKET}" in out


def test_an_existing_key_is_reused_and_gets_rotation(aws, capsys):
    kms = aws.client("kms")
    key_id = kms.create_key(Description="made by hand")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=ALIAS, TargetKeyId=key_id)
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is False

    code, out, err = run(capsys, BOOTSTRAP)
    assert code == 0, err
    key = key_settings(kms)
    assert key["target"] == key_id and key["keys"] == [key_id]
    assert key["rotation"] is True
    assert key["metadata"]["Description"] == "made by hand"
    assert f"changed: enabled automatic rotation of key {ALIAS} ({key_id})" in out


# --- refusals -----------------------------------------------------------------------------------


def test_a_bucket_of_another_account_is_refused_and_left_alone(aws, capsys):
    stranger = aws.client("s3", account=STRANGER)
    stranger.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    before = bucket_settings(stranger)

    code, out, err = run(capsys, BOOTSTRAP)
    assert_one_line_error(code, err, f"bucket '{BUCKET}'", f"does not belong to account {ACCOUNT}", "403")
    assert bucket_settings(stranger) == before
    assert key_settings(aws.client("kms"))["keys"] == [], "nothing is created after a refusal"


def test_an_expected_bucket_owner_mismatch_is_refused():
    """Real S3 answers 403 when the bucket's owner is not ExpectedBucketOwner (moto ignores the header):
    the bootstrap sends it, and a 403 is a refusal naming the bucket."""
    s3 = boto3.session.Session(region_name=REGION).client("s3")
    with Stubber(s3) as stub:
        stub.add_client_error(
            "head_bucket",
            service_error_code="403",
            service_message="Forbidden",
            http_status_code=403,
            expected_params={"Bucket": BUCKET, "ExpectedBucketOwner": ACCOUNT},
        )
        with pytest.raises(BootstrapError, match=f"bucket '{BUCKET}' exists but does not belong to account {ACCOUNT}"):
            ensure_state_bucket(s3, BUCKET, REGION, ACCOUNT)
        stub.assert_no_pending_responses()


@pytest.mark.parametrize(("versioning", "said"), [(None, "versioning off"), ("Suspended", "versioning suspended")])
def test_a_bucket_without_versioning_is_refused_and_left_alone(aws, capsys, versioning, said):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    if versioning:
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": versioning})
    before = bucket_settings(s3)

    code, _, err = run(capsys, BOOTSTRAP)
    assert_one_line_error(
        code, err, f"bucket '{BUCKET}' has {said}",
        f"aws s3api put-bucket-versioning --bucket {BUCKET} --versioning-configuration Status=Enabled",
    )
    assert bucket_settings(s3) == before


def test_a_bucket_whose_public_access_block_was_turned_off_is_refused(aws, capsys):
    s3 = aws.client("s3")
    create_versioned_bucket(s3)
    s3.put_public_access_block(
        Bucket=BUCKET, PublicAccessBlockConfiguration={**{f: True for f in PUBLIC_ACCESS_FLAGS}, "BlockPublicPolicy": False}
    )
    before = bucket_settings(s3)

    code, _, err = run(capsys, BOOTSTRAP)
    assert_one_line_error(code, err, f"bucket '{BUCKET}'", "BlockPublicPolicy=false", "put-public-access-block")
    assert bucket_settings(s3) == before


def test_a_bucket_in_another_region_is_refused(aws, capsys):
    s3 = aws.client("s3", region="us-west-2")
    create_versioned_bucket(s3, region="us-west-2")

    code, _, err = run(capsys, BOOTSTRAP)
    assert_one_line_error(code, err, f"bucket '{BUCKET}' is in region us-west-2, not {REGION}", "--region us-west-2")


@pytest.mark.parametrize(
    ("break_key", "said"),
    [
        (lambda kms, key_id: kms.disable_key(KeyId=key_id), "which is disabled"),
        (lambda kms, key_id: kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7), "pending deletion"),
    ],
    ids=["disabled", "pending-deletion"],
)
def test_an_alias_on_an_unusable_key_is_refused_and_the_key_left_alone(aws, capsys, break_key, said):
    kms = aws.client("kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=ALIAS, TargetKeyId=key_id)
    break_key(kms, key_id)
    before = key_settings(kms)

    code, _, err = run(capsys, BOOTSTRAP)
    assert_one_line_error(code, err, f"KMS alias {ALIAS} points to key {key_id}", said)
    assert key_settings(kms) == before


# --- preflight ----------------------------------------------------------------------------------


def test_preflight_passes_after_bootstrap(aws, capsys):
    assert run(capsys, BOOTSTRAP)[0] == 0
    code, out, err = run(capsys, PREFLIGHT)
    assert code == 0, err
    identity = aws.client("sts").get_caller_identity()
    assert identity["Account"] == ACCOUNT
    assert f"preflight prod: caller: account {ACCOUNT}, {identity['Arn']}" in out.splitlines()
    assert f"preflight prod: state bucket {BUCKET}: versioning Enabled" in out
    assert out.splitlines()[-1] == "preflight prod: preflight passed"


def _suspend_versioning(s3, kms):
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"})


def _remove_encryption(s3, kms):
    s3.delete_bucket_encryption(Bucket=BUCKET)


def _unblock_public_access(s3, kms):
    s3.delete_public_access_block(Bucket=BUCKET)


def _disable_key(s3, kms):
    kms.disable_key(KeyId=kms.describe_key(KeyId=ALIAS)["KeyMetadata"]["KeyId"])


@pytest.mark.parametrize(
    ("breakage", "fragments"),
    [
        (_suspend_versioning, [f"state bucket '{BUCKET}' is not safe", "versioning is Suspended"]),
        (_remove_encryption, [f"state bucket '{BUCKET}' is not safe", "default encryption is off"]),
        (_unblock_public_access, [f"state bucket '{BUCKET}' is not safe", "public access is not blocked"]),
        (_disable_key, [f"KMS alias {ALIAS} points to key", "disabled"]),
    ],
    ids=["versioning-suspended", "encryption-off", "public-access", "key-disabled"],
)
def test_preflight_fails_when_the_state_backend_was_weakened(aws, capsys, breakage, fragments):
    assert run(capsys, BOOTSTRAP)[0] == 0
    breakage(aws.client("s3"), aws.client("kms"))
    code, _, err = run(capsys, PREFLIGHT)
    assert_one_line_error(code, err, "preflight prod: error:", *fragments)


def test_preflight_fails_before_bootstrap(aws, capsys):
    code, _, err = run(capsys, PREFLIGHT)
    assert_one_line_error(code, err, f"state bucket '{BUCKET}' does not exist in account {ACCOUNT}", "make bootstrap")


def test_preflight_without_credentials_is_a_one_line_error(moto_server, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)  # in case a credential turned up after all
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(variable)
    code, _, err = run(capsys, PREFLIGHT)
    assert_one_line_error(code, err, "preflight prod: error:", "credentials")
