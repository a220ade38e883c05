"""`make render STACK=<stack>`: the stack's Kubernetes objects, charts and inventory, validated, offline.

Runs the real program under Pulumi's mock runtime with `Pulumi.<stack>.yaml` and writes
`build/<stack>/manifests/*.yaml`, `build/<stack>/charts/<release>.yaml` and
`build/<stack>/inventory.json`, every secret written as `[secret]`. Then validates every manifest
against the Kubernetes OpenAPI schema of the cluster's Kubernetes version (kubernetes-validate,
strict), every custom resource against its CRD, every chart's values against the chart's own schema
or values.yaml, and applies the platform's policies (policy/rules.py); exits non-zero naming file,
object, field or policy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import yaml

from policy.rules import Context
from policy.rules import check as policy_check
from tools.offline import ROOT, Recording, StackFileError, run_stack, stack_settings
from tools.schemas import MissingReference, chart_values_problems, validate_manifest


def manifest(inputs: dict) -> dict:
    """The object as it is sent to the API server: apiVersion and kind first."""
    return {"apiVersion": inputs["apiVersion"], "kind": inputs["kind"], **{k: v for k, v in inputs.items() if k not in ("apiVersion", "kind")}}


def manifest_filename(obj: dict) -> str:
    meta = obj.get("metadata", {})
    parts = [obj["kind"].lower(), meta.get("namespace", ""), meta.get("name", "")]
    return "-".join(p for p in parts if p) + ".yaml"


def write(recording: Recording, out: Path) -> dict[str, dict]:
    """Write manifests, charts and inventory under `out`; return the manifests by file name."""
    if out.exists():
        shutil.rmtree(out)
    (out / "manifests").mkdir(parents=True)
    (out / "charts").mkdir()
    manifests: dict[str, dict] = {}
    for registration in recording.kubernetes_objects():
        obj = manifest(registration.plain_inputs)
        filename = manifest_filename(obj)
        manifests[filename] = obj
        (out / "manifests" / filename).write_text(yaml.safe_dump(obj, sort_keys=False))
    for chart in recording.charts():
        inputs = chart.plain_inputs
        release = {
            "release": inputs.get("name", chart.name),
            "repository": inputs.get("repositoryOpts", {}).get("repo"),
            "chart": inputs["chart"],
            "version": inputs["version"],
            "namespace": inputs.get("namespace"),
            "values": inputs.get("values", {}),
        }
        (out / "charts" / f"{release['release']}.yaml").write_text(yaml.safe_dump(release, sort_keys=False))
    inventory = [
        {"type": r.type, "name": r.name, "parent": r.parent.rsplit("::", 1)[-1] if r.parent else None}
        for r in recording.resources
    ]
    (out / "inventory.json").write_text(json.dumps({"resources": inventory, "outputs": recording.outputs}, indent=2) + "\n")
    return manifests


def verify(recording: Recording, manifests: dict[str, dict], config, out: Path) -> tuple[list[str], list[str]]:
    """(violations that fail the render, notes to show): Kubernetes and CRD schemas, chart values,
    and the platform's policies."""
    problems: list[str] = []
    skipped: set[str] = set()
    unpinned: list[str] = []
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    for filename, obj in manifests.items():
        try:
            problems += [f"{shown}/manifests/{filename}: {p}" for p in validate_manifest(obj, config.cluster.kubernetes_version)]
        except MissingReference as missing:
            skipped.add(str(missing))
    for chart in recording.charts():
        inputs = chart.plain_inputs
        try:
            found = chart_values_problems(inputs["chart"], inputs["version"], inputs.get("values", {}))
        except MissingReference as missing:
            skipped.add(str(missing))
            continue
        if found is None:
            unpinned.append(f"{inputs['chart']} {inputs['version']}")
        else:
            problems += [f"{shown}/charts/{inputs['name']}.yaml: values.{p}" for p in found]
    allow_load_balancer = getattr(config.cluster, "service_type", "") == "LoadBalancer"
    violations = [
        v for r in recording.kubernetes_objects()
        for v in policy_check(manifest(r.plain_inputs), Context(protect=r.protect, allow_load_balancer=allow_load_balancer))
    ]
    problems += [f"policy: {v}" for v in violations if v.enforcement == "mandatory"]
    notes = [f"advisory: {v}" for v in violations if v.enforcement != "mandatory"]
    notes += [f"warning: not checked against upstream reference data: {s}" for s in sorted(skipped)]
    notes += [f"note: no pinned values.yaml or schema for chart {c}; its keys are checked in its component's tests" for c in unpinned]
    return problems, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--out", default=None, help="output folder (default build/<stack>)")
    parser.add_argument("--config", type=Path, default=None, help="stack config file (default Pulumi.<stack>.yaml)")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else ROOT / "build" / args.stack
    started = time.perf_counter()

    from components.stack import ConfigError, parse_stack_config, raw_stack_config

    try:
        settings = stack_settings(args.stack, args.config)
        config = parse_stack_config(raw_stack_config(settings))
    except (ConfigError, FileNotFoundError, StackFileError) as error:
        print(f"render {args.stack}: {error}", file=sys.stderr)
        return 1

    recording = run_stack(args.stack, settings)
    manifests = write(recording, out)
    problems, notes = verify(recording, manifests, config, out)
    for note in notes:
        print(note, file=sys.stderr)
    for problem in problems:
        print(problem, file=sys.stderr)
    elapsed = time.perf_counter() - started
    print(
        f"render {args.stack}: {len(manifests)} manifests, {len(recording.charts())} charts, "
        f"{len(recording.resources)} resources -> {out} in {elapsed:.1f}s; "
        f"{'%d schema/policy violation(s)' % len(problems) if problems else 'all valid against Kubernetes ' + config.cluster.kubernetes_version + ' and the mandatory policies'}"
        f"{' (some upstream checks skipped: reference data missing)' if any(n.startswith('warning') for n in notes) else ''}"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
