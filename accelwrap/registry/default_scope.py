"""The process-wide default scope, as MMEngine's ``mmengine.registry.DefaultScope``.

When a default scope is set (``DefaultScope.get_instance('task', scope_name='myproj')``
or :func:`accelwrap.registry.init_default_scope`), building from any registry of a tree
first switches to the registry of that scope, so that ``type='Foo'`` finds the
project's ``Foo`` even when the build goes through accelwrap's root registry.

MMEngine's class is a ``ManagerMixin`` (a named-instance store); this one has the same
class methods (``get_instance``, ``get_current_instance``, ``check_instance_created``,
``overwrite_default_scope``) and properties (``scope_name``, ``instance_name``) without
that base class.

Example:
    >>> DefaultScope.get_current_instance() is None
    True
    >>> with DefaultScope.overwrite_default_scope('myproj'):
    ...     DefaultScope.get_current_instance().scope_name
    'myproj'
    >>> DefaultScope.get_current_instance() is None
    True
"""

from __future__ import annotations

import importlib
import itertools
import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from accelwrap.registry.entries import RegistryTypeError

__all__ = ["ROOT_SCOPE", "DefaultScope", "canonical_scope", "import_registry_module"]

logger = logging.getLogger(__name__)

# The scope of accelwrap's root registries; MMEngine's root scope is an alias of it.
ROOT_SCOPE = "accelwrap"
_SCOPE_ALIASES = {"mmengine": ROOT_SCOPE}


def canonical_scope(scope: str | None) -> str | None:
    """``scope`` with MMEngine's root scope read as accelwrap's.

    Example:
        >>> canonical_scope('mmengine'), canonical_scope('mmdet'), canonical_scope(None)
        ('accelwrap', 'mmdet', None)
    """
    return _SCOPE_ALIASES.get(scope, scope) if scope is not None else None


def import_registry_module(scope: str) -> bool:
    """Import ``<scope>.registry`` so that a project's child registries join the tree.

    Returns:
        Whether the module imported (always True for accelwrap's own scope).
    """
    if scope == ROOT_SCOPE:
        return True
    try:
        importlib.import_module(f"{scope}.registry")
    except ImportError:
        logger.debug("cannot import %s.registry; import the registry module manually", scope)
        return False
    return True


class DefaultScope:
    """A named, globally reachable scope; the latest one created is the current one.

    Args:
        name: The instance name (the key of :meth:`get_instance`).
        scope_name: The scope, e.g. ``'myproj'`` (a registry's ``scope``).

    Raises:
        RegistryTypeError: ``name`` is not a non-empty string or ``scope_name`` is
            not a string (also an ``AssertionError``, as MMEngine's check).

    Example:
        >>> scope = DefaultScope.get_instance('doc-example', scope_name='toy')
        >>> DefaultScope.get_current_instance() is scope, scope.instance_name
        (True, 'doc-example')
        >>> DefaultScope._instance_dict.pop('doc-example').scope_name
        'toy'
    """

    _instance_dict: dict[str, DefaultScope] = {}
    _lock = threading.RLock()
    _counter = itertools.count()

    def __init__(self, name: str, scope_name: str) -> None:
        if not isinstance(name, str) or not name:
            raise RegistryTypeError(f"DefaultScope: name must be a non-empty string, got {name!r}")
        if not isinstance(scope_name, str):
            raise RegistryTypeError(f"DefaultScope {name!r}: scope_name must be a string, "
                                    f"got {scope_name!r}")
        self._instance_name = name
        self._scope_name = scope_name

    def __repr__(self) -> str:
        return f"DefaultScope(name={self._instance_name!r}, scope_name={self._scope_name!r})"

    @property
    def scope_name(self) -> str:
        """The scope this instance sets."""
        return self._scope_name

    @property
    def instance_name(self) -> str:
        """The name the instance is stored under."""
        return self._instance_name

    @classmethod
    def get_instance(cls, name: str, **kwargs: str) -> DefaultScope:
        """Return the instance called ``name``, creating it (as the current one) if new.

        Args:
            name: The instance name.
            **kwargs: ``scope_name`` for a new instance; given for an existing one,
                it is ignored with a warning (as in MMEngine).

        Returns:
            The instance.
        """
        if not isinstance(name, str):
            raise RegistryTypeError(f"DefaultScope.get_instance: name must be a string, "
                                    f"got {name!r}")
        with cls._lock:
            if name not in cls._instance_dict:
                cls._instance_dict[name] = cls(name=name, **kwargs)
            elif kwargs:
                warnings.warn(f"DefaultScope instance {name!r} already exists; get_instance "
                              f"ignores the arguments {sorted(kwargs)}", stacklevel=2)
            return cls._instance_dict[name]

    @classmethod
    def get_current_instance(cls) -> DefaultScope | None:
        """The latest created instance, or None when no default scope was ever set."""
        with cls._lock:
            if not cls._instance_dict:
                return None
            return cls._instance_dict[next(reversed(cls._instance_dict))]

    @classmethod
    def check_instance_created(cls, name: str) -> bool:
        """Whether an instance called ``name`` exists."""
        return name in cls._instance_dict

    @classmethod
    @contextmanager
    def overwrite_default_scope(cls, scope_name: str | None) -> Iterator[None]:
        """Make ``scope_name`` the default scope inside the ``with`` block.

        Args:
            scope_name: The temporary scope; None leaves the current one in place.
        """
        if scope_name is None:
            yield
            return
        with cls._lock:
            saved = dict(cls._instance_dict)
            cls.get_instance(f"overwrite-{next(cls._counter)}", scope_name=scope_name)
        try:
            yield
        finally:
            with cls._lock:
                cls._instance_dict = saved
