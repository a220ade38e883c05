"""Upstream schemas the stack's output is checked against: Kubernetes' own and the pinned CRDs/charts.

Kubernetes objects: the OpenAPI schemas shipped by `kubernetes-validate`, strict (unknown fields are
errors). Custom resources: the `openAPIV3Schema` of the CRD in `reference/`, made strict the
way the API server's pruning would drop a field silently. Chart values: the chart's own
`values.schema.yaml`, or for charts without one, the keys of its `values.yaml`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tools.offline import ROOT

# libyaml where the wheel has it: the pinned CRDs are megabytes of YAML.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# The pinned upstream files, committed unmodified (reference/README.md says where each comes from);
# tests/test_reference.py keeps them byte-identical to the project's shared copy where one is present.
REFERENCE = Path(os.environ.get("DATAPLATFORM_REFERENCE", ROOT / "reference"))

# (apiVersion, kind) -> CRD file under REFERENCE
CRDS = {
    ("sparkoperator.k8s.io/v1beta2", "SparkApplication"): "spark-operator-2.5.2/sparkoperator.k8s.io_sparkapplications.yaml",
    ("sparkoperator.k8s.io/v1beta2", "ScheduledSparkApplication"): "spark-operator-2.5.2/sparkoperator.k8s.io_scheduledsparkapplications.yaml",
    ("serving.kserve.io/v1beta1", "InferenceService"): "kserve-0.20.0/serving.kserve.io_inferenceservices.yaml",
}


class MissingReference(FileNotFoundError):
    """The pinned upstream reference data is not where we look for it."""


CACHE = ROOT / "build" / ".schema-cache"


def load_yaml(path: Path) -> Any:
    """A reference file, parsed. The pinned CRDs are megabytes of YAML (seconds to parse); the parsed
    form is kept as JSON under build/, keyed by the file's content hash, and read back in milliseconds."""
    data = path.read_bytes()
    cached = CACHE / f"{hashlib.sha256(data).hexdigest()}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    parsed = yaml.load(data, Loader=_LOADER)
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(parsed))
    partial.replace(cached)  # atomic: a concurrent reader never sees half a file
    return parsed


def reference(path: str) -> Path:
    """A file of the pinned upstream reference data; a clear error where it is missing."""
    file = REFERENCE / path
    if not file.exists():
        raise MissingReference(
            f"upstream reference file {file} is missing: set DATAPLATFORM_REFERENCE to the folder "
            "holding the pinned reference data (see README, 'Upstream ground truth')"
        )
    return file


def _strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever the CRD lists the known ones."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Validator:
    crd = load_yaml(reference(CRDS[(api_version, kind)]))
    version = api_version.split("/")[1]
    served = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    schema = _strict(served["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


def _path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(root)"


def validate_manifest(obj: dict, kubernetes_version: str) -> list[str]:
    """Problems with one object, each naming the object and the field; empty when valid."""
    meta = obj.get("metadata", {})
    who = f"{obj.get('kind')} {meta.get('namespace', '') + '/' if meta.get('namespace') else ''}{meta.get('name')}"
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in CRDS:
        return [f"{who}: {_path(e)}: {e.message}" for e in crd_validator(*key).iter_errors(obj)]
    validator = kubernetes_validator(kubernetes_version, key[0], key[1])
    if validator is None:
        return [f"{who}: no Kubernetes {kubernetes_version} schema and no pinned CRD for {key[0]} {key[1]}"]
    return [f"{who}: {_path(e)}: {e.message}" for e in validator.iter_errors(obj)]


@functools.cache
def kubernetes_validator(kubernetes_version: str, api_version: str, kind: str) -> jsonschema.Validator | None:
    """kubernetes-validate's strict schema for one kind, loaded once (its `validate()` reloads the
    shared definitions on every call and stops at the first error)."""
    from kubernetes_validate import utils
    from referencing import Registry, Resource

    minor = utils.major_minor(kubernetes_version)
    version = [v for v in utils.all_versions() if utils.major_minor(v) <= minor][-1]
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = utils.schema_contents(f"{folder}/{kind.lower()}-{group}.json", kubernetes_version)
    except FileNotFoundError:
        return None
    definitions = _definitions(folder, kubernetes_version)
    registry = Resource.from_contents(schema) @ (definitions @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


@functools.cache
def _definitions(folder: str, kubernetes_version: str):
    from kubernetes_validate import utils
    from referencing import Resource

    return Resource.from_contents(utils.schema_contents(f"{folder}/_definitions.json", kubernetes_version))


@functools.cache
def values_schema_validator(path: str) -> jsonschema.Validator:
    return jsonschema.Draft7Validator(load_yaml(reference(path)))


def merged(defaults: Any, values: Any) -> Any:
    """`values` over the chart's defaults, the way Helm coalesces them."""
    if isinstance(defaults, dict) and isinstance(values, dict):
        return {**defaults, **{k: merged(defaults.get(k), v) for k, v in values.items()}}
    return values


def values_problems(values: dict, schema_path: str) -> list[str]:
    """Violations of a chart's values.schema.yaml by `values` coalesced with the chart's values.yaml,
    which is what Helm validates."""
    defaults = load_yaml(reference(str(Path(schema_path).with_name("values.yaml"))))
    return [f"{_path(e)}: {e.message}" for e in values_schema_validator(schema_path).iter_errors(merged(defaults, values))]


def unknown_value_keys(values: Any, defaults: Any, prefix: str = "") -> list[str]:
    """Keys set in `values` that the chart's `values.yaml` does not have (maps the chart leaves open excepted)."""
    if not isinstance(values, dict) or not isinstance(defaults, dict) or not defaults:
        return []
    unknown = []
    for key, value in values.items():
        if key not in defaults:
            unknown.append(prefix + key)
        else:
            unknown += unknown_value_keys(value, defaults[key], f"{prefix}{key}.")
    return unknown


# chart -> the file its values are checked against: the chart's values.schema.yaml where it
# publishes one, else its values.yaml (keys only).
CHART_VALUES = {
    ("jupyterhub", "4.4.0"): ("schema", "zero-to-jupyterhub-4.4.0/values.schema.yaml"),
    ("spark-operator", "2.5.2"): ("keys", "spark-operator-2.5.2/values.yaml"),
}


def chart_values_problems(chart: str, version: str, values: dict) -> list[str] | None:
    """What the chart itself would refuse or ignore in `values`; None where no schema or values.yaml
    of that chart is pinned (those charts' keys are checked against upstream excerpts in their tests)."""
    if (chart, version) not in CHART_VALUES:
        return None
    how, path = CHART_VALUES[(chart, version)]
    if how == "schema":
        return values_problems(values, path)
    defaults = load_yaml(reference(path))
    return [f"{key}: not a key of the chart's values.yaml" for key in unknown_value_keys(values, defaults)]
