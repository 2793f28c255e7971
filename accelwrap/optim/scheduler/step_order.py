"""The order of ``optimizer.step()`` and ``scheduler.step()``: the step counter and its warnings.

A scheduler built on an optimizer replaces the optimizer's bound ``step`` with a wrapper
that counts calls in ``optimizer._global_step`` (:func:`count_optimizer_steps`), as
MMEngine and torch do. On the first :meth:`~accelwrap.optim.scheduler.ParamScheduler.step`
after construction, :func:`warn_if_optimizer_not_stepped` gives MMEngine's and torch's
warnings: ``step`` was replaced since (the counter is gone), or the scheduler stepped
before the optimizer did.

Example:
    >>> import torch, warnings
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    >>> count_optimizer_steps(opt)
    True
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter('always')
    ...     warn_if_optimizer_not_stepped(opt)
    >>> caught[0].message.args[0] == EARLY_WARNING
    True
"""

from __future__ import annotations

import functools
import inspect
import warnings
import weakref
from typing import Any

__all__ = ["EARLY_WARNING", "OVERRIDDEN_WARNING", "count_optimizer_steps",
           "warn_if_optimizer_not_stepped"]

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
        >>> from accelwrap.optim.scheduler.step_order import count_optimizer_steps
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


def warn_if_optimizer_not_stepped(optimizer: Any) -> None:
    """MMEngine's and torch's warnings, checked on a scheduler's first step after construction.

    Warns :data:`OVERRIDDEN_WARNING` when ``optimizer.step`` no longer counts (it was
    replaced after :func:`count_optimizer_steps`), :data:`EARLY_WARNING` when the optimizer
    has not stepped yet. Meant to be called by ``ParamScheduler.step`` itself: the warning
    points at the caller of that method.

    Args:
        optimizer: A scheduler's target, after :func:`count_optimizer_steps`.

    Example:
        >>> import torch, warnings
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> count_optimizer_steps(opt); opt.step()
        True
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter('error')
        ...     warn_if_optimizer_not_stepped(opt)  # stepped first: silent
    """
    if not _has_counter(optimizer.step):
        warnings.warn(OVERRIDDEN_WARNING, UserWarning, stacklevel=3)
    elif getattr(optimizer, "_global_step", 0) < 0:
        warnings.warn(EARLY_WARNING, UserWarning, stacklevel=3)
