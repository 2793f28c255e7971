"""``AmpOptimWrapper``: mixed precision with torch's native AMP.

``AmpOptimWrapper`` really works on CPU: bf16 autocast, and fp16 autocast with a CPU
``GradScaler`` (an inf/NaN gradient skips the step, halves the scale and sets
``step_was_skipped``). Without an accelerator it drives ``torch.autocast`` and a
``GradScaler`` itself and creates no Accelerate state. With one, the Accelerator's
process-wide ``mixed_precision`` must match the wrapper's ``dtype``; the loss scaler is
the accelerator's (on CPU, where Accelerate has none, the wrapper installs it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from accelwrap.errors import suggest
from accelwrap.optim import _accelerate_compat as glue
from accelwrap.optim.optimizer.optimizer_wrapper import OptimWrapper, check_not_optimizer
from accelwrap.registry import OPTIM_WRAPPERS

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
MIXED_PRECISION = {torch.float16: "fp16", torch.bfloat16: "bf16"}


def resolve_dtype(dtype: str | torch.dtype | None, device_type: str) -> torch.dtype:
    """Turn an AMP ``dtype`` setting into a torch dtype.

    Args:
        dtype: ``'float16'``, ``'bfloat16'``, ``torch.float16``, ``torch.bfloat16`` or
            ``None`` (float16 on CUDA, bfloat16 elsewhere).
        device_type: The device the model runs on (``'cuda'``, ``'cpu'``, ...).

    Returns:
        ``torch.float16`` or ``torch.bfloat16``.

    Raises:
        ValueError: An unknown name or an unsupported dtype.
        TypeError: Neither a string, a torch dtype nor ``None``.
    """
    if dtype is None:
        return torch.float16 if device_type == "cuda" else torch.bfloat16
    if isinstance(dtype, str):
        name = dtype.removeprefix("torch.")
        if name not in DTYPES:
            raise ValueError(f"AmpOptimWrapper: dtype={dtype!r} is not an AMP dtype; "
                             f"{suggest(name, DTYPES)} (valid: {', '.join(DTYPES)})")
        return DTYPES[name]
    if isinstance(dtype, torch.dtype):
        if dtype not in MIXED_PRECISION:
            raise ValueError(f"AmpOptimWrapper: dtype={dtype} cannot be autocast to; "
                             f"use torch.float16 or torch.bfloat16")
        return dtype
    raise TypeError(f"AmpOptimWrapper: dtype must be a string, a torch.dtype or None, "
                    f"got {type(dtype).__name__} ({dtype!r})")


def scaler_kwargs(loss_scale: str | float | dict) -> dict:
    """``GradScaler`` keyword arguments for an AMP ``loss_scale`` setting.

    Args:
        loss_scale: ``'dynamic'``, a float (a fixed scale) or a dict of ``GradScaler``
            arguments.

    Returns:
        The keyword arguments (``init_scale`` for a float).

    Raises:
        TypeError: Any other value.
    """
    if isinstance(loss_scale, str) and loss_scale == "dynamic":
        return {}
    if isinstance(loss_scale, (int, float)) and not isinstance(loss_scale, bool):
        return {"init_scale": float(loss_scale)}
    if isinstance(loss_scale, dict):
        return dict(loss_scale)
    raise TypeError(f"AmpOptimWrapper: loss_scale must be 'dynamic', a float or a dict of "
                    f"GradScaler arguments, got {loss_scale!r}")


def param_device_type(optimizer: torch.optim.Optimizer) -> str:
    """The device type of the optimizer's first parameter (``'cpu'`` when it has none)."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            return param.device.type
    return "cpu"


@OPTIM_WRAPPERS.register_module()
class AmpOptimWrapper(OptimWrapper):
    """``OptimWrapper`` with automatic mixed precision (autocast + loss scaling).

    Arguments and their order are MMEngine's: the optimizer is passed by keyword.

    Args:
        loss_scale: ``'dynamic'``, a float (fixed scale) or a dict of ``GradScaler``
            arguments. Used for float16 only; bfloat16 needs no scaling. With an
            accelerator the scaler is the accelerator's: build it with
            ``make_accelerator(optim_wrapper=...)`` so it follows this setting.
        dtype: ``'float16'``, ``'bfloat16'``, a torch dtype, or ``None`` (float16 on
            CUDA, bfloat16 on CPU; with an accelerator, the accelerator's precision).
        use_fsdp: Use ``ShardedGradScaler`` (no accelerator, raw FSDP).
        **kwargs: ``optimizer`` (required), ``accumulative_counts``, ``clip_grad``,
            ``accelerator``.

    Attributes:
        loss_scaler: The ``GradScaler`` (disabled for bfloat16); its state is saved
            under ``'loss_scaler'`` by :meth:`state_dict`.
        cast_dtype: The autocast dtype.

    Example:
        >>> model = nn.Linear(4, 2)
        >>> wrapper = AmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        ...                           dtype='bfloat16')
        >>> with wrapper.optim_context(model):
        ...     out = model(torch.ones(3, 4))
        >>> out.dtype
        torch.bfloat16
        >>> wrapper.update_params(out.float().sum())
    """

    valid_dtypes = tuple(DTYPES)

    def __init__(self, loss_scale: str | float | dict = "dynamic",
                 dtype: str | torch.dtype | None = None, use_fsdp: bool = False,
                 **kwargs: Any) -> None:
        check_not_optimizer(type(self).__name__, "loss_scale", loss_scale)
        self._scaler_kwargs = scaler_kwargs(loss_scale)
        self._static = float(loss_scale) if isinstance(loss_scale, (int, float)) else None
        self._dtype_setting = dtype
        if dtype is not None:
            resolve_dtype(dtype, "cpu")
        self._use_fsdp = use_fsdp
        super().__init__(**kwargs)

    def _static_scale(self) -> float | None:
        return self._static

    def validate_accelerator(self, accelerator: Any) -> None:
        """Check the accelerator's mixed precision; give a CPU fp16 one its loss scaler.

        Args:
            accelerator: An ``accelerate.Accelerator``.

        Raises:
            ValueError: ``gradient_accumulation_steps`` is not 1, or the accelerator's
                ``mixed_precision`` does not match ``dtype`` (the message names the
                value to pass).
        """
        super().validate_accelerator(accelerator)
        self.cast_dtype = self._accelerator_dtype(accelerator)
        glue.install_cpu_scaler(accelerator, self._scaler_kwargs)  # fp16 on CPU only

    def _accelerator_dtype(self, accelerator: Any) -> torch.dtype:
        have = accelerator.mixed_precision
        if self._dtype_setting is None and have in ("fp16", "bf16"):
            return torch.float16 if have == "fp16" else torch.bfloat16
        want = resolve_dtype(self._dtype_setting, accelerator.device.type)
        if MIXED_PRECISION[want] != have:
            raise ValueError(
                f"AmpOptimWrapper(dtype={self._dtype_setting!r}) autocasts to {want}, which needs "
                f"Accelerator(mixed_precision={MIXED_PRECISION[want]!r}), but this Accelerator has "
                f"mixed_precision={have!r}. Accelerate fixes mixed precision for the whole process "
                f"at the first Accelerator(...): create it with "
                f"Accelerator(mixed_precision={MIXED_PRECISION[want]!r}) or with "
                f"accelwrap.optim.make_accelerator(optim_wrapper=<this wrapper or its config>)")
        return want

    def _pick_scaler(self, accelerator: Any) -> torch.amp.GradScaler | None:
        if accelerator is not None:
            scaler = accelerator.scaler if self.cast_dtype == torch.float16 else None
        else:
            device = self._device_type = param_device_type(self.optimizer)
            self.cast_dtype = resolve_dtype(self._dtype_setting, device)
            scaler = self._own_scaler(device)
        self.loss_scaler = scaler if scaler is not None else torch.amp.GradScaler(enabled=False)
        return scaler

    def _own_scaler(self, device: str) -> torch.amp.GradScaler | None:
        if self.cast_dtype != torch.float16:
            return None
        if self._use_fsdp:
            from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler
            return ShardedGradScaler(device, **self._scaler_kwargs)
        return torch.amp.GradScaler(device, **self._scaler_kwargs)

    @contextlib.contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        """Skip gradient sync while accumulating, and autocast to :attr:`cast_dtype`.

        Args:
            model: The training model.
        """
        if self.accelerator is not None:
            autocast = self.accelerator.autocast()
        else:
            autocast = torch.autocast(self._device_type, dtype=self.cast_dtype)
        with super().optim_context(model), autocast:
            yield

    def state_dict(self) -> dict:
        """The optimizer's state plus the loss scaler's under ``'loss_scaler'``."""
        state = super().state_dict()
        state["loss_scaler"] = self.loss_scaler.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Load optimizer and loss-scaler state (the argument is not modified).

        Args:
            state_dict: A dict from :meth:`state_dict`.
        """
        state = dict(state_dict)
        scaler_state = state.pop("loss_scaler", None)
        if scaler_state and self.loss_scaler.is_enabled():
            self.loss_scaler.load_state_dict(scaler_state)
        super().load_state_dict(state)

__all__ = ["DTYPES", "MIXED_PRECISION", "AmpOptimWrapper", "param_device_type", "resolve_dtype",
           "scaler_kwargs"]
