"""Secrets audit: render every stack with known secret values and search everything written for them."""

from __future__ import annotations

import json

import pulumi
import pytest

from tools import offline, render

STACKS = sorted(p.name.split(".")[1] for p in offline.ROOT.glob("Pulumi.*.yaml"))
SECRET_OUTPUTS = {"kubeconfig", "jupyterhub_password", "jupyterhub_admin_password"}


def known_secrets(recording: offline.Recording) -> set[str]:
    """What the random resources returned (the mocks are deterministic) and every value sent as a secret."""
    values = set()
    mocks = offline.PlatformMocks()
    for r in recording.resources:
        if r.type.startswith("random:"):
            _, state = mocks.new_resource(pulumi.runtime.MockResourceArgs(r.type, r.name, offline.reveal(r.inputs)))
            values |= {str(state[k]) for k in ("hex", "result") if k in state}
        values |= {json.dumps(v) if not isinstance(v, str) else v for v in _secret_leaves(r.inputs)}
    return {v for v in values if len(v) >= 8}


def _secret_leaves(value):
    if offline.rpc.is_rpc_secret(value):
        yield offline.reveal(value)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _secret_leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _secret_leaves(v)


@pytest.mark.parametrize("stack", STACKS)
def test_no_secret_reaches_a_rendered_file_the_inventory_or_the_outputs(stack, tmp_path):
    recording = offline.run_stack(stack)
    secrets = known_secrets(recording)
    assert len(secrets) >= 4, "the audit must have secrets to look for"
    render.write(recording, tmp_path)
    written = {p: p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    assert any(p.name == "inventory.json" for p in written)
    for path, text in written.items():
        for secret in secrets:
            assert secret not in text, f"{path.relative_to(tmp_path)} contains a secret"
    for name, value in recording.outputs.items():
        for secret in secrets:
            assert secret not in json.dumps(value), f"output {name} contains a secret"
    assert {k for k, v in recording.outputs.items() if v == offline.SECRET} >= SECRET_OUTPUTS


def test_the_audit_finds_a_secret_that_leaks(tmp_path):
    """The audit is not vacuous: a secret placed in a plain field is found."""
    recording = offline.run_stack("dev")
    secrets = known_secrets(recording)
    leaked = next(iter(secrets))
    recording.outputs["oops"] = leaked
    render.write(recording, tmp_path)
    assert leaked in (tmp_path / "inventory.json").read_text()


def test_generated_secrets_are_secret_in_the_program_itself():
    """The mock engine does not mark random results secret; the program must, so they are under both."""
    recording = offline.run_stack("dev")
    hub = next(c for c in recording.charts() if c.inputs["name"] == "jupyterhub")
    values = hub.inputs["values"]
    for path in (("proxy", "secretToken"), ("hub", "cookieSecret")):
        node = values
        for step in path:
            node = node[step]
        assert offline.rpc.is_rpc_secret(node), path
