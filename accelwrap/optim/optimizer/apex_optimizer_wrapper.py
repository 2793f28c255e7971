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

from accelwrap.optim.optimizer.optimizer_wrapper import OptimWrapper, check_not_optimizer
from accelwrap.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class ApexOptimWrapper(OptimWrapper):
    """``OptimWrapper`` on NVIDIA apex's ``amp`` (CUDA only; see :class:`AmpOptimWrapper`).

    Arguments and their order are MMEngine's: everything before ``**kwargs`` goes to
    ``apex.amp.initialize`` (see apex's documentation), and the optimizer is passed by
    keyword.

    Args:
        opt_level: apex optimisation level, ``'O0'`` to ``'O3'``.
        loss_scale: ``'dynamic'`` or a number.
        enabled: Whether apex's amp is on.
        cast_model_type: dtype the model is cast to (None: what ``opt_level`` says).
        patch_torch_functions: Patch torch functions to run in fp16.
        keep_batchnorm_fp32: Keep batch-norm weights in fp32.
        master_weights: Keep fp32 master weights.
        cast_model_outputs: dtype the model outputs are cast to.
        num_losses: How many losses are back-propagated with separate scalers.
        verbosity: apex's logging level.
        min_loss_scale: Floor of the dynamic loss scale.
        max_loss_scale: Ceiling of the dynamic loss scale.
        **kwargs: ``optimizer`` (required) and the other ``OptimWrapper`` arguments.

    Raises:
        ImportError: apex is not installed.

    Example:
        >>> wrapper = ApexOptimWrapper(opt_level='O1', optimizer=optimizer)  # doctest: +SKIP
    """

    def __init__(self, opt_level: str = "O1", loss_scale: float | str | None = "dynamic",
                 enabled: bool | None = True, cast_model_type: torch.dtype | None = None,
                 patch_torch_functions: bool | None = None,
                 keep_batchnorm_fp32: bool | str | None = None,
                 master_weights: bool | None = None,
                 cast_model_outputs: torch.dtype | None = None, num_losses: int = 1,
                 verbosity: int = 1, min_loss_scale: float | None = None,
                 max_loss_scale: float | None = 2.0**24, **kwargs: Any) -> None:
        check_not_optimizer(type(self).__name__, "opt_level", opt_level)
        try:
            import apex.amp as apex_amp
        except ImportError as err:
            raise ImportError(
                "ApexOptimWrapper needs NVIDIA apex (https://github.com/NVIDIA/apex), which only "
                "builds with CUDA and is not installed here. Use AmpOptimWrapper instead: "
                "torch's native AMP, which also runs on CPU (dtype='bfloat16' or 'float16')."
            ) from err
        self._amp = apex_amp
        self._amp_kwargs = {
            "opt_level": opt_level, "loss_scale": loss_scale, "enabled": enabled,
            "cast_model_type": cast_model_type, "patch_torch_functions": patch_torch_functions,
            "keep_batchnorm_fp32": keep_batchnorm_fp32, "master_weights": master_weights,
            "cast_model_outputs": cast_model_outputs, "num_losses": num_losses,
            "verbosity": verbosity, "min_loss_scale": min_loss_scale,
            "max_loss_scale": max_loss_scale}
        self._pending_amp_state = None
        super().__init__(**kwargs)

    def backward(self, loss: torch.Tensor, num_tokens: Any = None, **kwargs: Any) -> None:
        """Back-propagate the loss scaled by apex; count it (``num_tokens``: see OptimWrapper)."""
        loss = self._count(loss, num_tokens)
        with self._amp.scale_loss(loss, self.optimizer) as scaled:
            scaled.backward(**kwargs)

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
