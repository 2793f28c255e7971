"""The ``accelwrap check`` command: load a config, report every problem, exit 1 on any."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from accelwrap.errors import ConfigError
from accelwrap.registry import to_plain

__all__ = ["run_check"]


def run_check(path: str, overrides: Iterable[str] = ()) -> int:
    """The ``accelwrap check`` command: print every problem, return the exit status.

    Args:
        path: The config file.
        overrides: Dotted ``key=value`` overrides.

    Returns:
        0 when the config is fine, 1 when anything is wrong (problems go to stderr).
    """
    from accelwrap.config import load_config
    from accelwrap.runner.config_check import REQUIRED_KEYS, runner_config_problems

    try:
        cfg = to_plain(load_config(path, overrides))
        # scripts/train.py supplies a work_dir when the config has none.
        problems = runner_config_problems(cfg, required=[k for k in REQUIRED_KEYS if k != "work_dir"])
    except ConfigError as err:
        problems = err.problems
    if problems:
        print(ConfigError(problems), file=sys.stderr)
        return 1
    print(f"{path}: no problems found")
    return 0
