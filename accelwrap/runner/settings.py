"""The runner's config sections and their checks (model, dataloaders, train_cfg, hooks).

They plug into :func:`accelwrap.checks.engine.check_config`, so one
``ConfigError`` lists every problem of a config: unknown top-level keys (with
suggestions), unregistered types and bad arguments anywhere.

MMEngine sections accelwrap reads (``val_cfg``, ``auto_scale_lr``, ``custom_imports``,
``randomness.deterministic``) are checked here and consumed by :func:`runner_arguments`;
those it does not implement (:data:`IGNORED_SECTIONS`) get one note each, a warning from
``accelwrap check`` that training ignores -- never a misleading "did you mean".

Example:
    >>> runner_config_problems({'modle': {}}, known_keys=['model'])[0]
    "modle: unknown top-level key; did you mean 'model'?"
    >>> runner_config_notes({'launcher': 'pytorch'}, ['model'])
    ['launcher: not used: the launcher is `accelerate launch` or `torchrun`; ignored']
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from accelwrap.checks.engine import (
    argument_problems,
    check_component,
    check_config,
    default_sections,
)
from accelwrap.checks.trial import trial_problems
from accelwrap.config import import_custom_modules
from accelwrap.errors import ConfigError, suggest
from accelwrap.registry import to_plain
from accelwrap.runner.build import scale_lr
from accelwrap.runner.data import DATASETS, loader_signature, loader_value_problems
from accelwrap.runner.default_hooks import parse_default_hooks
from accelwrap.runner.ema import parse_custom_hooks
from accelwrap.runner.models import MODELS
from accelwrap.runner.testing import parse_test_cfg
from accelwrap.runner.train_cfg import TrainSchedule, parse_train_cfg

__all__ = ["CONSUMED_SECTIONS", "IGNORED_SECTIONS", "REQUIRED_KEYS", "runner_arguments",
           "runner_config_notes", "runner_config_problems", "runner_sections"]

#: Top-level sections a run needs (``accelwrap train`` fills in ``work_dir``).
REQUIRED_KEYS = ("model", "work_dir", "train_dataloader", "optim_wrapper", "train_cfg")

#: MMEngine sections that are read before the runner is built (not Runner arguments).
CONSUMED_SECTIONS = ("custom_imports", "val_cfg", "auto_scale_lr")

#: MMEngine sections accelwrap accepts but does not implement: name -> what happens.
IGNORED_SECTIONS = {
    "test_evaluator": "not used: `accelwrap test` reports the model's val_step metrics (or "
                      "the mean loss), as validation does",
    "val_evaluator": "not used: accelwrap validates with the model's val_step (or the mean "
                     "loss)",
    "default_scope": "not applied: types are looked up in accelwrap's registries (bring your "
                     "own classes with custom_imports)",
    "env_cfg": "not used: Accelerate sets up processes and backends (see launch_configs/)",
    "visualizer": "not implemented by accelwrap (it logs scalars through "
                  "default_hooks.logger)",
    "vis_backends": "not implemented by accelwrap (trackers: default_hooks.logger.trackers)",
    "log_processor": "not implemented by accelwrap (the logger writes every scalar as is)",
    "launcher": "not used: the launcher is `accelerate launch` or `torchrun`",
    "log_level": "not used: configure Python's logging instead",
}


def _check_model(node: Any, path: str) -> list[str]:
    return _trial_component(node, MODELS, path, device="meta")


def _check_loader(node: Any, path: str) -> list[str]:
    """A dataloader config: its keys and their value types, and its dataset."""
    if node is None:
        return []
    if not isinstance(node, Mapping):
        return [f"{path}: expected a dict with 'dataset' and 'batch_size', got {node!r}"]
    if "dataset" not in node:
        return [f"{path}: no 'dataset' key (e.g. dataset: {{type: DigitsDataset, split: train}})"]
    rest = {k: v for k, v in node.items() if k != "dataset"}
    problems = argument_problems(loader_signature, rest, path, label="")
    problems += loader_value_problems(rest, path) if not problems else []  # build's own rule
    return problems + _trial_component(node["dataset"], DATASETS, f"{path}.dataset")


def _trial_component(node: Any, registry: Any, path: str, device: str | None = None) -> list[str]:
    """Check a component's type and arguments; accelwrap's own classes are also built.

    Their constructors refuse impossible values (``num_classes: 0``, ``split: test``)
    and cost little (a model on ``device`` ``'meta'``, a bundled dataset); a user's
    class is not built here (its constructor may be costly): building reports it, and
    the runner's pre-flight (:mod:`accelwrap.runner.preflight`) a model that does not
    fit its data.
    """
    target, problems = check_component(node, registry, path)
    if problems or not getattr(target, "__module__", "").startswith("accelwrap."):
        return problems

    def build(args: dict) -> Any:
        with torch.device(device) if device else contextlib.nullcontext():
            return target(**args)
    return trial_problems(target, build, {k: v for k, v in node.items() if k != "type"}, path)


def _check_train_cfg(node: Any, path: str) -> list[str]:
    try:
        parse_train_cfg(node)
    except ConfigError as err:
        return err.problems
    return []


def _check_hooks(node: Any, path: str) -> list[str]:
    """``default_hooks`` on its own (any ``checkpoint.by_epoch`` fits an epoch-based run)."""
    shape = _mapping_problems(node, path, "{checkpoint: {...}, logger: {...}}")
    if shape or node is None:
        return shape
    shape = [p for key in ("checkpoint", "logger")
             for p in _mapping_problems(node.get(key), f"{path}.{key}", "{interval: 1, ...}")]
    if shape:
        return shape
    try:
        parse_default_hooks(node, TrainSchedule(max_epochs=1))
    except ConfigError as err:
        return err.problems
    return _tracker_problems(to_plain(node) or {}, path)


def _tracker_problems(hooks: Mapping, path: str) -> list[str]:
    """``logger.trackers``: ``auto``, null, or names of Accelerate's trackers (its list)."""
    from accelerate.utils import LoggerType

    trackers = (hooks.get("logger") or {}).get("trackers", "auto")
    if trackers in ("auto", None):
        return []
    names = [trackers] if isinstance(trackers, str) else trackers
    valid = [kind.value for kind in LoggerType]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return [f"{path}.logger.trackers: expected 'auto', null, a tracker name or a list of "
                f"them (Accelerate's: {', '.join(valid)}), got {trackers!r}"]
    return [f"{path}.logger.trackers: {name!r} is not one of Accelerate's trackers; "
            f"{suggest(name, valid)}" for name in names if name.lower() not in valid]


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


def _check_val_cfg(node: Any, path: str) -> list[str]:
    """``val_cfg``: ``{}`` or ``dict(type='ValLoop')`` as in MMEngine (null: no val loop)."""
    if node is None:
        return []
    if not isinstance(node, Mapping) or node.get("type", "ValLoop") != "ValLoop" \
            or set(node) - {"type", "fp16"}:
        return [f"{path}: expected {{}} or {{type: ValLoop}} (accelwrap runs one validation "
                f"loop), got {node!r}"]
    return []


def _check_auto_scale_lr(node: Any, path: str) -> list[str]:
    if not isinstance(node, Mapping) or set(node) - {"enable", "base_batch_size"}:
        return [f"{path}: expected {{enable: true, base_batch_size: N}}, got {node!r}"]
    base = node.get("base_batch_size")
    if node.get("enable", False) and (not isinstance(base, int) or isinstance(base, bool)
                                      or base < 1):
        return [f"{path}.base_batch_size: expected a positive integer, got {base!r}"]
    return []


def _check_randomness(node: Any, path: str) -> list[str]:
    if node is None:
        return []
    if not isinstance(node, Mapping):
        return [f"{path}: expected {{seed: 0, deterministic: false, diff_rank_seed: false}}, "
                f"got {node!r}"]
    problems = argument_problems(_randomness_signature, node, path, label="")
    seed = node.get("seed")
    if not problems and seed is not None and not 0 <= seed < 2 ** 32:  # NumPy's seed range
        problems.append(f"{path}.seed: expected an integer in [0, 2**32 - 1] (NumPy's and "
                        f"Accelerate's set_seed range) or null (a random seed), got {seed!r}")
    return problems


def _randomness_signature(seed: int | None = 0, deterministic: bool = False,
                          diff_rank_seed: bool = False) -> None:
    """The keys ``randomness`` accepts (used to check them); ``seed: null`` is random."""


def _check_test_loader(node: Any, path: str) -> list[str]:
    """Only its shape: ``accelwrap test`` builds it (training never does)."""
    if node is None or isinstance(node, Mapping) or hasattr(node, "__iter__"):
        return []
    return [f"{path}: expected a DataLoader config (dict(dataset=..., batch_size=...)), "
            f"got {node!r}"]


def _mapping_problems(node: Any, path: str, example: str) -> list[str]:
    """A section that must be a mapping (or absent / null)."""
    if node is None or isinstance(node, Mapping):
        return []
    return [f"{path}: expected a mapping such as {example} (or null), got {node!r}"]


def _check_test_cfg(node: Any, path: str) -> list[str]:
    shape = _mapping_problems(node, path, "{type: TestLoop}")
    if shape:
        return shape
    try:
        parse_test_cfg(node)
    except ValueError as err:
        return [str(err)]
    return []


def _check_custom_hooks(node: Any, path: str) -> list[str]:
    try:
        parse_custom_hooks(node)
    except ConfigError as err:
        return err.problems
    return []


def _check_custom_imports(node: Any, path: str) -> list[str]:
    try:
        import_custom_modules(node)  # already imported when the config was loaded: cheap
    except ConfigError as err:
        return err.problems
    return []


def _runner_values(work_dir: str = "", resume: bool | str = False, load_from: str | None = None,
                   experiment_name: str | None = None) -> None:
    """The types of the Runner's plain top-level arguments (used to check them)."""


def _check_value(node: Any, path: str) -> list[str]:
    return argument_problems(_runner_values, {path: node}, "", label="")


def _check_accelerator(node: Any, path: str) -> list[str]:
    """``accelerator``: null or a mapping of ``Accelerator`` arguments (names and types)."""
    from accelerate import Accelerator

    shape = _mapping_problems(node, path, "{mixed_precision: bf16}")
    if shape or node is None:
        return shape
    return argument_problems(Accelerator, node, path)


def runner_sections() -> dict[str, Callable[[Any, str], list[str]]]:
    """Section name -> checker, for every section the runner builds from config."""
    values = dict.fromkeys(("work_dir", "resume", "load_from", "experiment_name"), _check_value)
    return {**default_sections(), **values, "accelerator": _check_accelerator,
            "model": _check_model, "train_dataloader": _check_loader,
            "val_dataloader": _check_loader, "test_dataloader": _check_test_loader,
            "test_cfg": _check_test_cfg, "train_cfg": _check_train_cfg,
            "default_hooks": _check_hooks, "val_cfg": _check_val_cfg,
            "auto_scale_lr": _check_auto_scale_lr, "randomness": _check_randomness,
            "custom_imports": _check_custom_imports, "custom_hooks": _check_custom_hooks}


def runner_config_notes(cfg: Mapping, known_keys: Iterable[str]) -> list[str]:
    """One note per MMEngine section the config has that accelwrap does not implement.

    Args:
        cfg: The plain config dict.
        known_keys: The Runner's own keys (a section it implements gets no note).

    Returns:
        One sentence per ignored section.
    """
    known = set(known_keys)
    return [f"{key}: {IGNORED_SECTIONS[key]}; ignored" for key in cfg
            if key in IGNORED_SECTIONS and key not in known]


def _batch_size(loader: Any) -> int:
    if isinstance(loader, Mapping):
        return loader.get("batch_size", 1)
    return getattr(loader, "batch_size", None) or 1


def runner_arguments(cfg: Mapping, known_keys: Iterable[str],
                     world_size: int | None = None) -> tuple[dict[str, Any], list[str]]:
    """The Runner's keyword arguments from a checked config, and the lines to log.

    ``custom_imports`` is imported, ``auto_scale_lr`` applied (:func:`scale_lr`, with the
    per-process ``train_dataloader.batch_size`` and ``world_size``), ``val_cfg``
    consumed, and the sections of :data:`IGNORED_SECTIONS` left out with a note.

    Args:
        cfg: The plain config (checked by :func:`runner_config_problems`).
        known_keys: The Runner's own keys (``Runner.config_keys()``).
        world_size: Processes of the run; default ``WORLD_SIZE`` from the launcher, else 1.

    Returns:
        ``(kwargs, notes)``.

    Example:
        >>> cfg = {'optim_wrapper': {'optimizer': {'type': 'SGD', 'lr': 0.1}},
        ...        'train_dataloader': {'batch_size': 32}, 'val_cfg': {},
        ...        'auto_scale_lr': {'enable': True, 'base_batch_size': 16}}
        >>> kwargs, notes = runner_arguments(cfg, ['optim_wrapper', 'train_dataloader'], 1)
        >>> sorted(kwargs), kwargs['optim_wrapper']['optimizer']['lr']
        (['optim_wrapper', 'train_dataloader'], 0.2)
    """
    known = set(known_keys)
    import_custom_modules(cfg.get("custom_imports"))
    world = int(os.environ.get("WORLD_SIZE", "1")) if world_size is None else world_size
    scaled, line = scale_lr(cfg, _batch_size(cfg.get("train_dataloader")), world)
    notes = ([line] if line else []) + runner_config_notes(scaled, known)
    kwargs = {k: v for k, v in scaled.items()
              if k in known or (k not in CONSUMED_SECTIONS and k not in IGNORED_SECTIONS)}
    return kwargs, notes


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
    known = [*known_keys, *CONSUMED_SECTIONS, *IGNORED_SECTIONS]
    return (missing + check_config(cfg, runner_sections(), known_keys=known,
                                   run_length=_run_length(cfg.get("train_cfg")))
            + _hooks_vs_train_cfg(cfg) + _val_sections(cfg))


def _run_length(train_cfg: Any) -> tuple[int | None, int | None]:
    """``(max_epochs, max_iters)`` as far as they are known before the data is seen."""
    try:
        schedule = parse_train_cfg(train_cfg)
    except ConfigError:
        return None, None  # reported by the train_cfg check
    return (schedule.max_epochs, None) if schedule.by_epoch else (None, schedule.max_iters)


def _val_sections(cfg: Mapping) -> list[str]:
    """``val_cfg: null`` (no validation) with a ``val_dataloader``: refused, as MMEngine does."""
    if "val_cfg" in cfg and cfg["val_cfg"] is None and cfg.get("val_dataloader") is not None:
        return ["val_cfg: null turns validation off, but val_dataloader is set (MMEngine "
                "refuses this too: val_dataloader, val_cfg and val_evaluator should be either "
                "all None or not None); remove val_dataloader, or write val_cfg: {}"]
    return []
