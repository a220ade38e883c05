"""The committed upstream reference data is the pinned upstream data, byte for byte."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tools.offline import ROOT
from tools.schemas import CRDS, REFERENCE

SHARED = ROOT.parent / "shared" / "reference"


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_committed_copy_is_the_shared_one():
    """A hand edit to a CRD or schema would make the tests check our own guess instead of upstream's."""
    if not SHARED.is_dir():
        pytest.skip(f"no shared reference copy at {SHARED} to compare with")
    assert files(ROOT / "reference") == files(SHARED)


def test_every_crd_the_render_checks_is_there():
    if "DATAPLATFORM_REFERENCE" in os.environ:
        pytest.skip("DATAPLATFORM_REFERENCE points elsewhere")
    for path in CRDS.values():
        assert (REFERENCE / path).is_file(), path
