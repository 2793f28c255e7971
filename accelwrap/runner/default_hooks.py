"""The checkpoint and logger settings (MMEngine's ``default_hooks`` section).

Example:
    >>> from accelwrap.runner.train_cfg import TrainSchedule
    >>> ckpt, log = parse_default_hooks(dict(checkpoint=dict(interval=2)),
    ...                                 TrainSchedule(max_epochs=4))
    >>> ckpt.interval, ckpt.by_epoch, log.interval
    (2, True, 1)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from accelwrap.checks.engine import argument_problems
from accelwrap.errors import ConfigError, suggest
from accelwrap.registry import to_plain
from accelwrap.runner.best import infer_rule
from accelwrap.runner.log_output import default_trackers
from accelwrap.runner.preemption import DEFAULT_PREEMPT_SIGNALS, parse_preempt_signals
from accelwrap.runner.save_failure import POLICIES
from accelwrap.runner.train_cfg import TrainSchedule

__all__ = ["CheckpointSettings", "LoggerSettings", "parse_default_hooks"]


@dataclass(frozen=True)
class CheckpointSettings:
    """When to save and how many checkpoints to keep.

    Attributes:
        interval: Save every this many epochs (``by_epoch``) or iterations.
        by_epoch: Count ``interval`` in epochs; defaults to ``train_cfg.by_epoch``.
        max_keep_ckpts: Keep the newest N complete checkpoints (-1: keep all).
        save_last: Also save at the end of training.
        save_best: Keep the checkpoint of the best validation value of this metric
            (``'auto'``: the first metric), as ``best_<metric>_epoch_<n>`` (see
            :mod:`accelwrap.runner.best`); None: no best checkpoint.
        rule: ``'greater'`` or ``'less'`` is better; None: inferred from the name as
            MMEngine does.
        on_error: A save that cannot be written (disk full, permissions): ``'raise'``
            stops the run with one clear line, ``'warn'`` logs it and trains on (the next
            due save tries again); see :mod:`accelwrap.runner.save_failure`.
        preempt_signals: Signals that make every process save a checkpoint after its
            iteration and exit with status 75 (``[]``: none); see
            :mod:`accelwrap.runner.preemption`.
        async_save: The config key ``async``: training blocks only to copy the state into
            host memory, the rest of the save runs in the background (1 process, no
            FSDP; see :mod:`accelwrap.runner.async_save`).
    """

    interval: int = 1
    by_epoch: bool = True
    max_keep_ckpts: int = -1
    save_last: bool = True
    save_best: str | None = None
    rule: str | None = None
    on_error: str = "raise"
    preempt_signals: tuple[str, ...] = DEFAULT_PREEMPT_SIGNALS
    async_save: bool = False


@dataclass(frozen=True)
class LoggerSettings:
    """How often to log and where.

    Attributes:
        interval: Log training scalars every this many iterations.
        trackers: Accelerate tracker names (``'auto'``: TensorBoard when installed).
        progress_bar: Show a progress bar on the main process (only when stderr is a
            terminal; elsewhere the interval lines alone).
        per_group: Log every param group's ``lr``/``momentum`` (``lr.0``, ``lr.1``, ...)
            instead of one per optimizer.
    """

    interval: int = 1
    trackers: list[str] = field(default_factory=list)
    progress_bar: bool = True
    per_group: bool = False


def _checkpoint_keys(type: str = "CheckpointHook", interval: int = 1, by_epoch: bool | None = None,
                     max_keep_ckpts: int = -1, save_last: bool = True,
                     save_best: str | None = None, rule: str | None = None,
                     on_error: str = "raise",
                     preempt_signals: Any = DEFAULT_PREEMPT_SIGNALS,
                     async_: bool = False) -> None:
    """The keys ``default_hooks.checkpoint`` accepts (``async_``: the key ``async``)."""


def _logger_keys(type: str = "LoggerHook", interval: int = 1, trackers: Any = "auto",
                 progress_bar: bool = True, per_group: bool = False) -> None:
    """The keys ``default_hooks.logger`` accepts."""


def _section(cfg: Mapping, key: str, signature: Any, hook_type: str) -> dict[str, Any]:
    args = dict(to_plain(cfg.get(key)) or {})
    if key == "checkpoint" and "async" in args:  # a Python keyword: no parameter name
        args["async_"] = args.pop("async")
    problems = [problem.replace("async_", "async") for problem in  # names, types
                argument_problems(signature, args, f"default_hooks.{key}", label="")]
    if problems:
        raise ConfigError(problems)
    given = args.pop("type", hook_type)
    if given != hook_type:
        raise ValueError(f"default_hooks.{key}.type: only {hook_type!r} is supported, "
                         f"got {given!r}")
    return args


def _best_problems(save_best: Any, rule: Any) -> list[str]:
    if save_best is not None and (not isinstance(save_best, str) or not save_best):
        return [f"default_hooks.checkpoint.save_best: expected a metric name or 'auto', "
                f"got {save_best!r}"]
    try:
        if rule is not None or save_best not in (None, "auto"):
            infer_rule(save_best or "", rule)
    except ValueError as err:
        return [str(err)]
    return []


def parse_default_hooks(cfg: Mapping | None,
                        schedule: TrainSchedule) -> tuple[CheckpointSettings, LoggerSettings]:
    """Check ``default_hooks`` and return the checkpoint and logger settings.

    Args:
        cfg: ``dict(checkpoint=dict(...), logger=dict(...))`` or None.
        schedule: The train schedule (its ``by_epoch`` is the checkpoint default).

    Returns:
        ``(CheckpointSettings, LoggerSettings)``.

    Raises:
        ConfigError: Unknown sections, keys or bad values (all listed).
    """
    plain = dict(to_plain(cfg) or {})
    problems = [f"default_hooks.{key}: unknown section; {suggest(key, ['checkpoint', 'logger'])}"
                for key in plain if key not in ("checkpoint", "logger")]
    try:
        ckpt = _section(plain, "checkpoint", _checkpoint_keys, "CheckpointHook")
        log = _section(plain, "logger", _logger_keys, "LoggerHook")
    except ConfigError as err:
        raise ConfigError([*problems, *err.problems]) from err
    except (TypeError, ValueError) as err:
        raise ConfigError([*problems, str(err)]) from err
    if ckpt.get("by_epoch") is None:
        ckpt["by_epoch"] = schedule.by_epoch
    if ckpt["by_epoch"] and not schedule.by_epoch:
        problems.append("default_hooks.checkpoint.by_epoch: True needs train_cfg.by_epoch=True; "
                        "an iteration-based run saves by iteration (by_epoch: false)")
    for section, key, value in (("checkpoint", "interval", ckpt.get("interval", 1)),
                                ("logger", "interval", log.get("interval", 1))):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(f"default_hooks.{section}.{key}: expected a positive integer, "
                            f"got {value!r}")
    for key in ("progress_bar", "per_group"):
        if not isinstance(log.get(key, False), bool):
            problems.append(f"default_hooks.logger.{key}: expected true or false, "
                            f"got {log[key]!r}")
    problems += _best_problems(ckpt.get("save_best"), ckpt.get("rule"))
    if "async_" in ckpt:
        ckpt["async_save"] = ckpt.pop("async_")
        if not isinstance(ckpt["async_save"], bool):
            problems.append(f"default_hooks.checkpoint.async: expected true or false, "
                            f"got {ckpt['async_save']!r}")
    if ckpt.get("on_error", "raise") not in POLICIES:
        problems.append(f"default_hooks.checkpoint.on_error: expected one of {list(POLICIES)}, "
                        f"got {ckpt['on_error']!r}")
    try:
        ckpt["preempt_signals"] = parse_preempt_signals(ckpt.get("preempt_signals",
                                                                 DEFAULT_PREEMPT_SIGNALS))
    except ValueError as err:
        problems.append(str(err))
    trackers = log.get("trackers", "auto")
    if trackers == "auto":
        log["trackers"] = default_trackers()
    elif trackers is None:
        log["trackers"] = []
    elif isinstance(trackers, str):
        log["trackers"] = [trackers]
    if problems:
        raise ConfigError(problems)
    return CheckpointSettings(**ckpt), LoggerSettings(**log)
