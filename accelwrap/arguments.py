"""Checking and normalising the arguments a config passes to a class, without calling it.

``to_plain`` turns OmegaConf nodes into plain containers (a copy, so building never
mutates a config); ``signature_problems`` / ``check_arguments`` name every argument a
target would reject, with close matches and the accepted ones. The registries and the
config checks (:mod:`accelwrap.checks`) build on these.

Example:
    >>> import torch
    >>> signature_problems(torch.optim.SGD, {'lr': 0.1})
    ["missing required argument 'params'"]
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from accelwrap.errors import suggest

__all__ = ["check_arguments", "signature_problems", "to_plain", "type_name"]


def to_plain(cfg: Any) -> Any:
    """Return ``cfg`` as plain Python containers (OmegaConf nodes resolved), never ``cfg`` itself.

    Args:
        cfg: A dict, an OmegaConf ``DictConfig``/``ListConfig``, or any other value.

    Returns:
        A new dict/list for containers (top-level copy; nested OmegaConf nodes are
        converted too), or the value unchanged for anything else.

    Example:
        >>> to_plain(OmegaConf.create({'a': '${b}', 'b': 1}))
        {'a': 1, 'b': 1}
    """
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True)
    if isinstance(cfg, Mapping):
        return {k: to_plain(v) if isinstance(v, (DictConfig, ListConfig, Mapping)) else v
                for k, v in cfg.items()}
    if isinstance(cfg, list):
        return [to_plain(v) for v in cfg]
    return cfg


def check_arguments(target: Callable, args: Mapping[str, Any], where: str) -> None:
    """Raise ``TypeError`` naming every argument ``target`` would reject.

    Args:
        target: The class or function about to be called with ``**args``.
        args: The keyword arguments.
        where: How to name the target in the message (e.g. ``"OPTIMIZERS 'SGD'"``).

    Raises:
        TypeError: Unknown keys (with close matches) or missing required ones.

    Example:
        >>> import torch
        >>> check_arguments(torch.optim.SGD, {'params': [], 'momentun': 0.9}, "OPTIMIZERS 'SGD'")
        Traceback (most recent call last):
        TypeError: OPTIMIZERS 'SGD': unexpected argument 'momentun'; did you mean 'momentum'? ...
    """
    problems = signature_problems(target, args)
    if problems:
        raise TypeError(f"{where}: " + "; ".join(problems))


def signature_problems(target: Callable, args: Mapping[str, Any]) -> list[str]:
    """List what is wrong with calling ``target(**args)``, without calling it.

    Args:
        target: A class or function.
        args: Keyword arguments.

    Returns:
        One sentence per unknown or missing argument; empty when the call binds.
    """
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return []
    params = sig.parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        accepted = None
    else:
        accepted = [n for n, p in params.items()
                    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    problems = []
    if accepted is not None:
        for key in args:
            if key not in accepted:
                hint = suggest(key, accepted)
                if hint.startswith("did you mean"):  # otherwise suggest already lists them all
                    hint += f" (accepted: {', '.join(map(repr, accepted))})"
                problems.append(f"unexpected argument {key!r}; {hint}")
    for name, p in params.items():
        required = p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        if required and name not in args:
            problems.append(f"missing required argument {name!r}")
    return problems


def type_name(target: Any) -> str:
    """The name used for ``target`` in messages.

    Example:
        >>> type_name(dict), type_name(3)
        ('dict', '3')
    """
    return getattr(target, "__name__", repr(target))
