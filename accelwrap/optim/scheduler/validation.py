"""Checking what a scheduler is built on: its target's param groups, its window and key.

Every check raises before anything is changed, with the scheduler's class name
(``owner``) in the message; errors MMEngine raises with ``assert`` are also
``AssertionError`` s (:mod:`accelwrap.errors`).

Example:
    >>> import torch
    >>> opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    >>> groups = param_groups_of(opt, 'LinearLR')
    >>> check_window(0, 10, -1, True, 'LinearLR'); check_param_name('lr', groups, 'LinearLR')
    >>> momentum_key(opt, groups, 'LinearMomentum')
    ('momentum', True)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from accelwrap.errors import (
    TypeAssertionError,
    ValueAssertionError,
    ValueKeyError,
    suggest,
)

__all__ = ["check_param_name", "check_window", "momentum_key", "param_groups_of"]


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

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> param_groups_of(opt, 'LinearLR') is opt.param_groups
        True
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

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
        >>> momentum_key(opt, opt.param_groups, 'CosineAnnealingMomentum')
        ('momentum', False)
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


def check_window(begin: Any, end: Any, last_step: Any, by_epoch: Any, owner: str) -> None:
    """Refuse a window ``[begin, end)`` or a ``last_step`` / ``by_epoch`` a scheduler cannot use.

    Args:
        begin: First step (an integer >= 0; MMEngine's negative ``begin`` is refused, see
            the message).
        end: Step at which the scheduler stops (an integer > ``begin``).
        last_step: Index of the last step taken (an integer >= -1).
        by_epoch: True or False.
        owner: The scheduler's class name, used in messages.

    Raises:
        TypeError: An argument has the wrong type (``last_step``: also an ``AssertionError``).
        ValueError: ``begin < 0``, ``end <= begin`` or ``last_step < -1``.

    Example:
        >>> try:
        ...     check_window(5, 5, -1, False, 'LinearLR')
        ... except ValueError as err:
        ...     print(err)
        LinearLR: end should be larger than begin, but got begin=5, end=5; the window is \
[begin, end) in iterations, end exclusive
    """
    _check_int("begin", begin, owner)
    _check_int("end", end, owner)
    if begin < 0:
        # MMEngine accepts it, but its first step is still step 0: the window only gets
        # longer, so span-derived defaults (LinearLR/PolyLR total_iters, T_max, total_steps)
        # count steps that never run and the schedule stops short of its end value.
        raise ValueError(f"{owner}: begin must be >= 0, got {begin}; a scheduler's first step is "
                         f"step 0 whatever begin is (MMEngine accepts begin={begin} but only "
                         "lengthens the window by steps that never run, so e.g. LinearLR stops "
                         "short of end_factor): use begin=0")
    _check_int("last_step", last_step, owner, minimum=-1, asserted=True)
    if end <= begin:
        raise ValueError(f"{owner}: end should be larger than begin, but got begin={begin}, "
                         f"end={end}; the window is [begin, end) in "
                         f"{'epochs' if by_epoch else 'iterations'}, end exclusive")
    if not isinstance(by_epoch, bool):
        raise TypeError(f"{owner}: by_epoch must be True or False, got {by_epoch!r}")


def check_param_name(param_name: Any, groups: list[dict], owner: str) -> None:
    """Refuse a ``param_name`` that is not a key of every param group.

    Args:
        param_name: The key to schedule, e.g. ``'lr'``.
        groups: The target's param groups.
        owner: The scheduler's class name, used in messages.

    Raises:
        TypeError: ``param_name`` is not a string.
        ValueKeyError: A group lacks it (a ``ValueError`` and a ``KeyError``); the message
            suggests close keys.

    Example:
        >>> try:
        ...     check_param_name('Lr', [{'params': [], 'lr': 0.1}], 'LinearLR')
        ... except KeyError as err:
        ...     print(err.args[0])
        LinearLR: param_name 'Lr' is not a key of param_groups[0]; did you mean 'lr'?
    """
    if not isinstance(param_name, str):
        raise TypeError(f"{owner}: param_name must be a string, got {param_name!r}")
    for index, group in enumerate(groups):
        if param_name not in group:
            keys = [k for k in group if k != "params"]
            raise ValueKeyError(f"{owner}: param_name {param_name!r} is not a key of "
                                f"param_groups[{index}]; {suggest(param_name, keys)}")
