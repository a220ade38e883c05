"""Kubernetes value types for the config layer.

A size without a unit, a namespace with an underscore or a version nobody ships fails here, with
the config key named, instead of at the API server halfway through an update.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, BaseModel, ConfigDict, Field, model_validator

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
_DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_BYTES_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)$")
_CPU_RE = re.compile(r"^(?:[0-9]+(?:\.[0-9]{1,3})?|[0-9]+m)$")
_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def bytes_of(quantity: str) -> int:
    """The number of bytes a memory/storage quantity such as `10Gi` or `500M` stands for."""
    match = _BYTES_RE.match(quantity)
    if not match:
        raise ValueError(quantity)
    number, unit = match.groups()
    return int(Decimal(number) * (_BINARY.get(unit) or _DECIMAL[unit]))


def millicores_of(cpu: str) -> int:
    """The millicores a CPU quantity such as `500m` or `2` stands for."""
    if cpu.endswith("m"):
        return int(cpu[:-1])
    return int(Decimal(cpu) * 1000)


def _check_bytes(value: str) -> str:
    if not _BYTES_RE.match(value):
        raise ValueError(
            f"{value!r} is not a size: use a number with a unit, e.g. 10Gi, 512Mi or 500M "
            "(units Ki, Mi, Gi, Ti, Pi, k, M, G, T, P)"
        )
    if bytes_of(value) <= 0:
        raise ValueError(f"{value!r} must be larger than zero")
    return value


def _check_cpu(value: str) -> str:
    if not _CPU_RE.match(value) or millicores_of(value) <= 0:
        raise ValueError(f"{value!r} is not a CPU quantity: use cores (1, 0.5) or millicores (500m)")
    return value


def _check_dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid Kubernetes name: at most 63 characters of lowercase "
            "letters, digits and '-', starting and ending with a letter or digit (RFC 1123 label)"
        )
    return value


def _number_as_text(value: object) -> object:
    """YAML and `pulumi config set` turn `10` into a number: keep it as text, so the check below
    answers "not a size" instead of a bare type error."""
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


ByteQuantity = Annotated[str, BeforeValidator(_number_as_text), AfterValidator(_check_bytes)]
"""Memory or storage, with a unit: `10Gi`, `512Mi`, `500M`."""

CpuQuantity = Annotated[str, BeforeValidator(_number_as_text), AfterValidator(_check_cpu)]
"""CPU in cores or millicores: `2`, `0.5`, `500m`."""

DnsLabel = Annotated[str, AfterValidator(_check_dns_label)]
"""A Kubernetes object name that must be an RFC 1123 label (services, releases, service accounts)."""

def _check_namespace(value: str) -> str:
    """Refuse the namespaces Kubernetes itself owns (`default`, and `kube-system`, `kube-public`,
    `kube-node-lease` and any other `kube-` one): a component must never create, label or delete them."""
    _check_dns_label(value)
    if value == "default" or value.startswith("kube-"):
        raise ValueError(
            f"{value!r} is a namespace Kubernetes owns (default, kube-*): the stack creates and deletes "
            "its namespaces, so give the component one of its own"
        )
    return value


Namespace = Annotated[str, AfterValidator(_check_namespace)]
"""A namespace the stack creates and owns: an RFC 1123 label, never `default` or `kube-*`."""


class Resources(BaseModel):
    """CPU and memory for one container: what the scheduler reserves and the hard ceiling."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu_request: CpuQuantity = Field("100m", description="CPU the scheduler reserves.")
    cpu_limit: CpuQuantity = Field("1", description="CPU ceiling.")
    memory_request: ByteQuantity = Field("256Mi", description="Memory the scheduler reserves.")
    memory_limit: ByteQuantity = Field("512Mi", description="Memory ceiling; the container is killed above it.")

    @model_validator(mode="after")
    def _requests_within_limits(self) -> "Resources":
        if millicores_of(self.cpu_request) > millicores_of(self.cpu_limit):
            raise ValueError(f"cpu_request {self.cpu_request} is above cpu_limit {self.cpu_limit}")
        if bytes_of(self.memory_request) > bytes_of(self.memory_limit):
            raise ValueError(f"memory_request {self.memory_request} is above memory_limit {self.memory_limit}")
        return self

    def to_kubernetes(self) -> dict:
        """The container's `resources` block."""
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


def labels(name: str, component: str) -> dict[str, str]:
    """The recommended `app.kubernetes.io/*` labels for an object of the platform."""
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "dataplatform",
        "app.kubernetes.io/managed-by": "pulumi",
    }


# Non-root, no privilege escalation, no capabilities: the container securityContext every
# workload the stack defines itself runs with (Pod Security Standard "restricted").
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}

# Group 100 ("users") owns the shared volumes; every pod that mounts them runs with it.
SHARED_GROUP = 100
# Each shared volume's folder (a Minikube host folder, an EFS access point's root): owned by root,
# group SHARED_GROUP, group-writable, and setgid so what anyone creates inside stays in the group.
SHARED_FOLDER_OWNER = 0
SHARED_FOLDER_MODE = "2775"


def component_namespace(resource_name: str, name: str, component: str, parent: "pulumi.Resource", *, enforce_restricted: bool = False):
    """A component's own Namespace, explicitly named. Every namespace warns about and audits pods that
    break the "restricted" Pod Security Standard; one whose pods are all ours enforces it."""
    import pulumi
    import pulumi_kubernetes as k8s

    pod_security = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("warn", "audit")}
    if enforce_restricted:
        pod_security["pod-security.kubernetes.io/enforce"] = "restricted"
    return k8s.core.v1.Namespace(
        resource_name,
        metadata={"name": name, "labels": {**labels(name, component), **pod_security}},
        opts=pulumi.ResourceOptions(parent=parent),
    )
