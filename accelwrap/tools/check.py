"""The ``accelwrap check`` command: load a config, report every problem, exit 1 on any."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from accelwrap.config import load_config
from accelwrap.errors import ConfigError
from accelwrap.registry import to_plain
from accelwrap.runner.runner import Runner
from accelwrap.runner.settings import REQUIRED_KEYS, runner_config_problems

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
    if problems:
        print(ConfigError(problems), file=sys.stderr)
        return 1
    print(f"{path}: no problems found")
    return 0
