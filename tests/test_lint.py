"""`make lint`: the scanners really run, a bad Dockerfile or manifest fails them, and every accepted
finding is listed once with a reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tools import lint
from tools.offline import ROOT

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


def test_every_suppression_has_a_reason_and_a_known_tool():
    entries = yaml.safe_load(lint.SUPPRESSIONS.read_text())
    assert entries
    for entry in entries:
        assert entry["tool"] in {"hadolint", "checkov"}
        assert len(entry["reason"].split()) >= 5, entry
    assert len(lint.load_suppressions()) == len(entries), "duplicate suppressions"


def test_hadolint_fails_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get update && apt-get install -y curl\n")
    bad_in_repo = ROOT / "build" / "lint-test" / "Dockerfile"
    bad_in_repo.parent.mkdir(parents=True, exist_ok=True)
    bad_in_repo.write_text(bad.read_text())
    checks = {f.check for f in lint.hadolint([bad_in_repo])}
    assert {"DL3007", "DL3008", "DL3015"} <= checks  # latest tag, unpinned apt, no --no-install-recommends


def test_our_dockerfiles_have_no_open_hadolint_findings():
    findings = lint.hadolint(sorted((ROOT / "images").glob("*/Dockerfile")))
    open_findings, _ = lint.judge(findings, lint.load_suppressions(), {"hadolint"})
    assert open_findings == []


def test_unsuppressed_and_stale_are_both_failures():
    finding = lint.Finding("checkov", "CKV_K8S_1", "Pod.x.y", "msg")
    suppressions = {("checkov", "CKV_K8S_2", "Pod.x.y"): "reason words here for it"}
    open_findings, stale = lint.judge([finding], suppressions, {"checkov"})
    assert open_findings == [finding]
    assert stale == [("checkov", "CKV_K8S_2", "Pod.x.y")]


def test_checkov_fails_a_bad_manifest(tmp_path):
    if not CHECKOV.exists():
        if os.environ.get("CI"):
            pytest.fail("checkov is not installed: .ci/run must run `make lint` first")
        pytest.skip("checkov venv missing: run `make lint` once")
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox:latest", "securityContext": {"privileged": True}}]},
    }
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(pod))
    checks = {f.check for f in lint.checkov(CHECKOV, Path(tmp_path), "kubernetes")}
    assert {"CKV_K8S_16", "CKV_K8S_14", "CKV_K8S_21"} <= checks  # privileged, latest tag, default namespace
