"""The ``accelwrap check`` command: load a config, report every problem, exit 1 on any.

Nothing costly is built. Values are checked by the components' own validation where
that is free (:mod:`accelwrap.checks.trial`): ``torch.optim`` optimizers and every
scheduler are built on a one-element stand-in parameter (``lr: -0.1`` is named as
``optim_wrapper.optimizer.lr``), accelwrap's own models on the ``meta`` device and its
bundled datasets as they are. A user's model or dataset is not built: ``accelwrap
train``'s pre-flight (:mod:`accelwrap.runner.preflight`) runs the model on two samples
before training. When a ``paramwise_cfg`` has ``custom_keys``, the model is built on
the ``meta`` device (no memory) to find entries that match no parameter: a warning, or
a problem where that ``paramwise_cfg`` sets ``strict_custom_keys: true``.

A fragment -- a file with neither ``model`` nor ``train_dataloader``, such as a schedule
file of ``optim_wrapper`` + ``param_scheduler`` + ``train_cfg`` -- is checked for what it
has, and the command says what it could not check without the missing sections.
MMEngine sections accelwrap does not implement are warnings (training ignores them).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping

from accelwrap.config import load_config
from accelwrap.errors import ConfigError
from accelwrap.registry import to_plain
from accelwrap.runner.runner import Runner
from accelwrap.runner.settings import REQUIRED_KEYS, runner_config_notes, runner_config_problems
from accelwrap.tools.common import build_model_cheaply
from accelwrap.tools.groups import unmatched_custom_keys, wrapper_configs

__all__ = ["fragment_notes", "is_fragment", "run_check"]


def is_fragment(cfg: Mapping) -> bool:
    """Whether ``cfg`` is a part of a run (no ``model``, no ``train_dataloader``)."""
    return "model" not in cfg and "train_dataloader" not in cfg


def fragment_notes(cfg: Mapping) -> list[str]:
    """What ``accelwrap check`` cannot check in a fragment, one sentence each.

    Example:
        >>> fragment_notes({'optim_wrapper': {}})[0][:60]
        'no model: parameter names (paramwise_cfg.custom_keys) are no'
    """
    notes = ["no model: parameter names (paramwise_cfg.custom_keys) are not matched and no "
             "parameter groups are built",
             "no train_dataloader: the epoch length is unknown (accelwrap schedule "
             "--epoch-length N previews the schedule)",
             "a fragment: accelwrap train needs model and train_dataloader as well"]
    if "train_cfg" not in cfg:
        notes.append("no train_cfg: the run length is unknown (scheduler ends default to it)")
    return notes


def run_check(path: str, overrides: Iterable[str] = ()) -> int:
    """The ``accelwrap check`` command: print every problem, return the exit status.

    Args:
        path: The config file.
        overrides: Dotted ``key=value`` overrides.

    Returns:
        0 when the config is fine, 1 when anything is wrong (problems go to stderr).
    """
    notes: list[str] = []
    skipped: list[str] = []
    try:
        cfg = to_plain(load_config(path, overrides))
        # accelwrap train supplies a work_dir when the config has none.
        required = [k for k in REQUIRED_KEYS if k != "work_dir"]
        if is_fragment(cfg):
            required, skipped = [], fragment_notes(cfg)
        problems = runner_config_problems(cfg, Runner.config_keys(), required=required)
        notes += runner_config_notes(cfg, Runner.config_keys())
    except ConfigError as err:
        problems = err.problems
    if not problems and "model" in cfg:
        problems, found = _model_problems(cfg)
        notes += found
    for note in skipped:
        print(f"not checked: {note}", file=sys.stderr)
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    if problems:
        print(ConfigError(problems), file=sys.stderr)
        return 1
    print(f"{path}: no problems found" + (f" ({len(notes)} warnings)" if notes else ""))
    return 0


def _model_problems(cfg: dict) -> tuple[list[str], list[str]]:
    """``(problems, warnings)`` found with the model built on ``meta``: unmatched custom keys."""
    members = wrapper_configs(cfg.get("optim_wrapper") or {}).values()
    if not any(isinstance(m, Mapping) and "custom_keys" in (m.get("paramwise_cfg") or {})
               for m in members):
        return [], []
    try:
        return unmatched_custom_keys(cfg, build_model_cheaply(cfg["model"]))
    except (ValueError, TypeError) as err:
        return [f"building the model or its optimizer groups: {err}"], []
