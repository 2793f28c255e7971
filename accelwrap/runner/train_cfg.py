"""Reading ``train_cfg``: how long to train and when to validate (MMEngine's train loops).

Example:
    >>> parse_train_cfg(dict(by_epoch=True, max_epochs=3, val_interval=1)).by_epoch
    True
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from accelwrap.checks.engine import argument_problems
from accelwrap.checks.value_types import value_problems
from accelwrap.errors import ConfigError
from accelwrap.registry import to_plain

__all__ = ["LOOP_TYPES", "TrainSchedule", "parse_train_cfg"]

#: MMEngine's train loops accelwrap runs: ``train_cfg.type`` -> ``by_epoch``.
LOOP_TYPES = {"EpochBasedTrainLoop": True, "IterBasedTrainLoop": False}


@dataclass(frozen=True)
class TrainSchedule:
    """How long to train and when to validate (MMEngine's ``train_cfg``).

    Attributes:
        by_epoch: Epoch-based (True) or iteration-based (False) training.
        max_epochs: Epochs to train (epoch-based only).
        max_iters: Iterations to train (iteration-based only).
        val_interval: Validate every this many epochs / iterations.
        val_begin: First epoch / iteration at which validation may run.
        dynamic_intervals: ``(milestone, interval)`` pairs, as MMEngine's loops: from
            the milestone on (once ``count + 1`` reaches it), ``interval`` replaces
            ``val_interval``.
        preflight: Run the model on two dataset samples before training, so a model that
            does not fit its data is a named config error (:mod:`accelwrap.runner.preflight`);
            ``false`` for a model whose forward only runs on the GPU.
    """

    by_epoch: bool = True
    max_epochs: int | None = None
    max_iters: int | None = None
    val_interval: int = 1
    val_begin: int = 1
    dynamic_intervals: tuple[tuple[int, int], ...] = ()
    preflight: bool = True

    def total_iters(self, epoch_length: int) -> int:
        """Iterations of the whole run for ``epoch_length`` iterations per epoch."""
        return self.max_epochs * epoch_length if self.by_epoch else self.max_iters

    def interval_at(self, count: int) -> int:
        """The validation interval in force after epoch/iteration ``count`` (1-based).

        Example:
            >>> s = TrainSchedule(max_epochs=300, val_interval=10, dynamic_intervals=((280, 1),))
            >>> s.interval_at(278), s.interval_at(279)
            (10, 1)
        """
        milestones = [0, *(m for m, _ in self.dynamic_intervals)]
        intervals = [self.val_interval, *(i for _, i in self.dynamic_intervals)]
        return intervals[bisect.bisect(milestones, count + 1) - 1]

    def val_due(self, count: int, last: int) -> bool:
        """Whether validation runs after epoch/iteration ``count`` (1-based) of ``last``."""
        return count >= self.val_begin and (count % self.interval_at(count) == 0
                                            or count == last)


def _train_cfg_signature(by_epoch: bool = True, max_epochs: int | None = None,
                         max_iters: int | None = None, val_interval: int = 1,
                         val_begin: int = 1, dynamic_intervals: list | None = None,
                         preflight: bool = True) -> None:
    """The keys ``train_cfg`` accepts (used to check them)."""


def _loop_type(args: dict) -> dict:
    """``train_cfg`` with MMEngine's ``type`` turned into ``by_epoch`` (and its defaults)."""
    if "type" not in args:
        return args
    args = dict(args)
    name = args.pop("type")
    short = name.rsplit(".", 1)[-1] if isinstance(name, str) else name
    if short not in LOOP_TYPES:
        raise ValueError(f"train_cfg.type: {name!r} is not a loop accelwrap runs; use "
                         "EpochBasedTrainLoop (by_epoch: true) or IterBasedTrainLoop "
                         "(by_epoch: false)")
    if args.get("by_epoch", LOOP_TYPES[short]) != LOOP_TYPES[short]:
        raise ValueError(f"train_cfg: type={name!r} contradicts by_epoch={args['by_epoch']!r}")
    args["by_epoch"] = LOOP_TYPES[short]
    if not args["by_epoch"]:
        args.setdefault("val_interval", 1000)  # IterBasedTrainLoop's default in MMEngine
    return args


def _dynamic_intervals(value: Any) -> tuple[tuple[int, int], ...]:
    pairs = [] if value is None else value
    if not isinstance(pairs, (list, tuple)) or not all(
            isinstance(p, (list, tuple)) and len(p) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in p)
            for p in pairs):
        raise ValueError("train_cfg.dynamic_intervals: expected [[milestone, interval], ...] "
                         f"of positive integers, got {value!r}")
    if [p[0] for p in pairs] != sorted(p[0] for p in pairs):
        raise ValueError(f"train_cfg.dynamic_intervals: milestones must increase, got {value!r}")
    return tuple((int(m), int(i)) for m, i in pairs)


def parse_train_cfg(cfg: Mapping | TrainSchedule) -> TrainSchedule:
    """Check ``train_cfg`` and turn it into a :class:`TrainSchedule`.

    Args:
        cfg: ``dict(by_epoch=True, max_epochs=N)`` or ``dict(by_epoch=False,
            max_iters=N)`` (or MMEngine's ``type=EpochBasedTrainLoop`` /
            ``IterBasedTrainLoop`` instead of ``by_epoch``), plus optional
            ``val_interval`` / ``val_begin`` / ``dynamic_intervals`` / ``preflight``.

    Returns:
        The schedule.

    Raises:
        ConfigError: Every problem at once: unknown keys, values of the wrong type
            (``by_epoch: "yes"``), the length key missing, not a positive integer or
            given for the other mode, an unknown loop ``type``, malformed
            ``dynamic_intervals``.

    Example:
        >>> parse_train_cfg({'type': 'IterBasedTrainLoop', 'max_iters': 5000})
        TrainSchedule(by_epoch=False, max_epochs=None, max_iters=5000, val_interval=1000, \
val_begin=1, dynamic_intervals=(), preflight=True)
        >>> parse_train_cfg({'by_epoch': 'yes', 'max_epochs': 0})
        Traceback (most recent call last):
        accelwrap.errors.ConfigError: 2 problems in the configuration:
          - train_cfg.by_epoch: expected bool, got 'yes' (str)
          - train_cfg.max_epochs: expected an integer >= 1, got 0
    """
    if isinstance(cfg, TrainSchedule):
        return cfg
    args = to_plain(cfg)
    if not isinstance(args, Mapping):
        raise ConfigError(f"train_cfg: expected a dict such as dict(by_epoch=True, "
                          f"max_epochs=3), got {cfg!r}")
    try:
        args = _loop_type(args)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    problems = argument_problems(_train_cfg_signature, args, "train_cfg", label="")
    mistyped = {key for key, _ in value_problems(_train_cfg_signature, args)}
    try:
        if "dynamic_intervals" not in mistyped:
            args["dynamic_intervals"] = _dynamic_intervals(args.get("dynamic_intervals"))
    except ValueError as err:
        problems.append(str(err))
    problems += _length_problems(args, mistyped)
    if problems:
        raise ConfigError(problems)
    return TrainSchedule(**args)


def _length_problems(args: Mapping[str, Any], mistyped: set[str]) -> list[str]:
    """The run length and validation counts: the right key for the mode, integers >= minimum."""
    by_epoch = args.get("by_epoch", True)
    need, other = ("max_epochs", "max_iters") if by_epoch else ("max_iters", "max_epochs")
    if "by_epoch" in mistyped:  # the mode is unknown: check the length key that is given
        need, other = next(((key, None) for key in ("max_epochs", "max_iters")
                            if args.get(key) is not None), (None, None))
    problems = []
    if other is not None and args.get(other) is not None:
        problems.append(f"train_cfg.{other}: {args[other]!r} does not fit by_epoch={by_epoch}; "
                        f"set {need} instead")
    lengths = ((need, 1),) if need else ()
    for key, minimum in (*lengths, ("val_interval", 1), ("val_begin", 0)):
        value = args.get(key, 1 if key != need else None)
        if key not in mistyped and (not isinstance(value, int) or isinstance(value, bool)
                                    or value < minimum):
            problems.append(f"train_cfg.{key}: expected an integer >= {minimum}, got {value!r}")
    return problems
