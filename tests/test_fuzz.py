"""Config fuzzing: any config a user can type either renders to manifests that pass the Kubernetes
schema and the mandatory policies, or is refused before any resource is registered, with the key named.

Bounded in `make test` (profile `ci`); `make fuzz` runs the long profile.
"""

from __future__ import annotations

import json
import os

import pulumi
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from components.stack import ConfigError, parse_stack_config, raw_stack_config
from policy.rules import Context, check
from tools import offline
from tools.render import manifest
from tools.schemas import validate_manifest

settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", deadline=None, max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
FULL = 2000 if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else 30

names = st.from_regex(r"[a-z]([-a-z0-9]{0,14}[a-z0-9])?", fullmatch=True)
sizes = st.builds(lambda n, unit: f"{n}{unit}", st.integers(1, 64), st.sampled_from(["Mi", "Gi", "M", "G"]))
small_memory = st.sampled_from(["256Mi", "512Mi", "768Mi", "1Gi", "1536Mi", "2Gi"])
cpus = st.sampled_from(["100m", "250m", "500m", "1", "2"])
DEFAULT_NAMESPACES = {"kubeflow", "cert-manager", "kserve", "models"}


@st.composite
def valid_configs(draw) -> dict:
    # One namespace each; the components left at their defaults keep theirs.
    spark_ns, hub_ns, board_ns = draw(st.lists(names.filter(lambda n: n not in DEFAULT_NAMESPACES and n != "default" and not n.startswith("kube-")), min_size=3, max_size=3, unique=True))
    return {
        "cluster": {
            "kind": "minikube",
            "profile": draw(names),
            "kubernetes_version": f"1.{draw(st.integers(28, 37))}.{draw(st.integers(0, 9))}",
            "cpus": draw(st.integers(8, 32)),
            "memory": f"{draw(st.integers(16, 64))}Gi",
            "driver": draw(st.sampled_from(["docker", "podman", "kvm2", "qemu2"])),
            "addons": draw(st.lists(st.sampled_from(["metrics-server", "ingress", "dashboard"]), unique=True, max_size=3)),
        },
        "storage": {
            "class_name": draw(names),
            "event_logs": {"capacity": draw(sizes)},
            "shared_data": {"capacity": draw(sizes)},
        },
        "spark": {
            "namespace": spark_ns,
            "executor": {"instances": draw(st.integers(1, 3)), "cores": 1, "memory": draw(small_memory)},
            "driver": {"cores": 1, "memory": draw(small_memory)},
            "history_server": {"enabled": draw(st.booleans())},
            "example_job": draw(st.booleans()),
        },
        "jupyterhub": {
            "namespace": hub_ns,
            "singleuser": {
                "storage": {"capacity": draw(sizes)},
                "cpu_guarantee": draw(st.sampled_from(["100m", "500m"])),
                "cpu_limit": draw(st.sampled_from(["1", "2"])),
                "memory_guarantee": draw(st.sampled_from(["512Mi", "1Gi"])),
                "memory_limit": draw(st.sampled_from(["2Gi", "4Gi"])),
            },
            "cull": {"enabled": draw(st.booleans()), "timeout_seconds": draw(st.integers(300, 86400))},
        },
        "kubeflow_pipelines": {"enabled": draw(st.booleans())},
        "tensorboard": {"enabled": draw(st.booleans()), "namespace": board_ns},
        "model_serving": {"enabled": draw(st.booleans())},
    }


def settings_of(raw: dict, stack: str = "dev") -> dict[str, str]:
    base = offline.stack_settings(stack)
    base.update({f"dataplatform:{area}": json.dumps(body) for area, body in raw.items()})
    return base


@given(raw=valid_configs())
@settings(max_examples=FULL)
def test_valid_configs_render_to_valid_compliant_manifests(raw):
    try:
        config = parse_stack_config(raw)
    except ConfigError as error:
        # Only the cross-area rules may refuse a config these strategies make: the Minikube budget,
        # Kubeflow Pipelines' supported Kubernetes versions.
        cross_area = ("more than the Minikube profile has", "Kubeflow Pipelines 2.17.2 supports")
        assert all(any(reason in p for reason in cross_area) for p in error.problems), error.problems
        assume(False)
    recording = offline.run_stack("dev", settings_of(raw))
    objects = recording.kubernetes_objects()
    assert objects
    for registration in objects:
        obj = manifest(registration.plain_inputs)
        assert validate_manifest(obj, config.cluster.kubernetes_version) == [], obj["metadata"]
        mandatory = [v for v in check(obj, Context(protect=registration.protect)) if v.enforcement == "mandatory"]
        assert mandatory == [], [str(v) for v in mandatory]


@st.composite
def valid_eks_configs(draw) -> dict:
    """The prod stack's config with its cloud choices drawn: region, nodes, exposure, storage."""
    raw = raw_stack_config(offline.stack_settings("prod"))
    region = draw(st.sampled_from(["eu-west-1", "us-east-1", "ap-southeast-2", "eu-central-1"]))
    low = draw(st.integers(1, 3))
    service_type = draw(st.sampled_from(["LoadBalancer", "NodePort", "ClusterIP"]))
    efs = draw(st.booleans())
    cluster = {
        **raw["cluster"],
        "region": region,
        "kubernetes_version": f"1.{draw(st.integers(29, 34))}.0",
        "vpc": {"kind": "new", "cidr": draw(st.sampled_from(["10.0.0.0/16", "10.20.0.0/16", "172.16.0.0/16"])),
                "availability_zones": draw(st.integers(2, 3)), "nat_gateways": draw(st.sampled_from(["single", "per_zone"]))},
        "node_group": {"instance_types": draw(st.lists(st.sampled_from(["m6i.xlarge", "m6i.2xlarge", "r6i.xlarge", "c6i.2xlarge"]), min_size=1, max_size=2, unique=True)),
                       "min_size": low, "desired_size": low + draw(st.integers(0, 2)), "max_size": low + 3,
                       "disk_size": draw(st.integers(20, 500))},
        "service_type": service_type,
        "efs": efs,
        "api_public_cidrs": draw(st.sampled_from([["0.0.0.0/0"], ["203.0.113.0/24", "198.51.100.7/32"]])),
    }
    if draw(st.booleans()):
        cluster["gpu_node_group"] = {"instance_types": [draw(st.sampled_from(["g5.xlarge", "g6.2xlarge", "g6e.2xlarge"]))],
                                     "min_size": 0, "desired_size": 0, "max_size": draw(st.integers(1, 4))}
    hub = dict(raw["jupyterhub"])
    if service_type == "LoadBalancer":
        hub["https"] = {"acm_certificate_arn": f"arn:aws:acm:{region}:123456789012:certificate/0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"}
    else:
        hub.pop("https", None)
    backend = {"kind": "efs"} if efs and draw(st.booleans()) else {"kind": "nfs", "server": "nfs.example.internal", "root": "/exports/data"}
    return {
        **raw,
        "cluster": cluster,
        "jupyterhub": hub,
        "storage": {**raw["storage"], "shared_backend": backend},
        "kubeflow_pipelines": {"enabled": draw(st.booleans())},
        "tensorboard": {"enabled": draw(st.booleans())},
        "model_serving": {"enabled": draw(st.booleans())},
    }


@given(raw=valid_eks_configs())
@settings(max_examples=200 if FULL == 2000 else 15)
def test_valid_eks_configs_render_to_valid_compliant_manifests(raw):
    config = parse_stack_config(raw)
    recording = offline.run_stack("prod", settings_of(raw, "prod"))
    exposed = config.cluster.service_type == "LoadBalancer"  # what the pack's config says for such a stack
    for registration in recording.kubernetes_objects():
        obj = manifest(registration.plain_inputs)
        assert validate_manifest(obj, config.cluster.kubernetes_version) == [], obj["metadata"]
        ctx = Context(protect=registration.protect, allow_load_balancer=exposed)
        mandatory = [v for v in check(obj, ctx) if v.enforcement == "mandatory"]
        assert mandatory == [], [str(v) for v in mandatory]


BAD_VALUES = {
    "cluster.cpus": st.sampled_from([0, 1, -4, "six", 1000]),
    "cluster.memory": st.sampled_from(["10", "12 GB", "-1Gi", "", "Gi"]),
    "cluster.driver": st.text(min_size=1, max_size=8).filter(lambda s: s not in {"docker", "podman", "kvm2", "qemu2", "hyperkit", "vfkit", "virtualbox", "hyperv"}),
    "cluster.kubernetes_version": st.sampled_from(["v1.34.0", "1.27.0", "1.38.0", "latest", "1.34"]),
    "spark.namespace": st.one_of(st.from_regex(r"[A-Z_][A-Za-z_]{0,10}", fullmatch=True), st.just("a" * 64), st.just("-spark"), st.sampled_from(["default", "kube-system"])),
    "spark.executor.instances": st.sampled_from([0, -1, 101, "two"]),
    "spark.executor.memory": st.sampled_from(["1", "1GB", "1 Gi", "lots"]),
    "spark.version": st.sampled_from(["3.5.3", "4.0.1", "latest", ""]),
    "jupyterhub.singleuser.storage.capacity": st.sampled_from(["10", "ten", "10 Gi", "0Gi"]),
    "jupyterhub.singleuser.cpu_limit": st.sampled_from(["two", "-1", "1.2345"]),
    "jupyterhub.cull.timeout_seconds": st.sampled_from([0, 10, -1]),
    "storage.class_name": st.sampled_from(["Fast_SSD", "", "a" * 70]),
    "storage.shared_backend.kind": st.sampled_from(["s3", "efs", ""]),  # efs: not on minikube
    "spark.executors": st.integers(),  # unknown key
    "jupyterhub.singleuser.gpu": st.booleans(),  # unknown key
}


def with_value(raw: dict, dotted: str, value) -> dict:
    raw = json.loads(json.dumps(raw))
    *path, last = dotted.split(".")
    node = raw
    for step in path:
        node = node.setdefault(step, {})
    node[last] = value
    return raw


@st.composite
def invalid_configs(draw) -> tuple[dict, str]:
    raw = draw(valid_configs())
    key = draw(st.sampled_from(sorted(BAD_VALUES)))
    return with_value(raw, key, draw(BAD_VALUES[key])), key


@given(case=invalid_configs())
@settings(max_examples=300 if FULL < 2000 else 5000)
def test_invalid_configs_are_refused_naming_the_key(case):
    raw, key = case
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(raw)
    assert any(p.startswith(f"dataplatform:{key}") for p in caught.value.problems), (key, caught.value.problems)
    assert not any("Traceback" in p for p in caught.value.problems)


@given(case=invalid_configs())
@settings(max_examples=FULL)
def test_invalid_configs_register_nothing(case):
    """`pulumi up` with a bad config stops before the first resource: nothing half-done."""
    raw, key = case
    recording = offline.Recording()
    with pytest.raises(pulumi.RunError) as caught:
        offline.run_stack("dev", settings_of(raw), recording)
    assert f"dataplatform:{key}" in str(caught.value)
    assert recording.resources == []


def test_the_recording_does_see_what_a_failing_program_registered():
    """The check above could not pass by accident: a program that fails late leaves its resources recorded."""
    import pulumi_random as random

    def program():
        random.RandomId("early", byte_length=4)
        raise pulumi.RunError("late failure")

    recording = offline.Recording()
    with pytest.raises(pulumi.RunError):
        offline.run(program, {}, recording=recording)
    assert [r.name for r in recording.resources] == ["early"]
