"""`make lint`: upstream scanners on what we ship, with every accepted finding named in one file.

hadolint on every Dockerfile; checkov (its own virtualenv, `--skip-download`, so no network) on the
rendered manifests of the stack and on the Dockerfiles. Each finding prints with its check ID and
file; the run fails on any finding that `lint-suppressions.yaml` does not list with a reason, and on
any suppression that no longer matches a finding, so the file cannot rot.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from tools.offline import ROOT

SUPPRESSIONS = ROOT / "lint-suppressions.yaml"


@dataclass(frozen=True)
class Finding:
    tool: str
    check: str
    where: str
    message: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.tool, self.check, self.where)


def hadolint(dockerfiles: list[Path]) -> list[Finding]:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "hadolint"), "-f", "json", *map(str, dockerfiles)],
        capture_output=True, text=True, check=False,
    )
    if result.returncode not in (0, 1):
        raise RuntimeError(f"hadolint failed: {result.stderr.strip()}")
    return [
        Finding("hadolint", item["code"], Path(item["file"]).resolve().relative_to(ROOT).as_posix(), f"line {item['line']}: {item['message']}")
        for item in json.loads(result.stdout or "[]")
    ]


def checkov(checkov_bin: Path, directory: Path, framework: str) -> list[Finding]:
    result = subprocess.run(
        [str(checkov_bin), "--skip-download", "--quiet", "--compact", "-o", "json", "-d", str(directory), "--framework", framework],
        capture_output=True, text=True, check=False,
    )
    if result.returncode not in (0, 1) or not result.stdout.strip():
        raise RuntimeError(f"checkov failed on {directory}: {result.stderr.strip()[-2000:]}")
    reports = json.loads(result.stdout)
    findings = []
    for report in reports if isinstance(reports, list) else [reports]:
        if "results" not in report:
            continue
        for failed in report["results"]["failed_checks"]:
            findings.append(Finding(
                "checkov", failed["check_id"], failed["resource"],
                f"{directory.name}{failed['file_path']}: {failed['check_name']}",
            ))
    return findings


def load_suppressions(path: Path = SUPPRESSIONS) -> dict[tuple[str, str, str], str]:
    entries = yaml.safe_load(path.read_text()) or []
    suppressions = {}
    for entry in entries:
        if not str(entry.get("reason", "")).strip():
            raise ValueError(f"{path.name}: {entry} has no reason")
        suppressions[(entry["tool"], entry["check"], entry["where"])] = entry["reason"]
    return suppressions


def judge(findings: list[Finding], suppressions: dict[tuple[str, str, str], str], tools: set[str]) -> tuple[list[Finding], list[tuple]]:
    """(findings not suppressed, suppressions of the tools that ran that matched nothing)."""
    open_findings = [f for f in findings if f.key not in suppressions]
    seen = {f.key for f in findings}
    stale = [key for key in suppressions if key[0] in tools and key not in seen]
    return open_findings, stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--checkov", type=Path, default=ROOT / ".venv-checkov" / "bin" / "checkov")
    args = parser.parse_args(argv)
    manifests = ROOT / "build" / args.stack / "manifests"
    if not manifests.is_dir():
        print(f"lint: {manifests} is missing; run `make render STACK={args.stack}` first", file=sys.stderr)
        return 1
    dockerfiles = sorted((ROOT / "images").glob("*/Dockerfile"))
    findings = hadolint(dockerfiles)
    findings += checkov(args.checkov, manifests, "kubernetes")
    findings += checkov(args.checkov, ROOT / "images", "dockerfile")
    suppressions = load_suppressions()
    open_findings, stale = judge(findings, suppressions, {"hadolint", "checkov"})
    for f in findings:
        state = "suppressed" if f.key in suppressions else "FAILED"
        print(f"{state}: {f.tool} {f.check} {f.where}: {f.message}")
    for key in stale:
        print(f"FAILED: {SUPPRESSIONS.name} suppresses {' '.join(key)}, which no longer occurs: remove the entry")
    print(
        f"lint: {len(dockerfiles)} Dockerfiles, manifests of stack {args.stack}: {len(findings)} findings, "
        f"{len(findings) - len(open_findings)} suppressed with a reason, {len(open_findings)} open, {len(stale)} stale suppressions"
    )
    return 1 if open_findings or stale else 0


if __name__ == "__main__":
    sys.exit(main())
