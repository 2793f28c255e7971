"""``loss_normalization``: how an accumulation window's losses become one update.

``'mean'`` (the default) is MMEngine's rule: every micro-batch's loss is divided by the
size of its window (``accumulative_counts``, or the remainder for the last short window).
With micro-batches of different sizes that is not one large batch's mean:
``(x1/n1 + x2/n2)/2 != (x1 + x2)/(n1 + n2)``.

``'tokens'``: each micro-batch passes its **summed** loss and its number of valid tokens
(or samples), ``update_params(loss_sum, num_tokens=n)``. The sum is back-propagated as it
is; the window's token count is added up on the device (no host sync). When the window
ends, one all-reduce (sum) gives the token count of every micro-batch of every rank, and
the gradients are multiplied once by ``world_size / global_tokens``: DDP and FSDP average
the gradients over ``world_size`` ranks, so the update is exactly the gradient of one
large batch's mean loss over all its tokens. The same all-reduce carries the window's loss
when the non-finite policy or the spike rule needs it (one collective per update). When a
window is one micro-batch on one process, the factor is known at the backward: the loss
is divided by its token count there instead (the same update, no pass over the gradients;
where the wrapper calls ``Tensor.backward`` itself, the division is the backward's seed
``1/num_tokens``, see :meth:`LossWindow.seed`).

Example:
    >>> import torch
    >>> window = LossWindow('tokens', track_loss=True)
    >>> _ = window.add(torch.tensor(6.0), 4, 'OptimWrapper')
    >>> _ = window.add(torch.tensor(2.0), torch.tensor(4), 'OptimWrapper')
    >>> closed = window.close(torch.device('cpu'), world=1)
    >>> float(closed.factor), float(closed.loss)
    (0.125, 1.0)
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch

from accelwrap.errors import suggest

__all__ = ["LOSS_NORMALIZATIONS", "ClosedWindow", "LossWindow", "check_loss_normalization",
           "world_size"]

LOSS_NORMALIZATIONS = ("mean", "tokens")


def check_loss_normalization(value: Any, owner: str = "OptimWrapper") -> str:
    """Return ``value`` if it is ``'mean'`` or ``'tokens'``.

    Raises:
        ValueError: Any other value (the message lists both).

    Example:
        >>> check_loss_normalization('tokens')
        'tokens'
    """
    if not isinstance(value, str) or value not in LOSS_NORMALIZATIONS:
        raise ValueError(f"{owner}: loss_normalization={value!r} is not valid; expected 'mean' "
                         f"(divide by accumulative_counts, MMEngine's rule) or 'tokens' (summed "
                         f"losses divided by the window's global token count)"
                         + (f"; {suggest(value, LOSS_NORMALIZATIONS)}" if isinstance(value, str)
                            else ""))
    return value


def world_size(accelerator: Any = None) -> int:
    """The number of processes whose gradients are averaged.

    Args:
        accelerator: The wrapper's Accelerator, or None (then ``torch.distributed``'s
            default group, when it is initialised).

    Returns:
        1 for a single process.
    """
    if accelerator is not None:
        return int(accelerator.num_processes)
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


@dataclass(frozen=True)
class ClosedWindow:
    """What a finished window gives the update.

    Attributes:
        factor: Multiply the gradients by this (``'tokens'``), or None (``'mean'``).
        loss: The window's loss over every rank (the mean loss; per token in ``'tokens'``
            mode), a 0-d tensor, or None when it was not tracked.
    """

    factor: torch.Tensor | float | None
    loss: torch.Tensor | None


def _check_tokens(num_tokens: Any, owner: str) -> Any:
    """The micro-batch's token count, checked: an int (NumPy's too) or a one-element tensor
    holding a non-negative whole number; a CPU tensor is read once and its value used as an
    int from then on. A tensor on an accelerator is not read (that would synchronise the
    device); only its shape and dtype are checked, and it stays a tensor."""
    if num_tokens is None:
        raise ValueError(f"{owner}: loss_normalization='tokens' needs num_tokens for every "
                         "micro-batch: call update_params(loss_sum, num_tokens=n) (or backward) "
                         "with the micro-batch's summed loss and its number of valid tokens, or "
                         "return a 'num_tokens' entry in the model's loss dict; set "
                         "loss_normalization='mean' to divide by accumulative_counts instead")
    if isinstance(num_tokens, torch.Tensor):
        if num_tokens.numel() != 1:
            raise ValueError(f"{owner}: num_tokens must be a count (an int or a 0-d tensor), "
                             f"got a tensor of shape {tuple(num_tokens.shape)}")
        if num_tokens.dtype == torch.bool or num_tokens.is_complex():
            raise TypeError(f"{owner}: num_tokens must be an integer count, got a "
                            f"{num_tokens.dtype} tensor ({num_tokens!r})")
        if num_tokens.device.type == "cpu":  # read for free: checked, then a plain number
            return int(_check_count(num_tokens.item(), owner))
        return num_tokens.detach().reshape(())  # on a device a read would synchronise
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, numbers.Integral):
        raise TypeError(f"{owner}: num_tokens must be a non-negative integer count (an int or "
                        f"a 0-d tensor), got {type(num_tokens).__name__} ({num_tokens!r})")
    return _check_count(int(num_tokens), owner)


def _check_count(value: float, owner: str) -> float:
    """``value`` when it is a non-negative whole number; else a ``ValueError`` naming it."""
    if not (math.isfinite(value) and value >= 0 and float(value).is_integer()):
        raise ValueError(f"{owner}: num_tokens={value!r} is not a count: expected a "
                         "non-negative whole number (the micro-batch's valid tokens or samples)")
    return value


class LossWindow:
    """The running sums of one accumulation window: tokens and (when tracked) the loss.

    Args:
        mode: ``'mean'`` or ``'tokens'``.
        track_loss: Keep the window's loss (for ``nonfinite.check='loss'`` or ``spike``).
    """

    def __init__(self, mode: str = "mean", track_loss: bool = False) -> None:
        self.mode = check_loss_normalization(mode)
        self.tokens_mode = mode == "tokens"
        self.track_loss = track_loss
        self.reset()

    def reset(self) -> None:
        """Start a new window."""
        self._tokens: Any = 0
        self._loss: torch.Tensor | None = None
        self._divided = False

    @property
    def active(self) -> bool:
        """Whether :meth:`add` records anything (tokens mode or a tracked loss)."""
        return self.tokens_mode or self.track_loss

    def add(self, loss: torch.Tensor, num_tokens: Any, owner: str,
            divide: bool = False) -> torch.Tensor:
        """Record one micro-batch (its loss and its token count); return what to back-propagate.

        Args:
            loss: The loss given to backward (``'mean'``: already divided; ``'tokens'``: the sum).
            num_tokens: Its valid tokens (``'tokens'`` mode; ignored in ``'mean'`` mode).
            owner: The wrapper's class name, for messages.
            divide: The window is this one micro-batch on one process: divide the loss by
                its tokens now (the window's factor is then 1).

        Returns:
            ``loss``, or in ``'tokens'`` mode with ``divide``, ``loss / num_tokens``.

        Raises:
            ValueError: ``'tokens'`` mode and ``num_tokens`` is None or not a count.
        """
        if self.tokens_mode:
            count = _check_tokens(num_tokens, owner)
            if divide:
                loss = loss / (torch.clamp(count, min=1) if isinstance(count, torch.Tensor)
                               else max(count, 1))
                self._divided = True
            else:
                self._tokens = self._tokens + count
        if self.track_loss:
            self._record(loss.data)  # a detached alias without an op (not .detach())
        return loss

    def seed(self, loss: torch.Tensor, num_tokens: Any, owner: str) -> torch.Tensor:
        """Record a window of one micro-batch on one process; the gradient to seed backward with.

        ``loss.backward(seed)`` gives exactly the gradients of ``loss / num_tokens``
        without a division in the graph: the seed replaces the ones autograd would
        create, so ``'tokens'`` mode costs no op more than the plain backward of a sum.

        Args:
            loss: The micro-batch's summed loss.
            num_tokens: Its valid tokens (an int or a 0-d tensor).
            owner: The wrapper's class name, for messages.

        Returns:
            A tensor like ``loss`` holding ``1 / max(num_tokens, 1)``.

        Raises:
            ValueError: ``num_tokens`` is None or not a count.
        """
        if loss.numel() != 1:  # as backward() without a gradient would refuse it
            raise ValueError(f"{owner}: loss_normalization='tokens' needs the micro-batch's "
                             f"summed loss as one number, got a tensor of shape "
                             f"{tuple(loss.shape)}")
        count = _check_tokens(num_tokens, owner)
        self._divided = True
        if isinstance(count, torch.Tensor):
            count = torch.clamp(count, min=1)
            grad = torch.ones_like(loss).div_(count)
        else:
            count = max(count, 1)
            grad = torch.full_like(loss, 1.0 / count)
        if self.track_loss:
            self._record(loss.detach() / count)
        return grad

    def _record(self, loss: torch.Tensor) -> None:
        """Add a detached loss (the first is kept as it is: no op for a one-batch window)."""
        if loss.dtype != torch.float32:
            loss = loss.float()
        self._loss = loss if self._loss is None else self._loss + loss

    def close(self, device: torch.device | None, world: int) -> ClosedWindow:
        """End the window: one all-reduce (when ``world > 1``), the factor and the loss.

        Args:
            device: Where the collective's tensor lives (the gradients' device); unused
                (may be None) when ``world == 1``.
            world: The number of processes (see :func:`world_size`).

        Returns:
            The :class:`ClosedWindow`; the window is reset.
        """
        tokens, loss, divided = self._tokens, self._loss, self._divided
        self.reset()
        if not self.active:
            return _NOTHING
        if loss is None and self.track_loss:
            loss = torch.zeros((), device=device)  # no micro-batch in this window
        if divided:  # one micro-batch, one process: already divided at its backward
            return ClosedWindow(None, loss) if self.track_loss else _NOTHING
        if world > 1:  # one collective for everything this window needs
            values = [tokens] if self.tokens_mode else []
            values += [loss] if self.track_loss else []
            packed = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device)
                                  for v in values])
            torch.distributed.all_reduce(packed)
            tokens, loss = packed[0], packed[-1]
        # a window without tokens has zero gradients: keep them zero, not NaN
        tokens = torch.clamp(tokens, min=1) if isinstance(tokens, torch.Tensor) else max(tokens, 1)
        factor = world / tokens if self.tokens_mode else None
        mean_loss = None
        if self.track_loss:
            divisor = tokens if self.tokens_mode else world
            mean_loss = loss if isinstance(divisor, int) and divisor == 1 else loss / divisor
        return ClosedWindow(factor, mean_loss)


_NOTHING = ClosedWindow(None, None)  # what a window that records nothing gives
