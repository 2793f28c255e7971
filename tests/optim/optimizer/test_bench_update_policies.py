"""``benchmarks/bench_update_policies.py`` still runs and prints every row its README table quotes.

Tiny sizes: nothing here measures speed (see ``tests/test_benchmarks.py`` for the others).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_bench_update_policies_prints_a_row_per_case_and_policy():
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_update_policies.py"),
                           "--rounds", "2", "--iters", "4", "--hidden", "16", "--counts", "1", "2"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| plain | tokens | nonfinite | nonfinite loss | tokens + skip |" in done.stdout
    rows = re.findall(r"^\| 16 \| [12] \| o(?:n|ff) \|(?: [\d.]+ \(\d+\.\d+x\) \|){5}$",
                      done.stdout, re.M)
    assert len(rows) == 2 * 4, done.stdout  # 2 counts x clip on/off, median and best tables
