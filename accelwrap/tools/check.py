"""The ``accelwrap check`` command: load a config, report every problem, exit 1 on any.

Nothing is built, with one exception: when a ``paramwise_cfg`` has ``custom_keys``, the
model is built on the ``meta`` device (no memory) to find entries that match no
parameter: a warning, or a problem where that ``paramwise_cfg`` sets
``strict_custom_keys: true``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping

from accelwrap.config import load_config
from accelwrap.errors import ConfigError
from accelwrap.optim.optimizer.builder import SINGLE_KEYS
from accelwrap.registry import to_plain
from accelwrap.runner.runner import Runner
from accelwrap.runner.settings import REQUIRED_KEYS, runner_config_problems
from accelwrap.tools.common import build_model_cheaply
from accelwrap.tools.groups import unmatched_custom_keys

__all__ = ["run_check"]


def run_check(path: str, overrides: Iterable[str] = ()) -> int:
    """The ``accelwrap check`` command: print every problem, return the exit status.

    Args:
        path: The config file.
        overrides: Dotted ``key=value`` overrides.

    Returns:
        0 when the config is fine, 1 when anything is wrong (problems go to stderr).
    """
    try:
        cfg = to_plain(load_config(path, overrides))
        # scripts/train.py supplies a work_dir when the config has none.
        required = [k for k in REQUIRED_KEYS if k != "work_dir"]
        problems = runner_config_problems(cfg, Runner.config_keys(), required=required)
    except ConfigError as err:
        problems = err.problems
    notes: list[str] = []
    if not problems:
        problems, notes = _model_problems(cfg)
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    if problems:
        print(ConfigError(problems), file=sys.stderr)
        return 1
    print(f"{path}: no problems found" + (f" ({len(notes)} warnings)" if notes else ""))
    return 0


def _model_problems(cfg: dict) -> tuple[list[str], list[str]]:
    """``(problems, warnings)`` found with the model built on ``meta``: unmatched custom keys."""
    optim_cfg = cfg.get("optim_wrapper") or {}
    members = [optim_cfg] if any(k in optim_cfg for k in SINGLE_KEYS) else optim_cfg.values()
    if not any(isinstance(m, Mapping) and "custom_keys" in (m.get("paramwise_cfg") or {})
               for m in members):
        return [], []
    try:
        return unmatched_custom_keys(cfg, build_model_cheaply(cfg["model"]))
    except (ValueError, TypeError) as err:
        return [f"building the model or its optimizer groups: {err}"], []
