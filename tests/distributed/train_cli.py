"""Helpers for tests that run ``scripts/train.py`` as users do (1 process or 2 over gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from accelwrap.runner.run_log import latest_run_dir
from tests.distributed.launch import REPO, accelerate_launch

TRAIN = REPO / "scripts" / "train.py"
CPU_2PROC = REPO / "launch_configs" / "cpu_2proc.yaml"
# The FSDP2 and DeepSpeed command tests' run: 1,438 training digits, 64 per process (12
# iterations per epoch on 2 processes), two schedulers (linear warm-up, cosine), a
# checkpoint every 4 iterations, all kept.
ENGINE_ARGS = ["--config", "configs/digits_adamw_cosine.yaml", "train_cfg.max_epochs=2",
               "train_dataloader.batch_size=64", "val_dataloader.batch_size=512",
               "param_scheduler.0.end=6", "default_hooks.logger.progress_bar=false",
               "default_hooks.logger.trackers=null", "+default_hooks.checkpoint.by_epoch=false",
               "default_hooks.checkpoint.interval=4",
               "default_hooks.checkpoint.max_keep_ckpts=10"]


def train(work_dir: Path, args: list[str], nproc: int = 1, env: dict[str, str] | None = None,
          check: bool = True) -> subprocess.CompletedProcess:
    """Run ``scripts/train.py --work-dir work_dir *args`` in ``nproc`` CPU processes."""
    args = ["--work-dir", str(work_dir), *args]
    if nproc == 2:
        return accelerate_launch(work_dir.parent / "results", TRAIN, CPU_2PROC, args, env=env,
                                 check=check)
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    full_env.pop("ACCELERATE_USE_CPU", None)
    proc = subprocess.run([sys.executable, str(TRAIN), *args], env=full_env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"train.py failed ({proc.returncode})\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-6000:]}")
    return proc


def records(work_dir: Path, mode: str | None = None) -> list[dict]:
    """The JSON-lines records of a run (optionally only ``mode`` ones)."""
    lines = (latest_run_dir(work_dir) / "scalars.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    return [r for r in rows if mode is None or r["mode"] == mode]


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (to prove nothing changed)."""
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}
