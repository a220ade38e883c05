"""Run the real program, or one component, under Pulumi's own mock runtime, and record everything.

The engine is replaced by `pulumi.runtime.set_mocks` with a monitor that keeps every registration
request: type, name, parent, provider, options (protect, retainOnDelete, dependsOn) and the inputs
exactly as the SDK serialised them, secrets still wrapped. The offline render and the tests read
that record; nothing here talks to a cluster, a registry or the Pulumi service.
"""

from __future__ import annotations

import hashlib
import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks, rpc
from pulumi.runtime.config import set_all_config
from pulumi.runtime.settings import get_root_resource
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parent.parent
SECRET = "[secret]"


@dataclass
class Registration:
    """One resource as the program registered it."""

    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    provider: str
    providers: dict[str, str]
    protect: bool
    retain_on_delete: bool
    depends_on: list[str]
    inputs: dict[str, Any]

    @property
    def plain_inputs(self) -> dict[str, Any]:
        """The inputs with every secret replaced by `[secret]`."""
        return redact(self.inputs)


@dataclass
class Recording:
    """Everything one mocked run registered, in order, and the stack's outputs."""

    resources: list[Registration] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.resources if r.type == type_]

    def only(self, type_: str, **metadata) -> Registration:
        """The one resource of `type_` whose `metadata` has these values (fails unless exactly one)."""
        found = [
            r for r in self.of_type(type_)
            if all(r.plain_inputs.get("metadata", {}).get(k) == v for k, v in metadata.items())
        ]
        assert len(found) == 1, f"expected one {type_} with {metadata}, found {[r.name for r in found]}"
        return found[0]

    def by_urn(self, urn: str) -> Registration:
        return next(r for r in self.resources if r.urn == urn)

    def kubernetes_objects(self) -> list[Registration]:
        """Kubernetes objects the stack sends to the API server itself (not charts, not providers)."""
        return [
            r for r in self.resources
            if r.type.startswith("kubernetes:") and r.custom and "apiVersion" in r.inputs
        ]

    def charts(self) -> list[Registration]:
        return self.of_type("kubernetes:helm.sh/v4:Chart")


def redact(value: Any) -> Any:
    """`value` with secrets as `[secret]` and whole numbers as ints (the wire format has only doubles)."""
    if rpc.is_rpc_secret(value):
        return SECRET
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def reveal(value: Any) -> Any:
    """The inputs with secrets unwrapped (for tests that compare secret values across runs)."""
    if rpc.is_rpc_secret(value):
        return reveal(value["value"])
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


def _fake(seed: str, length: int) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:length]


# What the AWS invokes and outputs look like under mocks; the region is whatever the config names,
# these only shape fake IDs.
MOCK_AWS_ACCOUNT = "123456789012"
MOCK_AWS_REGION = "eu-west-1"
MOCK_ECR_PASSWORD = "mock-ecr-password"


class PlatformMocks(pulumi.runtime.Mocks):
    """Outputs the way the real providers shape them, with deterministic fake values."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        state = dict(args.inputs)
        if args.typ == "command:local:Command":
            state["stdout"] = f"stdout-of-{args.name}"
        elif args.typ == "docker:index/image:Image":
            state["repoDigest"] = f"{state.get('imageName', '').split(':')[0]}@sha256:{_fake(args.name, 64)}"
        elif args.typ == "random:index/randomId:RandomId":
            state["hex"] = _fake(args.name, 2 * int(state.get("byteLength", 8)))
        elif args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = _fake(args.name, int(state.get("length", 16)))
        elif args.typ == "eks:index:Cluster":
            issuer = f"oidc.eks.{MOCK_AWS_REGION}.amazonaws.com/id/{_fake(args.name, 32).upper()}"
            state["kubeconfigJson"] = json.dumps({"apiVersion": "v1", "kind": "Config", "clusters": [{"name": state.get("name")}]})
            state["oidcProviderArn"] = f"arn:aws:iam::{MOCK_AWS_ACCOUNT}:oidc-provider/{issuer}"
            state["oidcProviderUrl"] = f"https://{issuer}"
            state["clusterSecurityGroupId"] = f"sg-{_fake(args.name, 17)}"
        elif args.typ == "aws:iam/role:Role":
            state["arn"] = f"arn:aws:iam::{MOCK_AWS_ACCOUNT}:role/{args.name}"
            state["name"] = args.name
        elif args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
            state["latestVersion"] = 1  # EC2 numbers a template's versions from 1
        elif args.typ == "aws:ecr/repository:Repository":
            state["registryId"] = MOCK_AWS_ACCOUNT
            state["repositoryUrl"] = f"{MOCK_AWS_ACCOUNT}.dkr.ecr.{MOCK_AWS_REGION}.amazonaws.com/{state.get('name')}"
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs):
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {"id": MOCK_AWS_REGION, "names": [f"{MOCK_AWS_REGION}{zone}" for zone in "abc"]}
        if args.token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            return {"id": MOCK_AWS_REGION, "userName": "AWS", "password": MOCK_ECR_PASSWORD,
                    "proxyEndpoint": f"https://{MOCK_AWS_ACCOUNT}.dkr.ecr.{MOCK_AWS_REGION}.amazonaws.com"}
        return {}


class RecordingMonitor(mocks.MockMonitor):
    """The SDK's own mock monitor, keeping each registration request."""

    def __init__(self, recording: Recording):
        super().__init__(PlatformMocks())
        self.recording = recording

    # With resource references on, the mock monitor rehydrates a resource passed as an input (the
    # EKS node groups' `cluster`, `node_role`) on its worker thread's event loop, and the program's
    # loop then awaits that task: "attached to a different loop", or a hang, now and then. Without
    # them the SDK sends what the engine would resolve a reference to: a component's URN, a custom
    # resource's ID.
    def GetDeploymentInfo(self, request):
        from pulumi.runtime.proto import resource_pb2

        features = super().GetDeploymentInfo(request).supportedFeatures
        return resource_pb2.DeploymentInfo(supportedFeatures=[
            f for f in features if f != resource_pb2.RESOURCE_MONITOR_FEATURE_RESOURCE_REFERENCES
        ])

    def SupportsFeature(self, request):
        if request.id == "resourceReferences":
            return type("SupportsFeatureResponse", (object,), {"hasSupport": False})
        return super().SupportsFeature(request)

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.recording.resources.append(Registration(
                type=request.type,
                name=request.name,
                urn=response.urn,
                parent=request.parent,
                custom=request.custom,
                provider=request.provider,
                providers=dict(request.providers),
                protect=request.protect,
                retain_on_delete=request.retainOnDelete,
                depends_on=list(request.dependencies),
                # Decoded as sent, so a secret nested in a chart's values stays a secret at its
                # own position instead of marking the whole input secret.
                inputs=json_format.MessageToDict(request.object),
            ))
        return response


class StackFileError(ValueError):
    """A stack file that is not the YAML Pulumi reads."""


def stack_settings(stack: str, stack_file: Path | None = None) -> dict[str, str]:
    """`Pulumi.yaml`'s project-level config merged with `Pulumi.<stack>.yaml`, as the engine passes it."""
    settings: dict[str, str] = {}
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    for key, spec in (project.get("config") or {}).items():
        if isinstance(spec, dict) and "value" in spec:
            settings[key] = spec["value"]
    stack_file = stack_file or ROOT / f"Pulumi.{stack}.yaml"
    if not stack_file.exists():
        raise FileNotFoundError(f"no stack file {stack_file.name}")
    try:
        document = yaml.safe_load(stack_file.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise StackFileError(f"{stack_file.name}{where}: not valid YAML: {getattr(error, 'problem', None) or error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("config") or {}, dict):
        raise StackFileError(f"{stack_file.name}: expected a mapping with a `config:` mapping of `dataplatform:<area>` keys")
    settings.update(document.get("config") or {})
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in settings.items()}


def run(program: Callable[[], Any], settings: dict[str, str], stack: str = "test", recording: Recording | None = None) -> Recording:
    """Run `program` under fresh mocks with `settings` as the stack's config; return what it registered
    (into `recording` if given, so a caller can see what a failing program registered)."""
    recording = Recording() if recording is None else recording
    pulumi.runtime.settings.SETTINGS.rpc_manager.clear()
    pulumi.runtime.settings.SETTINGS.outputs.clear()
    # A new root stack for every run, so no output of an earlier run is carried over.
    pulumi.runtime.settings.ROOT.set(None)
    set_all_config(settings, [])
    mocks.set_mocks(PlatformMocks(), project="dataplatform", stack=stack, preview=False, monitor=RecordingMonitor(recording))
    try:
        _sync_await(run_pulumi_func(program))
        root = get_root_resource()
        for name, value in (root.outputs if root else {}).items():
            recording.outputs[name] = _sync_await(_resolve(value))
    finally:
        set_all_config({}, [])
    return recording


async def _resolve(value: Any) -> Any:
    output = pulumi.Output.from_input(value)
    plain = await output.future()
    return SECRET if await output.is_secret() else plain


def run_stack(stack: str, settings: dict[str, str] | None = None, recording: Recording | None = None) -> Recording:
    """Run `__main__.py` as `pulumi up -s <stack>` would, with mocks in place of the engine."""
    main = str(ROOT / "__main__.py")
    return run(lambda: runpy.run_path(main, run_name="__main__"), stack_settings(stack) if settings is None else settings, stack, recording)
