"""An EKS cluster the stack creates: the third cluster kind, with the same interface as the others.

Everything AWS goes through one explicit `aws.Provider` for the configured region, so nothing lands
in whatever region or account the shell running `pulumi up` happens to point at. The cluster
(pulumi-eks) runs in a VPC the stack creates, or in one the config names; authentication is by EKS
access entries only (mode API), and an IAM OIDC provider lets service accounts assume IAM roles
(IRSA) — the only way workloads get AWS credentials, never static keys. Nodes are EKS managed node
groups in the private subnets: a CPU group, and optionally a GPU group tainted
`nvidia.com/gpu=true:NoSchedule` so only pods that ask for a GPU land there. The EBS CSI driver
(the default StorageClass's provisioner) and, when `efs` is on, the EFS CSI driver and an encrypted
EFS file system are EKS add-ons with IRSA roles limited to their controllers' service accounts.
Images go to ECR repositories the stack creates (immutable tags, scanned on push), pushed with the
ECR authorization token.

Offline checks: the region is one botocore knows; instance types are ones botocore's EC2 API model
lists (shape `InstanceType`: the SDK ships every instance type name, though not which region offers
which, nor what hardware each has); a GPU node group's types must be of a family in
`NVIDIA_GPU_FAMILIES`, a documented allow-list.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import json
import re
from typing import Annotated, Literal, Sequence, Union

import botocore
import botocore.session
import pulumi
import pulumi_aws as aws
import pulumi_docker as docker
import pulumi_eks as eks
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from bootstrap.aws import BootstrapError, validate_region
from components.cloud_storage import BucketNames
from components.cluster import DEFAULT_KUBERNETES_VERSION, Cluster, ImageDelivery, KubernetesVersion

STORAGE_PROVISIONER = "ebs.csi.aws.com"

# EC2 instance families with NVIDIA GPUs on x86_64 (AWS, "Accelerated computing instances" in the
# EC2 user guide), which the Bottlerocket NVIDIA AMI drives. Left out on purpose: g4ad (AMD GPUs),
# g5g and p6e-gb200 (arm64), g6f (fractional GPUs) and the older g2/g3/p2 the current drivers drop.
NVIDIA_GPU_FAMILIES = {
    "g4dn": "NVIDIA T4",
    "g5": "NVIDIA A10G",
    "g6": "NVIDIA L4",
    "g6e": "NVIDIA L40S",
    "gr6": "NVIDIA L4",
    "p3": "NVIDIA V100",
    "p3dn": "NVIDIA V100",
    "p4d": "NVIDIA A100",
    "p4de": "NVIDIA A100 80GB",
    "p5": "NVIDIA H100",
    "p5e": "NVIDIA H200",
    "p5en": "NVIDIA H200",
}
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}
GPU_LABELS = {"nvidia.com/gpu.present": "true"}

# AMIs of the managed node groups (EKS AMI types). The Bottlerocket NVIDIA variant ships the NVIDIA
# driver and the Kubernetes device plugin, so `nvidia.com/gpu` is schedulable with nothing else installed.
AMI_TYPES = {"x86_64": "AL2023_x86_64_STANDARD", "arm64": "AL2023_ARM_64_STANDARD"}
GPU_AMI_TYPE = "BOTTLEROCKET_x86_64_NVIDIA"
DOCKER_PLATFORMS = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}
# The volume a node group's `disk_size` is: the root volume on AL2023, Bottlerocket's data volume
# (images and containers live there; its small OS volume is /dev/xvda, kept at the AMI's size).
DISK_DEVICES = {"AL2023": "/dev/xvda", "BOTTLEROCKET": "/dev/xvdb"}
OS_DEVICES = {"BOTTLEROCKET": "/dev/xvda"}
# IMDSv2 only, with a hop limit of 1: the node's own agents reach the metadata service, a pod (one
# network hop further) cannot, so no workload can borrow the node's IAM role (EKS best practices,
# "Restrict access to the instance profile assigned to the worker node"). Workloads get AWS
# credentials through IRSA only. The add-ons cope: aws-node and the EFS CSI pods use the host network,
# and the EBS CSI node pods fall back to the Kubernetes API for their metadata (aws-ebs-csi-driver
# docs/install.md, "Metadata"; it then counts attachments conservatively).
NODE_METADATA_OPTIONS = {"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 1}

# Node role policies the EKS user guide ("Amazon EKS node IAM role") lists: join the cluster, run the
# VPC CNI, pull images from ECR (the pull-only policy, not the broader read-only one).
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryPullOnly")
EBS_CSI_POLICY = "service-role/AmazonEBSCSIDriverPolicy"
EFS_CSI_POLICY = "service-role/AmazonEFSCSIDriverPolicy"
CLUSTER_ADMIN_POLICY = "AmazonEKSClusterAdminPolicy"
CSI_ADDONS = {
    # add-on name -> (service account of its controller in kube-system, AWS managed policy)
    "aws-ebs-csi-driver": ("ebs-csi-controller-sa", EBS_CSI_POLICY),
    "aws-efs-csi-driver": ("efs-csi-controller-sa", EFS_CSI_POLICY),
}
CONTROL_PLANE_LOGS = ("api", "audit", "authenticator")
NFS_PORT = 2049


# --- offline AWS facts (botocore's own data) ----------------------------------------------------------


@functools.cache
def _partitions() -> tuple[dict, ...]:
    loader = botocore.session.get_session().get_component("data_loader")
    return tuple(loader.load_data("partitions")["partitions"])


def partition_of(region: str) -> tuple[str, str]:
    """(partition, DNS suffix) of `region`, e.g. ("aws", "amazonaws.com"), ("aws-cn", "amazonaws.com.cn")."""
    listed = [p for p in _partitions() if region in p.get("regions", {})]
    matching = listed or [p for p in _partitions() if re.match(p["regionRegex"], region)]
    if not matching:
        raise ValueError(f"region {region!r} is in no AWS partition botocore knows")
    return matching[0]["id"], matching[0]["outputs"]["dnsSuffix"]


@functools.cache
def known_instance_types() -> frozenset[str]:
    """Every instance type botocore's EC2 API model names (its `InstanceType` enum)."""
    model = botocore.session.get_session().get_service_model("ec2")
    return frozenset(model.shape_for("InstanceType").enum)


def family_of(instance_type: str) -> str:
    return instance_type.split(".", 1)[0]


def architecture(instance_type: str) -> Literal["x86_64", "arm64"]:
    """arm64 for AWS Graviton types (a1, and families with `g` right after the generation: m7g, c6gn, t4g)."""
    return "arm64" if re.fullmatch(r"a1|[a-z]+\d+g[a-z]*", family_of(instance_type)) else "x86_64"


# --- config types -------------------------------------------------------------------------------------


def _check_region(value: str) -> str:
    try:
        validate_region(value)
    except BootstrapError as error:
        raise ValueError(str(error)) from None
    return value


def _check_instance_type(value: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9-]*\.[a-z0-9-]+", value):
        raise ValueError(f"{value!r} is not an EC2 instance type: write family.size, e.g. m6i.xlarge")
    known = known_instance_types()
    if value not in known:
        sizes = sorted((t for t in known if family_of(t) == family_of(value)), key=lambda t: (len(t), t))
        if sizes:
            hint = f"; {family_of(value)} comes in {', '.join(sizes)}"
        else:
            close = difflib.get_close_matches(value, sorted(known), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"{value!r} is not an EC2 instance type (botocore {botocore.__version__}'s EC2 model){hint}")
    return value


def _check_gpu_instance_type(value: str) -> str:
    if family_of(value) not in NVIDIA_GPU_FAMILIES:
        families = ", ".join(f"{f} ({gpu})" for f, gpu in NVIDIA_GPU_FAMILIES.items())
        raise ValueError(f"{value!r} has no NVIDIA GPU: a GPU node group takes instance types of the families {families}")
    return value


def _ipv4_network(value: str, example: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(value)
    except ValueError as error:
        raise ValueError(f"{value!r} is not an IPv4 network in CIDR notation ({error}), e.g. {example}") from None


def _check_network(value: str) -> str:
    _ipv4_network(value, "203.0.113.0/24")
    return value


def _check_cidr(value: str) -> str:
    network = _ipv4_network(value, "10.0.0.0/16")
    if not 16 <= network.prefixlen <= 24:
        raise ValueError(f"{value!r}: the VPC's prefix length must be 16 to 24 (AWS allows /16 to /28, and each subnet needs room)")
    if not network.is_private:
        raise ValueError(f"{value!r} is not a private range: use one of 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16")
    return value


def _at_least(count: int):
    """A length check that runs only once every item is valid (pydantic's min_length would add a
    second, misleading error for a list whose only item is invalid)."""

    def check(items: tuple) -> tuple:
        if len(items) < count:
            raise ValueError(f"needs at least {count} item{'s' if count > 1 else ''}, got {len(items)}")
        return items

    return check


AwsRegion = Annotated[str, AfterValidator(_check_region)]
"""A region botocore knows (the bootstrap's check)."""
InstanceType = Annotated[str, AfterValidator(_check_instance_type)]
"""An EC2 instance type botocore's EC2 model lists."""
GpuInstanceType = Annotated[str, AfterValidator(_check_instance_type), AfterValidator(_check_gpu_instance_type)]
"""An instance type of a family in NVIDIA_GPU_FAMILIES."""
SubnetId = Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]
IamPrincipalArn = Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$")]


class NewVpc(BaseModel):
    """A VPC the stack creates: private subnets for nodes, public ones for load balancers and NAT."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["new"] = Field("new", description="VPC: `new` (the stack creates it) or `existing`.")
    cidr: Annotated[str, AfterValidator(_check_cidr)] = Field(
        "10.0.0.0/16", description="The VPC's private IPv4 range, /16 to /24; pods take their IPs from it (VPC CNI)."
    )
    availability_zones: int = Field(
        2, ge=2, le=3, description="Availability zones to spread subnets over (EKS needs two or more)."
    )
    nat_gateways: Literal["single", "per_zone"] = Field(
        "single", description="One NAT gateway for the VPC (cheaper), or one per zone (survives a zone outage)."
    )

    def subnet_cidrs(self) -> tuple[list[str], list[str]]:
        """(private, public) subnet ranges, one per zone: a quarter of the VPC for each private subnet
        (pods need the addresses), a sixteenth for each public one (load balancers and NAT only)."""
        quarters = list(ipaddress.IPv4Network(self.cidr).subnets(prefixlen_diff=2))
        public = list(quarters[3].subnets(prefixlen_diff=2))
        zones = self.availability_zones
        return [str(n) for n in quarters[:zones]], [str(n) for n in public[:zones]]


class ExistingVpc(BaseModel):
    """A VPC someone else runs, named with its subnets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["existing"] = Field(description="VPC: `new` (the stack creates it) or `existing`.")
    vpc_id: str = Field(pattern=r"^vpc-[0-9a-f]{8,17}$", description="ID of the VPC.")
    private_subnet_ids: Annotated[tuple[SubnetId, ...], AfterValidator(_at_least(2))] = Field(
        description="Subnets for the nodes (and EFS mount targets), in two or more zones, with a route to a NAT."
    )
    public_subnet_ids: tuple[SubnetId, ...] = Field(
        (), description="Subnets for internet-facing load balancers (tagged kubernetes.io/role/elb=1)."
    )


class NodeGroupConfig(BaseModel):
    """The managed CPU node group every system and platform pod runs on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instance_types: Annotated[tuple[InstanceType, ...], AfterValidator(_at_least(1))] = Field(
        ("m6i.xlarge",), description="EC2 instance types the group launches, in order of preference."
    )
    min_size: int = Field(1, ge=1, le=100, description="Fewest nodes.")
    desired_size: int = Field(2, ge=1, le=100, description="Nodes to start with.")
    max_size: int = Field(4, ge=1, le=100, description="Most nodes.")
    disk_size: int = Field(100, ge=20, le=16384, description="Root volume size of each node, in GiB.")

    @model_validator(mode="after")
    def _consistent(self) -> NodeGroupConfig:
        _check_group(self)
        return self

    def architecture(self) -> str:
        return architecture(self.instance_types[0])


class GpuNodeGroupConfig(BaseModel):
    """A managed GPU node group, tainted so that only pods which tolerate `nvidia.com/gpu` land on it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instance_types: Annotated[tuple[GpuInstanceType, ...], AfterValidator(_at_least(1))] = Field(
        ("g5.xlarge",),
        description="EC2 GPU instance types, in order of preference: families " + ", ".join(NVIDIA_GPU_FAMILIES) + ".",
    )
    min_size: int = Field(0, ge=0, le=100, description="Fewest nodes.")
    desired_size: int = Field(1, ge=0, le=100, description="Nodes to start with.")
    max_size: int = Field(2, ge=1, le=100, description="Most nodes.")
    disk_size: int = Field(200, ge=20, le=16384, description="Data volume size of each node, in GiB (images with CUDA are large).")

    @model_validator(mode="after")
    def _consistent(self) -> GpuNodeGroupConfig:
        _check_group(self)
        return self


def _check_group(group: NodeGroupConfig | GpuNodeGroupConfig) -> None:
    if not group.min_size <= group.desired_size <= group.max_size:
        raise ValueError(
            f"min_size {group.min_size}, desired_size {group.desired_size} and max_size {group.max_size} "
            "must satisfy min_size <= desired_size <= max_size"
        )
    arches = {t: architecture(t) for t in group.instance_types}
    if len(set(arches.values())) > 1:
        raise ValueError(
            f"instance_types mixes architectures ({', '.join(f'{t}: {a}' for t, a in arches.items())}); "
            "a node group runs one AMI, so use one architecture"
        )


class EksClusterConfig(BaseModel):
    """An EKS cluster the stack creates in its own (or a named) VPC, with images in ECR and data in S3."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["eks"] = Field(description="Cluster kind.")
    region: AwsRegion = Field(description="AWS region of the cluster and every AWS resource of the stack.")
    account_id: str | None = Field(
        None, pattern=r"^\d{12}$",
        description="AWS account ID (12 digits) the stack may deploy to; the provider refuses credentials of any other. None: any.",
    )
    profile: str | None = Field(
        None, min_length=1,
        description="AWS shared-config profile for the provider and the kubeconfig. None: the default credential chain.",
    )
    kubernetes_version: KubernetesVersion = Field(
        DEFAULT_KUBERNETES_VERSION,
        description="Kubernetes version; EKS is given MAJOR.MINOR and picks the patch, schemas are checked against this.",
    )
    vpc: Annotated[Union[NewVpc, ExistingVpc], Field(discriminator="kind")] = Field(
        NewVpc(), description="The VPC: `new` or `existing`."
    )
    node_group: NodeGroupConfig = Field(NodeGroupConfig(), description="The CPU node group.")
    gpu_node_group: GpuNodeGroupConfig | None = Field(None, description="An optional GPU node group.")
    service_type: Literal["LoadBalancer", "NodePort", "ClusterIP"] = Field(
        "LoadBalancer", description="Service type for user-facing endpoints (JupyterHub proxy)."
    )
    efs: bool = Field(False, description="Create a shared ReadWriteMany EFS file system and its CSI driver.")
    buckets: BucketNames = Field(description="The platform's S3 buckets (names are global: choose your own).")
    api_public_cidrs: tuple[Annotated[str, AfterValidator(_check_network)], ...] = Field(
        ("0.0.0.0/0",), min_length=1,
        description="Networks that may reach the cluster's public API endpoint (IAM still authenticates every "
        "call): narrow it to your offices' and CI's addresses. `pulumi up` itself must be inside one. Nodes and "
        "pods use the private endpoint.",
    )
    admin_arns: tuple[IamPrincipalArn, ...] = Field(
        (), description="IAM roles or users given cluster admin (access entries), besides whoever creates the cluster.",
    )

    @property
    def eks_version(self) -> str:
        """MAJOR.MINOR, which is what EKS takes."""
        return ".".join(self.kubernetes_version.split(".")[:2])

    @model_validator(mode="after")
    def _load_balancers_need_public_subnets(self) -> EksClusterConfig:
        if self.service_type == "LoadBalancer" and isinstance(self.vpc, ExistingVpc) and not self.vpc.public_subnet_ids:
            raise ValueError(
                "service_type LoadBalancer needs public subnets for internet-facing load balancers, and "
                "vpc.public_subnet_ids is empty: name them, or set service_type NodePort or ClusterIP"
            )
        return self


# --- pure pieces ---------------------------------------------------------------------------------------


def eks_cluster_name(project: str, stack: str) -> str:
    """The EKS cluster's name: letters, digits, '-' and '_', at most 100 characters."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{project}-{stack}")[:100]


def ecr_repository_name(project: str, stack: str, folder: str) -> str:
    """`<project>-<stack>/<folder>`, lowercase: ECR names allow [a-z0-9._/-] only."""
    prefix = re.sub(r"[^a-z0-9._-]", "-", f"{project}-{stack}".lower())
    return f"{prefix}/{folder}"


def irsa_trust_policy(oidc_provider_arn: str, oidc_provider_url: str, namespace: str, service_account: str) -> dict:
    """A role trust policy that only `system:serviceaccount:<namespace>:<service_account>` of this
    cluster can assume, with tokens meant for STS (EKS user guide, "IAM roles for service accounts")."""
    issuer = oidc_provider_url.removeprefix("https://")
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": oidc_provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {
                    f"{issuer}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                    f"{issuer}:aud": "sts.amazonaws.com",
                },
            },
        }],
    }


def assume_role_policy(service: str) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    })


# --- the component ------------------------------------------------------------------------------------


class EksCluster(Cluster):
    """An EKS cluster with managed node groups, IRSA, the EBS (and optionally EFS) CSI driver, and ECR.

    `image_repositories` are the folders under `images/` the stack builds; each gets an ECR repository.
    """

    aws_provider: aws.Provider
    """The explicit AWS provider every AWS resource of the stack uses."""
    partition: str
    """The region's AWS partition (`aws`, `aws-cn`, `aws-us-gov`), for ARNs."""
    cluster_name: str
    """The EKS cluster's name."""
    oidc_provider_arn: pulumi.Output[str]
    """ARN of the cluster's IAM OIDC provider (the `Federated` principal of IRSA roles)."""
    oidc_provider_url: pulumi.Output[str]
    """Issuer URL of the cluster's OIDC provider."""
    repositories: dict[str, aws.ecr.Repository]
    """The ECR repository of each image folder."""
    registry_credentials: docker.RegistryArgs
    """Server, user name and password (a secret) to push to the stack's ECR repositories."""
    efs_file_system_id: pulumi.Output[str] | None
    """The shared EFS file system's ID, or None when `efs` is off."""
    image_platform: str
    """`linux/amd64` or `linux/arm64`: what the CPU nodes run, so what images must be built for."""

    def __init__(
        self,
        name: str,
        args: EksClusterConfig,
        image_repositories: Sequence[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("dataplatform:cluster:EksCluster", name, None, opts)
        if not image_repositories:
            raise ValueError("EksCluster needs the image folders to create ECR repositories for")
        project, stack = pulumi.get_project(), pulumi.get_stack()
        self.partition, dns_suffix = partition_of(args.region)
        self.aws_provider = aws.Provider(
            f"{name}-aws",
            region=args.region,
            profile=args.profile,
            allowed_account_ids=[args.account_id] if args.account_id else None,
            default_tags={"tags": {"dataplatform:project": project, "dataplatform:stack": stack}},
            opts=pulumi.ResourceOptions(parent=self),
        )
        self._on_aws = pulumi.ResourceOptions(parent=self, provider=self.aws_provider)
        invoke = pulumi.InvokeOutputOptions(provider=self.aws_provider)

        vpc_id, private_subnets, public_subnets = self._network(name, args, dns_suffix, invoke)

        node_role = aws.iam.Role(f"{name}-node-role", assume_role_policy=assume_role_policy("ec2.amazonaws.com"), opts=self._on_aws)
        node_policies = [
            aws.iam.RolePolicyAttachment(
                f"{name}-node-{policy}", role=node_role.name, policy_arn=self._managed_policy(policy), opts=self._on_aws
            )
            for policy in NODE_POLICIES
        ]

        self.cluster_name = eks_cluster_name(project, stack)
        components = pulumi.ResourceOptions(parent=self, providers={"aws": self.aws_provider})
        cluster = eks.Cluster(
            f"{name}-eks",
            name=self.cluster_name,
            version=args.eks_version,
            vpc_id=vpc_id,
            private_subnet_ids=private_subnets,
            public_subnet_ids=public_subnets or None,
            # Nodes are managed node groups only, which use the security group EKS creates for the
            # cluster (pulumi-eks #1416); pulumi-eks' own node and cluster groups would sit unused.
            skip_default_node_group=True,
            skip_default_security_groups=True,
            create_oidc_provider=True,
            authentication_mode=eks.AuthenticationMode.API,
            access_entries={
                f"admin-{i}": {
                    "principal_arn": arn,
                    "access_policies": {"cluster-admin": {
                        "policy_arn": f"arn:{self.partition}:eks::aws:cluster-access-policy/{CLUSTER_ADMIN_POLICY}",
                        "access_scope": {"type": "cluster"},
                    }},
                }
                for i, arn in enumerate(args.admin_arns)
            } or None,
            enabled_cluster_log_types=list(CONTROL_PLANE_LOGS),
            # Nodes reach the API server inside the VPC; from outside, only the networks named.
            endpoint_private_access=True,
            endpoint_public_access=True,
            public_access_cidrs=list(args.api_public_cidrs),
            # The VPC CNI's network policy agent: without it EKS accepts NetworkPolicies and enforces none.
            vpc_cni_options={"enable_network_policy": True},
            # The kubeconfig's `aws eks get-token` must use the same credentials as the provider.
            provider_credential_opts={"profile_name": args.profile} if args.profile else None,
            opts=components,
        )
        self.oidc_provider_arn = cluster.oidc_provider_arn
        self.oidc_provider_url = cluster.oidc_provider_url

        # Managed node groups get their access entry from EKS itself (type EC2_LINUX), so the node
        # role is not listed in the cluster's access entries.
        after_node_role = pulumi.ResourceOptions.merge(components, pulumi.ResourceOptions(depends_on=node_policies))
        cpu_ami = AMI_TYPES[args.node_group.architecture()]
        nodes = eks.ManagedNodeGroup(
            f"{name}-cpu",
            cluster=cluster,
            node_role=node_role,
            subnet_ids=private_subnets,
            instance_types=list(args.node_group.instance_types),
            ami_type=cpu_ami,
            capacity_type="ON_DEMAND",
            scaling_config={
                "min_size": args.node_group.min_size,
                "desired_size": args.node_group.desired_size,
                "max_size": args.node_group.max_size,
            },
            # The disk size is the launch template's (EKS refuses both).
            launch_template=self._launch_template(f"{name}-cpu", cpu_ami, args.node_group.disk_size),
            labels={"dataplatform/node-group": "cpu"},
            opts=after_node_role,
        )
        ready: list[pulumi.Resource] = [cluster, nodes]
        if args.gpu_node_group is not None:
            gpu = args.gpu_node_group
            ready.append(eks.ManagedNodeGroup(
                f"{name}-gpu",
                cluster=cluster,
                node_role=node_role,
                subnet_ids=private_subnets,
                instance_types=list(gpu.instance_types),
                ami_type=GPU_AMI_TYPE,
                capacity_type="ON_DEMAND",
                scaling_config={"min_size": gpu.min_size, "desired_size": gpu.desired_size, "max_size": gpu.max_size},
                launch_template=self._launch_template(f"{name}-gpu", GPU_AMI_TYPE, gpu.disk_size),
                labels={"dataplatform/node-group": "gpu", **GPU_LABELS},
                taints=[GPU_TAINT],
                opts=after_node_role,
            ))

        # Add-ons run controllers as pods: they need nodes, or EKS reports them degraded and waits.
        ready.append(self._csi_addon(name, "aws-ebs-csi-driver", cluster, nodes))
        self.efs_file_system_id = None
        if args.efs:
            ready.append(self._csi_addon(name, "aws-efs-csi-driver", cluster, nodes))
            self.efs_file_system_id = self._efs(name, vpc_id, private_subnets, cluster)

        self.repositories, registry = self._registry(name, project, stack, image_repositories, args.region, dns_suffix)
        token = aws.ecr.get_authorization_token_output(opts=invoke)
        self.registry_credentials = docker.RegistryArgs(
            server=registry.apply(lambda r: r.split("/", 1)[0]),
            username=token.user_name,
            password=pulumi.Output.secret(token.password),
        )

        self.image_platform = DOCKER_PLATFORMS[args.node_group.architecture()]
        self.kubernetes_version = args.kubernetes_version
        self.storage_provisioner = STORAGE_PROVISIONER
        self.service_type = args.service_type
        self.images = ImageDelivery(
            # Builds run on the local Docker daemon; the push authenticates with `registry_credentials`
            # (docker.Image reads its own `registry` input, or ~/.docker/config.json, not the provider's).
            docker_provider=docker.Provider(f"{name}-docker", opts=pulumi.ResourceOptions(parent=self)),
            registry=registry,  # an Output: the account ID is known only once the repositories exist
            # Tags are immutable and content-derived: a tag the node has is the image the config names.
            pull_policy="IfNotPresent",
            credentials=self.registry_credentials,
            platform=self.image_platform,
        )
        self._connect(name, cluster.kubeconfig_json, ready)

    # --- IRSA ------------------------------------------------------------------------------------------

    def service_account_role(
        self,
        name: str,
        namespace: pulumi.Input[str],
        service_account: pulumi.Input[str],
        policy_json: pulumi.Input[str] | None = None,
        managed_policies: Sequence[str] = (),
    ) -> aws.iam.Role:
        """An IAM role only `<namespace>/<service_account>` of this cluster can assume, allowed
        `policy_json` (inline) and the AWS managed `managed_policies` (names after `policy/`).

        Annotate the service account with `eks.amazonaws.com/role-arn: <role.arn>`.
        """
        trust = pulumi.Output.all(self.oidc_provider_arn, self.oidc_provider_url, namespace, service_account).apply(
            lambda v: json.dumps(irsa_trust_policy(*v))
        )
        role = aws.iam.Role(f"{self._name}-{name}", assume_role_policy=trust, opts=self._on_aws)
        on_role = pulumi.ResourceOptions(parent=role, provider=self.aws_provider)
        if policy_json is not None:
            aws.iam.RolePolicy(f"{self._name}-{name}", role=role.id, policy=policy_json, opts=on_role)
        for policy in managed_policies:
            aws.iam.RolePolicyAttachment(
                f"{self._name}-{name}-{policy.rsplit('/', 1)[-1]}", role=role.name,
                policy_arn=self._managed_policy(policy), opts=on_role,
            )
        return role

    # --- pieces ------------------------------------------------------------------------------------------

    def _launch_template(self, name: str, ami_type: str, disk_size: int) -> dict:
        """A node group's launch template: IMDSv2 out of pods' reach, an encrypted gp3 disk of `disk_size` GiB."""
        family = ami_type.split("_", 1)[0]
        encrypted = {"volume_type": "gp3", "encrypted": "true", "delete_on_termination": "true"}
        disks = [{"device_name": DISK_DEVICES[family], "ebs": {"volume_size": disk_size, **encrypted}}]
        if family in OS_DEVICES:
            disks.insert(0, {"device_name": OS_DEVICES[family], "ebs": encrypted})
        template = aws.ec2.LaunchTemplate(
            f"{name}-nodes",
            metadata_options=NODE_METADATA_OPTIONS,
            block_device_mappings=disks,
            update_default_version=True,
            opts=self._on_aws,
        )
        return {"id": template.id, "version": template.latest_version.apply(str)}

    def _managed_policy(self, policy: str) -> str:
        return f"arn:{self.partition}:iam::aws:policy/{policy}"

    def _network(
        self, name: str, args: EksClusterConfig, dns_suffix: str, invoke: pulumi.InvokeOutputOptions
    ) -> tuple[pulumi.Input[str], list[pulumi.Input[str]], list[pulumi.Input[str]]]:
        """(VPC ID, private subnet IDs, public subnet IDs): the configured VPC, or a new one."""
        if isinstance(args.vpc, ExistingVpc):
            return args.vpc.vpc_id, list(args.vpc.private_subnet_ids), list(args.vpc.public_subnet_ids)
        config = args.vpc
        opts = self._on_aws
        zones = aws.get_availability_zones_output(
            state="available",
            # Regional zones only: Local and Wavelength Zones need an opt-in and lack services EKS uses.
            filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
            opts=invoke,
        ).names.apply(lambda names: _enough_zones(names, config.availability_zones, args.region))
        vpc = aws.ec2.Vpc(
            f"{name}-vpc", cidr_block=config.cidr, enable_dns_hostnames=True, enable_dns_support=True,
            tags={"Name": f"{name}-vpc"}, opts=opts,
        )
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, opts=opts)
        private_cidrs, public_cidrs = config.subnet_cidrs()
        public, private = [], []
        public_routes = aws.ec2.RouteTable(
            f"{name}-public", vpc_id=vpc.id, routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": gateway.id}], opts=opts
        )
        for i, cidr in enumerate(public_cidrs):
            subnet = aws.ec2.Subnet(
                f"{name}-public-{i}", vpc_id=vpc.id, cidr_block=cidr, availability_zone=zones[i],
                map_public_ip_on_launch=False,  # only load balancers and NAT gateways live here
                tags={"Name": f"{name}-public-{i}", "kubernetes.io/role/elb": "1"}, opts=opts,
            )
            aws.ec2.RouteTableAssociation(f"{name}-public-{i}", subnet_id=subnet.id, route_table_id=public_routes.id, opts=opts)
            public.append(subnet)
        nat_count = 1 if config.nat_gateways == "single" else len(public)
        nats = [
            aws.ec2.NatGateway(
                f"{name}-nat-{i}",
                allocation_id=aws.ec2.Eip(f"{name}-nat-{i}", domain="vpc", opts=opts).allocation_id,
                subnet_id=public[i].id,
                opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[gateway])),
            )
            for i in range(nat_count)
        ]
        private_route_tables = []
        for i, cidr in enumerate(private_cidrs):
            subnet = aws.ec2.Subnet(
                f"{name}-private-{i}", vpc_id=vpc.id, cidr_block=cidr, availability_zone=zones[i],
                tags={"Name": f"{name}-private-{i}", "kubernetes.io/role/internal-elb": "1"}, opts=opts,
            )
            routes = aws.ec2.RouteTable(
                f"{name}-private-{i}", vpc_id=vpc.id,
                routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nats[i % nat_count].id}], opts=opts,
            )
            aws.ec2.RouteTableAssociation(f"{name}-private-{i}", subnet_id=subnet.id, route_table_id=routes.id, opts=opts)
            private.append(subnet)
            private_route_tables.append(routes)
        # S3 traffic (event logs, data) through a gateway endpoint: no NAT charges, never leaves AWS.
        service_prefix = ".".join(reversed(dns_suffix.split(".")))
        aws.ec2.VpcEndpoint(
            f"{name}-s3", vpc_id=vpc.id, service_name=f"{service_prefix}.{args.region}.s3", vpc_endpoint_type="Gateway",
            route_table_ids=[t.id for t in private_route_tables], opts=opts,
        )
        return vpc.id, [s.id for s in private], [s.id for s in public]

    def _csi_addon(self, name: str, addon: str, cluster: eks.Cluster, nodes: pulumi.Resource) -> aws.eks.Addon:
        service_account, policy = CSI_ADDONS[addon]
        role = self.service_account_role(f"{addon}-role", "kube-system", service_account, managed_policies=[policy])
        return aws.eks.Addon(
            f"{name}-{addon}",
            cluster_name=self.cluster_name,
            addon_name=addon,
            service_account_role_arn=role.arn,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="PRESERVE",
            opts=pulumi.ResourceOptions(parent=self, provider=self.aws_provider, depends_on=[cluster, nodes]),
        )

    def _efs(
        self, name: str, vpc_id: pulumi.Input[str], private_subnets: list[pulumi.Input[str]], cluster: eks.Cluster
    ) -> pulumi.Output[str]:
        """An encrypted EFS file system with a mount target in each private subnet, reachable over NFS
        from the cluster's security group (which the managed nodes use) and nothing else."""
        file_system = aws.efs.FileSystem(
            f"{name}-efs",
            encrypted=True,
            performance_mode="generalPurpose",
            throughput_mode="elastic",
            tags={"Name": f"{name}-efs"},
            # Shared user data: `pulumi destroy` stops here, and removing it from the program keeps it.
            opts=pulumi.ResourceOptions(parent=self, provider=self.aws_provider, protect=True, retain_on_delete=True),
        )
        security_group = aws.ec2.SecurityGroup(
            f"{name}-efs", vpc_id=vpc_id, description="NFS from the EKS cluster to its EFS mount targets", opts=self._on_aws
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-efs-nfs",
            security_group_id=security_group.id,
            referenced_security_group_id=cluster.cluster_security_group_id,
            ip_protocol="tcp", from_port=NFS_PORT, to_port=NFS_PORT,
            description="NFS from the cluster's nodes",
            opts=self._on_aws,
        )
        for i, subnet in enumerate(private_subnets):
            aws.efs.MountTarget(
                f"{name}-efs-{i}", file_system_id=file_system.id, subnet_id=subnet,
                security_groups=[security_group.id], opts=self._on_aws,
            )
        return file_system.id

    def _registry(
        self, name: str, project: str, stack: str, folders: Sequence[str], region: str, dns_suffix: str
    ) -> tuple[dict[str, aws.ecr.Repository], pulumi.Output[str]]:
        """An ECR repository per image folder, and the registry prefix images.py puts before the folder."""
        repositories = {
            folder: aws.ecr.Repository(
                f"{name}-{folder}",
                name=ecr_repository_name(project, stack, folder),
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration={"scan_on_push": True},
                encryption_configurations=[{"encryption_type": "KMS"}],  # the account's aws/ecr key
                opts=self._on_aws,
            )
            for folder in folders
        }
        prefix = ecr_repository_name(project, stack, "").rstrip("/")
        # `<account>.dkr.ecr.<region>.<dns suffix>/<prefix>`; depending on every repository's
        # registry ID makes each image push wait until all repositories exist.
        registry = pulumi.Output.all(*[r.registry_id for r in repositories.values()]).apply(
            lambda ids: f"{ids[0]}.dkr.ecr.{region}.{dns_suffix}/{prefix}"
        )
        return repositories, registry


def _enough_zones(names: list[str] | None, wanted: int, region: str) -> list[str]:
    names = sorted(names or [])
    if len(names) < wanted:
        raise ValueError(
            f"dataplatform:cluster.vpc.availability_zones is {wanted}, but region {region} has "
            f"{len(names)} available ({', '.join(names) or 'none'})"
        )
    return names[:wanted]
