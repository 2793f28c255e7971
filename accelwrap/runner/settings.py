"""The runner's config sections and their checks (model, dataloaders, train_cfg, hooks).

They plug into :func:`accelwrap.checks.engine.check_config`, so one
``ConfigError`` lists every problem of a config: unknown top-level keys (with
suggestions), unregistered types and bad arguments anywhere.

Example:
    >>> runner_config_problems({'modle': {}}, known_keys=['model'])[0]
    "modle: unknown top-level key; did you mean 'model'?"
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from accelwrap.checks.engine import (
    argument_problems,
    check_component,
    check_config,
    default_sections,
)
from accelwrap.errors import ConfigError
from accelwrap.runner.build import TrainSchedule, parse_train_cfg
from accelwrap.runner.data import DATASETS, loader_signature
from accelwrap.runner.default_hooks import parse_default_hooks
from accelwrap.runner.models import MODELS

__all__ = ["REQUIRED_KEYS", "runner_config_problems", "runner_sections"]

#: Top-level sections a run needs (``scripts/train.py`` fills in ``work_dir``).
REQUIRED_KEYS = ("model", "work_dir", "train_dataloader", "optim_wrapper", "train_cfg")


def _check_model(node: Any, path: str) -> list[str]:
    return check_component(node, MODELS, path)[1]


def _check_loader(node: Any, path: str) -> list[str]:
    """A dataloader config: its keys and their value types, and its dataset."""
    if node is None:
        return []
    if not isinstance(node, Mapping):
        return [f"{path}: expected a dict with 'dataset' and 'batch_size', got {node!r}"]
    if "dataset" not in node:
        return [f"{path}: no 'dataset' key (e.g. dataset: {{type: DigitsDataset, split: train}})"]
    rest = {k: v for k, v in node.items() if k != "dataset"}
    problems = argument_problems(loader_signature, rest, path)
    return problems + check_component(node["dataset"], DATASETS, f"{path}.dataset")[1]


def _check_train_cfg(node: Any, path: str) -> list[str]:
    try:
        parse_train_cfg(node)
    except (TypeError, ValueError) as err:
        return [str(err)]
    return []


def _check_hooks(node: Any, path: str) -> list[str]:
    """``default_hooks`` on its own (any ``checkpoint.by_epoch`` fits an epoch-based run)."""
    try:
        parse_default_hooks(node, TrainSchedule(max_epochs=1))
    except ConfigError as err:
        return err.problems
    return []


def _hooks_vs_train_cfg(cfg: Mapping) -> list[str]:
    """What ``default_hooks`` gets wrong only given ``train_cfg`` (checkpoint ``by_epoch``).

    Silent when either section has problems of its own: their checkers report those.
    """
    hooks = cfg.get("default_hooks")
    if "train_cfg" not in cfg or _check_train_cfg(cfg["train_cfg"], "train_cfg") \
            or _check_hooks(hooks, "default_hooks"):
        return []
    try:
        parse_default_hooks(hooks, parse_train_cfg(cfg["train_cfg"]))
    except ConfigError as err:
        return err.problems
    return []


def runner_sections() -> dict[str, Callable[[Any, str], list[str]]]:
    """Section name -> checker, for every section the runner builds from config."""
    return {**default_sections(), "model": _check_model, "train_dataloader": _check_loader,
            "val_dataloader": _check_loader, "train_cfg": _check_train_cfg,
            "default_hooks": _check_hooks}


def runner_config_problems(cfg: Mapping, known_keys: Iterable[str],
                           required: Iterable[str] = ()) -> list[str]:
    """Every problem of a runner config, found without building anything.

    Args:
        cfg: The plain config dict.
        known_keys: The top-level keys a config may have (``Runner.config_keys()``).
        required: Top-level keys that must be present (``REQUIRED_KEYS`` for a run).

    Returns:
        One sentence per problem, missing sections first.
    """
    missing = [f"{key}: required section is missing" for key in required if key not in cfg]
    return (missing + check_config(cfg, runner_sections(), known_keys=list(known_keys))
            + _hooks_vs_train_cfg(cfg))
