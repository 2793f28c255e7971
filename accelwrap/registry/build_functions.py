"""Build functions: turn a ``type=`` config into an object (MMEngine's ``build_functions``).

Each is called by ``Registry.build`` as ``build_func(cfg, registry=..., default_args=...)``.
The config is never modified; ``type`` may come from ``default_args``; an optional
``_scope_`` key builds in the registry of that scope (see
:meth:`~accelwrap.registry.Registry.switch_scope_and_registry`); arguments the target
does not take are named, with close matches, before it is called.

Example:
    >>> import torch
    >>> from accelwrap.registry import OPTIMIZERS
    >>> params = [torch.nn.Parameter(torch.zeros(2))]
    >>> opt = build_from_cfg({'type': 'SGD', 'lr': 0.1}, OPTIMIZERS, {'params': params})
    >>> type(opt).__name__
    'SGD'
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig
from torch import nn

from accelwrap.arguments import check_arguments, to_plain, type_name
from accelwrap.errors import suggest
from accelwrap.registry.entries import MissingTypeError, RegistryAssertionError

__all__ = ["build_from_cfg", "build_model_from_cfg", "build_optimizer_from_cfg",
           "build_runner_from_cfg", "build_scheduler_from_cfg", "merge_args", "split_cfg"]

logger = logging.getLogger(__name__)

# ``registry`` is an accelwrap Registry; it is not imported here, because registry.py
# imports this module for its default build function.
AnyRegistry = Any


def merge_args(cfg: Mapping | DictConfig, registry: AnyRegistry,
               default_args: Mapping | DictConfig | None) -> dict[str, Any]:
    """Return a new dict of ``cfg`` with ``default_args`` filled in where ``cfg`` is silent.

    Args:
        cfg: The config (a dict or ``DictConfig``).
        registry: The registry building it (named in errors).
        default_args: Defaults, or None.

    Returns:
        The merged arguments, still with ``type`` (and ``_scope_`` if given).

    Raises:
        TypeError: ``cfg`` or ``default_args`` is not a mapping, or ``registry`` is
            not a Registry.
        MissingTypeError: Neither gives ``type`` (a ``TypeError`` and a ``KeyError``).
    """
    if not (callable(getattr(registry, "get", None)) and hasattr(registry, "build_func")):
        raise TypeError(f"registry must be an accelwrap Registry, got {registry!r}")
    if not isinstance(cfg, (Mapping, DictConfig)):
        raise TypeError(f"{registry.name}: a config must be a dict, got {type(cfg).__name__} "
                        f"({cfg!r})")
    if default_args is not None and not isinstance(default_args, (Mapping, DictConfig)):
        raise TypeError(f"{registry.name}: default_args must be a dict or None, got "
                        f"{type(default_args).__name__} ({default_args!r})")
    args = to_plain(cfg)
    defaults = to_plain(default_args) if isinstance(default_args, DictConfig) else default_args
    for key, value in (defaults or {}).items():
        args.setdefault(key, value)
    if "type" not in args:
        raise MissingTypeError(f"{registry.name}: the config {to_plain(cfg)!r} has no 'type' "
                               f"key; {suggest('', registry.keys())}")
    return args


def split_cfg(cfg: Mapping | DictConfig, registry: AnyRegistry,
              default_args: Mapping | None) -> tuple[Any, dict[str, Any]]:
    """Resolve a config's ``type`` in ``registry`` and merge its arguments with the defaults.

    Args:
        cfg: A mapping with a ``type`` key.
        registry: Where to look the type up (``_scope_`` is not applied here).
        default_args: Arguments used where ``cfg`` does not give them.

    Returns:
        ``(target, args)`` with ``args`` a new dict without ``type``.
    """
    args = merge_args(cfg, registry, default_args)
    args.pop("_scope_", None)
    return registry.get(args.pop("type")), args


def build_from_cfg(cfg: Mapping | DictConfig, registry: AnyRegistry,
                   default_args: Mapping | DictConfig | None = None) -> Any:
    """Default build function: ``registry.get(cfg['type'])(**rest, **defaults)``.

    Args:
        cfg: A mapping with a ``type`` key (or ``default_args`` has one); never modified.
        registry: Where to look the type up.
        default_args: Arguments used where ``cfg`` does not give them.

    Returns:
        The built object.

    Raises:
        UnknownTypeError: The type is not registered.
        TypeError: A bad config, or arguments the target does not accept.
    """
    args = merge_args(cfg, registry, default_args)
    with registry.switch_scope_and_registry(args.pop("_scope_", None)) as scoped:
        target = scoped.get(args.pop("type"))
        check_arguments(target, args, f"{scoped.name} {type_name(target)!r}")
        return target(**args)


def build_optimizer_from_cfg(cfg: Mapping | DictConfig, registry: AnyRegistry,
                             default_args: Mapping | DictConfig | None = None) -> Any:
    """``OPTIMIZERS``' build function: :func:`build_from_cfg`, noting torch's Adafactor.

    ``'Adafactor'`` is transformers' optimizer (as in MMEngine); torch's own is
    ``'TorchAdafactor'``, which is logged when ``'Adafactor'`` is built.
    """
    if isinstance(cfg, (Mapping, DictConfig)) and cfg.get("type") == "Adafactor":
        logger.info("'Adafactor' is transformers' Adafactor; torch's is registered as "
                    "'TorchAdafactor'")
    return build_from_cfg(cfg, registry, default_args)


def build_model_from_cfg(cfg: Mapping | DictConfig | list, registry: AnyRegistry,
                         default_args: Mapping | DictConfig | None = None) -> nn.Module:
    """``MODELS``' build function: a list of configs builds an ``nn.Sequential`` of them.

    Example:
        >>> from accelwrap.registry import Registry
        >>> LAYERS = Registry('layer', build_func=build_model_from_cfg, scope='doc_layers')
        >>> _ = LAYERS.register_module(module=nn.Linear)
        >>> LAYERS.build([dict(type='Linear', in_features=2, out_features=3),
        ...               dict(type='Linear', in_features=3, out_features=1)])[1].in_features
        3
    """
    if isinstance(cfg, list):
        return nn.Sequential(*(build_from_cfg(item, registry, default_args) for item in cfg))
    return build_from_cfg(cfg, registry, default_args)


def build_runner_from_cfg(cfg: Mapping | DictConfig, registry: AnyRegistry) -> Any:
    """``RUNNERS``' build function: ``registry.get(cfg.get('runner_type', 'Runner')).from_cfg``.

    Args:
        cfg: A whole run config; ``runner_type`` (default ``'Runner'``) names the class.
        registry: Where the runner class is registered.

    Returns:
        ``runner_cls.from_cfg(cfg)`` (``_scope_`` removed).
    """
    if not isinstance(cfg, (Mapping, DictConfig)):
        raise TypeError(f"{registry.name}: a config must be a dict, got {type(cfg).__name__}")
    args = to_plain(cfg)
    with registry.switch_scope_and_registry(args.pop("_scope_", None)) as scoped:
        runner_cls = scoped.get(args.get("runner_type", "Runner"))
        return runner_cls.from_cfg(args)


def build_scheduler_from_cfg(cfg: Mapping | DictConfig, registry: AnyRegistry,
                             default_args: Mapping | DictConfig | None = None) -> Any:
    """Build a parameter scheduler, honouring ``convert_to_iter_based=True``.

    ``default_args`` usually carries ``optimizer`` and ``epoch_length``; the latter
    is only passed on when the config asks for conversion.

    Args:
        cfg: A scheduler config; never modified.
        registry: The ``PARAM_SCHEDULERS`` registry.
        default_args: ``optimizer`` and optionally ``epoch_length``.

    Returns:
        The built scheduler.

    Raises:
        RegistryAssertionError: Conversion asked for without ``epoch_length``, or for
            a scheduler that is not epoch based (a ``ValueError``; MMEngine asserts).
    """
    args = merge_args(cfg, registry, default_args)
    with registry.switch_scope_and_registry(args.pop("_scope_", None)) as scoped:
        target = scoped.get(args.pop("type"))
        convert = args.pop("convert_to_iter_based", False)
        epoch_length = args.pop("epoch_length", None)
        where = f"{scoped.name} {type_name(target)!r}"
        if convert and epoch_length is None:
            raise RegistryAssertionError(
                f"{where}: convert_to_iter_based=True needs epoch_length (the number of "
                "iterations per epoch) in default_args")
        if convert and not args.get("by_epoch", True):
            raise RegistryAssertionError(
                f"{where}: convert_to_iter_based=True needs an epoch-based scheduler, but "
                "the config sets by_epoch=False")
        check_arguments(target, args, where)
        if convert:
            return target.build_iter_from_epoch(**args, epoch_length=epoch_length)
        return target(**args)
