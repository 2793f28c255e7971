"""Registries: name -> class maps that build objects from ``type=`` configs.

The registries are filled when :mod:`accelwrap` is imported. Building from a
config never mutates it; an unknown ``type`` lists the closest registered names; an
argument the target does not take is named with the ones it does take.

Example:
    >>> import torch
    >>> from accelwrap.registry import OPTIMIZERS
    >>> params = [torch.nn.Parameter(torch.zeros(2))]
    >>> opt = OPTIMIZERS.build({'type': 'SGD', 'lr': 0.1}, default_args={'params': params})
    >>> type(opt).__name__
    'SGD'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from omegaconf import DictConfig

from accelwrap.arguments import check_arguments, signature_problems, to_plain, type_name
from accelwrap.errors import RegistryError, UnknownTypeError, suggest

BuildFunc = Callable[[Mapping, "Registry", "Mapping | None"], Any]


class _LazyEntry:
    """A registry entry whose module is imported only when the entry is first used."""

    __slots__ = ("module", "attr", "hint")

    def __init__(self, module: str, attr: str, hint: str) -> None:
        self.module, self.attr, self.hint = module, attr, hint

    def __repr__(self) -> str:
        return f"<lazy {self.module}.{self.attr}>"

    def load(self, where: str) -> Any:
        try:
            return getattr(importlib.import_module(self.module), self.attr)
        except (ImportError, AttributeError) as err:
            message = (f"{where}: importing {self.module}.{self.attr} failed "
                       f"({type(err).__name__}: {err})")
            raise UnknownTypeError(f"{message}; {self.hint}" if self.hint else message) from err


class Registry:
    """A named map from type names to classes or functions.

    Args:
        name: The registry's name, used in error messages.
        build_func: Optional replacement for :func:`build_from_cfg`.

    Example:
        >>> REG = Registry('toy')
        >>> @REG.register_module()
        ... class Box:
        ...     def __init__(self, size=1):
        ...         self.size = size
        >>> REG.build({'type': 'Box', 'size': 3}).size
        3
        >>> 'Box' in REG
        True
    """

    def __init__(self, name: str, build_func: BuildFunc | None = None) -> None:
        self.name = name
        self._modules: dict[str, Any] = {}
        self._missing_hints: dict[str, str] = {}
        self._build_func = build_func

    def __repr__(self) -> str:
        return f"Registry(name={self.name!r}, items={sorted(self._modules)})"

    def __len__(self) -> int:
        return len(self._modules)

    def __contains__(self, name: object) -> bool:
        return name in self._modules

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    @property
    def module_dict(self) -> dict[str, Any]:
        """A copy of the name -> class map (lazy entries are imported first)."""
        return {name: self.get(name) for name in self._modules}

    def keys(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._modules)

    def register_module(self, name: str | list[str] | None = None, force: bool = False,
                        module: Any = None) -> Any:
        """Register a class or function, directly or as a decorator.

        Args:
            name: The name(s) to register under; defaults to ``module.__name__``.
            force: Replace an existing entry of the same name instead of raising.
            module: The class or function. When omitted, a decorator is returned.

        Returns:
            ``module`` when given, otherwise a decorator that registers and returns
            its argument.

        Raises:
            RegistryError: The name is taken and ``force`` is False.
            TypeError: ``module`` is not callable or ``name`` is not a string.
        """
        if not isinstance(force, bool):
            raise TypeError(f"force must be a bool, got {force!r}")
        if module is not None:
            self._register(module, name, force)
            return module

        def decorator(obj: Any) -> Any:
            self._register(obj, name, force)
            return obj

        return decorator

    def _register(self, module: Any, name: str | list[str] | None, force: bool) -> None:
        if not callable(module):
            raise TypeError(f"{self.name}: only classes and functions can be registered, "
                            f"got {module!r}")
        names = ([module.__name__] if name is None
                 else list(name) if isinstance(name, (list, tuple)) else [name])
        for key in names:
            if not isinstance(key, str):
                raise TypeError(f"{self.name}: a registered name must be a string, got {key!r}")
            if self._modules.get(key, module) is not module:
                self._check_free(key, force)
            self._modules[key] = module
            self._missing_hints.pop(key, None)

    def _check_free(self, name: str, force: bool) -> None:
        """Raise unless ``name`` is unused or ``force`` allows replacing it."""
        if name in self._modules and not force:
            raise RegistryError(f"{name!r} is already registered in {self.name} "
                                f"(as {self._modules[name]!r}); pass force=True to replace it")

    def register_lazy(self, name: str, module: str, attr: str | None = None, hint: str = "",
                      force: bool = False) -> None:
        """Register ``module.attr`` under ``name`` without importing ``module`` yet.

        The module is imported the first time the entry is looked up with :meth:`get`
        (or built); until then ``name in registry`` is True and importing costs nothing.

        Args:
            name: The type name.
            module: The dotted module path to import on first use.
            attr: The attribute of ``module`` to register; defaults to ``name``.
            hint: Appended to the error when the import fails (e.g. a ``pip install``).
            force: Replace an existing entry of the same name instead of raising.

        Raises:
            RegistryError: The name is taken and ``force`` is False.

        Example:
            >>> REG = Registry('toy')
            >>> REG.register_lazy('OrderedDict', 'collections')
            >>> REG.get('OrderedDict').__name__
            'OrderedDict'
        """
        self._check_free(name, force)
        self._modules[name] = _LazyEntry(module, attr or name, hint)
        self._missing_hints.pop(name, None)

    def add_missing_hint(self, name: str, hint: str) -> None:
        """Record why ``name`` is not available (e.g. which ``pip install`` brings it).

        Args:
            name: A type name that would be registered if its package imported.
            hint: The sentence shown when somebody asks for it.
        """
        if name not in self._modules:
            self._missing_hints[name] = hint

    def get(self, name: str | type | Callable) -> Any:
        """Return the class registered as ``name`` (a class or function is returned as is).

        Args:
            name: A registered name, or a class/function.

        Returns:
            The registered class or function.

        Raises:
            UnknownTypeError: ``name`` is not registered; the message lists close
                matches, or the ``pip install`` that would register it.
        """
        if not isinstance(name, str):
            if callable(name):
                return name
            raise TypeError(f"{self.name}: 'type' must be a name or a class, got {name!r}")
        if name in self._modules:
            entry = self._modules[name]
            if isinstance(entry, _LazyEntry):
                entry = self._modules[name] = entry.load(f"{self.name} {name!r}")
            return entry
        if name in self._missing_hints:
            raise UnknownTypeError(f"{name!r} is not available in {self.name}: "
                                   f"{self._missing_hints[name]}")
        raise UnknownTypeError(f"{name!r} is not registered in {self.name}; "
                               f"{suggest(name, self._modules)}")

    def build(self, cfg: Mapping | DictConfig, default_args: Mapping | None = None) -> Any:
        """Build an object from a config whose ``type`` names a registered class.

        Args:
            cfg: A dict or ``DictConfig`` with a ``type`` key; never modified.
            default_args: Arguments used where ``cfg`` does not give them.

        Returns:
            The built object.

        Raises:
            UnknownTypeError: The type is not registered.
            TypeError: ``cfg`` is not a mapping, has no ``type``, or has arguments the
                target does not accept.
        """
        if self._build_func is not None:
            return self._build_func(cfg, self, default_args)
        return build_from_cfg(cfg, self, default_args)


def split_cfg(cfg: Mapping | DictConfig, registry: Registry,
              default_args: Mapping | None) -> tuple[Any, dict[str, Any]]:
    """Resolve a config's ``type`` and merge its arguments with the defaults.

    Args:
        cfg: A mapping with a ``type`` key.
        registry: Where to look the type up.
        default_args: Arguments used where ``cfg`` does not give them.

    Returns:
        ``(target, args)`` with ``args`` a new dict without ``type``.

    Raises:
        TypeError: ``cfg`` is not a mapping or lacks ``type``.
    """
    if not isinstance(cfg, (Mapping, DictConfig)):
        raise TypeError(f"{registry.name}: a config must be a dict, got {type(cfg).__name__} "
                        f"({cfg!r})")
    args = to_plain(cfg)
    if "type" not in args:
        raise TypeError(f"{registry.name}: the config {args!r} has no 'type' key; "
                        f"{suggest('', registry.keys())}")
    target = registry.get(args.pop("type"))
    for key, value in (default_args or {}).items():
        args.setdefault(key, value)
    return target, args


def build_from_cfg(cfg: Mapping | DictConfig, registry: Registry,
                   default_args: Mapping | None = None) -> Any:
    """Default build function: ``registry.get(cfg['type'])(**rest, **defaults)``.

    Args:
        cfg: A mapping with a ``type`` key; never modified.
        registry: Where to look the type up.
        default_args: Arguments used where ``cfg`` does not give them.

    Returns:
        The built object.
    """
    target, args = split_cfg(cfg, registry, default_args)
    check_arguments(target, args, f"{registry.name} {type_name(target)!r}")
    return target(**args)


def build_scheduler_from_cfg(cfg: Mapping | DictConfig, registry: Registry,
                             default_args: Mapping | None = None) -> Any:
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
        ValueError: Conversion asked for without ``epoch_length``, or for a scheduler
            that is not epoch based.
    """
    target, args = split_cfg(cfg, registry, default_args)
    convert = args.pop("convert_to_iter_based", False)
    epoch_length = args.pop("epoch_length", None)
    where = f"{registry.name} {type_name(target)!r}"
    if convert and epoch_length is None:
        raise ValueError(f"{where}: convert_to_iter_based=True needs epoch_length "
                         "(the number of iterations per epoch) in default_args")
    if convert and not args.get("by_epoch", True):
        raise ValueError(f"{where}: convert_to_iter_based=True needs an epoch-based "
                         "scheduler, but the config sets by_epoch=False")
    check_arguments(target, args, where)
    if convert:
        return target.build_iter_from_epoch(**args, epoch_length=epoch_length)
    return target(**args)


OPTIMIZERS = Registry("OPTIMIZERS")
OPTIM_WRAPPERS = Registry("OPTIM_WRAPPERS")
OPTIM_WRAPPER_CONSTRUCTORS = Registry("OPTIM_WRAPPER_CONSTRUCTORS")
PARAM_SCHEDULERS = Registry("PARAM_SCHEDULERS", build_func=build_scheduler_from_cfg)
# Filled by accelwrap.runner (example models and bundled datasets) and by users' code.
MODELS = Registry("MODELS")
DATASETS = Registry("DATASETS")

__all__ = [
    "DATASETS", "MODELS", "OPTIMIZERS", "OPTIM_WRAPPERS", "OPTIM_WRAPPER_CONSTRUCTORS",
    "PARAM_SCHEDULERS",
    "Registry", "build_from_cfg", "build_scheduler_from_cfg", "check_arguments",
    "signature_problems", "split_cfg", "to_plain", "type_name",
]
