"""Run shipped configs in-process, shortened with ``key=value`` overrides."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from accelwrap.config import load_config
from accelwrap.runner import Runner

REPO = Path(__file__).resolve().parents[2]
QUIET = ["default_hooks.logger.progress_bar=false", "default_hooks.logger.trackers=null"]


def config(name: str, work_dir: Path, *overrides: str):
    """Load ``configs/<name>.yaml`` with overrides and ``work_dir`` set."""
    cfg = load_config(REPO / "configs" / f"{name}.yaml", [*QUIET, *overrides])
    return OmegaConf.merge(cfg, {"work_dir": str(work_dir)})


def run(name: str, work_dir: Path, *overrides: str) -> Runner:
    """Build a runner from a shipped config and train it."""
    runner = Runner.from_cfg(config(name, work_dir, *overrides))
    runner.train()
    return runner


def records(work_dir: Path, mode: str) -> list[dict]:
    """The ``mode`` records of ``scalars.jsonl``."""
    rows = [json.loads(line)
            for line in (Path(work_dir) / "scalars.jsonl").read_text().splitlines()]
    return [r for r in rows if r["mode"] == mode]
