"""The README's configuration reference, generated from the pydantic models so it cannot drift.

`python -m tools.config_reference` prints the table; `--write` replaces it in README.md between the
`config-reference` markers; a test fails when the README and the models disagree.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from typing import Any

from pydantic import BaseModel

from components.stack import PROJECT, StackConfig
from tools.offline import ROOT

BEGIN, END = "<!-- config-reference:begin -->", "<!-- config-reference:end -->"


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation stands for (one, or the members of a union)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


_CHECKS = {
    "_check_bytes": "size (`10Gi`)",
    "_check_cpu": "CPU (`500m`)",
    "_check_dns_label": "name (RFC 1123)",
    "_check_namespace": "namespace (RFC 1123, not `default` or `kube-*`)",
    "_check_kubernetes_version": "version (`1.34.0`)",
    "_check_region": "AWS region",
    "_check_instance_type": "EC2 instance type (`m6i.xlarge`)",
    "_check_bucket_name": "S3 bucket name",
    "_check_cidr": "IPv4 CIDR (`10.0.0.0/16`)",
    "_check_network": "IPv4 network (`203.0.113.0/24`)",
    "_check_gpu_instance_type": "GPU EC2 instance type (`g6e.2xlarge`)",
}


def _type(annotation: Any, metadata: list) -> str:
    for item in reversed(metadata):  # the most specific check is the last
        name = getattr(getattr(item, "func", None), "__name__", "")
        if name in _CHECKS:
            return _CHECKS[name]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _type(typing.get_args(annotation)[0], list(annotation.__metadata__))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type(a, metadata) for a in typing.get_args(annotation) if a is not type(None)) + " (optional)"
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(annotation))
    if origin in (tuple, list):
        return "list of " + _type(typing.get_args(annotation)[0], [])
    return getattr(annotation, "__name__", str(annotation))


def _kind(model: type[BaseModel]) -> str:
    return typing.get_args(model.model_fields["kind"].annotation)[0]


def rows(model: type[BaseModel], prefix: str, defaults: BaseModel | None) -> list[str]:
    """One row per key of `model`; `defaults` is the instance the parent field defaults to."""
    out = []
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}"
        default = getattr(defaults, name) if defaults is not None else (None if field.is_required() else field.default)
        nested = _models(field.annotation)
        if nested:
            for member in nested:
                label = f" (`kind: {_kind(member)}`)" if len(nested) > 1 else ""
                out.append(f"| `{key}`{label} | object | | {field.description or ''} |")
                out += rows(member, key, default if isinstance(default, member) else None)
            continue
        shown = "" if default is None else f"`{json.dumps(default, default=str)}`"
        out.append(f"| `{key}` | {_type(field.annotation, field.metadata)} | {shown} | {field.description or ''} |")
    return out


def table() -> str:
    lines = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    defaults = StackConfig()
    for area, field in StackConfig.model_fields.items():
        models = _models(field.annotation)
        for model in models:
            if len(models) > 1:
                lines.append(f"| `{PROJECT}:{area}` (`kind: {_kind(model)}`) | object | | {model.__doc__.strip().splitlines()[0]} |")
            default = getattr(defaults, area)
            lines += rows(model, f"{PROJECT}:{area}", default if isinstance(default, model) else None)
    return "\n".join(lines)


def readme_with_table(readme: str) -> str:
    head, _, rest = readme.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


if __name__ == "__main__":
    if "--write" in sys.argv:
        path = ROOT / "README.md"
        path.write_text(readme_with_table(path.read_text()))
    else:
        print(table())
