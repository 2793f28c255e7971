"""Optimizers and their wrappers built from configs (``mmengine.optim.optimizer.builder``).

**The optimizer catalogue**: every ``torch.optim`` optimizer plus optional third-party ones.

Names follow MMEngine, so a config written for ``mmengine`` builds the same class:

* every optimizer class in ``torch.optim`` under its own name, except torch's
  ``Adafactor``, which is ``'TorchAdafactor'``;
* ``'Adafactor'`` is always transformers' ``Adafactor`` (as in MMEngine), so one config
  name never means two different algorithms depending on what happens to be installed;
* D-Adaptation (``DAdaptAdaGrad``, ``DAdaptAdam``, ``DAdaptSGD``), lion-pytorch
  (``Lion``), Sophia (``SophiaG`` from sophia-opt; ``Sophia``, ``DecoupledSophia`` and
  ``Sophia2`` only from an importable module ``Sophia``, which no release installs today),
  bitsandbytes (every class of ``bitsandbytes.optim``: ``AdamW8bit``, ``PagedLion8bit``, ...;
  those whose names clash with torch's get a ``bnb_`` prefix, e.g. ``'bnb_AdamW'``);
* ``'ZeroRedundancyOptimizer'`` (:mod:`accelwrap.optim.optimizer.zero_optimizer`);
* ``'Optimizer'``, torch's base class, as MMEngine registers it.

Each family has MMEngine's ``register_*_optimizers()`` function and ``*_OPTIMIZERS`` list
(``TORCH_OPTIMIZERS``, ``DADAPTATION_OPTIMIZERS``, ``LION_OPTIMIZERS``,
``SOPHIA_OPTIMIZERS``, ``BITSANDBYTES_OPTIMIZERS``, ``TRANSFORMERS_OPTIMIZERS``,
``NPU_OPTIMIZERS``): the names registered because the package is installed.

The third-party families, their providers and the error that says why a name is
unavailable are :mod:`accelwrap.optim.optimizer.third_party`'s; this module registers them
(lazily: no third-party package is imported until a name is built) and keeps the lists.

**build_optim_wrapper(model, cfg)**: one optimizer wrapper, or a dict of them, from a config.

Three config forms, as in MMEngine:

1. **One optimizer** -- ``dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01),
   paramwise_cfg=..., constructor=..., accumulative_counts=..., clip_grad=...)``.
   ``type`` defaults to ``'OptimWrapper'``, ``constructor`` to
   ``'DefaultOptimWrapperConstructor'``. The constructor gets ``optim_wrapper_cfg`` (all
   keys but ``constructor`` and ``paramwise_cfg``) and ``paramwise_cfg``.
2. **Several optimizers with a custom constructor** -- ``dict(constructor='MyCtor',
   generator=dict(...), discriminator=dict(...))``: the constructor receives the member
   configs as ``optim_wrapper_cfg`` and returns what it likes (usually an
   ``OptimWrapperDict``). The default constructor refuses this form, as MMEngine's does.
3. **Several optimizers, no constructor** (accelwrap's shortcut) -- ``dict(generator=dict(
   optimizer=...), discriminator=dict(optimizer=...))``: each member config is built with
   form 1 against ``model.<member>`` (``model.generator``, ...) and the results are put in
   an ``OptimWrapperDict``. A member may also be an already-built ``OptimWrapper``.

An ``accelerator=`` given at run time is passed to every wrapper built (in form 2, it is
added to each member config that has an ``optimizer``); a config that also sets
``accelerator`` is refused rather than silently overridden. The config is never modified.

Example:
    >>> import torch
    >>> from accelwrap.registry import OPTIMIZERS
    >>> OPTIMIZERS.get('TorchAdafactor') is torch.optim.Adafactor
    True
    >>> model = torch.nn.Linear(2, 1)
    >>> wrapper = build_optim_wrapper(model, dict(optimizer=dict(type='SGD', lr=0.1)))
    >>> type(wrapper).__name__, wrapper.get_lr()
    ('OptimWrapper', {'lr': [0.1]})
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn
from torch.optim import Optimizer

from accelwrap.errors import ValueAssertionError, suggest
from accelwrap.optim.optimizer.default_constructor import unwrap_model
from accelwrap.optim.optimizer.optimizer_wrapper import OptimWrapper
from accelwrap.optim.optimizer.optimizer_wrapper_dict import OptimWrapperDict
from accelwrap.optim.optimizer.third_party import (
    register_bitsandbytes_optimizers,
    register_dadaptation_optimizers,
    register_lion_optimizers,
    register_sophia_optimizers,
    register_torch_npu_optimizers,
    register_transformers_optimizers,
)
from accelwrap.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS, to_plain

# torch names registered under another name, so that MMEngine configs keep their meaning.
TORCH_RENAMES = {"Adafactor": "TorchAdafactor"}


def register_torch_optimizers() -> list[str]:
    """Register every optimizer class of ``torch.optim`` in ``OPTIMIZERS``.

    As in MMEngine, the base class ``torch.optim.Optimizer`` is registered too (as
    ``'Optimizer'``), so ``OPTIMIZERS.get('Optimizer')`` resolves.

    Returns:
        The registered names (torch's ``Adafactor`` appears as ``'TorchAdafactor'``,
        the name it is registered under; MMEngine lists ``'Adafactor'`` here).

    Example:
        >>> 'Optimizer' in register_torch_optimizers()
        True
    """
    names = []
    for attr in dir(torch.optim):
        cls = getattr(torch.optim, attr)
        if attr.startswith("__") or not (inspect.isclass(cls)
                                         and issubclass(cls, torch.optim.Optimizer)):
            continue
        name = TORCH_RENAMES.get(attr, attr)
        OPTIMIZERS.register_module(name=name, module=cls, force=True)
        names.append(name)
    return names


def register_zero_redundancy_optimizer() -> None:
    """Register ``'ZeroRedundancyOptimizer'``, imported on first use.

    ``torch.distributed.optim`` takes most of a second to import, so the class lives in
    :mod:`accelwrap.optim.optimizer.zero_optimizer` and is loaded only when somebody asks for it.
    """
    if "ZeroRedundancyOptimizer" not in OPTIMIZERS._module_dict:
        OPTIMIZERS.register_lazy("ZeroRedundancyOptimizer",
                                 "accelwrap.optim.optimizer.zero_optimizer",
                                 hint="this torch build needs torch.distributed")


TORCH_OPTIMIZERS = register_torch_optimizers()
NPU_OPTIMIZERS: list[str] = []  # filled by calling register_torch_npu_optimizers()
DADAPTATION_OPTIMIZERS = register_dadaptation_optimizers()
LION_OPTIMIZERS = register_lion_optimizers()
SOPHIA_OPTIMIZERS = register_sophia_optimizers()
BITSANDBYTES_OPTIMIZERS = register_bitsandbytes_optimizers()
TRANSFORMERS_OPTIMIZERS = register_transformers_optimizers()
THIRD_PARTY_OPTIMIZERS = (DADAPTATION_OPTIMIZERS + LION_OPTIMIZERS + SOPHIA_OPTIMIZERS
                          + BITSANDBYTES_OPTIMIZERS + TRANSFORMERS_OPTIMIZERS)
register_zero_redundancy_optimizer()


SINGLE_KEYS = ("type", "optimizer", "constructor", "paramwise_cfg")


def build_optim_wrapper(model: nn.Module, cfg: Mapping[str, Any] | DictConfig,
                        accelerator: Any = None) -> Any:
    """Build an optimizer wrapper (or an ``OptimWrapperDict``) for ``model`` from ``cfg``.

    Args:
        model: The model whose parameters are optimized (DDP / compiled wrappers are
            looked through).
        cfg: A dict or ``DictConfig`` in one of the three forms of this module's
            docstring. Never modified.
        accelerator: An ``accelerate.Accelerator`` handed to every wrapper built.

    Returns:
        The wrapper the constructor built, or an ``OptimWrapperDict`` for form 3.

    Raises:
        TypeError: ``cfg`` is not a dict.
        ValueError: ``cfg`` fits none of the forms, ``accelerator`` is given twice, or
            a member names no attribute of ``model``.
        UnknownTypeError: A constructor, wrapper or optimizer type is not registered.

    Example:
        >>> import torch
        >>> gan = torch.nn.ModuleDict(dict(gen=torch.nn.Linear(2, 2), disc=torch.nn.Linear(2, 1)))
        >>> wrappers = build_optim_wrapper(gan, dict(
        ...     gen=dict(optimizer=dict(type='SGD', lr=0.1)),
        ...     disc=dict(optimizer=dict(type='Adam', lr=0.01))))
        >>> wrappers.get_lr()
        {'gen.lr': [0.1], 'disc.lr': [0.01]}
    """
    if not isinstance(cfg, (Mapping, DictConfig)):
        raise TypeError(f"build_optim_wrapper: cfg must be a dict, got {type(cfg).__name__} "
                        f"({cfg!r})")
    cfg = to_plain(cfg)
    if accelerator is not None and "accelerator" in cfg:
        raise ValueError("build_optim_wrapper: 'accelerator' is set both in the config and as "
                         "an argument; remove it from the config")
    if any(key in cfg for key in SINGLE_KEYS):
        return _build_with_constructor(model, cfg, accelerator)
    return _build_members(model, cfg, accelerator)


def _build_with_constructor(model: nn.Module, cfg: dict[str, Any], accelerator: Any) -> Any:
    """Forms 1 and 2: hand the config to the (default or custom) constructor."""
    constructor_type = cfg.pop("constructor", "DefaultOptimWrapperConstructor")
    paramwise_cfg = cfg.pop("paramwise_cfg", None)
    if isinstance(cfg.get("optimizer"), Optimizer):
        return _wrap_built_optimizer(cfg, paramwise_cfg, constructor_type, accelerator)
    if accelerator is not None:
        if "optimizer" in cfg:
            cfg["accelerator"] = accelerator
        else:
            cfg = {key: _with_accelerator(value, accelerator) for key, value in cfg.items()}
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(
        {"type": constructor_type, "optim_wrapper_cfg": cfg, "paramwise_cfg": paramwise_cfg})
    return constructor(model)


def _with_accelerator(member: Any, accelerator: Any) -> Any:
    if not isinstance(member, Mapping) or "optimizer" not in member:
        return member
    if "accelerator" in member:
        raise ValueError("build_optim_wrapper: 'accelerator' is set both in a member config "
                         "and as an argument; remove it from the config")
    return {**member, "accelerator": accelerator}


def _wrap_built_optimizer(cfg: dict[str, Any], paramwise_cfg: Any, constructor_type: Any,
                          accelerator: Any) -> Any:
    """``optimizer`` is already an Optimizer: only the wrapper is built (as MMEngine's runner)."""
    if paramwise_cfg or constructor_type != "DefaultOptimWrapperConstructor":
        raise ValueError("build_optim_wrapper: 'paramwise_cfg' and 'constructor' need an "
                         "optimizer config, but 'optimizer' is an already-built "
                         f"{type(cfg['optimizer']).__name__}")
    default_args = {"accelerator": accelerator} if accelerator is not None else None
    return OPTIM_WRAPPERS.build({"type": "OptimWrapper", **cfg}, default_args=default_args)


def _build_members(model: nn.Module, cfg: dict[str, Any], accelerator: Any) -> Any:
    """Form 3: one wrapper per member config, each over ``model.<member>``."""
    if not cfg or not all(isinstance(v, (Mapping, OptimWrapper)) for v in cfg.values()):
        raise ValueAssertionError(
            "build_optim_wrapper: `optim_wrapper_cfg` must contain 'optimizer' (one "
            "optimizer) or be a dict of member configs (several optimizers); got keys "
            f"{sorted(map(str, cfg))}; {suggest(str(next(iter(cfg), '')), SINGLE_KEYS)}")
    model = unwrap_model(model)
    members = dict(model.named_children())
    wrappers = {}
    for name, member_cfg in cfg.items():
        if isinstance(member_cfg, OptimWrapper):
            wrappers[name] = member_cfg
            continue
        if name not in members:
            raise ValueError(f"build_optim_wrapper: optimizer config {name!r} must name a "
                             f"submodule of {type(model).__name__}, which has none called "
                             f"{name!r}; {suggest(name, [*members, *SINGLE_KEYS])}")
        if "optimizer" not in member_cfg and "constructor" not in member_cfg:
            raise ValueError(f"build_optim_wrapper: the config of member {name!r} has no "
                             f"'optimizer' (keys given: {sorted(map(str, member_cfg))})")
        wrappers[name] = build_optim_wrapper(members[name], member_cfg, accelerator=accelerator)
    return OptimWrapperDict(**wrappers)


__all__ = [
    "BITSANDBYTES_OPTIMIZERS", "DADAPTATION_OPTIMIZERS", "LION_OPTIMIZERS", "NPU_OPTIMIZERS",
    "OPTIMIZERS", "OPTIM_WRAPPER_CONSTRUCTORS", "SOPHIA_OPTIMIZERS", "THIRD_PARTY_OPTIMIZERS",
    "TORCH_OPTIMIZERS", "TORCH_RENAMES", "TRANSFORMERS_OPTIMIZERS", "build_optim_wrapper",
    "register_bitsandbytes_optimizers", "register_dadaptation_optimizers",
    "register_lion_optimizers", "register_sophia_optimizers", "register_torch_npu_optimizers",
    "register_torch_optimizers", "register_transformers_optimizers",
    "register_zero_redundancy_optimizer",
]
