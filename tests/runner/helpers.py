"""Run shipped configs in-process, shortened with ``key=value`` overrides."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from omegaconf import OmegaConf

from accelwrap.config import load_config
from accelwrap.runner import Runner
from accelwrap.runner.run_log import latest_run_dir

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


def resumed(name: str, work_dir: Path, resume: str, *overrides: str) -> Runner:
    """A runner of a shipped config built with ``resume`` (not trained yet)."""
    return Runner.from_cfg(OmegaConf.merge(config(name, work_dir, *overrides),
                                           {"resume": resume}))


def copy_of(saved: Path, tmp_path: Path) -> Path:
    """A copy of the work dir ``saved`` (a module fixture's run) to damage in one test."""
    copy = tmp_path / "run"
    shutil.copytree(saved, copy)
    return copy


def run_dir(work_dir: Path) -> Path:
    """The newest run folder of ``work_dir`` (``<work_dir>/<YYYYmmdd_HHMMSS>``)."""
    found = latest_run_dir(work_dir)
    if found is None:
        raise AssertionError(f"no run folder in {work_dir}")
    return found


def records(work_dir: Path, mode: str) -> list[dict]:
    """The ``mode`` records of the newest run's ``scalars.jsonl``."""
    rows = [json.loads(line)
            for line in (run_dir(work_dir) / "scalars.jsonl").read_text().splitlines()]
    return [r for r in rows if r["mode"] == mode]
