"""``ReduceOnPlateau``: multiply the value by ``factor`` when a validation metric stalls.

Stepped like MMEngine's: ``step()`` after every training epoch only counts epochs (for
``begin``/``end``); ``step(metrics)`` after validation compares ``metrics[monitor]`` with the
best value so far. A monitor missing from the metrics is an error naming the metrics
present (MMEngine's KeyError, also a ValueError here).

:class:`ReduceOnPlateau` is the plateau family: the checked settings of the
``ReduceOnPlateau*`` schedulers. Like a chainable family, its docstring is their prose and
its keyword-only arguments are theirs.

Example:
    >>> import torch
    >>> from accelwrap.optim.scheduler import ReduceOnPlateauLR
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    >>> sched = ReduceOnPlateauLR(opt, monitor='loss', patience=0)
    >>> sched.step({'loss': 1.0}); sched.step({'loss': 2.0})
    >>> opt.param_groups[0]['lr']
    0.1
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from accelwrap.errors import ValueAssertionError, ValueKeyError, suggest
from accelwrap.optim._accelerate_compat import check_not_multistepped
from accelwrap.optim.scheduler.base import INF, ParamScheduler
from accelwrap.optim.scheduler.families import integer, number


class MetricNotFoundError(ValueKeyError):
    """The monitored metric is not among the validation results (a KeyError, as in MMEngine)."""


def _choice(name: str, value: Any, choices: tuple[str, ...], mode: str) -> str:
    if value not in choices:
        raise ValueError(f"{mode} {value} is unknown! {name} must be one of {list(choices)}, got "
                         f"{value!r}; {suggest(str(value), choices)}")
    return value


class ReduceOnPlateau:
    """Reduce the value when a validation metric stops improving.

    Stepped with the validation metrics (``step(metrics)``, ``need_val_args`` is True);
    ``step()`` without metrics only counts epochs. After more than ``patience`` validations
    without improvement the value is multiplied by ``factor`` (not below ``min_value``).

    Args:
        optimizer: The scheduled optimizer or ``OptimWrapper`` (to match ``min_value``
            lists to its param groups).
        monitor: Name of the metric to watch. Defaults to ``'loss'``.
        rule: ``'less'`` (lower is better) or ``'greater'``. Defaults to ``'less'``.
        factor: Multiplier in [0, 1) applied on a plateau. Defaults to 0.1.
        patience: Validations without improvement that are tolerated. Defaults to 10.
        threshold: Minimum change that counts as improvement. Defaults to 1e-4.
        threshold_rule: ``'rel'`` (relative to the best) or ``'abs'``. Defaults to ``'rel'``.
        cooldown: Validations to wait after a reduction. Defaults to 0.
        min_value: Lower bound: one number or one per param group. Defaults to 0.
        eps: Changes smaller than this are skipped. Defaults to 1e-8.

    Raises:
        ValueError: An argument is out of range or not one of its choices.
        TypeError: An argument has the wrong type.
    """

    order: tuple[str, ...] | None = None
    #: Not convertible to iteration-based: it is stepped after validation.
    epoch_counts: tuple[str, ...] | None = None
    example = "monitor='loss', patience=2"
    example_step = "sched.step({'loss': 0.5})"
    published = ("monitor", "rule", "factor", "patience", "threshold", "threshold_rule",
                 "cooldown", "min_values", "eps")

    def __init__(self, optimizer: Any, *, monitor: str = "loss", rule: str = "less",
                 factor: float = 0.1, patience: int = 10, threshold: float = 1e-4,
                 threshold_rule: str = "rel", cooldown: int = 0,
                 min_value: float | list[float] = 0.0, eps: float = 1e-8) -> None:
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a metric name, got {monitor!r}")
        self.monitor = monitor
        self.rule = _choice("rule", rule, ("less", "greater"), "mode")
        self.threshold_rule = _choice("threshold_rule", threshold_rule, ("rel", "abs"),
                                      "threshold mode")
        factor = number("factor", factor, 0.0)
        if factor >= 1.0:
            raise ValueError(f"Factor should be < 1.0: it multiplies the value on a plateau, got "
                             f"factor={factor!r}")
        self.factor = factor
        self.patience = integer("patience", patience, 0)
        self.cooldown = integer("cooldown", cooldown, 0)
        if isinstance(threshold, (int, float)) and not isinstance(threshold, bool) \
                and threshold < 0:
            raise ValueError(f"threshold {threshold} should be >= 0 (the least change that "
                             "counts as an improvement)")
        self.threshold = number("threshold", threshold, 0.0)
        self.eps = number("eps", eps, 0.0)
        self.min_values = self._min_values(optimizer, min_value)

    @staticmethod
    def _min_values(optimizer: Any, min_value: Any) -> list[float]:
        groups = getattr(optimizer, "param_groups", None) or []
        if not isinstance(min_value, (list, tuple)):
            return [number("min_value", min_value)] * len(groups)
        values = [number("min_value", v) for v in min_value]
        inner = getattr(getattr(optimizer, "optimizer", None), "param_groups", None)
        if inner is not None and len(values) == len(inner) == len(groups) - 1:
            values.append(values[-1])  # the OptimWrapper's base_param_settings group
        if len(values) != len(groups):
            count = len(inner or groups)
            raise ValueError(f"expected {count} min_lrs, got {len(min_value)}: min_value has "
                             f"{list(min_value)} but the optimizer has {count} param groups")
        return values


class ReduceOnPlateauScheduler(ParamScheduler):
    """Reduce the scheduled value when ``metrics[monitor]`` has not improved for a while.

    The ``ReduceOnPlateau*`` classes pass the arguments of their family (``family``, a
    :class:`ReduceOnPlateau` by default) in ``options``; the checked settings become
    attributes of the scheduler (``monitor``, ``rule``, ``factor``, ``patience``,
    ``threshold``, ``threshold_rule``, ``cooldown``, ``min_values``, ``eps``).

    Args:
        optimizer: A torch optimizer or an ``OptimWrapper``.
        param_name: The param-group key to schedule.
        options: The plateau arguments.
        begin, end, last_step, by_epoch, verbose: See :class:`ParamScheduler`;
            ``by_epoch`` must be True.

    Raises:
        ValueError: An argument is out of range, or ``by_epoch`` is False.
    """

    family: type = ReduceOnPlateau
    need_val_args = True
    epoch_count_args = None
    _step_at_construction = False
    _state_keys = ParamScheduler._state_keys + ("best", "num_bad_epochs", "cooldown_counter")

    def __init__(self, optimizer: Any, param_name: str, options: dict[str, Any], begin: int = 0,
                 end: int = INF, last_step: int = -1, by_epoch: bool = True,
                 verbose: bool = False) -> None:
        owner = type(self).__name__
        if by_epoch is not True:
            raise ValueAssertionError(f"Now {owner} only support by_epoch=True: it is stepped "
                                      f"after each validation, got by_epoch={by_epoch!r}")
        try:
            settings = self.family(optimizer, **options)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{owner}: {exc}") from None
        vars(self).update(vars(settings))
        self.best = math.inf if self.rule == "less" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        super().__init__(optimizer, param_name, begin=begin, end=end, last_step=last_step,
                         by_epoch=by_epoch, verbose=verbose)

    def _prepare(self) -> None:
        self._global_step = 0

    def is_better(self, value: float) -> bool:
        """Whether ``value`` improves on the best value by more than the threshold."""
        best = self.best
        if self.rule == "less":
            limit = best * (1.0 - self.threshold) if self.threshold_rule == "rel" \
                else best - self.threshold
            return value < limit
        limit = best * (1.0 + self.threshold) if self.threshold_rule == "rel" \
            else best + self.threshold
        return value > limit

    def step(self, metrics: Mapping[str, Any] | None = None) -> None:
        """Count an epoch (``metrics=None``) or judge validation results.

        Args:
            metrics: Validation results; ``metrics[monitor]`` is compared with the best.

        Raises:
            TypeError: ``metrics`` is not a mapping.
            MetricNotFoundError: ``monitor`` is not in ``metrics`` (names those present).
        """
        check_not_multistepped()
        self._step_count += 1
        if metrics is None:
            self._global_step += 1
            return
        if not isinstance(metrics, Mapping):
            raise TypeError(f"{type(self).__name__}.step: metrics type should be dict (the "
                            f"validation results), but got type {type(metrics).__name__}")
        groups = self.optimizer.param_groups
        if self.begin <= self._global_step < self.end:
            self.last_step += 1
            self._judge(self._metric(metrics), groups)
        self._last_value = [group[self.param_name] for group in groups]

    def _metric(self, metrics: Mapping[str, Any]) -> float:
        if self.monitor not in metrics:
            raise MetricNotFoundError(
                f"{type(self).__name__}: monitor {self.monitor!r} is not in the validation "
                f"metrics {sorted(metrics)}; {suggest(self.monitor, [str(k) for k in metrics])}")
        return float(metrics[self.monitor])

    def _judge(self, value: float, groups: list[dict]) -> None:
        if self.is_better(value):
            self.best = value
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            values = self._get_value()
            name = self.param_name
            changed = [v if group[name] - v > self.eps else group[name]
                       for group, v in zip(groups, values)]
            self._write(groups, changed)
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

    def _get_value(self) -> list[float]:
        return [max(float(group[self.param_name]) * self.factor, low)
                for group, low in zip(self.optimizer.param_groups, self.min_values)]
