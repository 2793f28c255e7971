"""``ParamScheduler``: the stepping window, state and epoch conversion of every scheduler.

A scheduler changes one key (``param_name``) of every param group of its target — a torch
optimizer or an ``OptimWrapper``, anything with a ``param_groups`` list. It counts calls to
:meth:`ParamScheduler.step` in ``_global_step`` and acts while ``begin <= _global_step <
end``; ``last_step`` counts the steps it acted on. Values are held after ``end``. Its
arguments are checked by :mod:`~accelwrap.optim.scheduler.validation`; the order of
``optimizer.step()`` and ``scheduler.step()`` is watched by
:mod:`~accelwrap.optim.scheduler.step_order`.

The class subclasses ``torch.optim.lr_scheduler.LRScheduler`` so ``accelerator.prepare``
accepts it and ``accelerator.save_state`` / ``load_state`` checkpoint it. Its state dict
holds only progress (plain ints, floats and lists), never the configuration: a resumed run
uses the arguments it was built with, so an edited schedule takes effect on resume.

Example:
    >>> import torch
    >>> from accelwrap.optim.scheduler import LinearLR
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    >>> sched = LinearLR(opt, start_factor=0.5, end=3, by_epoch=False)
    >>> [round(sched.get_last_value()[0], 3)]
    [0.5]
    >>> sched.step(); sched.step(); sched.step()
    >>> opt.param_groups[0]['lr']
    1.0
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Mapping
from typing import Any

from torch.optim.lr_scheduler import LRScheduler

from accelwrap.errors import ValueAssertionError, ValueKeyError
from accelwrap.optim._accelerate_compat import check_not_multistepped
from accelwrap.optim.scheduler.step_order import (
    count_optimizer_steps,
    warn_if_optimizer_not_stepped,
)
from accelwrap.optim.scheduler.validation import (
    check_param_name,
    check_window,
    momentum_key,
    param_groups_of,
)

INF = int(1e9)
COMMON_ARGS = ("begin", "end", "last_step", "by_epoch", "verbose")

logger = logging.getLogger("accelwrap")


def epochs_to_iters(value: Any, epoch_length: int, name: str, owner: str) -> Any:
    """Convert an epoch count (or a list of them) to an integer number of iterations.

    ``value * epoch_length`` is rounded to the nearest integer, halves up, so a milestone
    at epoch 1.5 with 7 iterations per epoch fires at iteration 11 (MMEngine keeps 10.5,
    which never fires). Whole epochs convert exactly as in MMEngine. ``None`` and ``INF``
    are kept.

    Args:
        value: A number, a list of numbers, ``None`` or ``INF``.
        epoch_length: Iterations per epoch.
        name: The argument's name, for messages.
        owner: The scheduler's class name, for messages.

    Returns:
        The converted value (ints).

    Raises:
        TypeError: ``value`` is not a number or a list of numbers.
    """
    if value is None or value == INF:
        return value
    if isinstance(value, (list, tuple)):
        return [epochs_to_iters(v, epoch_length, name, owner) for v in value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: {name} must be a number of epochs, got {value!r}")
    return int(math.floor(value * epoch_length + 0.5))


class ParamScheduler(LRScheduler):
    """Base class of every accelwrap parameter scheduler (MMEngine's ``_ParamScheduler``).

    Subclasses provide :meth:`_get_value`; MMEngine-style custom schedulers that read
    ``self.optimizer.param_groups`` and return new values keep working.

    Args:
        optimizer: A torch optimizer or an ``OptimWrapper`` (anything with ``param_groups``).
        param_name: The param-group key to schedule, e.g. ``'lr'`` or ``'weight_decay'``.
        begin: First step (inclusive) at which the scheduler acts. Defaults to 0.
        end: Step (exclusive) at which it stops; the value is held afterwards.
            Defaults to ``INF``; the runner's builder uses the run length.
        last_step: Index of the last step taken, for resuming without a state dict
            (needs ``initial_<param_name>`` in every group). Defaults to -1.
        by_epoch: Whether the scheduler is stepped once per epoch (True) or once per
            iteration (False). Defaults to True.
        verbose: Log every value change. Defaults to False.

    Raises:
        TypeError: ``optimizer`` has no param groups, or an argument has the wrong type.
        ValueError: ``end <= begin``, ``last_step < -1``, or ``param_name`` is not a key
            of the param groups.

    Example:
        >>> import torch
        >>> from accelwrap.optim.scheduler import ParamScheduler
        >>> class Halve(ParamScheduler):
        ...     def _get_value(self):
        ...         return [g[self.param_name] / 2 for g in self.optimizer.param_groups]
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> Halve(opt, 'lr', end=2).get_last_value()
        [0.5]
    """

    need_val_args: bool = False
    #: ``'iterations'`` or ``'updates'`` (set by ``builder.step_on``): what an iteration-based
    #: scheduler ticks on, whether stepped by :meth:`step` or by the runner.
    on: str = "iterations"
    #: Attributes that describe the configuration (besides the window), MMEngine's names.
    setting_names: tuple[str, ...] = ()
    #: Arguments (besides begin/end) that count epochs; ``None``: not convertible.
    epoch_count_args: tuple[str, ...] | None = ()
    #: Momentum variants resolve ``param_name`` to ``momentum`` / ``betas[0]``.
    schedules_momentum: bool = False
    _step_at_construction: bool = True
    _state_keys: tuple[str, ...] = ("last_step", "_global_step", "_step_count",
                                    "base_values", "_last_value")

    def __init__(self, optimizer: Any, param_name: str, begin: int = 0, end: int = INF,
                 last_step: int = -1, by_epoch: bool = True, verbose: bool = False) -> None:
        # LRScheduler.__init__ is not called: it would wrap optimizer.step and step once
        # with torch's own rules. Only the attributes Accelerate reads are set here.
        owner = type(self).__name__
        groups = param_groups_of(optimizer, owner)
        check_window(begin, end, last_step, by_epoch, owner)
        self.optimizer = optimizer
        self.use_betas = False
        if self.schedules_momentum:
            param_name, self.use_betas = momentum_key(optimizer, groups, owner)
            if self.use_betas:
                for group in groups:
                    group["momentum"] = group["betas"][0]
        check_param_name(param_name, groups, owner)
        self._counts_steps = self._step_at_construction and count_optimizer_steps(optimizer)
        self.param_name = param_name
        self.begin, self.end = begin, end
        self.by_epoch, self.verbose = by_epoch, verbose
        self.last_step = last_step
        self.base_values = self._init_base_values(groups, last_step, owner)
        self._global_step = -1
        self._step_count = 0
        self._last_value = [group[param_name] for group in groups]
        self._prepare()
        if self._step_at_construction:
            self.step()

    def _initial_values(self) -> list[float] | None:
        """Values to force into ``initial_<param_name>`` (OneCycle); None keeps them."""
        return None

    def _init_base_values(self, groups: list[dict], last_step: int, owner: str) -> list[float]:
        key = f"initial_{self.param_name}"
        forced = self._initial_values() if last_step == -1 else None
        for index, group in enumerate(groups):
            if forced is not None:
                group[key] = forced[index]
            elif last_step == -1:
                group.setdefault(key, group[self.param_name])
            elif key not in group:
                raise ValueKeyError(f"{owner}: param {key!r} is not specified in "
                                    f"param_groups[{index}] when resuming an optimizer: "
                                    f"last_step={last_step} resumes a schedule, which needs the "
                                    "initial values; load the optimizer state first or leave "
                                    "last_step at -1")
        return [group[key] for group in groups]

    def _prepare(self) -> None:
        """Hook run after the common set-up and before the step applied at construction."""

    def _get_value(self) -> list[float] | None:
        """New values for every param group at ``self.last_step``; None leaves them."""
        raise NotImplementedError(f"{type(self).__name__} must implement _get_value()")

    def step(self) -> None:
        """Advance one step (epoch or iteration) and update the param groups in the window.

        A scheduler with ``on='updates'`` (set by ``builder.step_on``) does nothing after
        an iteration whose update was not applied (its wrapper's ``last_update_applied``
        is False), so calling ``step()`` after every iteration is right for it too.
        """
        check_not_multistepped()
        if self.on == "updates" and not getattr(self.optimizer, "last_update_applied", True):
            return
        if self._global_step == 0 and self._counts_steps:
            warn_if_optimizer_not_stepped(self.optimizer)
        self._step_count += 1
        self._global_step += 1
        groups = self.optimizer.param_groups
        if self.begin <= self._global_step < self.end:
            self.last_step += 1
            values = self._get_value()
            if values is not None:
                self._write(groups, values)
        self._last_value = [group[self.param_name] for group in groups]

    def _write(self, groups: list[dict], values: list[float]) -> None:
        name = self.param_name
        if not (self.use_betas or self.verbose):
            for group, value in zip(groups, values):
                group[name] = value
            return
        for index, (group, value) in enumerate(zip(groups, values)):
            group[name] = value
            if self.use_betas:
                group["betas"] = (value, group["betas"][1])
            if self.verbose:
                logger.info("%s: param_groups[%d][%r] = %.4e at %s %d", type(self).__name__,
                            index, name, value, "epoch" if self.by_epoch else "iter",
                            self.last_step)

    def get_last_value(self) -> list[float]:
        """The scheduled key of every param group after the latest step."""
        return self._last_value

    def get_last_lr(self) -> list[float]:
        """torch's name for :meth:`get_last_value` (the scheduled key, not always ``lr``)."""
        return self._last_value

    def get_lr(self) -> list[float]:
        """The scheduled key's current value in every param group."""
        return [group[self.param_name] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """The progress of this scheduler: plain ints, floats and lists only.

        The configuration (milestones, T_max, ...) is not included: loading a state into
        a scheduler built with edited arguments continues with the edited schedule.

        ``last_step_offset`` (``last_step`` minus the steps taken inside the window) lets a
        scheduler whose window was edited count its ``last_step`` in the new window.

        Returns:
            A dict that ``torch.load(weights_only=True)`` reads back.
        """
        state = {key: _plain(getattr(self, key)) for key in self._state_keys}
        if self._step_at_construction:
            state["last_step_offset"] = self.last_step - self._steps_in_window()
        return state

    def _steps_in_window(self) -> int:
        """How many of the steps 0 .. ``_global_step`` fall in ``[begin, end)``."""
        return max(0, min(self._global_step, self.end - 1) - self.begin + 1)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the progress saved by :meth:`state_dict`.

        A state dict saved by MMEngine's scheduler (its ``__dict__``: ``last_step``,
        ``_global_step``, ``_last_value``, ``base_values`` and the configuration) loads too:
        the keys accelwrap adds are derived from those (:meth:`_from_mmengine`), and the
        following steps give MMEngine's values.

        Args:
            state_dict: A dict from :meth:`state_dict`, or from MMEngine's.

        Raises:
            ValueError: Keys are missing, or it was saved for a different number of
                param groups.
        """
        owner = type(self).__name__
        state_dict = self._from_mmengine(state_dict)
        missing = [key for key in self._state_keys if key not in state_dict]
        if missing:
            raise ValueError(f"{owner}.load_state_dict: missing keys {missing}; got "
                             f"{sorted(state_dict)}")
        count = len(self.optimizer.param_groups)
        saved = len(state_dict["base_values"])
        if saved != count:
            raise ValueError(f"{owner}.load_state_dict: the state was saved for {saved} param "
                             f"groups, this optimizer has {count}")
        for key in self._state_keys:
            value = state_dict[key]
            setattr(self, key, list(value) if isinstance(value, (list, tuple)) else value)
        offset = state_dict.get("last_step_offset")
        if offset is not None and self._step_at_construction:
            self.last_step = int(offset) + self._steps_in_window()
            self._resume_value()

    def _from_mmengine(self, state_dict: Mapping[str, Any]) -> Mapping[str, Any]:
        """``state_dict`` with accelwrap's derived keys added when it was saved by MMEngine.

        MMEngine counts ``_global_step`` as accelwrap does; ``_step_count`` (calls to
        :meth:`step`, the one at construction included) follows from it; a missing
        ``base_values`` (ReduceOnPlateau) is this scheduler's own. A dict that is
        not MMEngine's (it has ``_step_count``, or lacks one of MMEngine's keys) is
        returned as it is.
        """
        mmengine_keys = ("last_step", "_global_step", "_last_value")
        if "_step_count" in state_dict or any(k not in state_dict for k in mmengine_keys):
            return state_dict
        derived = dict(state_dict)
        if "base_values" not in derived:  # MMEngine's ReduceOnPlateau keeps none
            last = list(state_dict["_last_value"])
            derived["base_values"] = (list(self.base_values)
                                      if len(last) == len(self.base_values) else last)
        derived["_step_count"] = int(state_dict["_global_step"]) + self._step_at_construction
        derived.update(self._derived_state(derived))
        return derived

    def _derived_state(self, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        """Subclasses' own keys, derived from an MMEngine state dict (none here)."""
        return {}

    def _resume_value(self) -> None:
        """After a load: put this step's value of the (possibly edited) schedule in place.

        The optimizer state holds the value the saved run computed; a schedule built with
        other arguments may want another one at this step. The base class cannot tell (a
        custom ``_get_value`` may be recursive) and leaves it; chainable schedulers redo it.
        """

    @classmethod
    def build_iter_from_epoch(cls, *args: Any, epoch_length: int, **kwargs: Any) -> ParamScheduler:
        """Build an iteration-based scheduler from epoch-based arguments.

        ``begin``, ``end`` and every argument named in ``epoch_count_args`` are multiplied
        by ``epoch_length`` (see :func:`epochs_to_iters` for the rounding);
        ``by_epoch`` becomes False.

        Args:
            *args: Positional arguments of the class (optimizer first).
            epoch_length: Iterations per epoch (a positive integer).
            **kwargs: Keyword arguments of the class.

        Returns:
            The iteration-based scheduler.

        Raises:
            ValueError: ``epoch_length`` is not positive, ``by_epoch`` is False, or the
                class cannot be converted (ReduceOnPlateau).
        """
        owner = cls.__name__
        if cls.epoch_count_args is None:
            raise ValueError(f"{owner} cannot be converted to iteration-based "
                             "(convert_to_iter_based=True): it is stepped after validation")
        if isinstance(epoch_length, bool) or not isinstance(epoch_length, int) or epoch_length < 1:
            raise ValueAssertionError(f"{owner}: `epoch_length` must be a positive integer, but "
                                      f"got {epoch_length!r} (iterations per epoch, for "
                                      "convert_to_iter_based=True)")
        arguments = dict(inspect.signature(cls).bind_partial(*args, **kwargs).arguments)
        if not arguments.get("by_epoch", True):
            raise ValueAssertionError(f"{owner}: Only epoch-based kwargs whose `by_epoch=True` "
                                      "can be converted to iter-based; this config has "
                                      "by_epoch=False: drop convert_to_iter_based")
        for name in ("begin", "end", *cls.epoch_count_args):
            if name in arguments:
                arguments[name] = epochs_to_iters(arguments[name], epoch_length, name, owner)
        arguments["by_epoch"] = False
        return cls(**arguments)


def _plain(value: Any) -> Any:
    """Lists of floats instead of tuples or tensors, so ``weights_only`` loading works."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


_ParamScheduler = ParamScheduler
