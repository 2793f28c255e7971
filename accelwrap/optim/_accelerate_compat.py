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
import os
import sys
import warnings
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


def deepspeed_requested() -> bool:
    """Whether this process was launched for DeepSpeed (``accelerate launch`` sets the variable)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def add_deepspeed_cpu_backend(kwargs: dict[str, Any]) -> None:
    """Give a CPU DeepSpeed launch the process-group backend Accelerate leaves unset.

    Without CUDA, Accelerate lets DeepSpeed's CPU accelerator pick the backend (gloo without
    oneCCL) but keeps its own ``backend`` at None, so every rank believes it is process 0 of
    1 (duplicated data, every rank writes). Naming the backend fixes that; with ``cpu=True``
    Accelerate ignores DeepSpeed altogether and runs DDP, so that is refused.

    Args:
        kwargs: ``Accelerator`` arguments; ``kwargs_handlers`` gains an
            ``InitProcessGroupKwargs`` unless it has one.

    Raises:
        ValueError: ``cpu=True`` was asked for.
    """
    if kwargs.get("cpu"):
        raise ValueError("make_accelerator: cpu=True under a DeepSpeed launch "
                         "(ACCELERATE_USE_DEEPSPEED=true): Accelerate would ignore DeepSpeed and "
                         "run DDP; leave cpu unset (DeepSpeed's CPU accelerator runs on the CPU)")
    from accelerate.utils import InitProcessGroupKwargs

    handlers = list(kwargs.get("kwargs_handlers") or [])
    if not any(isinstance(handler, InitProcessGroupKwargs) for handler in handlers):
        from deepspeed.accelerator import get_accelerator

        backend = get_accelerator().communication_backend_name()
        handlers.append(InitProcessGroupKwargs(backend=backend))
        kwargs["kwargs_handlers"] = handlers


def is_deepspeed(accelerator: Any) -> bool:
    """Whether ``accelerator`` runs DeepSpeed (its engine clips and steps inside backward)."""
    return distributed_type(accelerator) == "DEEPSPEED"


def deepspeed_grad_norm(accelerator: Any) -> torch.Tensor | None:
    """The global gradient norm of DeepSpeed's latest update, before clipping.

    ``engine.get_global_grad_norm()`` is measured over every rank's shard of the averaged
    gradients (ZeRO 1/2 keep them in their own buffers: ``p.grad`` is None by then).

    Args:
        accelerator: A DeepSpeed accelerator after ``prepare(model, ...)``.

    Returns:
        A 0-d float tensor, or None before the first update.
    """
    wrapped = getattr(accelerator, "deepspeed_engine_wrapped", None)
    norm = None if wrapped is None else wrapped.engine.get_global_grad_norm()
    return None if norm is None else torch.as_tensor(float(norm))


def deepspeed_clip_max(accelerator: Any) -> float | None:
    """The ``gradient_clipping`` DeepSpeed's engine applies (None: it does not clip)."""
    wrapped = getattr(accelerator, "deepspeed_engine_wrapped", None)
    value = 0.0 if wrapped is None else float(wrapped.engine.gradient_clipping())
    return value if value > 0 else None


def deepspeed_backward(accelerator: Any, loss: torch.Tensor, boundary: bool, **kwargs: Any) -> None:
    """``accelerator.backward`` under DeepSpeed, telling the engine whether a window ends.

    Accelerate passes ``gradient_state.sync_gradients`` to the engine as the accumulation
    boundary, and the engine clips and steps there. The wrapper accumulates with
    ``gradient_accumulation_steps=1``, so that flag is always True and the engine would step
    after every micro-batch; it is set to ``boundary`` for this backward only.

    Args:
        accelerator: A DeepSpeed accelerator.
        loss: The (already divided) loss.
        boundary: Whether this backward ends the wrapper's accumulation window.
        **kwargs: Passed to ``accelerator.backward``.
    """
    state = accelerator.gradient_state
    saved = state.sync_gradients
    state._set_sync_gradients(boundary)
    try:
        accelerator.backward(loss, **kwargs)
    finally:
        state._set_sync_gradients(saved)


def set_deepspeed_clipping(accelerator: Any, max_norm: float) -> None:
    """Make DeepSpeed's engine clip at ``max_norm`` (0: no clipping); call before ``prepare``.

    DeepSpeed clips inside its engine with the config's ``gradient_clipping`` (Accelerate
    fills in 1.0 when the launch config leaves it out); Accelerate's ``clip_grad_norm_``
    only reads the norm. Setting the value here makes the wrapper's ``clip_grad`` the one
    applied.

    Args:
        accelerator: A DeepSpeed accelerator whose model is not prepared yet.
        max_norm: The wrapper's ``clip_grad.max_norm``, or 0.0.

    Warns:
        UserWarning: The DeepSpeed config asked for another value (it is replaced).
    """
    config = accelerator.state.deepspeed_plugin.deepspeed_config
    given = config.get("gradient_clipping", "auto")
    if given != "auto" and float(given) != float(max_norm):
        warnings.warn(f"DeepSpeed config gradient_clipping={given} replaced by {float(max_norm)} "
                      "from the optimizer wrapper's clip_grad (0.0: it does not clip by norm); "
                      "accelwrap's clip_grad is the one applied", stacklevel=3)
    config["gradient_clipping"] = float(max_norm)


def fill_deepspeed_micro_batch(accelerator: Any, objects: tuple) -> None:
    """Give DeepSpeed its micro-batch size when ``prepare`` gets no dataloader to read it from.

    Accelerate takes ``train_micro_batch_size_per_gpu`` (``'auto'`` in a launch config
    without a DeepSpeed JSON) from the dataloaders of the same ``prepare`` call and fails
    without one. A Runner prepares its dataloaders first (their length sizes the
    schedulers): their per-process batch size is used then.

    Args:
        accelerator: A DeepSpeed accelerator whose model is not prepared yet.
        objects: What is about to be prepared.
    """
    plugin = accelerator.state.deepspeed_plugin
    if (any(isinstance(obj, torch.utils.data.DataLoader) for obj in objects)
            or not plugin.is_auto("train_micro_batch_size_per_gpu")):
        return
    for loader in getattr(accelerator, "_dataloaders", ()):  # the first is the training one
        with contextlib.suppress(AttributeError, TypeError):  # no batch sampler to read
            per_process = loader.total_batch_size // accelerator.num_processes
            if per_process > 0:
                plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = per_process
                return


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
