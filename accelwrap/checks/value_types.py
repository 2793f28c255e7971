"""Does a config value fit the parameter it is passed to? Checked without calling anything.

Values in a YAML config are ``None``, booleans, numbers, strings, lists and mappings.
A parameter's annotation (or, when it has none, its default value) says which of those
it takes. The answer is three-valued: a value that clearly does not fit is reported; an
annotation this module cannot judge (a tensor, a module, a user class) is given the
benefit of the doubt, so a check never rejects a config that would build.

Example:
    >>> import torch
    >>> value_problems(torch.optim.SGD, {'lr': 'fast', 'momentum': 0.9})
    [('lr', "expected float | Tensor, got 'fast' (str)")]
"""

from __future__ import annotations

import collections.abc as cabc
import inspect
import sys
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["describe", "value_problems"]

_SEQUENCES = (list, tuple, set, frozenset, cabc.Sequence, cabc.MutableSequence, cabc.Set)
_ITERABLES = (cabc.Iterable, cabc.Collection, cabc.Container)
_MAPPINGS = (dict, cabc.Mapping, cabc.MutableMapping)


def _resolve(annotation: Any, target: Callable) -> Any:
    """Turn a string annotation into an object, or ``empty`` when it cannot be evaluated."""
    if not isinstance(annotation, str):
        return annotation
    func = target.__init__ if inspect.isclass(target) else target
    module = sys.modules.get(getattr(func, "__module__", ""), None)
    namespace = {**vars(typing), **vars(cabc), **(vars(module) if module else {})}
    try:
        return eval(annotation, namespace)  # noqa: S307 - annotations of installed code
    except Exception:  # noqa: BLE001 - an unresolvable hint is simply not checked
        return inspect.Parameter.empty


def _fits_scalar(annotation: type, value: Any) -> bool | None:
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation in (float, complex):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if _is_tensor_class(annotation):
        return False  # YAML cannot spell a tensor; a number goes through a float branch
    return None


def _is_tensor_class(annotation: type) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and issubclass(annotation, torch.Tensor)


def _fits_container(origin: Any, args: tuple, value: Any) -> bool | None:
    if origin in _MAPPINGS:
        return isinstance(value, Mapping)
    if origin in _SEQUENCES:
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                return False
            return _all_fit(zip(args, value))
        element = args[0] if args else Any
        return _all_fit((element, v) for v in value)
    if origin in _ITERABLES:
        if not isinstance(value, (list, tuple, Mapping, str)):
            return False
        if isinstance(value, (list, tuple)) and args:
            return _all_fit((args[0], v) for v in value)
        return True
    return None


def _all_fit(pairs: Any) -> bool | None:
    answers = [fits(a, v) for a, v in pairs]
    if any(a is False for a in answers):
        return False
    return True if all(a is True for a in answers) else None


def fits(annotation: Any, value: Any) -> bool | None:
    """Whether ``value`` fits ``annotation``: True, False, or None when it cannot tell.

    Args:
        annotation: A type hint (a class, a union, a generic alias, ``Literal``).
        value: A YAML-shaped value.

    Returns:
        ``True`` when it fits, ``False`` when it clearly does not, ``None`` otherwise.
    """
    if annotation in (Any, inspect.Parameter.empty, object):
        return True
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        answers = [fits(a, value) for a in args]
        if any(a is True for a in answers):
            return True
        return False if all(a is False for a in answers) else None
    if origin is typing.Literal:
        return value in args
    if origin is not None:
        return _fits_container(origin, args, value)
    if isinstance(annotation, type):
        scalar = _fits_scalar(annotation, value)
        if scalar is not None:
            return scalar
        return _fits_container(annotation, (), value)
    return None


def _kind(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, Mapping):
        return "mapping"
    return None


def describe(annotation: Any) -> str:
    """A short human name for a type hint (``float | Tensor``, ``list[int]``).

    Example:
        >>> import torch
        >>> describe(float | torch.Tensor | None), describe(list[int])
        ('float | Tensor | None', 'list[int]')
    """
    if isinstance(annotation, type) and typing.get_origin(annotation) is None:
        return annotation.__name__
    text = str(annotation).replace("typing.", "").replace("collections.abc.", "")
    return text.replace("torch.", "").replace("NoneType", "None")


def value_problems(target: Callable, args: Mapping[str, Any]) -> list[tuple[str, str]]:
    """List the arguments whose value clearly does not fit ``target``'s parameter.

    Uses the parameter's annotation; without one, a non-``None`` default stands in
    (a number default rejects a string, a list default rejects a number, ...).

    Args:
        target: The class or function the arguments are for.
        args: Keyword arguments as they appear in the config.

    Returns:
        ``(argument, sentence)`` per misfit; the sentence names the expected type and
        the value received.
    """
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return []
    problems = []
    for name, value in args.items():
        param = params.get(name)
        if param is None:
            continue
        annotation = _resolve(param.annotation, target)
        if annotation is not inspect.Parameter.empty:
            if fits(annotation, value) is False:
                problems.append((name, f"expected {describe(annotation)}, "
                                       f"got {value!r} ({type(value).__name__})"))
            continue
        want, got = _kind(param.default), _kind(value)
        if want is not None and got is not None and want != got:
            problems.append((name, f"expected a {want} like the default {param.default!r}, "
                                   f"got {value!r} ({type(value).__name__})"))
    return problems
