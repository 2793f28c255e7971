"""``.ci/minimum.txt`` pins exactly the lower bounds ``pyproject.toml`` declares.

CI's second pass installs those pins, so this keeps "the declared minimums are tested" true
when either file is edited. torch is the one exception (no older CPU build offline).
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
UNPINNED = {"torch"}


def _declared() -> dict[str, str]:
    """``{package: lower bound}`` of the ``dependencies`` list in pyproject.toml."""
    text = (REPO / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.M | re.S).group(1)
    return dict(re.findall(r'^\s*"([A-Za-z0-9_.-]+)>=([0-9.]+)"', block, re.M))


def _pinned() -> dict[str, str]:
    lines = (REPO / ".ci" / "minimum.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if line and not line.startswith("#"))


def test_every_declared_lower_bound_is_pinned_at_that_release():
    declared, pinned = _declared(), _pinned()
    assert {"accelerate", "omegaconf", "torch"} <= set(declared)
    assert set(pinned) == set(declared) - UNPINNED
    for name, bound in declared.items():
        if name in pinned:
            # 1.13 is pinned as 1.13.0, 6 as 6.0.1: the pin is the bound's first release.
            assert pinned[name].split(".")[:len(bound.split("."))] == bound.split("."), name
