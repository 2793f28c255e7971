"""MMEngine's accumulation counting: the counter, the window size, the last short window.

:class:`AccumulationCount` is mixed into ``OptimWrapper``: it decides when a backward
ends a window (:meth:`~AccumulationCount.should_update`, and one call ahead,
:meth:`~AccumulationCount.should_sync`) and what each loss is divided by in
``loss_normalization='mean'`` (``accumulative_counts``, or the remainder of
``max_counts`` for the last window), exactly as MMEngine's ``OptimWrapper``.

Example:
    >>> import torch
    >>> from accelwrap.optim import OptimWrapper
    >>> model = torch.nn.Linear(2, 1)
    >>> wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1),
    ...                        accumulative_counts=4)
    >>> wrapper.initialize_count_status(model, 0, max_counts=6)
    >>> float(wrapper.scale_loss(torch.tensor(8.0)))  # a full window of 4
    2.0
    >>> wrapper._inner_count = 4
    >>> float(wrapper.scale_loss(torch.tensor(8.0)))  # the last window has 2
    4.0
"""

from __future__ import annotations

import logging

import torch
from torch import nn

logger = logging.getLogger("accelwrap.optim.optimizer.optimizer_wrapper")

__all__ = ["AccumulationCount"]


class AccumulationCount:
    """The accumulation counter of an optimizer wrapper (a mixin).

    The host sets ``_accumulative_counts`` (a positive int), ``_inner_count``,
    ``_max_counts`` and ``_remainder_counts`` (-1 until
    :meth:`initialize_count_status`) and ``_window`` (its
    :class:`~accelwrap.optim.optimizer.loss_normalization.LossWindow`).
    """

    _accumulative_counts: int
    _inner_count: int
    _max_counts: int
    _remainder_counts: int

    def initialize_count_status(self, model: nn.Module, init_counts: int, max_counts: int) -> None:
        """Set the counter and the total count so the last short window is handled.

        Args:
            model: The training model (only checked for BatchNorm, with a warning).
            init_counts: The counter to start from (e.g. the resumed iteration).
            max_counts: The total number of iterations.
        """
        self._inner_count = init_counts
        self._max_counts = max_counts
        if init_counts % self._accumulative_counts != 0:
            logger.warning("the resumed iteration %d is not a multiple of accumulative_counts=%d; "
                           "the gradients of the partial window are lost",
                           init_counts, self._accumulative_counts)
        if self._accumulative_counts > 1 and any(
                isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            logger.warning("gradient accumulation with BatchNorm layers may slightly decrease "
                           "performance: the statistics see micro-batches")
        self._remainder_counts = max_counts % self._accumulative_counts

    def should_update(self) -> bool:
        """Whether the parameters are updated at the current count."""
        return (self._inner_count % self._accumulative_counts == 0
                or self._inner_count == self._max_counts)

    def should_sync(self) -> bool:
        """Whether the next backward must synchronise gradients (it ends a window)."""
        count = self._inner_count + 1
        return count % self._accumulative_counts == 0 or count == self._max_counts

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """Divide ``loss`` by the size of the current accumulation window.

        Args:
            loss: The loss of this iteration.

        Returns:
            ``loss / window`` (``loss`` itself when there is no accumulation or in
            ``'tokens'`` mode, where the gradients are scaled at the step instead).

        Raises:
            ValueError: The counter is past ``max_counts``.
        """
        if self._accumulative_counts == 1 or self._window.tokens_mode:
            return loss
        factor = self._accumulative_counts
        if (self._max_counts != -1
                and self._inner_count >= self._max_counts - self._remainder_counts):
            factor = self._remainder_counts
            if factor <= 0:
                raise ValueError(
                    f"inner_count={self._inner_count} is past max_counts={self._max_counts}; "
                    "check the init_counts/max_counts given to initialize_count_status")
        return loss / factor

    @property
    def inner_count(self) -> int:
        """How many times ``backward`` has run (the accumulation counter)."""
        return self._inner_count
