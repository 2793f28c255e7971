"""Everything accelwrap knows about Accelerate's internals, in one place.

This is the only module that reads Accelerate's private attributes or inspects its
classes (``accelerator._optimizers``, ``AcceleratedOptimizer`` layers,
``AcceleratedScheduler.step``'s frame, the CPU fp16 scaler it leaves out). It is the
module to read first when an Accelerate upgrade breaks something.

Everything here is decided once, when a wrapper is bound to an accelerator, so the
training hot path only reads plain attributes. Accelerate is imported lazily: a wrapper
used without an accelerator never imports it and never creates an ``AcceleratorState``.

``check_not_multistepped`` refuses Accelerate's per-process scheduler stepping from inside
the scheduler. ``accelerator.prepare(scheduler)`` wraps a scheduler in
``AcceleratedScheduler``, which by default (``step_scheduler_with_optimizer=True``,
``split_batches=False``) calls the inner ``step()`` once per process on every call: with 2
processes every schedule would run at twice the speed. :func:`accelwrap.optim.prepare`
refuses that set-up up front; the check catches the same set-up when a user calls
``accelerator.prepare`` directly, at the first step, before any value has changed.

Example:
    >>> import torch
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    >>> unwrap_optimizer(opt) is opt
    True
    >>> check_not_multistepped()  # called from a scheduler's step(); a no-op elsewhere
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import torch

# Distributed types for which Accelerate's backward / clip / step add nothing over
# torch: ``accelerator.backward`` is ``(scaler.scale(loss) or loss).backward()``, the
# clip is ``unscale_`` + ``torch.nn.utils.clip_grad_*_`` and the prepared optimizer's
# step is the inner optimizer's step (through the scaler when there is one).
DIRECT_TYPES = frozenset({
    "NO", "MULTI_CPU", "MULTI_GPU", "MULTI_NPU", "MULTI_XPU", "MULTI_MLU", "MULTI_SDAA",
    "MULTI_MUSA", "MULTI_HPU",
})

GAS_FIX = ("Create the Accelerator with gradient_accumulation_steps=1 (for example with "
            "accelwrap.optim.make_accelerator()) and set accumulative_counts={n} on the "
            "optimizer wrapper instead: the wrapper owns accumulation, and Accelerate would "
            "divide the loss a second time.")


def unwrap_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Return the torch optimizer inside any ``AcceleratedOptimizer`` layers.

    Args:
        optimizer: A torch optimizer, possibly returned by ``accelerator.prepare``.

    Returns:
        The innermost optimizer (``optimizer`` itself when it is not wrapped).
    """
    wrapped = _accelerated_optimizer_type()
    while wrapped is not None and isinstance(optimizer, wrapped):
        optimizer = optimizer.optimizer
    return optimizer


def is_prepared(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` came out of ``accelerator.prepare``."""
    wrapped = _accelerated_optimizer_type()
    return wrapped is not None and isinstance(optimizer, wrapped)


def _accelerated_optimizer_type() -> type | None:
    """``accelerate.optimizer.AcceleratedOptimizer`` if Accelerate is imported (else none
    exists)."""
    module = sys.modules.get("accelerate.optimizer")
    return None if module is None else module.AcceleratedOptimizer


def check_accumulation(accelerator: Any) -> None:
    """Refuse an accelerator that would divide the loss by its own accumulation count.

    Args:
        accelerator: An ``accelerate.Accelerator``.

    Raises:
        ValueError: ``accelerator.gradient_accumulation_steps`` is not 1.
    """
    steps = accelerator.gradient_accumulation_steps
    if steps != 1:
        raise ValueError(
            f"the Accelerator has gradient_accumulation_steps={steps}, but accelwrap's "
            f"optimizer wrappers need gradient_accumulation_steps=1. " + GAS_FIX.format(n=steps))


def distributed_type(accelerator: Any) -> str:
    """The accelerator's distributed type as a plain string (``'NO'``, ``'MULTI_CPU'``, ...)."""
    kind = accelerator.distributed_type
    return str(getattr(kind, "value", kind))


def is_direct(accelerator: Any) -> bool:
    """Whether torch calls give exactly Accelerate's numbers for this accelerator.

    True for single-process and DDP-style runs; False for FSDP, DeepSpeed, Megatron,
    XLA, or when a LOMO optimizer is in use, which need Accelerate's own methods.

    Args:
        accelerator: An ``accelerate.Accelerator``.

    Returns:
        Whether the wrapper may call ``loss.backward()``, ``clip_grad_*_`` and the inner
        optimizer's ``step`` itself.
    """
    return (distributed_type(accelerator) in DIRECT_TYPES
            and not getattr(accelerator, "has_lomo_optimizer", False))


def needs_no_sync(accelerator: Any) -> bool:
    """Whether ``accelerator.no_sync`` can skip anything (more than one process)."""
    return bool(accelerator.use_distributed)


def install_cpu_scaler(accelerator: Any, scaler_kwargs: Mapping[str, Any]) -> None:
    """Give a CPU fp16 Accelerator the loss scaler (and autocast) Accelerate leaves out.

    ``Accelerator(mixed_precision='fp16')`` on CPU silently does nothing: no autocast
    and no scaler. With a ``GradScaler('cpu')`` installed, ``accelerator.backward``
    scales the loss, ``clip_grad_norm_`` unscales first and ``accelerator.autocast()``
    runs fp16, exactly as on a GPU. Install it before ``accelerator.prepare(model)`` so
    the prepared model's forward is autocast too. Any other accelerator (see
    :func:`needs_cpu_scaler`) is left as it is.

    Args:
        accelerator: An Accelerator.
        scaler_kwargs: ``torch.amp.GradScaler`` arguments (``init_scale``, ...).
    """
    if needs_cpu_scaler(accelerator):
        accelerator.scaler = torch.amp.GradScaler("cpu", **scaler_kwargs)
        accelerator.native_amp = True


def needs_cpu_scaler(accelerator: Any) -> bool:
    """Whether ``accelerator`` is fp16 on CPU without a loss scaler yet."""
    return (accelerator.mixed_precision == "fp16" and accelerator.scaler is None
            and accelerator.device.type == "cpu" and distributed_type(accelerator) in DIRECT_TYPES)


@contextlib.contextmanager
def only_optimizer(accelerator: Any, optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Make Accelerate's clip functions unscale ``optimizer`` only.

    ``accelerator.clip_grad_norm_`` unscales the gradients of every prepared
    optimizer; with two wrappers (a GAN) that would unscale the other optimizer's
    gradients in the middle of its accumulation window.

    Args:
        accelerator: The accelerator.
        optimizer: The prepared optimizer whose gradients are about to be clipped.
    """
    saved = accelerator._optimizers
    accelerator._optimizers = [optimizer]
    try:
        yield
    finally:
        accelerator._optimizers = saved


FIX = ("create the Accelerator with step_scheduler_with_optimizer=False (or use "
       "accelwrap.optim.make_accelerator) and prepare with accelwrap.optim.prepare")


def check_not_multistepped() -> None:
    """Raise if the scheduler's ``step()`` was called by a multi-stepping ``AcceleratedScheduler``.

    Must be called directly from a scheduler's ``step`` method (it inspects that
    method's caller). Costs a dictionary lookup when Accelerate's scheduler module was
    never imported.

    Raises:
        RuntimeError: The caller is ``AcceleratedScheduler.step`` stepping once per
            process (more than one process, ``step_scheduler_with_optimizer=True``,
            ``split_batches=False``).
    """
    module = sys.modules.get("accelerate.scheduler")
    if module is None:
        return
    caller = sys._getframe(2)
    if caller.f_code is not module.AcceleratedScheduler.step.__code__:
        return
    wrapper = caller.f_locals.get("self")
    if (not getattr(wrapper, "step_with_optimizer", False)
            or getattr(wrapper, "split_batches", True)):
        return
    from accelerate.state import AcceleratorState

    processes = AcceleratorState().num_processes
    if processes > 1:
        raise RuntimeError(
            f"{type(wrapper.scheduler).__name__} is wrapped in Accelerate's AcceleratedScheduler, "
            f"which would step it {processes} times per call (once per process), so the "
            f"schedule would depend on the number of processes; {FIX}")
