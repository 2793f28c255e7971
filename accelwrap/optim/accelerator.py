"""Making and using an Accelerator with accelwrap's wrappers.

* :func:`make_accelerator` creates an ``accelerate.Accelerator`` with the settings the
  wrappers need: ``step_scheduler_with_optimizer=False`` (schedulers are stepped once
  per call, whatever the number of processes), ``gradient_accumulation_steps=1`` (the
  wrapper accumulates), mixed precision matching an ``AmpOptimWrapper``, and a CPU loss
  scaler for fp16 on CPU (which Accelerate silently skips).
* :func:`prepare` is ``accelerator.prepare`` for models, optimizer wrappers (and
  ``OptimWrapperDict`` members), dataloaders and schedulers in one call; the wrappers
  come back bound to the accelerator and their prepared optimizer.

The two ways to use a wrapper inside your own multi-GPU script (``accelerate launch``
or ``torchrun``)::

    accelerator = make_accelerator()                       # or Accelerator(...) with
                                                           # step_scheduler_with_optimizer=False
    # (a) wrap what accelerator.prepare returned
    model, optimizer = accelerator.prepare(model, optimizer)
    optim_wrapper = OptimWrapper(optimizer, accumulative_counts=4, accelerator=accelerator)
    # (b) or prepare everything in one call
    model, optim_wrapper, loader, scheduler = prepare(accelerator, model, optim_wrapper,
                                                      loader, scheduler)
    for x, y in loader:
        with optim_wrapper.optim_context(model):   # no all-reduce inside a window
            loss = loss_fn(model(x), y)
        optim_wrapper.update_params(loss)
        scheduler.step()

Example:
    >>> from torch import nn
    >>> from accelwrap.optim import OptimWrapper
    >>> accelerator = make_accelerator(cpu=True)
    >>> model = nn.Linear(2, 1)
    >>> wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    >>> model, wrapper = prepare(accelerator, model, wrapper)
    >>> wrapper.accelerator is accelerator
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from accelwrap.optim import _accelerate_compat as glue
from accelwrap.optim.optimizer.amp_optimizer_wrapper import (
    MIXED_PRECISION,
    AmpOptimWrapper,
    resolve_dtype,
    scaler_kwargs,
)
from accelwrap.optim.optimizer.optimizer_wrapper import OptimWrapper
from accelwrap.optim.optimizer.optimizer_wrapper_dict import OptimWrapperDict, named_members
from accelwrap.registry import OPTIM_WRAPPERS, to_plain


def _members(obj: Any) -> list[OptimWrapper]:
    """The wrappers ``obj`` holds: its members, itself, or none when it is no wrapper."""
    return list(named_members(obj).values()) if isinstance(obj, OptimWrapper) else []


def _is_scheduler(obj: Any) -> bool:
    return isinstance(obj, torch.optim.lr_scheduler.LRScheduler)


def prepare(accelerator: Any, *objects: Any) -> Any:
    """Prepare models, optimizer wrappers, dataloaders and schedulers together.

    Args:
        accelerator: An ``accelerate.Accelerator`` (ideally from :func:`make_accelerator`).
        *objects: ``nn.Module``, :class:`OptimWrapper` / :class:`OptimWrapperDict`,
            ``DataLoader`` and ``LRScheduler`` objects, in any order.

    Returns:
        The objects in the same order (a single object when one is given): prepared
        models and dataloaders; the same wrapper objects, now bound to
        ``accelerator`` and to their prepared optimizers; the same scheduler objects
        (registered with the accelerator, so ``save_state`` saves them, but not
        wrapped in ``AcceleratedScheduler``, whose per-process stepping accelwrap avoids).

    Raises:
        ValueError: Schedulers with an accelerator whose
            ``step_scheduler_with_optimizer`` is True, a wrapper the accelerator does not
            suit (accumulation steps, mixed precision), or under DeepSpeed a ``clip_grad``
            its engine cannot apply (by value, not L2, two different ``max_norm``).
            Under DeepSpeed the engine's ``gradient_clipping`` is set to the wrappers'
            ``max_norm`` (0.0 without norm clipping) before the engine is built, and an
            ``'auto'`` micro-batch size is taken from the dataloaders prepared before
            when none is among ``objects``.

    Example:
        >>> from accelwrap.optim import OptimWrapper
        >>> model = torch.nn.Linear(2, 1)
        >>> wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
        >>> model, same = prepare(make_accelerator(cpu=True), model, wrapper)
        >>> same is wrapper, type(wrapper.optimizer).__name__
        (True, 'AcceleratedOptimizer')
    """
    if any(_is_scheduler(obj) for obj in objects) and accelerator.step_scheduler_with_optimizer:
        raise ValueError(
            "accelwrap.optim.prepare: this Accelerator has step_scheduler_with_optimizer=True, so "
            "Accelerate would step every scheduler num_processes times per call and the learning "
            "rate would depend on the number of processes. Create it with "
            "Accelerator(step_scheduler_with_optimizer=False) or "
            "accelwrap.optim.make_accelerator()")
    wrappers = [w for obj in objects for w in _members(obj)]
    for wrapper in wrappers:
        wrapper.validate_accelerator(accelerator)
    # Under DeepSpeed, Accelerate's prepare registers only the last scheduler of a call
    # for save_state: they are registered one by one after the engine is built.
    apart = glue.is_deepspeed(accelerator)
    if wrappers and apart:
        glue.set_deepspeed_clipping(accelerator, _deepspeed_max_norm(wrappers))
        glue.fill_deepspeed_micro_batch(accelerator, objects)
    flat = [w.optimizer for w in wrappers]
    flat += [obj for obj in objects if not _members(obj) and not (apart and _is_scheduler(obj))]
    prepared = accelerator.prepare(*flat) if flat else ()
    prepared = list(prepared) if len(flat) != 1 else [prepared]
    for wrapper, optimizer in zip(wrappers, prepared):
        wrapper.bind(accelerator, optimizer)
    rest = iter(prepared[len(wrappers):])
    result = []
    for obj in objects:
        if _members(obj):
            result.append(obj)
        elif apart and _is_scheduler(obj):
            accelerator.prepare_scheduler(obj)
            result.append(obj)
        else:
            out = next(rest)
            if isinstance(out, torch.nn.Module):
                register_step_methods(out)
            result.append(obj if _is_scheduler(obj) else out)
    return result[0] if len(result) == 1 else tuple(result)


def _deepspeed_max_norm(wrappers: list[OptimWrapper]) -> float:
    """The one ``gradient_clipping`` DeepSpeed can apply for ``wrappers`` (0.0: none clips).

    Raises:
        ValueError: Clipping by value, a norm other than L2 (DeepSpeed clips the L2 norm
            only) or wrappers with different ``max_norm``.
    """
    found = set()
    for wrapper in wrappers:
        clip = wrapper.clip_grad_kwargs or {}
        if "clip_value" in clip or float(clip.get("norm_type", 2.0)) != 2.0:
            raise ValueError(f"accelwrap.optim.prepare: clip_grad={clip} cannot work under "
                             "DeepSpeed, whose engine clips by the L2 norm only; use "
                             "clip_grad=dict(max_norm=...) (norm_type 2) or no clip_grad")
        found.add(float(clip.get("max_norm", 0.0)))
    if len(found) > 1:
        raise ValueError(f"accelwrap.optim.prepare: the wrappers clip at different max_norm "
                         f"{sorted(found)}, but one DeepSpeed engine clips at one value")
    return found.pop()


#: A model's own methods that run it outside ``forward`` (MMEngine's model contract).
STEP_METHODS = ("val_step", "test_step")


def register_step_methods(module: torch.nn.Module) -> None:
    """Let an FSDP2 module's ``val_step``/``test_step`` gather its parameters as ``forward`` does.

    FSDP2 unshards parameters around ``forward`` only; a ``val_step`` that calls sub-modules
    or the module's own layers would otherwise meet sharded ``DTensor`` parameters. A no-op
    for any other module.

    Example:
        >>> register_step_methods(torch.nn.Linear(2, 1))  # not FSDP: nothing to do
    """
    try:
        from torch.distributed.fsdp import FSDPModule, register_fsdp_forward_method
    except ImportError:  # a torch without FSDP2
        return
    if isinstance(module, FSDPModule):
        for name in STEP_METHODS:
            if callable(getattr(module, name, None)):
                register_fsdp_forward_method(module, name)


def _wrapper_dtype(optim_wrapper: Any, device_type: str) -> tuple[torch.dtype | None, tuple]:
    """The AMP dtype and scaler arguments (sorted ``(key, value)`` pairs, hashable) asked for."""
    if optim_wrapper is None:
        return None, ()
    if isinstance(optim_wrapper, OptimWrapperDict):
        found = {_wrapper_dtype(w, device_type) for w in optim_wrapper.values()} - {(None, ())}
        return _only_one(found)
    if isinstance(optim_wrapper, AmpOptimWrapper):
        return (resolve_dtype(optim_wrapper._dtype_setting, device_type),
                tuple(sorted(optim_wrapper._scaler_kwargs.items())))
    if isinstance(optim_wrapper, OptimWrapper):
        return None, ()
    cfg = to_plain(optim_wrapper)
    if not isinstance(cfg, Mapping):
        raise TypeError(f"make_accelerator: optim_wrapper must be an OptimWrapper or its config "
                        f"dict, got {type(optim_wrapper).__name__}")
    wrapper_type = OPTIM_WRAPPERS.get(cfg.get("type", "OptimWrapper"))
    if not (isinstance(wrapper_type, type) and issubclass(wrapper_type, AmpOptimWrapper)):
        return None, ()
    return (resolve_dtype(cfg.get("dtype"), device_type),
            tuple(sorted(scaler_kwargs(cfg.get("loss_scale", "dynamic")).items())))


def _only_one(found: set[tuple[torch.dtype | None, tuple]]) -> tuple[torch.dtype | None, tuple]:
    if len(found) > 1:
        raise ValueError(f"make_accelerator: the AMP members ask for different precisions or "
                         f"loss scales {sorted(map(str, found))}; one Accelerator has one")
    return next(iter(found), (None, ()))


def make_accelerator(optim_wrapper: Any = None, **accelerator_kwargs: Any) -> Any:
    """Create an ``accelerate.Accelerator`` with accelwrap's safe defaults.

    Args:
        optim_wrapper: Optional :class:`OptimWrapper`, :class:`OptimWrapperDict` or
            wrapper config dict; an AMP one sets ``mixed_precision`` to its dtype.
        **accelerator_kwargs: Any ``Accelerator`` argument (``cpu``,
            ``mixed_precision``, ``project_dir``, ...). ``step_scheduler_with_optimizer``
            defaults to False; ``gradient_accumulation_steps`` must be 1.

    Returns:
        The Accelerator. With fp16 on CPU it carries a ``GradScaler('cpu')`` (built from
        the AMP wrapper's ``loss_scale``) and autocasts, as fp16 does on a GPU.

    Raises:
        ValueError: ``gradient_accumulation_steps`` other than 1, a
            ``mixed_precision`` that contradicts the AMP wrapper, or ``cpu=True`` under a
            DeepSpeed launch without CUDA (there the process group's backend is set to the
            one DeepSpeed's CPU accelerator uses, so Accelerate counts the ranks).

    Example:
        >>> acc = make_accelerator(cpu=True)  # or make_accelerator(amp_wrapper_cfg, cpu=True)
        >>> acc.step_scheduler_with_optimizer, acc.gradient_accumulation_steps
        (False, 1)
    """
    from accelerate import Accelerator

    kwargs = dict(accelerator_kwargs)
    kwargs.setdefault("step_scheduler_with_optimizer", False)
    steps = kwargs.setdefault("gradient_accumulation_steps", 1)
    if steps != 1:
        raise ValueError(f"make_accelerator: gradient_accumulation_steps={steps} is not "
                         f"supported. " + glue.GAS_FIX.format(n=steps))
    if glue.deepspeed_requested() and not torch.cuda.is_available():
        glue.add_deepspeed_cpu_backend(kwargs)
    on_cuda = torch.cuda.is_available() and not kwargs.get("cpu", False)
    dtype, scaler_args = _wrapper_dtype(optim_wrapper, "cuda" if on_cuda else "cpu")
    if dtype is not None:
        wanted = MIXED_PRECISION[dtype]
        given = kwargs.setdefault("mixed_precision", wanted)
        if given != wanted:
            raise ValueError(f"make_accelerator: mixed_precision={given!r} contradicts the AMP "
                             f"wrapper's dtype {dtype}; pass mixed_precision={wanted!r} or omit it")
    accelerator = Accelerator(**kwargs)
    glue.install_cpu_scaler(accelerator, dict(scaler_args))
    return accelerator
