"""The EKS cluster: config checks, the AWS resources, one explicit AWS provider, IRSA, ECR.

Ground truth: botocore's own data (its region list, its partitions, the EC2 API model's
`InstanceType` enum); the EKS user guide (IRSA trust policy: `sts:AssumeRoleWithWebIdentity` from
the cluster's OIDC provider, `StringEquals` on `<issuer>:sub` = `system:serviceaccount:<ns>:<sa>` and
`<issuer>:aud` = `sts.amazonaws.com`; the node role's managed policies; managed node groups get their
access entry from EKS; taint effects NO_SCHEDULE/NO_EXECUTE/PREFER_NO_SCHEDULE); the EBS CSI driver's
controller service account `kube-system/ebs-csi-controller-sa` and AmazonEBSCSIDriverPolicy; ECR's
registry host `<account>.dkr.ecr.<region>.<dns suffix>`.

Under Pulumi's mocks, pulumi-eks' `Cluster` and `ManagedNodeGroup` are remote components with no
children: these tests check what we hand them. The invokes (availability zones, ECR token) and the
outputs the real providers would return come from `EksMocks` below.
"""

from __future__ import annotations

import ipaddress
import json
import re

import pulumi
import pytest
from pulumi.runtime.proto import resource_pb2
from pydantic import BaseModel, ValidationError

from components import stack as stack_config
from components.cloud_storage import spark_s3_policy
from components.eks import (
    GPU_TAINT,
    NODE_POLICIES,
    NVIDIA_GPU_FAMILIES,
    EksCluster,
    EksClusterConfig,
    NewVpc,
    architecture,
    irsa_trust_policy,
    known_instance_types,
    partition_of,
)
from tools import offline

ACCOUNT = "123456789012"
REGION = "eu-west-1"
ISSUER = f"oidc.eks.{REGION}.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
OIDC_ARN = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER}"
CLUSTER_SG = "sg-0123456789abcdef0"
ZONES = [f"{REGION}a", f"{REGION}b", f"{REGION}c"]
ECR_PASSWORD = "ecr-password-from-the-token"

BUCKETS = {"event_logs": "acme-dp-event-logs", "artifacts": "acme-dp-artifacts", "data": "acme-dp-data"}
DEFAULT = {"kind": "eks", "region": REGION, "buckets": BUCKETS}
EXISTING_VPC = {
    "kind": "existing",
    "vpc_id": "vpc-0a1b2c3d4e5f60718",
    "private_subnet_ids": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2", "subnet-0aaaaaaaaaaaaaaa3"],
    "public_subnet_ids": ["subnet-0bbbbbbbbbbbbbbb1", "subnet-0bbbbbbbbbbbbbbb2"],
}
ADMIN = f"arn:aws:iam::{ACCOUNT}:role/platform-admins"
CUSTOM = {
    **DEFAULT,
    "account_id": ACCOUNT,
    "profile": "platform",
    "kubernetes_version": "1.33.2",
    "vpc": EXISTING_VPC,
    "node_group": {"instance_types": ["m7g.2xlarge", "m7g.4xlarge"], "min_size": 2, "desired_size": 3, "max_size": 6, "disk_size": 150},
    "gpu_node_group": {"instance_types": ["g6e.2xlarge", "g5.2xlarge"], "min_size": 0, "desired_size": 0, "max_size": 3},
    "service_type": "NodePort",
    "efs": True,
    "admin_arns": [ADMIN],
    "api_public_cidrs": ["203.0.113.0/24", "198.51.100.7/32"],
}
WIDE = {**DEFAULT, "vpc": {"kind": "new", "cidr": "10.20.0.0/16", "availability_zones": 3, "nat_gateways": "per_zone"}, "efs": True}
IMAGES = ["spark", "notebook"]

AWS_PROVIDER = "pulumi:providers:aws"
K8S_PROVIDER = "pulumi:providers:kubernetes"
EKS_CLUSTER = "eks:index:Cluster"
NODE_GROUP = "eks:index:ManagedNodeGroup"
ADDON = "aws:eks/addon:Addon"
ROLE = "aws:iam/role:Role"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
SUBNET = "aws:ec2/subnet:Subnet"


class EksMocks(offline.PlatformMocks):
    """PlatformMocks plus what the AWS and EKS providers return that the component reads."""

    calls: list[pulumi.runtime.MockCallArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        id_, state = super().new_resource(args)
        if args.typ == EKS_CLUSTER:
            state.update(
                kubeconfigJson=json.dumps({"apiVersion": "v1", "kind": "Config", "clusters": [{"name": state.get("name")}]}),
                oidcProviderArn=OIDC_ARN,
                oidcProviderUrl=f"https://{ISSUER}",
                clusterSecurityGroupId=CLUSTER_SG,
            )
        elif args.typ == ROLE:
            state.update(arn=f"arn:aws:iam::{ACCOUNT}:role/{args.name}", name=args.name)
        elif args.typ == "aws:ecr/repository:Repository":
            state.update(registryId=ACCOUNT, repositoryUrl=f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{state['name']}")
        return id_, state

    def call(self, args: pulumi.runtime.MockCallArgs):
        EksMocks.calls.append(args)
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {"id": REGION, "names": ZONES, "zoneIds": ["euw1-az1", "euw1-az2", "euw1-az3"]}
        if args.token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            return {
                "id": REGION, "userName": "AWS", "password": ECR_PASSWORD,
                "proxyEndpoint": f"https://{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com",
                "authorizationToken": "QVdTOmVjci1wYXNzd29yZA==", "expiresAt": "2030-01-01T00:00:00Z",
            }
        return {}


class MonitorWithoutResourceReferences(offline.RecordingMonitor):
    """The recording mock monitor, declining resource references.

    With references on, the mock monitor deserialises a resource passed as an input (the node
    groups' `cluster` and `node_role`) by rehydrating it on the monitor's worker-thread event loop,
    and the program's loop then waits on that task: "attached to a different loop", now and then.
    Without them the SDK sends what the engine would resolve the reference to: a component's URN, a
    custom resource's ID.
    """

    def GetDeploymentInfo(self, request):
        features = super().GetDeploymentInfo(request).supportedFeatures
        return resource_pb2.DeploymentInfo(supportedFeatures=[
            f for f in features if f != resource_pb2.RESOURCE_MONITOR_FEATURE_RESOURCE_REFERENCES
        ])

    def SupportsFeature(self, request):
        if request.id == "resourceReferences":
            return type("SupportsFeatureResponse", (object,), {"hasSupport": False})
        return super().SupportsFeature(request)


_recordings: dict[str, tuple[offline.Recording, list]] = {}


def eks_program(config: EksClusterConfig, extra=None):
    def program():
        cluster = EksCluster("cluster", config, IMAGES)
        pulumi.export("kubeconfig", cluster.kubeconfig)
        pulumi.export("kubernetes_version", cluster.kubernetes_version)
        pulumi.export("storage_provisioner", cluster.storage_provisioner)
        pulumi.export("service_type", cluster.service_type)
        pulumi.export("registry", cluster.images.registry)
        pulumi.export("pull_policy", cluster.images.pull_policy)
        pulumi.export("registry_server", cluster.registry_credentials.server)
        pulumi.export("registry_username", cluster.registry_credentials.username)
        pulumi.export("registry_password", cluster.registry_credentials.password)
        pulumi.export("efs_file_system_id", cluster.efs_file_system_id)
        pulumi.export("image_platform", cluster.image_platform)
        if extra:
            extra(cluster)

    return program


@pytest.fixture
def record(run_program, monkeypatch):
    """The recording (and the invokes) of EksCluster for one of the configs above, run once each."""

    def get(key: str) -> offline.Recording:
        if key not in _recordings:
            monkeypatch.setattr(offline, "PlatformMocks", EksMocks)
            monkeypatch.setattr(offline, "RecordingMonitor", MonitorWithoutResourceReferences)
            EksMocks.calls = []
            raw = {"default": DEFAULT, "custom": CUSTOM, "wide": WIDE}[key]
            extra = _with_spark_role if key == "default" else None
            _recordings[key] = (run_program(eks_program(EksClusterConfig(**raw), extra)), list(EksMocks.calls))
        return _recordings[key][0]

    return get


def _with_spark_role(cluster: EksCluster) -> None:
    policy = json.dumps(spark_s3_policy("arn:aws:s3:::acme-dp-event-logs", "arn:aws:s3:::acme-dp-data"))
    role = cluster.service_account_role("spark-driver", "spark", "spark-driver", policy_json=policy)
    pulumi.export("spark_role", role.arn)


def one(recording: offline.Recording, type_: str, name: str | None = None) -> offline.Registration:
    found = [r for r in recording.of_type(type_) if name is None or r.name == name]
    assert len(found) == 1, (type_, name, [r.name for r in recording.of_type(type_)])
    return found[0]


def urn_of(reference: str) -> str:
    """A provider reference is `<urn>::<id>`."""
    return reference.rsplit("::", 1)[0]




# --- config ------------------------------------------------------------------------------------------


def test_defaults():
    config = EksClusterConfig(**DEFAULT)
    assert config.vpc == NewVpc()
    assert config.vpc.availability_zones == 2
    assert config.node_group.instance_types == ("m6i.xlarge",)
    assert (config.node_group.min_size, config.node_group.desired_size, config.node_group.max_size) == (1, 2, 4)
    assert config.gpu_node_group is None
    assert config.service_type == "LoadBalancer"
    assert config.efs is False
    assert config.kubernetes_version == "1.34.0" and config.eks_version == "1.34"


def test_new_vpc_subnets_fit_and_do_not_overlap():
    """Private subnets get a quarter of the VPC each (pod IPs), public ones a sixteenth, all inside it."""
    for cidr, zones in (("10.0.0.0/16", 2), ("10.20.0.0/16", 3), ("192.168.0.0/24", 3)):
        vpc = NewVpc(cidr=cidr, availability_zones=zones)
        private, public = vpc.subnet_cidrs()
        assert len(private) == len(public) == zones
        networks = [ipaddress.IPv4Network(n) for n in private + public]
        assert all(n.subnet_of(ipaddress.IPv4Network(cidr)) for n in networks)
        assert not any(a.overlaps(b) for i, a in enumerate(networks) for b in networks[i + 1:])
        assert all(n.prefixlen <= 28 for n in networks)  # AWS's smallest subnet is a /28
    assert NewVpc().subnet_cidrs() == (["10.0.0.0/18", "10.0.64.0/18"], ["10.0.192.0/20", "10.0.208.0/20"])


@pytest.mark.parametrize("region, partition, suffix", [
    ("eu-west-1", "aws", "amazonaws.com"),
    ("cn-north-1", "aws-cn", "amazonaws.com.cn"),
    ("us-gov-west-1", "aws-us-gov", "amazonaws.com"),
])
def test_partition_comes_from_botocore(region, partition, suffix):
    assert partition_of(region) == (partition, suffix)


def test_gpu_families_are_real_instance_families():
    """Every family of the documented allow-list exists in botocore's EC2 model."""
    families = {t.split(".")[0] for t in known_instance_types()}
    assert set(NVIDIA_GPU_FAMILIES) <= families


def test_architecture_of_graviton_and_x86_types():
    assert [architecture(t) for t in ("m7g.large", "c6gn.xlarge", "t4g.small", "a1.large")] == ["arm64"] * 4
    assert [architecture(t) for t in ("m6i.xlarge", "g5.xlarge", "c7i-flex.large", "g4dn.xlarge")] == ["x86_64"] * 4


class _StackWithEks(BaseModel):
    """The stack's shape around the cluster key, so errors read as `pulumi config` keys do."""

    cluster: EksClusterConfig


def problems(raw_cluster: dict) -> list[str]:
    raw = {"cluster": raw_cluster}
    with pytest.raises(ValidationError) as info:
        _StackWithEks.model_validate(raw)
    return [stack_config._problem(error, raw) for error in info.value.errors()]


@pytest.mark.parametrize(
    "change, key, words",
    [
        ({"region": "mars-1"}, "dataplatform:cluster.region", "does not exist"),
        ({"node_group": {"instance_types": ["notatype"]}}, "dataplatform:cluster.node_group.instance_types.0", "family.size"),
        ({"node_group": {"instance_types": ["m5.huge"]}}, "dataplatform:cluster.node_group.instance_types.0", "m5 comes in m5.large"),
        ({"node_group": {"instance_types": []}}, "dataplatform:cluster.node_group.instance_types", "needs at least 1 item"),
        ({"gpu_node_group": {"instance_types": ["m5.large"]}}, "dataplatform:cluster.gpu_node_group.instance_types.0", "no NVIDIA GPU"),
        ({"gpu_node_group": {"instance_types": ["g4ad.xlarge"]}}, "dataplatform:cluster.gpu_node_group.instance_types.0", "no NVIDIA GPU"),
        ({"buckets": {**BUCKETS, "data": "My_Bucket"}}, "dataplatform:cluster.buckets.data", "would be refused by S3"),
        ({"buckets": {**BUCKETS, "artifacts": "xn--bucket"}}, "dataplatform:cluster.buckets.artifacts", "reserved"),
        ({"buckets": {**BUCKETS, "data": BUCKETS["event_logs"]}}, "dataplatform:cluster.buckets", "event_logs and data"),
        ({"buckets": {"event_logs": "acme-a", "data": "acme-b"}}, "dataplatform:cluster.buckets.artifacts", "missing"),
        ({"node_group": {"min_size": 3, "desired_size": 2}}, "dataplatform:cluster.node_group", "min_size <= desired_size"),
        ({"node_group": {"instance_types": ["m6i.large", "m7g.large"]}}, "dataplatform:cluster.node_group", "architectures"),
        ({"vpc": {"cidr": "10.0.0.0/8"}}, "dataplatform:cluster.vpc.cidr", "prefix length"),
        ({"vpc": {"cidr": "8.8.0.0/16"}}, "dataplatform:cluster.vpc.cidr", "not a private range"),
        ({"vpc": {"availability_zones": 1}}, "dataplatform:cluster.vpc.availability_zones", "greater than or equal to 2"),
        ({"vpc": {**EXISTING_VPC, "private_subnet_ids": ["subnet-0aaaaaaaaaaaaaaa1"]}}, "dataplatform:cluster.vpc.private_subnet_ids", "needs at least 2 items"),
        ({"vpc": {**EXISTING_VPC, "vpc_id": "my-vpc"}}, "dataplatform:cluster.vpc.vpc_id", "pattern"),
        ({"vpc": {**EXISTING_VPC, "public_subnet_ids": []}}, "dataplatform:cluster", "vpc.public_subnet_ids is empty"),
        ({"kubernetes_version": "1.34"}, "dataplatform:cluster.kubernetes_version", "MAJOR.MINOR.PATCH"),
        ({"account_id": "1234"}, "dataplatform:cluster.account_id", "pattern"),
        ({"admin_arns": ["platform-admins"]}, "dataplatform:cluster.admin_arns.0", "pattern"),
        ({"efs": "sometimes"}, "dataplatform:cluster.efs", "boolean"),
        ({"nodes": 3}, "dataplatform:cluster.nodes", "unknown key"),
    ],
    ids=[
        "unknown-region", "not-an-instance-type", "no-such-size", "no-instance-types", "gpu-group-without-gpu",
        "amd-gpu", "bucket-name-s3-refuses", "reserved-bucket-prefix", "same-bucket-twice", "bucket-missing",
        "sizes-out-of-order", "mixed-architectures", "vpc-too-large", "public-vpc-range", "one-zone",
        "one-private-subnet", "bad-vpc-id", "load-balancer-without-public-subnets", "eks-style-version",
        "bad-account-id", "bad-admin-arn", "efs-not-a-bool", "unknown-key",
    ],
)
def test_invalid_config_names_the_key(change, key, words):
    raw = {**DEFAULT, **change}
    if "vpc" in change and "kind" not in change["vpc"]:
        raw["vpc"] = {"kind": "new", **change["vpc"]}
    found = problems(raw)
    assert len(found) == 1, found  # one problem, one message
    assert found[0].startswith(f"{key}:") and words in found[0], found


# --- what the component registers ---------------------------------------------------------------------


def test_default_cluster(record):
    recording = record("default")
    cluster = one(recording, EKS_CLUSTER).plain_inputs
    vpc = one(recording, "aws:ec2/vpc:Vpc")
    private = sorted(r.name for r in recording.of_type(SUBNET) if "private" in r.name)
    public = sorted(r.name for r in recording.of_type(SUBNET) if "public" in r.name)
    assert cluster["version"] == "1.34"
    assert cluster["name"] == "dataplatform-test"
    assert cluster["createOidcProvider"] is True
    assert cluster["skipDefaultNodeGroup"] is True
    assert cluster["authenticationMode"] == "API"
    assert cluster["vpcId"] == f"{vpc.name}-id"
    assert sorted(cluster["privateSubnetIds"]) == [f"{n}-id" for n in private]
    assert sorted(cluster["publicSubnetIds"]) == [f"{n}-id" for n in public]
    assert "accessEntries" not in cluster  # the creator is admin; nobody else by default

    [cpu] = recording.of_type(NODE_GROUP)
    nodes = cpu.plain_inputs
    assert nodes["instanceTypes"] == ["m6i.xlarge"]
    assert nodes["amiType"] == "AL2023_x86_64_STANDARD"
    assert nodes["scalingConfig"] == {"minSize": 1, "desiredSize": 2, "maxSize": 4}
    assert "diskSize" not in nodes  # EKS refuses a disk size beside a launch template: it is the template's
    assert nodes["launchTemplate"] == {"id": "cluster-cpu-nodes-id", "version": "1"}
    assert sorted(nodes["subnetIds"]) == [f"{n}-id" for n in private]  # nodes only in private subnets
    assert "taints" not in nodes
    assert [a.plain_inputs["addonName"] for a in recording.of_type(ADDON)] == ["aws-ebs-csi-driver"]
    assert not [r for r in recording.resources if r.type.startswith("aws:efs/")]

    outputs = recording.outputs
    assert outputs["kubernetes_version"] == "1.34.0"
    assert outputs["storage_provisioner"] == "ebs.csi.aws.com"
    assert outputs["service_type"] == "LoadBalancer"
    assert outputs["pull_policy"] == "IfNotPresent"
    assert outputs["efs_file_system_id"] is None
    assert outputs["image_platform"] == "linux/amd64"


def test_custom_cluster(record):
    recording = record("custom")
    assert not recording.of_type("aws:ec2/vpc:Vpc") and not recording.of_type(SUBNET)
    cluster = one(recording, EKS_CLUSTER).plain_inputs
    assert cluster["version"] == "1.33"
    assert cluster["vpcId"] == EXISTING_VPC["vpc_id"]
    assert cluster["privateSubnetIds"] == EXISTING_VPC["private_subnet_ids"]
    assert cluster["publicSubnetIds"] == EXISTING_VPC["public_subnet_ids"]
    assert cluster["providerCredentialOpts"] == {"profileName": "platform"}
    assert cluster["accessEntries"] == {"admin-0": {
        "principalArn": ADMIN,
        "accessPolicies": {"cluster-admin": {
            "policyArn": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
            "accessScope": {"type": "cluster"},
        }},
    }}
    provider = one(recording, AWS_PROVIDER).plain_inputs
    assert provider["region"] == REGION and provider["profile"] == "platform"
    assert json.loads(provider["allowedAccountIds"]) == [ACCOUNT]

    groups = {r.name: r.plain_inputs for r in recording.of_type(NODE_GROUP)}
    cpu, gpu = groups["cluster-cpu"], groups["cluster-gpu"]
    assert cpu["amiType"] == "AL2023_ARM_64_STANDARD"  # Graviton types
    assert cpu["scalingConfig"] == {"minSize": 2, "desiredSize": 3, "maxSize": 6}
    assert gpu["instanceTypes"] == ["g6e.2xlarge", "g5.2xlarge"]
    assert gpu["amiType"] == "BOTTLEROCKET_x86_64_NVIDIA"
    assert gpu["scalingConfig"] == {"minSize": 0, "desiredSize": 0, "maxSize": 3}
    assert gpu["subnetIds"] == EXISTING_VPC["private_subnet_ids"]
    assert recording.outputs["image_platform"] == "linux/arm64"  # images must run on Graviton nodes
    assert recording.outputs["service_type"] == "NodePort"
    assert recording.outputs["kubernetes_version"] == "1.33.2"


@pytest.mark.parametrize("key, groups", [("default", {"cpu": 100}), ("custom", {"cpu": 150, "gpu": 200})])
def test_nodes_keep_pods_away_from_the_node_role_and_encrypt_their_disks(key, groups, record):
    """IMDSv2 with hop limit 1: a pod is one hop too far to get the node's credentials (EKS best
    practices); the disk the node group's `disk_size` names is encrypted gp3 of that size."""
    recording = record(key)
    templates = {r.name: r.plain_inputs for r in recording.of_type("aws:ec2/launchTemplate:LaunchTemplate")}
    devices = {"AL2023": "/dev/xvda", "BOTTLEROCKET": "/dev/xvdb"}  # root volume; Bottlerocket's data volume
    for group, size in groups.items():
        nodes = one(recording, NODE_GROUP, f"cluster-{group}").plain_inputs
        template = templates[nodes["launchTemplate"]["id"].removesuffix("-id")]
        assert template["metadataOptions"] == {"httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 1}
        disks = {d["deviceName"]: d["ebs"] for d in template["blockDeviceMappings"]}
        sized = disks.pop(devices[nodes["amiType"].split("_")[0]])
        assert sized == {"volumeSize": size, "volumeType": "gp3", "encrypted": "true", "deleteOnTermination": "true"}
        # Every other volume of the node (Bottlerocket's OS volume) is encrypted too.
        assert all(d["encrypted"] == "true" for d in disks.values())
        assert set(disks) == ({"/dev/xvda"} if nodes["amiType"].startswith("BOTTLEROCKET") else set())
    assert len(templates) == len(groups)


def test_api_endpoint_is_private_for_nodes_and_public_only_to_the_named_networks(record):
    cluster = one(record("default"), EKS_CLUSTER).plain_inputs
    assert cluster["endpointPrivateAccess"] is True and cluster["endpointPublicAccess"] is True
    assert cluster["publicAccessCidrs"] == ["0.0.0.0/0"]  # the EKS default, stated; narrowed by api_public_cidrs
    assert one(record("custom"), EKS_CLUSTER).plain_inputs["publicAccessCidrs"] == ["203.0.113.0/24", "198.51.100.7/32"]


def test_network_policies_are_enforced(record):
    """Without the VPC CNI's network policy agent EKS stores NetworkPolicies and enforces none."""
    assert one(record("default"), EKS_CLUSTER).plain_inputs["vpcCniOptions"] == {"enableNetworkPolicy": True}


def test_gpu_group_is_tainted_and_labelled(record):
    """Only pods that tolerate nvidia.com/gpu=true:NoSchedule land on (expensive) GPU nodes."""
    gpu = one(record("custom"), NODE_GROUP, "cluster-gpu").plain_inputs
    assert gpu["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}] == [GPU_TAINT]
    assert gpu["taints"][0]["effect"] in ("NO_SCHEDULE", "NO_EXECUTE", "PREFER_NO_SCHEDULE")  # EKS API values
    assert gpu["labels"]["nvidia.com/gpu.present"] == "true"


def test_new_vpc_spreads_over_zones(record):
    recording = record("wide")
    subnets = {r.name: r.plain_inputs for r in recording.of_type(SUBNET)}
    private = [subnets[f"cluster-private-{i}"] for i in range(3)]
    public = [subnets[f"cluster-public-{i}"] for i in range(3)]
    assert [s["availabilityZone"] for s in private] == ZONES == [s["availabilityZone"] for s in public]
    assert [s["cidrBlock"] for s in private] == ["10.20.0.0/18", "10.20.64.0/18", "10.20.128.0/18"]
    assert all(s["tags"]["kubernetes.io/role/internal-elb"] == "1" for s in private)
    assert all(s["tags"]["kubernetes.io/role/elb"] == "1" and s["mapPublicIpOnLaunch"] is False for s in public)
    nats = recording.of_type("aws:ec2/natGateway:NatGateway")
    assert len(nats) == 3  # per_zone
    assert sorted(n.plain_inputs["subnetId"] for n in nats) == sorted(f"cluster-public-{i}-id" for i in range(3))
    tables = {r.name: r.plain_inputs for r in recording.of_type("aws:ec2/routeTable:RouteTable")}
    assert tables["cluster-public"]["routes"] == [{"cidrBlock": "0.0.0.0/0", "gatewayId": "cluster-igw-id"}]
    for i in range(3):
        assert tables[f"cluster-private-{i}"]["routes"] == [{"cidrBlock": "0.0.0.0/0", "natGatewayId": f"cluster-nat-{i}-id"}]
    endpoint = one(recording, "aws:ec2/vpcEndpoint:VpcEndpoint").plain_inputs
    assert endpoint["serviceName"] == f"com.amazonaws.{REGION}.s3" and endpoint["vpcEndpointType"] == "Gateway"
    assert sorted(endpoint["routeTableIds"]) == [f"cluster-private-{i}-id" for i in range(3)]
    zones_call = [c for c in _recordings["wide"][1] if c.token == "aws:index/getAvailabilityZones:getAvailabilityZones"]
    assert zones_call and zones_call[0].args["filters"] == [{"name": "opt-in-status", "values": ["opt-in-not-required"]}]


def test_default_vpc_has_one_nat_gateway(record):
    recording = record("default")
    [nat] = recording.of_type("aws:ec2/natGateway:NatGateway")
    tables = {r.name: r.plain_inputs for r in recording.of_type("aws:ec2/routeTable:RouteTable")}
    assert all(tables[f"cluster-private-{i}"]["routes"][0]["natGatewayId"] == f"{nat.name}-id" for i in range(2))


# --- one explicit AWS provider, one Kubernetes provider --------------------------------------------------


@pytest.mark.parametrize("key", ["default", "custom", "wide"])
def test_every_aws_resource_and_invoke_uses_the_explicit_provider(key, record):
    """Nothing lands in whatever region or account the shell running `pulumi up` points at."""
    recording = record(key)
    [provider] = recording.of_type(AWS_PROVIDER)
    assert provider.plain_inputs["region"] == REGION
    checked = 0
    for resource in recording.resources:
        if resource.type.startswith("aws:"):
            assert urn_of(resource.provider) == provider.urn, resource.name
            checked += 1
        elif resource.type.startswith("eks:"):
            assert urn_of(resource.providers["aws"]) == provider.urn, resource.name
            checked += 1
    assert checked > 10
    calls = _recordings[key][1]
    assert calls and all(urn_of(c.provider) == provider.urn for c in calls), [c.token for c in calls]


@pytest.mark.parametrize("key", ["default", "custom"])
def test_kubernetes_provider_waits_for_nodes_and_csi(key, record):
    """Kubernetes objects are created once nodes run and volumes can be provisioned."""
    recording = record(key)
    [provider] = recording.of_type(K8S_PROVIDER)
    assert offline.rpc.is_rpc_secret(provider.inputs["kubeconfig"])
    assert recording.outputs["kubeconfig"] == offline.SECRET
    needed = {r.urn for r in recording.of_type(NODE_GROUP) + recording.of_type(ADDON) + recording.of_type(EKS_CLUSTER)}
    assert needed <= set(provider.depends_on)


# --- node role, CSI add-ons, IRSA ---------------------------------------------------------------------------


def test_node_role_has_exactly_the_documented_policies(record):
    recording = record("default")
    role = one(recording, ROLE, "cluster-node-role")
    assert json.loads(role.plain_inputs["assumeRolePolicy"])["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
    attached = sorted(a.plain_inputs["policyArn"] for a in recording.of_type(ATTACHMENT) if a.plain_inputs["role"] == role.name)
    assert attached == sorted(f"arn:aws:iam::aws:policy/{p}" for p in NODE_POLICIES)
    cluster = one(recording, EKS_CLUSTER)
    for group in recording.of_type(NODE_GROUP):
        assert group.plain_inputs["cluster"] == cluster.urn
        assert group.plain_inputs["nodeRole"] == f"{role.name}-id"
        attachments = {a.urn for a in recording.of_type(ATTACHMENT) if a.name.startswith("cluster-node-")}
        assert attachments <= set(group.depends_on)


def trust_of(role: offline.Registration) -> dict:
    return json.loads(role.plain_inputs["assumeRolePolicy"])


def expected_trust(namespace: str, service_account: str) -> dict:
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": OIDC_ARN},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                f"{ISSUER}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                f"{ISSUER}:aud": "sts.amazonaws.com",
            }},
        }],
    }


@pytest.mark.parametrize("key, addons", [
    ("default", {"aws-ebs-csi-driver": ("ebs-csi-controller-sa", "AmazonEBSCSIDriverPolicy")}),
    ("custom", {
        "aws-ebs-csi-driver": ("ebs-csi-controller-sa", "AmazonEBSCSIDriverPolicy"),
        "aws-efs-csi-driver": ("efs-csi-controller-sa", "AmazonEFSCSIDriverPolicy"),
    }),
])
def test_csi_addons_assume_roles_only_their_controller_can_use(key, addons, record):
    recording = record(key)
    found = {a.plain_inputs["addonName"]: a for a in recording.of_type(ADDON)}
    assert set(found) == set(addons)
    cluster = one(recording, EKS_CLUSTER)
    nodes = one(recording, NODE_GROUP, "cluster-cpu")
    for addon, (service_account, policy) in addons.items():
        inputs = found[addon].plain_inputs
        assert inputs["clusterName"] == "dataplatform-test"
        assert {cluster.urn, nodes.urn} <= set(found[addon].depends_on)
        role = next(r for r in recording.of_type(ROLE) if inputs["serviceAccountRoleArn"].endswith(f"/{r.name}"))
        assert trust_of(role) == expected_trust("kube-system", service_account)
        attached = [a.plain_inputs["policyArn"] for a in recording.of_type(ATTACHMENT) if a.plain_inputs["role"] == role.name]
        assert attached == [f"arn:aws:iam::aws:policy/service-role/{policy}"]


def test_service_account_role_trusts_exactly_that_service_account(record):
    recording = record("default")
    role = one(recording, ROLE, "cluster-spark-driver")
    assert trust_of(role) == expected_trust("spark", "spark-driver")
    inline = one(recording, "aws:iam/rolePolicy:RolePolicy", "cluster-spark-driver").plain_inputs
    assert inline["role"] == f"{role.name}-id"
    assert json.loads(inline["policy"]) == spark_s3_policy("arn:aws:s3:::acme-dp-event-logs", "arn:aws:s3:::acme-dp-data")
    assert recording.outputs["spark_role"] == f"arn:aws:iam::{ACCOUNT}:role/cluster-spark-driver"


def test_irsa_trust_policy_has_no_wildcards():
    policy = irsa_trust_policy(OIDC_ARN, f"https://{ISSUER}", "jupyterhub", "notebook")
    assert policy == expected_trust("jupyterhub", "notebook")
    assert irsa_trust_policy(OIDC_ARN, ISSUER, "jupyterhub", "notebook") == policy  # with or without https://
    assert "*" not in json.dumps(policy)
    assert list(policy["Statement"][0]["Condition"]) == ["StringEquals"]  # never StringLike


# --- EFS ---------------------------------------------------------------------------------------------------


def test_efs_is_encrypted_protected_and_reachable_only_over_nfs_from_the_cluster(record):
    recording = record("custom")
    file_system = one(recording, "aws:efs/fileSystem:FileSystem")
    assert file_system.plain_inputs["encrypted"] is True
    assert file_system.protect and file_system.retain_on_delete
    security_group = one(recording, "aws:ec2/securityGroup:SecurityGroup")
    assert security_group.plain_inputs["vpcId"] == EXISTING_VPC["vpc_id"]
    [rule] = recording.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert rule.plain_inputs == {
        "securityGroupId": f"{security_group.name}-id", "referencedSecurityGroupId": CLUSTER_SG,
        "ipProtocol": "tcp", "fromPort": 2049, "toPort": 2049, "description": "NFS from the cluster's nodes",
    }
    targets = recording.of_type("aws:efs/mountTarget:MountTarget")
    assert sorted(t.plain_inputs["subnetId"] for t in targets) == sorted(EXISTING_VPC["private_subnet_ids"])
    assert all(t.plain_inputs["fileSystemId"] == f"{file_system.name}-id" for t in targets)
    assert all(t.plain_inputs["securityGroups"] == [f"{security_group.name}-id"] for t in targets)
    assert recording.outputs["efs_file_system_id"] == f"{file_system.name}-id"


def test_new_vpc_gets_a_mount_target_per_private_subnet(record):
    recording = record("wide")
    targets = recording.of_type("aws:efs/mountTarget:MountTarget")
    assert sorted(t.plain_inputs["subnetId"] for t in targets) == [f"cluster-private-{i}-id" for i in range(3)]


# --- ECR ----------------------------------------------------------------------------------------------------


def test_ecr_repositories_are_immutable_scanned_and_encrypted(record):
    recording = record("default")
    repositories = {r.plain_inputs["name"]: r.plain_inputs for r in recording.of_type("aws:ecr/repository:Repository")}
    assert set(repositories) == {f"dataplatform-test/{folder}" for folder in IMAGES}
    for name, inputs in repositories.items():
        assert re.fullmatch(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*", name)  # ECR's name rule
        assert inputs["imageTagMutability"] == "IMMUTABLE"
        assert inputs["imageScanningConfiguration"] == {"scanOnPush": True}
        assert inputs["encryptionConfigurations"] == [{"encryptionType": "KMS"}]


def test_images_are_pushed_to_ecr_with_the_authorization_token(record):
    """images.py puts `<registry>/<folder>` before the tag: that must be the ECR repository's URL."""
    recording = record("default")
    registry = recording.outputs["registry"]
    assert registry == f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/dataplatform-test"
    for folder in IMAGES:
        assert f"{registry}/{folder}" == f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/dataplatform-test/{folder}"
    assert recording.outputs["registry_server"] == f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
    assert recording.outputs["registry_username"] == "AWS"
    assert recording.outputs["registry_password"] == offline.SECRET
    assert [c.token for c in _recordings["default"][1]].count("aws:ecr/getAuthorizationToken:getAuthorizationToken") == 1
    [docker] = recording.of_type("pulumi:providers:docker")
    assert ECR_PASSWORD not in json.dumps(offline.reveal(docker.inputs))


def test_no_secret_in_plain_inputs(record):
    for key in ("default", "custom"):
        for resource in record(key).resources:
            assert ECR_PASSWORD not in json.dumps(resource.plain_inputs), resource.name
