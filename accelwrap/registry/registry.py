"""The :class:`Registry`: a named map from type names to classes, in a tree of scopes.

Semantics are MMEngine's: a child registry (``parent=``) falls back to its ancestors; a
scoped name ``'myproj.Foo'`` is looked up in the registry of scope ``myproj`` (importing
``myproj.registry`` first, so the child joins the tree); ``locations`` are imported on
the first lookup; a full dotted path (``'torch.optim.SGD'``) resolves to that object; a
child without ``build_func`` inherits its parent's. The scope ``'mmengine'`` in a name
or a config's ``_scope_`` means accelwrap's root registries, so MMEngine configs keep
their meaning. The lookup itself and its error are :mod:`~accelwrap.registry.lookup`'s.

accelwrap's additions: an unknown name raises (a ``KeyError``) listing close matches
instead of returning None; entries can be registered lazily; missing optional
packages leave a hint saying which ``pip install`` brings the name.

Example:
    >>> MODELS = Registry('model', scope='base')
    >>> DETECTORS = Registry('detector', parent=MODELS, scope='det')
    >>> @MODELS.register_module()
    ... class ResNet:
    ...     pass
    >>> DETECTORS.get('ResNet') is ResNet, DETECTORS.get('base.ResNet') is ResNet
    (True, True)
    >>> MODELS.children['det'] is DETECTORS, DETECTORS.root is MODELS
    (True, True)
"""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from accelwrap.errors import RegistryError
from accelwrap.registry.build_functions import build_from_cfg
from accelwrap.registry.default_scope import (
    ROOT_SCOPE,
    DefaultScope,
    canonical_scope,
    import_registry_module,
)
from accelwrap.registry.entries import LazyEntry, RegistryAssertionError, RegistryTypeError
from accelwrap.registry.lookup import resolve, search_child, unknown_error

__all__ = ["ROOT_SCOPE", "Registry"]

logger = logging.getLogger(__name__)


class Registry:
    """A named map from type names to classes or functions, optionally in a scope tree.

    Args:
        name: The registry's name, used in error messages.
        build_func: Replaces :func:`~accelwrap.registry.build_from_cfg`; when None the
            parent's is inherited, or ``build_from_cfg`` is used for a root registry.
            It is called as ``build_func(cfg, registry=..., default_args=...)``.
        parent: The registry to fall back to; this one becomes ``parent.children[scope]``.
        scope: The scope name (the key among the parent's children); inferred, as in
            MMEngine, from the top-level package of the module that creates the registry.
        locations: Modules imported the first time a name is looked up, so that the
            classes they register are found without importing them by hand.

    Raises:
        RegistryTypeError: ``scope`` is not a string, ``parent`` is not a Registry or
            ``locations`` is not a list of module names.
        RegistryAssertionError: The parent already has a child of this scope.

    Example:
        >>> REG = Registry('toy', scope='toys')
        >>> @REG.register_module()
        ... class Box:
        ...     def __init__(self, size=1):
        ...         self.size = size
        >>> REG.build({'type': 'Box', 'size': 3}).size
        3
        >>> 'Box' in REG, REG.scope
        (True, 'toys')
    """

    def __init__(self, name: str, build_func: Callable | None = None,
                 parent: Registry | None = None, scope: str | None = None,
                 locations: Sequence[str] | None = None) -> None:
        if scope is not None and not isinstance(scope, str):
            raise RegistryTypeError(f"Registry {name!r}: scope must be a string, got {scope!r}")
        if parent is not None and not isinstance(parent, Registry):
            raise RegistryTypeError(f"Registry {name!r}: parent must be a Registry, "
                                    f"got {parent!r}")
        locations = [] if locations is None else locations
        if isinstance(locations, str) or not all(isinstance(x, str) for x in locations):
            raise RegistryTypeError(f"Registry {name!r}: locations must be a list of module "
                                    f"names, got {locations!r}")
        self._name = name
        self._module_dict: dict[str, Any] = {}
        self._missing_hints: dict[str, str] = {}
        self._children: dict[str, Registry] = {}
        self._locations = list(locations)
        self._imported = False
        self._scope = scope if scope is not None else self.infer_scope()
        self.parent = parent
        if parent is not None:
            parent._add_child(self)
        if build_func is None:
            build_func = parent.build_func if parent is not None else build_from_cfg
        self.build_func = build_func

    def __repr__(self) -> str:
        return (f"Registry(name={self._name!r}, scope={self._scope!r}, "
                f"items={sorted(self._module_dict)})")

    def __len__(self) -> int:
        return len(self._module_dict)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and resolve(self, key, load=False) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._module_dict)

    @staticmethod
    def infer_scope() -> str:
        """The top-level package of the module that called ``Registry(...)``.

        Returns:
            For example ``'myproj'`` for a registry created in ``myproj/registry.py``;
            ``'accelwrap'`` when the caller's module is unknown (an interactive session).
        """
        module = inspect.getmodule(sys._getframe(2))
        if module is None:
            logger.warning("set the registry scope to %r because it cannot be inferred; pass "
                           "scope= to Registry(...) to silence this", ROOT_SCOPE)
            return ROOT_SCOPE
        return module.__name__.split(".")[0]

    @staticmethod
    def split_scope_key(key: str) -> tuple[str | None, str]:
        """Split the first scope off a name.

        Example:
            >>> Registry.split_scope_key('mmdet.ResNet'), Registry.split_scope_key('ResNet')
            (('mmdet', 'ResNet'), (None, 'ResNet'))
        """
        scope, dot, rest = key.partition(".")
        return (scope, rest) if dot else (None, key)

    @property
    def name(self) -> str:
        """The registry's name."""
        return self._name

    @property
    def scope(self) -> str:
        """The registry's scope."""
        return self._scope

    @property
    def children(self) -> dict[str, Registry]:
        """The child registries, by scope."""
        return self._children

    @property
    def root(self) -> Registry:
        """The top of this registry's tree."""
        return self._get_root_registry()

    @property
    def module_dict(self) -> dict[str, Any]:
        """A copy of this registry's name -> class map (lazy entries are imported first)."""
        return {name: self._entry(name, load=True) for name in self._module_dict}

    @property
    def _build_func(self) -> Callable:
        """The build function (accelwrap's former attribute name)."""
        return self.build_func

    def keys(self) -> list[str]:
        """This registry's own names, sorted."""
        return sorted(self._module_dict)

    def _get_root_registry(self) -> Registry:
        root = self
        while root.parent is not None:
            root = root.parent
        return root

    def _add_child(self, registry: Registry) -> None:
        if registry.scope in self._children:
            raise RegistryAssertionError(
                f"{self._name}: a child registry of scope {registry.scope!r} exists already "
                f"({self._children[registry.scope].name!r}); give the new one another scope")
        self._children[registry.scope] = registry

    def import_from_location(self) -> None:
        """Import this registry's ``locations`` (once; again after a failed import).

        Raises:
            ImportError: A location cannot be imported; the message names it.
        """
        if self._imported:
            return
        self._imported = True
        for location in self._locations:
            try:
                importlib.import_module(location)
            except ImportError as err:
                self._imported = False
                raise type(err)(f"{self._name} (scope {self._scope!r}): importing its location "
                                f"{location!r} failed: {err}", name=err.name) from err
            logger.debug("imported %s for the %s registry of %s", location, self._name,
                         self._scope)

    @contextmanager
    def switch_scope_and_registry(self, scope: str | None) -> Iterator[Registry]:
        """Make ``scope`` the default scope for the block and yield its registry.

        The yielded registry is the one of the current default scope in this tree
        (``<scope>.registry`` is imported first), or ``self`` when there is no default
        scope or the tree has no registry of that scope (logged as a warning).

        Args:
            scope: The scope to switch to; None keeps the current default scope.

        Example:
            >>> ROOT = Registry('thing', scope='root_doc')
            >>> LEAF = Registry('thing', parent=ROOT, scope='leaf_doc')
            >>> with ROOT.switch_scope_and_registry('leaf_doc') as registry:
            ...     registry is LEAF
            True
        """
        with DefaultScope.overwrite_default_scope(scope):
            current = DefaultScope.get_current_instance()
            if current is None:
                yield self
                return
            scope_name = canonical_scope(current.scope_name)
            import_registry_module(scope_name)
            registry = search_child(self._get_root_registry(), scope_name)
            if registry is None:
                logger.warning("no registry of scope %r in the tree of %r; building with %r "
                               "of scope %r instead", scope_name, self.root.name, self._name,
                               self._scope)
                registry = self
            yield registry

    def _entry(self, name: str, load: bool) -> Any:
        entry = self._module_dict[name]
        if load and isinstance(entry, LazyEntry):
            entry = self._module_dict[name] = entry.load(f"{self._name} {name!r}")
        return entry

    def get(self, key: str | type | Callable) -> Any:
        """Return the class registered as ``key`` (a class or function is returned as is).

        ``'Foo'`` is searched here, then in the ancestors; ``'myproj.Foo'`` in the
        registry of scope ``myproj``; ``'pkg.module.Foo'`` is imported.

        Args:
            key: A name, a scoped name, a dotted path, or a class/function.

        Returns:
            The registered class or function.

        Raises:
            UnknownTypeError: ``key`` names nothing (a ``KeyError``; MMEngine returns
                None); the message lists close matches or the ``pip install`` needed.
            TypeError: ``key`` is neither a string nor callable.
        """
        if not isinstance(key, str):
            if callable(key):
                return key
            raise TypeError(f"{self._name}: 'type' must be a name or a class, got {key!r}")
        found = resolve(self, key)
        if found is None:
            raise unknown_error(self, key)
        return found

    def build(self, cfg: Mapping, default_args: Mapping | None = None, **kwargs: Any) -> Any:
        """Build an object from a config whose ``type`` names a registered class.

        Args:
            cfg: A dict or ``DictConfig`` with a ``type`` key (or ``default_args`` has
                one); an optional ``_scope_`` key builds in that scope. Never modified.
            default_args: Arguments used where ``cfg`` does not give them.
            **kwargs: Passed on to :attr:`build_func`.

        Returns:
            The built object.

        Raises:
            UnknownTypeError: The type is not registered.
            TypeError: ``cfg`` is not a mapping, has no ``type``, or has arguments the
                target does not accept.
        """
        if default_args is not None:
            kwargs["default_args"] = default_args
        return self.build_func(cfg, registry=self, **kwargs)

    def register_module(self, name: str | Sequence[str] | None = None, force: bool = False,
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
            RegistryError: The name is taken and ``force`` is False (a ``KeyError``).
            TypeError: ``module`` is not callable or ``name`` is not a string.
        """
        if not isinstance(force, bool):
            raise TypeError(f"force must be a bool, got {force!r}")
        if not (name is None or isinstance(name, (str, list, tuple))):
            raise TypeError(f"{self._name}: a registered name must be a string, got {name!r} "
                            "(a list of strings registers several names)")
        names = None if name is None else [name] if isinstance(name, str) else list(name)
        for key in names or ():
            if not isinstance(key, str):
                raise TypeError(f"{self._name}: a registered name must be a string, got "
                                f"{key!r}")
        if module is not None:
            self._register_module(module, names, force)
            return module

        def decorator(obj: Any) -> Any:
            self._register_module(obj, names, force)
            return obj

        return decorator

    def _register_module(self, module: Any, names: list[str] | None, force: bool) -> None:
        if not callable(module):
            raise TypeError(f"{self._name}: only classes and functions can be registered, "
                            f"got {module!r}")
        for key in names if names is not None else [module.__name__]:
            if self._module_dict.get(key, module) is not module:
                self._check_free(key, force)
            self._module_dict[key] = module
            self._missing_hints.pop(key, None)

    def _check_free(self, name: str, force: bool) -> None:
        if name in self._module_dict and not force:
            raise RegistryError(f"{name!r} is already registered in {self._name} "
                                f"(as {self._module_dict[name]!r}); pass force=True to "
                                "replace it")

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
            >>> REG = Registry('toy', scope='toys')
            >>> REG.register_lazy('OrderedDict', 'collections')
            >>> REG.get('OrderedDict').__name__
            'OrderedDict'
        """
        self._check_free(name, force)
        self._module_dict[name] = LazyEntry(module, attr or name, hint)
        self._missing_hints.pop(name, None)

    def add_missing_hint(self, name: str, hint: str) -> None:
        """Record why ``name`` is not available (e.g. which ``pip install`` brings it).

        Args:
            name: A type name that would be registered if its package imported.
            hint: The sentence shown when somebody asks for it.
        """
        if name not in self._module_dict:
            self._missing_hints[name] = hint
