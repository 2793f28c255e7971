"""Finding a name in a tree of registries, and the error when it names nothing.

MMEngine's lookup order: ``'Foo'`` in the registry asked, then in its ancestors;
``'myproj.Foo'`` in the registry of scope ``myproj`` (its ``registry`` module imported
first, so the child joins the tree), reached from the registry asked or from its root;
a full dotted path (``'torch.optim.SGD'``) is imported. The scope ``'mmengine'`` means
accelwrap's root scope (:func:`~accelwrap.registry.default_scope.canonical_scope`).

Example:
    >>> from accelwrap.registry import Registry
    >>> ROOT = Registry('thing', scope='lookup_root')
    >>> LEAF = Registry('thing', parent=ROOT, scope='lookup_leaf')
    >>> @ROOT.register_module()
    ... class Box:
    ...     pass
    >>> resolve(LEAF, 'Box') is Box, resolve(LEAF, 'lookup_root.Box') is Box
    (True, True)
    >>> search_child(ROOT, 'lookup_leaf') is LEAF, resolve(ROOT, 'Ball') is None
    (True, True)
"""

from __future__ import annotations

from typing import Any

from accelwrap.errors import UnknownTypeError
from accelwrap.registry.default_scope import canonical_scope, import_registry_module
from accelwrap.registry.entries import object_from_string, unknown_name_error

__all__ = ["resolve", "search_child", "unknown_error"]


def search_child(registry: Any, scope: str) -> Any:
    """The registry of ``scope`` in ``registry``'s subtree (depth first), or None.

    Args:
        registry: A :class:`~accelwrap.registry.Registry`.
        scope: A scope name (``'mmengine'`` stands for accelwrap's root scope).

    Example:
        >>> from accelwrap.registry import Registry
        >>> search_child(Registry('thing', scope='search_doc'), 'elsewhere') is None
        True
    """
    if canonical_scope(registry.scope) == canonical_scope(scope):
        return registry
    for child in registry.children.values():
        found = search_child(child, scope)
        if found is not None:
            return found
    return None


def resolve(registry: Any, key: str, load: bool = True) -> Any:
    """What ``key`` names, looked up from ``registry`` in MMEngine's order; None if nothing.

    Args:
        registry: The :class:`~accelwrap.registry.Registry` asked.
        key: A name, a scoped name (``'myproj.Foo'``) or a full dotted path.
        load: Import a lazy entry (False: return the entry itself, as ``in`` does).

    Example:
        >>> import collections
        >>> from accelwrap.registry import Registry
        >>> resolve(Registry('thing', scope='resolve_doc'), 'collections.OrderedDict') \
is collections.OrderedDict
        True
    """
    scope, real_key = registry.split_scope_key(key)
    scope = canonical_scope(scope)
    registry.import_from_location()
    if scope is None or scope == canonical_scope(registry.scope):
        current = registry
        while current is not None:
            if real_key in current._module_dict:
                return current._entry(real_key, load)
            current = current.parent if scope is None else None
    else:
        import_registry_module(scope)
        root, target = registry.root, registry.children.get(scope)
        if target is None and root is not registry and (
                scope == canonical_scope(root.scope) or scope in root.children):
            target, real_key = root, key
        found = resolve(target, real_key, load) if target is not None else None
        if found is not None:
            return found
    return object_from_string(key) if "." in key else None


def unknown_error(registry: Any, key: str) -> UnknownTypeError:
    """The error for a ``key`` that :func:`resolve` finds nowhere from ``registry``.

    It names the ``pip install`` that brings the name, or close matches in the registry
    and its ancestors, or else how to register one's own class.

    Args:
        registry: The :class:`~accelwrap.registry.Registry` asked.
        key: The name asked for.

    Example:
        >>> from accelwrap.registry import Registry
        >>> REG = Registry('toy', scope='unknown_doc')
        >>> @REG.register_module()
        ... class Box:
        ...     pass
        >>> print(unknown_error(REG, 'box'))
        'box' is not registered in toy; did you mean 'Box'?
    """
    chain, current = [], registry
    while current is not None:
        chain.append(current)
        current = current.parent
    error = unknown_name_error(key, [(r.name, r._module_dict, r._missing_hints) for r in chain])
    if "did you mean" in str(error) or "is not available" in str(error):
        return error
    return type(error)(
        f"{error} If {key!r} is your own class, register it with "
        f"@{registry.name}.register_module() in a module the config imports: "
        "custom_imports: {imports: [my_package.my_module]} (or give the registry "
        "locations=[...] to import)")
