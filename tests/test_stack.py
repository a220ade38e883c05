"""The stack config: defaults, the dev stack, and every kind of bad input refused with its key named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.stack import ConfigError, StackConfig, parse_stack_config, raw_stack_config
from tools.offline import ROOT, stack_settings


def dev_raw() -> dict:
    return raw_stack_config(stack_settings("dev"))


def with_value(raw: dict, dotted: str, value) -> dict:
    """`raw` with the value at `area.key.sub` replaced."""
    raw = yaml.safe_load(yaml.safe_dump(raw))
    *path, last = dotted.split(".")
    node = raw
    for step in path:
        node = node.setdefault(step, {})
    node[last] = value
    return raw


def problems(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(raw)
    return caught.value.problems


def test_defaults_are_valid_and_fit_the_default_minikube_profile():
    config = StackConfig()
    assert config.cluster.kind == "minikube"
    assert config.spark.version == config.jupyterhub.notebook.pyspark_version


def test_dev_stack_config_is_valid():
    config = parse_stack_config(dev_raw())
    assert config.cluster.kind == "minikube"
    assert config.spark.executor.instances == 2


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("jupyterhub.singleuser.storage.capacity", "10", "not a size"),
        ("storage.event_logs.capacity", "5 GB", "not a size"),
        ("spark.namespace", "Spark_Jobs", "not a valid Kubernetes name"),
        ("spark.namespace", "spark_jobs", "not a valid Kubernetes name"),
        # The stack creates, labels and deletes its namespaces: never one Kubernetes owns.
        ("tensorboard.namespace", "default", "a namespace Kubernetes owns"),
        ("spark.namespace", "kube-system", "a namespace Kubernetes owns"),
        ("model_serving.serving_namespace", "kube-public", "a namespace Kubernetes owns"),
        ("jupyterhub.namespace", "a" * 64, "at most 63 characters"),
        ("cluster.driver", "vmware-fusion", "Input should be"),
        ("cluster.kind", "gke", "does not match any of the expected tags"),
        ("spark.version", "3.5.3", "Input should be '4.2.0'"),
        ("cluster.kubernetes_version", "v1.34.0", "not a supported Kubernetes version"),
        ("spark.executor.instances", 0, "greater than or equal to 1"),
        ("jupyterhub.singleuser.cpu_limit", "two", "not a CPU quantity"),
    ],
)
def test_bad_value_names_full_key_value_and_what_is_allowed(key, value, expected):
    found = problems(with_value(dev_raw(), key, value))
    assert len(found) == 1, found
    assert found[0].startswith(f"dataplatform:{key}: "), found
    assert expected in found[0]
    assert repr(value) in found[0]


def test_unknown_key_is_named_with_the_keys_allowed_there():
    found = problems(with_value(dev_raw(), "spark.executor.replicas", 3))
    assert found == ["dataplatform:spark.executor.replicas: unknown key; allowed keys here: cores, instances, memory"]


def test_unknown_top_level_area_is_refused():
    raw = dev_raw()
    raw["sparkk"] = {"namespace": "x"}
    assert problems(raw)[0].startswith("dataplatform:sparkk: unknown key")


def test_every_problem_is_reported_at_once():
    raw = with_value(dev_raw(), "spark.namespace", "Bad_Name")
    raw = with_value(raw, "storage.shared_data.capacity", "20")
    found = problems(raw)
    assert {p.split(":")[1] for p in found} == {"spark.namespace", "storage.shared_data.capacity"}


def test_versions_that_do_not_match_name_both_keys():
    """Only one Spark release is supported today, so build the mismatch past the per-field check."""
    from components.jupyterhub import JupyterHubConfig, NotebookConfig

    config = StackConfig.model_construct(
        spark=StackConfig().spark,
        jupyterhub=JupyterHubConfig.model_construct(notebook=NotebookConfig.model_construct(pyspark_version="4.1.1")),
    )
    with pytest.raises(ValueError, match="dataplatform:spark.version 4.2.0 does not match dataplatform:jupyterhub.notebook.pyspark_version 4.1.1"):
        config._check_versions_match()


def test_resources_that_do_not_fit_the_minikube_profile_are_refused():
    raw = with_value(dev_raw(), "spark.executor.instances", 8)
    found = problems(raw)
    assert len(found) == 1
    assert "dataplatform:cluster.cpus 8" in found[0] and "dataplatform:cluster.memory 16Gi" in found[0]
    assert "more than the Minikube profile has" in found[0]


def test_same_namespace_for_spark_and_jupyterhub_is_refused():
    found = problems(with_value(dev_raw(), "jupyterhub.namespace", "spark"))
    assert "dataplatform:spark.namespace and dataplatform:jupyterhub.namespace" in found[0]


def render(tmp_path: Path, config: dict | str) -> subprocess.CompletedProcess:
    """`make render` of a stack file holding `config` (or exactly the text given)."""
    stack_file = tmp_path / "Pulumi.broken.yaml"
    stack_file.write_text(config if isinstance(config, str) else yaml.safe_dump({"config": config}))
    return subprocess.run(
        [sys.executable, "-m", "tools.render", "--stack", "broken", "--config", str(stack_file), "--out", str(tmp_path / "out")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("jupyterhub.singleuser.storage.capacity", "10", "dataplatform:jupyterhub.singleuser.storage.capacity: '10' is not a size"),
        ("spark.executor.replicas", 3, "dataplatform:spark.executor.replicas: unknown key"),
        ("spark.namespace", "Spark_Jobs", "dataplatform:spark.namespace: 'Spark_Jobs' is not a valid Kubernetes name"),
        ("cluster.driver", "nope", "dataplatform:cluster.driver: Input should be 'docker'"),
        ("spark.executor.instances", 40, "dataplatform:cluster.cpus 8"),
    ],
)
def test_render_refuses_bad_config_without_traceback_and_writes_nothing(tmp_path, key, value, named):
    """`make render` on a bad config: non-zero exit, one line naming the key, no traceback, no output."""
    raw = with_value(dev_raw(), key, value)
    result = render(tmp_path, {f"dataplatform:{area}": body for area, body in raw.items()})
    assert result.returncode == 1
    assert named in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "out").exists()


def test_render_names_the_stack_file_and_line_of_broken_yaml(tmp_path):
    result = render(tmp_path, "config:\n  dataplatform:spark:\n    namespace: [spark\n")
    assert result.returncode == 1
    assert "Pulumi.broken.yaml, line 4 column 1: not valid YAML" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_host_path_volumes_on_an_existing_cluster_are_refused():
    """Only the Minikube cluster creates the node folders a host_path backend mounts."""
    raw = with_value(dev_raw(), "cluster", {"kind": "existing", "context": "ctx", "image_registry": "ghcr.io/acme"})
    found = problems(raw)
    assert "dataplatform:storage.shared_backend.kind host_path" in found[0] and "dataplatform:cluster.kind minikube" in found[0]


def test_a_bare_number_for_a_size_says_what_is_missing():
    """`capacity: 10` in YAML (or `pulumi config set --path ... 10`) arrives as a number."""
    found = problems(with_value(dev_raw(), "jupyterhub.singleuser.storage.capacity", 10))
    assert found[0].startswith("dataplatform:jupyterhub.singleuser.storage.capacity: '10' is not a size: use a number with a unit")


def test_a_load_balancer_ui_on_minikube_is_refused_before_render():
    found = problems(with_value(dev_raw(), "kubeflow_pipelines.ui_service_type", "LoadBalancer"))
    assert "dataplatform:kubeflow_pipelines.ui_service_type LoadBalancer" in found[0] and "dataplatform:cluster" in found[0]


def test_every_failing_cross_area_rule_is_reported_at_once():
    raw = with_value(with_value(dev_raw(), "spark.executor.instances", 8), "tensorboard.namespace", "spark")
    found = problems(raw)
    assert any("give each component its own namespace" in p for p in found), found
    assert any("more than the Minikube profile has" in p for p in found), found


# --- HTTPS for a hub on the internet ------------------------------------------------------------------------

PROD_CERTIFICATE = "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


def prod_raw() -> dict:
    return raw_stack_config(stack_settings("prod"))


def test_a_hub_on_a_public_load_balancer_needs_https():
    """Passwords and tokens must not cross the internet in clear text."""
    raw = prod_raw()
    raw["jupyterhub"].pop("https")
    [found] = problems(raw)
    assert found.startswith("dataplatform:jupyterhub.https.acm_certificate_arn is required")
    assert "dataplatform:cluster.service_type LoadBalancer" in found
    # Not on a load balancer: no certificate needed.
    assert parse_stack_config(with_value(raw, "cluster.service_type", "ClusterIP")).jupyterhub.https is None


def test_the_certificate_must_be_in_the_clusters_region():
    raw = with_value(prod_raw(), "jupyterhub.https.acm_certificate_arn", PROD_CERTIFICATE.replace("eu-west-1", "us-east-1"))
    [found] = problems(raw)
    assert "region us-east-1" in found and "dataplatform:cluster.region eu-west-1" in found


def test_https_offload_is_refused_off_eks():
    [found] = problems(with_value(dev_raw(), "jupyterhub.https", {"acm_certificate_arn": PROD_CERTIFICATE}))
    assert found.startswith("dataplatform:jupyterhub.https") and "dataplatform:cluster.kind eks" in found


def test_https_needs_the_hub_on_a_load_balancer():
    """HTTPS offload on a NodePort would be a port named https that serves plain HTTP."""
    [found] = problems(with_value(prod_raw(), "cluster.service_type", "NodePort"))
    assert "dataplatform:jupyterhub.https" in found and "dataplatform:cluster.service_type is NodePort" in found


def test_the_certificate_must_be_in_the_stacks_account():
    [found] = problems(with_value(prod_raw(), "cluster.account_id", "111111111111"))
    assert "account 123456789012" in found and "dataplatform:cluster.account_id 111111111111" in found


def test_a_pattern_mismatch_says_what_the_key_is_and_the_pattern():
    [found] = problems(with_value(prod_raw(), "jupyterhub.https.acm_certificate_arn", "hub.example.com"))
    assert found.startswith("dataplatform:jupyterhub.https.acm_certificate_arn: 'hub.example.com' is not allowed here (ACM certificate")
    assert "it must match the pattern ^arn:aws" in found


def test_unknown_key_in_a_cluster_kind_lists_that_kinds_keys():
    [found] = problems(with_value(prod_raw(), "cluster.efs_enabled", True))
    assert found.startswith("dataplatform:cluster.efs_enabled: unknown key; allowed keys here: ")
    assert "efs" in found.split("allowed keys here: ")[1].split(", ")


def test_a_rule_across_an_objects_keys_does_not_dump_the_object():
    raw = with_value(prod_raw(), "cluster.vpc", {"kind": "existing", "vpc_id": "vpc-0123456789abcdef0",
                                                 "private_subnet_ids": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
                                                 "public_subnet_ids": []})
    found = [p for p in problems(raw) if "public" in p]
    assert found and all("{" not in p for p in found), found


def test_kfp_fixed_namespace_clash_names_the_area_not_a_key():
    [found] = problems(with_value(dev_raw(), "tensorboard.namespace", "kubeflow"))
    assert "dataplatform:kubeflow_pipelines (its fixed namespace)" in found and "dataplatform:tensorboard.namespace" in found


def test_a_config_key_without_its_namespace_is_refused():
    settings = stack_settings("dev")
    settings["cluster"] = settings.pop("dataplatform:cluster")
    with pytest.raises(ConfigError, match="cluster: a config key needs its namespace: write dataplatform:cluster"):
        raw_stack_config(settings)
