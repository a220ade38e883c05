"""Entry point of the CrossGuard pack: `pulumi preview --policy-pack policy`.

Policies are built in `pack.py` from the pure rules in `rules.py`; constructing the PolicyPack starts
the analyzer's gRPC server, so nothing else happens here.
"""

import sys
from pathlib import Path

from pulumi_policy import EnforcementLevel, PolicyPack

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pack import policies  # noqa: E402

PolicyPack(name="dataplatform", enforcement_level=EnforcementLevel.MANDATORY, policies=policies())
