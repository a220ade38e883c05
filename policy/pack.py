"""The CrossGuard pack's policies: `pulumi preview --policy-pack policy` enforces `rules.RULES` on every
Kubernetes object the engine registers, the objects inside Helm charts included.

Pack config (`--policy-pack-config <file>.json`, e.g. `{"load-balancers-only-where-allowed":
{"allowLoadBalancer": true}}` for a stack whose config exposes services; the README shows it for
prod): `allowLoadBalancer` (bool, default false).
"""

import sys
from pathlib import Path

from pulumi_policy import EnforcementLevel, PolicyConfigSchema, ResourceValidationArgs, ResourceValidationPolicy

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rules import RULES, Context, Rule, describe  # noqa: E402

LEVELS = {"mandatory": EnforcementLevel.MANDATORY, "advisory": EnforcementLevel.ADVISORY}


def validation(rule: Rule):
    """The pack's validate callback for one rule."""

    def validate(args: ResourceValidationArgs, report_violation) -> None:
        if not args.resource_type.startswith("kubernetes:") or "kind" not in args.props:
            return
        obj = dict(args.props)
        ctx = Context(
            protect=bool(args.opts.protect),
            allow_load_balancer=bool(args.get_config().get("allowLoadBalancer", False)),
        )
        for message in rule.check(obj, ctx):
            report_violation(f"{describe(obj)}: {message}", args.urn)

    return validate


def policies() -> list[ResourceValidationPolicy]:
    return [
        ResourceValidationPolicy(
            name=rule.name,
            description=rule.description,
            enforcement_level=LEVELS[rule.enforcement],
            validate=validation(rule),
            config_schema=(
                PolicyConfigSchema(properties={"allowLoadBalancer": {"type": "boolean", "default": False}})
                if rule.name == "load-balancers-only-where-allowed" else None
            ),
        )
        for rule in RULES
    ]


