"""Registry helpers of ``mmengine.registry.utils``: the default scope, tree statistics.

Example:
    >>> from accelwrap.registry import OPTIMIZERS
    >>> info = traverse_registry_tree(OPTIMIZERS, verbose=False)
    >>> info[0]['scope'], info[0]['num_modules'] > 10
    ('accelwrap', True)
"""

from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path
from typing import Any

from accelwrap.registry import root
from accelwrap.registry.default_scope import DefaultScope
from accelwrap.registry.entries import LazyEntry
from accelwrap.registry.registry import Registry

__all__ = ["count_registered_modules", "init_default_scope", "traverse_registry_tree"]

logger = logging.getLogger(__name__)


def _module_of(obj: Any) -> str:
    return obj.module if isinstance(obj, LazyEntry) else getattr(obj, "__module__", "") or ""


def traverse_registry_tree(registry: Registry, verbose: bool = True) -> list[dict[str, Any]]:
    """Describe every registry of ``registry``'s tree (root first, then depth first).

    Lazy entries are described without importing them.

    Args:
        registry: Any registry of the tree.
        verbose: Log one line per registry.

    Returns:
        One dict per registry: ``num_modules``, ``scope`` and, per source folder
        (``'torch/optim'``), the names registered from it.
    """
    found: list[dict[str, Any]] = []

    def visit(node: Registry) -> None:
        entries = node._module_dict
        info: dict[str, Any] = {"num_modules": len(entries), "scope": node.scope}
        for name, obj in entries.items():
            folder = "/".join(_module_of(obj).split(".")[:-1])
            info.setdefault(folder, []).append(name)
        if verbose:
            logger.info("found %d modules in %s's %r registry", len(entries), node.scope,
                        node.name)
        found.append(info)
        for child in node.children.values():
            visit(child)

    visit(registry.root)
    return found


def count_registered_modules(save_path: str | None = None,
                             verbose: bool = True) -> dict[str, Any]:
    """Describe every root registry's tree, optionally saving the result as JSON.

    Args:
        save_path: A folder; ``modules_statistic_results.json`` is written there.
        verbose: Log one line per registry.

    Returns:
        ``{'scan_date': ..., 'registries': {'OPTIMIZERS': [...], ...}}``.
    """
    registries = {name: traverse_registry_tree(getattr(root, name), verbose)
                  for name in root.__all__}
    scan = {"scan_date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
            "registries": registries}
    if save_path is not None:
        path = Path(save_path) / "modules_statistic_results.json"
        path.write_text(json.dumps(scan, indent=2))
        logger.info("registry statistics saved to %s", path)
    return scan


def init_default_scope(scope: str) -> None:
    """Make ``scope`` the default scope (a no-op when it already is).

    Args:
        scope: A registry scope, e.g. ``'myproj'``.

    Example:
        >>> saved = dict(DefaultScope._instance_dict)
        >>> init_default_scope('doc_scope')
        >>> DefaultScope.get_current_instance().scope_name
        'doc_scope'
        >>> DefaultScope._instance_dict = saved
    """
    current = DefaultScope.get_current_instance()
    if current is None or not DefaultScope.check_instance_created(scope):
        DefaultScope.get_instance(scope, scope_name=scope)
        return
    if current.scope_name != scope:
        logger.warning("the default scope is %r, not %r; init_default_scope switches it to %r",
                       current.scope_name, scope, scope)
        DefaultScope.get_instance(f"{scope}-{datetime.datetime.now()}", scope_name=scope)
