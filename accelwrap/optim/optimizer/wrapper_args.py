"""Checks of the arguments every optimizer wrapper takes (shared by the wrapper classes).

Example:
    >>> check_accumulative_counts(4)
    4
"""

from __future__ import annotations

from typing import Any

import torch

from accelwrap.errors import TypeAssertionError, ValueAssertionError

__all__ = ["check_accumulative_counts", "check_not_optimizer"]


def check_accumulative_counts(value: Any) -> int:
    """Return ``value`` if it is a positive int, else raise ``ValueError``/``TypeError``.

    Both are also ``AssertionError`` (MMEngine asserts ``accumulative_counts > 0``).
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeAssertionError(f"accumulative_counts must be a positive int, got "
                                 f"{type(value).__name__} ({value!r})")
    if value < 1:
        raise ValueAssertionError(f"accumulative_counts must be a positive int (1 = no "
                                  f"accumulation), got {value}")
    return value


def check_not_optimizer(owner: str, argument: str, value: Any) -> None:
    """Refuse an optimizer given where MMEngine's signature has ``argument`` first.

    ``AmpOptimWrapper(loss_scale='dynamic', dtype=None, use_fsdp=False, **kwargs)`` takes
    the optimizer as a keyword, as in MMEngine; ``AmpOptimWrapper(optimizer)`` would
    otherwise make the optimizer the loss scale.

    Raises:
        TypeError: ``value`` is an optimizer.
    """
    if isinstance(value, torch.optim.Optimizer):
        raise TypeError(f"{owner}: the first positional argument is {argument!r}, as in MMEngine, "
                        f"but got a {type(value).__name__} optimizer; pass it as "
                        f"{owner}(optimizer=..., ...)")
