"""``ApexOptimWrapper``: mixed precision with NVIDIA apex's ``amp`` (CUDA only).

apex is imported when a wrapper is built; without it the error names the alternative,
:class:`~accelwrap.optim.AmpOptimWrapper`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from accelwrap.optim.optimizer.optimizer_wrapper import OptimWrapper
from accelwrap.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class ApexOptimWrapper(OptimWrapper):
    """``OptimWrapper`` on NVIDIA apex's ``amp`` (CUDA only; see :class:`AmpOptimWrapper`).

    Args:
        optimizer: The torch optimizer.
        opt_level: apex optimisation level, ``'O0'`` to ``'O3'``.
        loss_scale: ``'dynamic'`` or a number.
        **kwargs: Other ``apex.amp.initialize`` arguments (``enabled``,
            ``cast_model_type``, ``patch_torch_functions``, ``keep_batchnorm_fp32``,
            ``master_weights``, ``cast_model_outputs``, ``num_losses``, ``verbosity``,
            ``min_loss_scale``, ``max_loss_scale``) and ``OptimWrapper`` arguments.

    Raises:
        ImportError: apex is not installed.

    Example:
        >>> wrapper = ApexOptimWrapper(optimizer, opt_level='O1')  # doctest: +SKIP
    """

    _APEX_KEYS = ("enabled", "cast_model_type", "patch_torch_functions", "keep_batchnorm_fp32",
                  "master_weights", "cast_model_outputs", "num_losses", "verbosity",
                  "min_loss_scale", "max_loss_scale")

    def __init__(self, optimizer: torch.optim.Optimizer, opt_level: str = "O1",
                 loss_scale: float | str | None = "dynamic", **kwargs: Any) -> None:
        try:
            import apex.amp as apex_amp
        except ImportError as err:
            raise ImportError(
                "ApexOptimWrapper needs NVIDIA apex (https://github.com/NVIDIA/apex), which only "
                "builds with CUDA and is not installed here. Use AmpOptimWrapper instead: "
                "torch's native AMP, which also runs on CPU (dtype='bfloat16' or 'float16')."
            ) from err
        self._amp = apex_amp
        self._amp_kwargs = {"opt_level": opt_level, "loss_scale": loss_scale,
                            **{k: kwargs.pop(k) for k in self._APEX_KEYS if k in kwargs}}
        self._pending_amp_state = None
        super().__init__(optimizer, **kwargs)

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        """Back-propagate the loss scaled by apex; count it."""
        with self._amp.scale_loss(loss, self.optimizer) as scaled:
            scaled.backward(**kwargs)
        self._inner_count += 1

    def state_dict(self) -> dict:
        """The wrapper's state (:meth:`OptimWrapper.state_dict`) plus apex's under
        ``'apex_amp'``."""
        state = super().state_dict()
        state["apex_amp"] = self._amp.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Load optimizer and apex state (apex's is applied once apex is initialised)."""
        state = dict(state_dict)
        amp_state = state.pop("apex_amp", None)
        if amp_state is not None:
            if hasattr(self.optimizer, "_amp_stash"):
                self._amp.load_state_dict(amp_state)
            else:
                self._pending_amp_state = amp_state
        super().load_state_dict(state)

    @contextlib.contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        """Initialise apex on first use, and skip gradient sync while accumulating."""
        with super().optim_context(model):
            if not hasattr(self.optimizer, "_amp_stash"):
                inner = getattr(model, "module", model)
                _, self.optimizer = self._amp.initialize(inner, self.optimizer, **self._amp_kwargs)
                self._raw = self.optimizer
                if self._pending_amp_state is not None:
                    self._amp.load_state_dict(self._pending_amp_state)
                    self._pending_amp_state = None
            yield


__all__ = ["ApexOptimWrapper"]
