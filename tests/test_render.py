"""The offline render of the dev stack: what `make render STACK=dev` writes, and that it is valid."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from tools.offline import ROOT, reveal
from tools.schemas import validate_manifest

NAMESPACED = {"ConfigMap", "Deployment", "PersistentVolumeClaim", "Role", "RoleBinding", "Service", "ServiceAccount", "SparkApplication"}


@pytest.mark.reference
def test_render_writes_manifests_charts_inventory_all_valid(tmp_path):
    out = tmp_path / "dev"
    result = subprocess.run(
        [sys.executable, "-m", "tools.render", "--stack", "dev", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    manifests = sorted((out / "manifests").glob("*.yaml"))
    assert len(manifests) >= 15
    kinds = set()
    for path in manifests:
        docs = list(yaml.safe_load_all(path.read_text()))
        assert len(docs) == 1, path
        obj = docs[0]
        kinds.add(obj["kind"])
        assert obj["apiVersion"] and obj["metadata"]["name"], path
        if obj["kind"] in NAMESPACED:
            assert obj["metadata"]["namespace"], path
        assert validate_manifest(obj, "1.34.0") == [], path
    assert {"Namespace", "StorageClass", "PersistentVolume", "Role", "RoleBinding", "Deployment", "SparkApplication"} <= kinds
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    charts = {p.stem: yaml.safe_load(p.read_text()) for p in (out / "charts").glob("*.yaml")}
    assert charts["jupyterhub"]["version"] == "4.4.0"
    assert charts["jupyterhub"]["repository"] == "https://hub.jupyter.org/helm-chart/"
    assert charts["spark-operator"]["version"] == "2.5.2"
    inventory = json.loads((out / "inventory.json").read_text())
    types = {r["type"] for r in inventory["resources"]}
    assert {"dataplatform:spark:SparkOnKubernetes", "dataplatform:jupyterhub:JupyterHub", "kubernetes:helm.sh/v4:Chart"} <= types
    assert all({"type", "name", "parent"} <= set(r) for r in inventory["resources"])


def test_no_secret_value_appears_in_any_rendered_file(tmp_path, run_stack):
    """The proxy token, cookie secret, user password and kubeconfig are written as [secret] only."""
    recording = run_stack("dev")
    from tools import render

    render.write(recording, tmp_path)
    secrets = set()
    for registration in recording.resources:
        if registration.type.startswith("random:"):
            continue
        for value in _secret_leaves(registration.inputs):
            secrets.add(str(value))
    hub = next(r for r in recording.charts() if r.inputs["name"] == "jupyterhub")
    values = reveal(hub.inputs["values"])
    secrets |= {values["proxy"]["secretToken"], values["hub"]["cookieSecret"], values["hub"]["config"]["SharedPasswordAuthenticator"]["user_password"]}
    assert len(secrets) >= 3
    text = "\n".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
    for secret in secrets:
        assert secret not in text
    assert text.count("[secret]") >= 3


def _secret_leaves(value):
    from pulumi.runtime import rpc

    if rpc.is_rpc_secret(value):
        yield reveal(value)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _secret_leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _secret_leaves(v)


def test_objects_others_refer_to_have_explicit_names(run_stack):
    """Pulumi's random suffix would break DNS names, RBAC subjects and claim references."""
    recording = run_stack("dev")
    for registration in recording.kubernetes_objects():
        assert registration.inputs.get("metadata", {}).get("name"), registration.name
    releases = [chart.inputs.get("name") for chart in recording.charts()]
    assert set(releases) == {"jupyterhub", "spark-operator", "cert-manager", "kserve-crd", "kserve", "kserve-runtime-configs"}
    assert len(releases) == len(set(releases))


def test_recommended_labels_on_every_object(run_stack):
    recording = run_stack("dev")
    for registration in recording.kubernetes_objects():
        labels = registration.inputs["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "dataplatform", registration.name
        assert labels.get("app.kubernetes.io/managed-by") == "pulumi", registration.name


def test_default_kubernetes_provider_is_disabled_in_the_project():
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert "kubernetes" in project["config"]["pulumi:disable-default-providers"]["value"]
    assert project["name"] == "dataplatform"
