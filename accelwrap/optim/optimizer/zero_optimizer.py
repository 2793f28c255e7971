"""``ZeroRedundancyOptimizer`` configured with the local optimizer's type as a string.

Kept in its own module because ``torch.distributed.optim`` takes most of a second to
import; :mod:`accelwrap.optim.optimizer.builder` registers it lazily.

Example (needs an initialised process group, e.g. under ``torchrun``)::

    from accelwrap.registry import OPTIMIZERS
    optimizer = OPTIMIZERS.build(dict(type='ZeroRedundancyOptimizer', optimizer_type='AdamW',
                                      lr=1e-3), default_args=dict(params=model.parameters()))
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.distributed.optim import ZeroRedundancyOptimizer as _TorchZeRO

from accelwrap.registry import OPTIMIZERS


class ZeroRedundancyOptimizer(_TorchZeRO):
    """torch's ZeRO-1 optimizer (state sharded across ranks) with a registry-named inner type.

    Each rank keeps the optimizer state of only its shard of the parameters and
    broadcasts its updated parameters after each step, so every replica stays equal.

    Args:
        params: Parameters or parameter-group dicts, sharded across the ranks.
        optimizer_type: The local optimizer: a name registered in ``OPTIMIZERS`` (any
            ``torch.optim`` name, ``'Lion'``, ...) or an optimizer class. Required, as in
            MMEngine (there is no silent default).
        **kwargs: Passed to torch's ``ZeroRedundancyOptimizer`` (``process_group``,
            ``parameters_as_bucket_view``, ``overlap_with_ddp``) and to the local
            optimizer (``lr``, ``momentum``, ...).

    Raises:
        UnknownTypeError: ``optimizer_type`` is not registered.
        TypeError: ``optimizer_type`` is not an optimizer class.

    Example:
        >>> # inside a process group of 2 ranks
        >>> opt = ZeroRedundancyOptimizer(model.parameters(), 'SGD', lr=0.1)  # doctest: +SKIP
    """

    def __init__(self, params: Iterable[Any], optimizer_type: str | type, **kwargs: Any) -> None:
        optimizer_class = OPTIMIZERS.get(optimizer_type)
        if optimizer_class is ZeroRedundancyOptimizer or not (
                isinstance(optimizer_class, type)
                and issubclass(optimizer_class, torch.optim.Optimizer)):
            raise TypeError("ZeroRedundancyOptimizer: optimizer_type must name a local "
                            f"torch.optim.Optimizer class, got {optimizer_type!r}")
        super().__init__(list(params), optimizer_class, **kwargs)

    def state_dict(self) -> dict[str, Any]:
        """Gather the sharded state and return the full optimizer state on every rank.

        Must be called on every rank (it communicates). MMEngine returns ``{}`` on all
        ranks but 0; here every rank gets the full state, because Accelerate round-trips
        ``state_dict``/``load_state_dict`` on every rank (in ``prepare`` and
        ``load_state``) and torch's ``load_state_dict`` needs the full state to pick its
        shard from.

        Returns:
            The consolidated optimizer state.
        """
        full: dict[str, Any] = {}
        for target in range(self.world_size):
            self.consolidate_state_dict(to=target)
            if target == self.rank:
                full = super().state_dict()
        return full


OPTIMIZERS.register_module(module=ZeroRedundancyOptimizer, force=True)

__all__ = ["ZeroRedundancyOptimizer"]
