"""``benchmarks/bench_update_policies.py`` still runs and prints every row its README table quotes.

Tiny sizes: nothing here measures speed (see ``tests/test_benchmarks.py`` for the others).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[3]


def test_bench_update_policies_prints_a_row_per_case_and_policy():
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_update_policies.py"),
                           "--rounds", "2", "--iters", "4", "--hidden", "16", "--counts", "1", "2"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert ("| plain | tokens | nonfinite | nonfinite loss | tokens + skip | torch (vs plain) "
            "| torch + check (vs torch) |") in done.stdout
    rows = re.findall(r"^\| 16 \| [12] \| o(?:n|ff) \|(?: [\d.]+ \(\d+\.\d+x\) \|){7}$",
                      done.stdout, re.M)
    assert len(rows) == 2 * 4, done.stdout  # 2 counts x clip on/off, median and best tables


@pytest.mark.parametrize("clip", [False, True], ids=["kernel", "clip norm"])
def test_the_torch_check_reference_skips_a_nan_update_and_applies_a_finite_one(clip):
    """The floor column really tests: a NaN batch leaves the weights, a finite one moves them."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_update_policies import build_torch

    from accelwrap.optim import make_accelerator

    accelerator = make_accelerator(cpu=True)
    step = build_torch(True, 8, 1, clip, accelerator)
    params = list(step.model.parameters())
    before = [p.detach().clone() for p in params]
    x, y = torch.randn(32, 32), torch.randn(32, 10)
    step((x, torch.full_like(y, float("nan"))))
    assert all(torch.equal(a, p) for a, p in zip(before, params))
    step((x, y))
    assert not all(torch.equal(a, p) for a, p in zip(before, params))
