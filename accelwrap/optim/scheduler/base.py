"""``ParamScheduler``: the stepping window, targets, state and epoch conversion of every scheduler.

A scheduler changes one key (``param_name``) of every param group of its target — a torch
optimizer or an ``OptimWrapper``, anything with a ``param_groups`` list. It counts calls to
:meth:`ParamScheduler.step` in ``_global_step`` and acts while ``begin <= _global_step <
end``; ``last_step`` counts the steps it acted on. Values are held after ``end``.

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

import functools
import inspect
import logging
import math
import warnings
import weakref
from collections.abc import Mapping
from typing import Any

from torch.optim.lr_scheduler import LRScheduler

from accelwrap.errors import (
    TypeAssertionError,
    ValueAssertionError,
    ValueKeyError,
    suggest,
)
from accelwrap.optim._accelerate_compat import check_not_multistepped

INF = int(1e9)
COMMON_ARGS = ("begin", "end", "last_step", "by_epoch", "verbose")
_DOC_LINK = "https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate"
OVERRIDDEN_WARNING = (
    "Seems like `optimizer.step()` has been overridden after parameter value scheduler "
    "initialization. Please, make sure to call `optimizer.step()` before `scheduler.step()`. "
    f"See more details at {_DOC_LINK}")
EARLY_WARNING = (
    "Detected call of `scheduler.step()` before `optimizer.step()`. In PyTorch 1.1.0 and "
    "later, you should call them in the opposite order: `optimizer.step()` before "
    "`scheduler.step()`. Failure to do this will result in PyTorch skipping the first value "
    f"of the parameter value schedule. See more details at {_DOC_LINK}")

logger = logging.getLogger("accelwrap")


def param_groups_of(target: Any, owner: str) -> list[dict]:
    """Return ``target.param_groups`` as a list of dicts, or explain why it cannot be scheduled.

    Args:
        target: A torch optimizer, an ``OptimWrapper`` or anything with ``param_groups``.
        owner: The scheduler's class name, used in messages.

    Returns:
        The param groups (the live list, not a copy).

    Raises:
        TypeError: ``target`` has no list of param-group dicts (an ``OptimWrapperDict``
            needs one scheduler list per member).
    """
    groups = getattr(target, "param_groups", None)
    if isinstance(groups, Mapping):
        raise TypeError(f"{owner}: optimizer is an OptimWrapperDict-like mapping with members "
                        f"{sorted(groups)}; schedule each member separately, e.g. with "
                        "build_param_schedulers(cfg, optim_wrapper), which returns a dict of lists")
    if not isinstance(groups, (list, tuple)) or not all(isinstance(g, dict) for g in groups):
        raise TypeError(f"{owner}: ``optimizer`` should be an Optimizer or an OptimWrapper "
                        f"(anything with a param_groups list of dicts), but got "
                        f"{type(target).__name__}")
    return groups


def momentum_key(target: Any, groups: list[dict], owner: str) -> tuple[str, bool]:
    """Which key a momentum scheduler writes, and whether it mirrors it into ``betas[0]``.

    Args:
        target: The optimizer or wrapper (its ``defaults`` are consulted first).
        groups: Its param groups.
        owner: The scheduler's class name, used in messages.

    Returns:
        ``('momentum', False)`` for SGD-style optimizers, ``('momentum', True)`` for
        Adam-style ones whose ``betas[0]`` plays the role of momentum.

    Raises:
        ValueError: The optimizer has neither ``momentum`` nor ``betas``.
    """
    defaults = getattr(target, "defaults", None) or (groups[0] if groups else {})
    if "momentum" in defaults:
        return "momentum", False
    if "betas" in defaults:
        return "momentum", True
    raise ValueError(f"{owner}: optimizer must support momentum when using momentum scheduler: "
                     f"{type(target).__name__} has neither 'momentum' nor 'betas' in its defaults "
                     f"({sorted(defaults)}); use a ParamScheduler with param_name= one of those "
                     "keys instead")


def _check_int(name: str, value: Any, owner: str, minimum: int | None = None,
               asserted: bool = False) -> None:
    """Refuse a non-integer or too small ``value``; ``asserted``: MMEngine asserts this check."""
    if isinstance(value, bool) or not isinstance(value, int):
        error = TypeAssertionError if asserted else TypeError
        raise error(f"{owner}: {name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        error = ValueAssertionError if asserted else ValueError
        raise error(f"{owner}: {name} must be >= {minimum}, got {value}")


def count_optimizer_steps(optimizer: Any) -> bool:
    """Count ``optimizer.step()`` calls in ``optimizer._global_step``, as MMEngine and torch do.

    The bound ``step`` is replaced by a wrapper (marked ``_with_counter``) that adds 1 to
    the counter and calls the original; a wrapper already there is kept. The counter is
    reset to -1, so :meth:`ParamScheduler.step` can tell whether the optimizer stepped
    before it (and whether ``step`` was replaced since).

    Args:
        optimizer: The scheduler's target.

    Returns:
        Whether the target's steps are counted (False when ``step`` is not a bound
        method, e.g. a bare object with ``param_groups``).

    Example:
        >>> import torch
        >>> from accelwrap.optim.scheduler.base import count_optimizer_steps
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> count_optimizer_steps(opt), opt._global_step
        (True, -1)
        >>> opt.step(); opt._global_step
        0
    """
    step = getattr(optimizer, "step", None)
    if not getattr(step, "_with_counter", False):
        if not inspect.ismethod(step):
            return False
        target = weakref.ref(optimizer)  # no reference cycle optimizer -> wrapper -> optimizer
        func, owner = step.__func__, weakref.ref(step.__self__)

        @functools.wraps(func)
        def counted(*args: Any, **kwargs: Any) -> Any:
            target()._global_step += 1
            return func(owner(), *args, **kwargs)

        counted._with_counter = True
        optimizer.step = counted
    optimizer._global_step = -1
    return True


def _has_counter(step: Any) -> bool:
    """Whether ``step`` is the counting wrapper, or wraps it (e.g. Accelerate's fp16 patch)."""
    for _ in range(8):
        if getattr(step, "_with_counter", False):
            return True
        step = getattr(step, "__wrapped__", None)
        if step is None:
            return False
    return False


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
        self._check_window(begin, end, last_step, by_epoch, owner)
        self.optimizer = optimizer
        self.use_betas = False
        if self.schedules_momentum:
            param_name, self.use_betas = momentum_key(optimizer, groups, owner)
            if self.use_betas:
                for group in groups:
                    group["momentum"] = group["betas"][0]
        self._check_param_name(param_name, groups, owner)
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

    @staticmethod
    def _check_window(begin: Any, end: Any, last_step: Any, by_epoch: Any, owner: str) -> None:
        _check_int("begin", begin, owner, minimum=0)
        _check_int("end", end, owner)
        _check_int("last_step", last_step, owner, minimum=-1, asserted=True)
        if end <= begin:
            raise ValueError(f"{owner}: end should be larger than begin, but got begin={begin}, "
                             f"end={end}; the window is [begin, end) in "
                             f"{'epochs' if by_epoch else 'iterations'}, end exclusive")
        if not isinstance(by_epoch, bool):
            raise TypeError(f"{owner}: by_epoch must be True or False, got {by_epoch!r}")

    @staticmethod
    def _check_param_name(param_name: Any, groups: list[dict], owner: str) -> None:
        if not isinstance(param_name, str):
            raise TypeError(f"{owner}: param_name must be a string, got {param_name!r}")
        for index, group in enumerate(groups):
            if param_name not in group:
                keys = [k for k in group if k != "params"]
                raise ValueKeyError(f"{owner}: param_name {param_name!r} is not a key of "
                                    f"param_groups[{index}]; {suggest(param_name, keys)}")

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
        """Advance one step (epoch or iteration) and update the param groups in the window."""
        check_not_multistepped()
        if self._global_step == 0 and self._counts_steps:
            self._warn_if_optimizer_not_stepped()
        self._step_count += 1
        self._global_step += 1
        groups = self.optimizer.param_groups
        if self.begin <= self._global_step < self.end:
            self.last_step += 1
            values = self._get_value()
            if values is not None:
                self._write(groups, values)
        self._last_value = [group[self.param_name] for group in groups]

    def _warn_if_optimizer_not_stepped(self) -> None:
        """MMEngine's and torch's warnings, checked on the first step after construction."""
        if not _has_counter(self.optimizer.step):
            warnings.warn(OVERRIDDEN_WARNING, UserWarning, stacklevel=3)
        elif getattr(self.optimizer, "_global_step", 0) < 0:
            warnings.warn(EARLY_WARNING, UserWarning, stacklevel=3)

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

        Args:
            state_dict: A dict from :meth:`state_dict`.

        Raises:
            ValueError: Keys are missing, or it was saved for a different number of
                param groups.
        """
        owner = type(self).__name__
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
