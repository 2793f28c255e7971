"""The benchmark scripts still run and print every row their README tables quote.

Tiny sizes, so nothing here measures speed (timings belong in ``benchmarks/``, never in
tests): this only keeps the scripts from rotting as the package changes under them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RATIO = r"\d+\.\d+x"  # e.g. 1.02x


def _run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_bench_runner_prints_throughput_and_every_checkpoint_reference():
    out = _run("bench_runner.py", "--rounds", "1", "--ckpt-repeats", "1")
    assert re.search(rf"Runner/hand = {RATIO} throughput", out), out
    for name in ("accelwrap", "bare save_state", "durable save_state", "atomic save_state",
                 "torch.save", "durable torch.save"):
        rows = re.findall(rf"^  {re.escape(name)} +[\d.]+ \+ +[\d.]+ = +[\d.]+ +{RATIO}$", out,
                          re.M)
        assert len(rows) == 3, (name, out)  # the default model, 1M and 4.3M parameters


def test_bench_optim_wrapper_prints_a_row_per_case():
    out = _run("bench_optim_wrapper.py", "--rounds", "2", "--iters", "4", "--hidden", "16",
               "--counts", "1", "2")
    rows = re.findall(rf"^\| 16 \| [12] \| o(?:n|ff) \|(?: [\d.]+ \({RATIO}\) \|){{3,4}}$",
                      out, re.M)
    assert len(rows) == 2 * 4, out  # 2 counts x clip on/off, in the median and best tables


def test_bench_scheduler_prints_accelwrap_and_torch_rows():
    out = _run("bench_scheduler.py", "--rounds", "2", "--block", "10", "--far", "100")
    for name in ("accelwrap", "torch SequentialLR"):
        assert re.search(rf"^\| {name} \|", out, re.M), (name, out)


@pytest.mark.slow
@pytest.mark.parametrize("launch", [[], ["--processes", "2", "--launch-config",
                                         "launch_configs/fsdp.yaml"]], ids=["1 process", "fsdp2"])
def test_bench_async_checkpoint_prints_the_sync_and_async_rows(launch):
    out = _run("bench_async_checkpoint.py", "--hidden", "64", "--saves", "2", "--steps", "2",
               *launch)
    assert ("(FSDP)" in out) == bool(launch), out
    for mode in ("sync", "async"):
        assert re.search(rf"^\| {mode} \| [\d.]+ \| {RATIO} \|", out, re.M), (mode, out)
