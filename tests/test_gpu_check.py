"""scripts/gpu_check.sh's CPU dry run: the GPU-only steps skip with a reason, the rest pass.

``GPU_CHECK_DRY_RUN=1`` makes every step tiny (the shipped configs for the lengths
tests/runner/test_configs.py uses, a kill + resume of two epochs), so the script's plumbing
(Python selection, the plan, the steps, the summary) is exercised in CI; the GPU run
itself needs a machine with one CUDA GPU. The test trains one shipped config through the
script (``GPU_CHECK_CONFIGS``; each training is a Python start that costs more than the
training): tests/runner/test_configs.py trains every one, and the plan still lists every
one, the others as skipped with the reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.stem for p in (REPO / "configs").glob("*.yaml") if not p.stem.startswith("_"))
GPU_ONLY = ["cuda_tests", "fsdp_one_gpu", "bnb_8bit", "bench_wrapper_gpu"]
TRAINED = "seq_gru_tokens"  # has the AMP_ALSO variants, which skip without CUDA
CPU_STEPS = ["environment", "kill_and_resume", f"train_{TRAINED}"]
UNSELECTED = f"skip [not in GPU_CHECK_CONFIGS={TRAINED}]"


def _steps(summary: str) -> dict[str, str]:
    """``{step: 'pass 12s' | 'FAIL 3s' | 'skip [reason]'}`` from the summary line."""
    head, _, tail = summary.partition(" | ")
    assert head.startswith("gpu_check summary: "), summary
    return dict(part.split(" ", 1) for part in tail.split("; "))


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the dry run also runs the GPU "
                    "steps (tiny); this test checks the CPU machine's skips")
def test_cpu_dry_run_skips_every_gpu_step_with_a_reason_and_passes_the_rest(tmp_path):
    env = {**os.environ, "GPU_CHECK_DRY_RUN": "1", "GPU_CHECK_PYTHON": sys.executable,
           "OUT": str(tmp_path), "GPU_CHECK_JOBS": "2", "GPU_CHECK_CONFIGS": TRAINED}
    done = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    lines = done.stdout.rstrip("\n").splitlines()
    summary = lines[-1]
    steps = _steps(summary)
    failed = {name: (tmp_path / f"{name}.log").read_text()[-2000:]
              for name, result in steps.items() if result.startswith("FAIL")}
    assert done.returncode == 0 and not failed, (summary, failed, done.stderr[-2000:])
    assert re.match(r"gpu_check summary: PASS \d+ passed, 0 failed, \d+ skipped in \d+s "
                    r"\(dry run, no CUDA\) \| ", summary), summary

    for name in CPU_STEPS:
        assert re.fullmatch(r"pass \d+s", steps.get(name, "missing")), (name, summary)
        assert (tmp_path / f"{name}.log").is_file()
    variants = [name for name in steps
                if re.fullmatch(r"train_.+_(float16|bfloat16)", name)]
    own = [name for name in variants if name.startswith(f"train_{TRAINED}_")]
    assert own and len(variants) > len(own)  # the AMP config's other dtype at least
    for name in GPU_ONLY + own:
        assert steps.get(name) == f"skip [no CUDA GPU, torch {torch.__version__}]", (name, summary)
    others = [f"train_{name}" for name in SHIPPED if name != TRAINED]
    for name in others + [name for name in variants if name not in own]:
        assert steps.get(name) == UNSELECTED, (name, summary)
        assert not (tmp_path / f"{name}.log").exists()
    # the plan lists every shipped config
    assert sorted(steps) == sorted(CPU_STEPS + others + GPU_ONLY + variants)
    # the training step really trained: its log has the run's last validation
    assert "(val)" in (tmp_path / f"train_{TRAINED}.log").read_text()
    assert "resumed from" in (tmp_path / "kill_and_resume.log").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine "
                    "without CUDA")
def test_without_cuda_and_without_dry_run_it_refuses_and_names_the_dry_run(tmp_path):
    env = {**os.environ, "GPU_CHECK_PYTHON": sys.executable, "OUT": str(tmp_path)}
    env.pop("GPU_CHECK_DRY_RUN", None)
    done = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "sees no CUDA GPU; GPU_CHECK_DRY_RUN=1 runs the CPU dry run" in done.stdout
    assert not list((tmp_path / "status").iterdir())  # no step ran


def test_a_config_selection_naming_no_shipped_config_is_refused(tmp_path):
    env = {**os.environ, "GPU_CHECK_DRY_RUN": "1", "GPU_CHECK_PYTHON": sys.executable,
           "OUT": str(tmp_path), "GPU_CHECK_CONFIGS": f"{TRAINED},seq_gru_token"}
    done = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert ("GPU_CHECK_CONFIGS names seq_gru_token, not a shipped config: "
            + " ".join(SHIPPED)) in done.stdout
    assert not list((tmp_path / "status").iterdir())  # no step ran
