"""Fresh Pulumi mocks for every test, and the stack config helpers the tests share."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools import offline  # noqa: E402


@pytest.fixture
def run_program() -> Callable[..., offline.Recording]:
    """Run a Pulumi program function under fresh mocks: `run_program(fn, settings={})`."""

    def run(program: Callable[[], Any], settings: dict[str, str] | None = None) -> offline.Recording:
        return offline.run(program, settings or {})

    return run


@pytest.fixture
def run_stack() -> Callable[..., offline.Recording]:
    """Run `__main__.py` under fresh mocks with a stack's config, optionally changed: `run_stack("dev", {...})`."""

    def run(stack: str = "dev", overrides: dict[str, Any] | None = None) -> offline.Recording:
        settings = offline.stack_settings(stack)
        for key, value in (overrides or {}).items():
            settings[key] = json.dumps(value)
        return offline.run_stack(stack, settings)

    return run


@pytest.fixture(autouse=True)
def _upstream_reference(request):
    """Tests that read the pinned upstream data need it; CI must have it, elsewhere they skip."""
    import os

    from tools.schemas import REFERENCE

    if "reference" in request.keywords and not REFERENCE.exists():
        if os.environ.get("CI"):
            pytest.fail(f"upstream reference data missing at {REFERENCE} (CI must have it)")
        pytest.skip(f"upstream reference data not at {REFERENCE}; set DATAPLATFORM_REFERENCE")
