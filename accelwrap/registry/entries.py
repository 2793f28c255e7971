"""What a registry stores besides classes, and the errors that are also MMEngine's.

A :class:`LazyEntry` stands for a class whose module is imported only on first use;
:func:`object_from_string` resolves a full dotted path such as ``'torch.optim.SGD'``
(MMEngine's ``get`` accepts those too). The error classes subclass both accelwrap's
exception and the one MMEngine raises (``KeyError``, ``AssertionError``), so code
written against either keeps catching them; they are the registry's names for the
dual-type errors of :mod:`accelwrap.errors`.

Example:
    >>> object_from_string('collections.OrderedDict').__name__
    'OrderedDict'
    >>> object_from_string('collections') is None  # a module is not a registrable object
    True
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from accelwrap.errors import (
    TypeAssertionError,
    TypeKeyError,
    UnknownTypeError,
    ValueAssertionError,
    suggest,
)

__all__ = ["LazyEntry", "MissingTypeError", "RegistryAssertionError", "RegistryTypeError",
           "object_from_string", "unknown_name_error"]


class MissingTypeError(TypeKeyError):
    """A config without ``type`` (accelwrap's ``TypeError``, MMEngine's ``KeyError``)."""


class RegistryAssertionError(ValueAssertionError):
    """A value MMEngine checks with ``assert`` (e.g. a child scope registered twice)."""


class RegistryTypeError(TypeAssertionError):
    """An argument of the wrong type that MMEngine checks with ``assert``."""


class LazyEntry:
    """A registry entry whose module is imported only when the entry is first used.

    Args:
        module: The dotted module path.
        attr: The attribute of ``module`` that is registered.
        hint: Appended to the error when the import fails (e.g. a ``pip install``).
    """

    __slots__ = ("module", "attr", "hint")

    def __init__(self, module: str, attr: str, hint: str) -> None:
        self.module, self.attr, self.hint = module, attr, hint

    def __repr__(self) -> str:
        return f"<lazy {self.module}.{self.attr}>"

    def load(self, where: str) -> Any:
        """Import and return the object.

        Args:
            where: How to name the entry in the error message.

        Raises:
            UnknownTypeError: The module or the attribute cannot be imported.
        """
        try:
            return getattr(importlib.import_module(self.module), self.attr)
        except (ImportError, AttributeError) as err:
            message = (f"{where}: importing {self.module}.{self.attr} failed "
                       f"({type(err).__name__}: {err})")
            raise UnknownTypeError(f"{message}; {self.hint}" if self.hint else message) from err


def object_from_string(path: str) -> Any:
    """Return the object a full dotted path names, or None.

    The longest importable module prefix is imported and the rest is read as
    attributes. Unlike MMEngine's ``get_object_from_string``, a path that names a
    module (not a class or function) gives None: a module is never a ``type``.

    Args:
        path: For example ``'torch.optim.SGD'``.

    Returns:
        The object, or None when nothing of that name can be imported.
    """
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        except Exception:  # a package that fails while importing counts as not found
            return None
        for attr in parts[cut:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                return None
        return None if inspect.ismodule(obj) else obj
    return None


def unknown_name_error(key: str, chain: list[tuple[str, Mapping, Mapping]]) -> UnknownTypeError:
    """The error for a name found nowhere: the ``pip install`` that brings it, or close matches.

    Args:
        key: The name asked for.
        chain: ``(registry name, entries, missing-package hints)`` from the registry
            asked up to its root.

    Example:
        >>> print(unknown_name_error('Adamw', [('OPTIMIZERS', {'AdamW': 1, 'SGD': 2}, {})]))
        'Adamw' is not registered in OPTIMIZERS; did you mean 'AdamW'?
    """
    real_key = key.rsplit(".", 1)[-1]
    for name, _, hints in chain:
        if real_key in hints:
            return UnknownTypeError(f"{real_key!r} is not available in {name}: {hints[real_key]}")
    names = [entry for _, entries, _ in chain for entry in entries]
    parents = ", ".join(name for name, _, _ in chain[1:])
    where = chain[0][0] + (f" (nor in its parents {parents})" if parents else "")
    return UnknownTypeError(f"{key!r} is not registered in {where}; {suggest(real_key, names)}")
