"""Reading the ``clip_grad`` setting of an optimizer wrapper.

``dict(max_norm=1.0, norm_type=2)`` clips by norm, ``dict(clip_value=0.2)`` clips by
value (inferred from the key), and MMEngine's explicit ``type='norm'|'value'`` is still
accepted. The caller's dict is never modified.

Example:
    >>> parse_clip_grad(dict(clip_value=0.2))
    ClipGrad(kind='value', kwargs={'clip_value': 0.2})
    >>> parse_clip_grad(dict(max_norm=1, norm_type='inf')).kwargs
    {'max_norm': 1, 'norm_type': inf}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn.utils import clip_grad_norm_, clip_grad_value_

from accelwrap.errors import TypeAssertionError, ValueAssertionError, suggest
from accelwrap.registry import to_plain

# Keys each kind accepts, and the one it requires (torch's own argument names).
_KEYS = {
    "norm": ("max_norm", "norm_type", "error_if_nonfinite", "foreach"),
    "value": ("clip_value", "foreach"),
}
_REQUIRED = {"norm": "max_norm", "value": "clip_value"}


@dataclass(frozen=True)
class ClipGrad:
    """A validated gradient-clipping setting.

    Attributes:
        kind: ``'norm'`` or ``'value'``.
        kwargs: Keyword arguments for ``torch.nn.utils.clip_grad_norm_`` or
            ``clip_grad_value_`` (``norm_type`` converted to a float).
    """

    kind: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def function(self) -> Callable[..., torch.Tensor | None]:
        """``torch.nn.utils.clip_grad_norm_`` or ``clip_grad_value_``."""
        return clip_grad_norm_ if self.kind == "norm" else clip_grad_value_


def parse_clip_grad(clip_grad: Mapping | None) -> ClipGrad | None:
    """Validate a ``clip_grad`` setting without modifying it.

    Args:
        clip_grad: ``None`` (no clipping) or a mapping as described in the module doc.

    Returns:
        A :class:`ClipGrad`, or ``None`` when ``clip_grad`` is ``None``.

    Raises:
        TypeError: ``clip_grad`` is not a mapping (also an ``AssertionError``, as in MMEngine).
        ValueError: An unknown ``type``, an unknown key (the valid keys are listed), a
            missing ``max_norm``/``clip_value`` (also an ``AssertionError``), keys of
            both kinds, or a ``max_norm``/``clip_value`` that is not a number > 0 (a
            ``TypeError`` when it is not a number).

    Example:
        >>> parse_clip_grad(dict(type='norm', max_norm=1))
        ClipGrad(kind='norm', kwargs={'max_norm': 1})
    """
    if clip_grad is None:
        return None
    if not isinstance(clip_grad, Mapping) and not hasattr(clip_grad, "keys"):
        raise TypeAssertionError(
            "If `clip_grad` is not None, it should be a dict: clip_grad must be a dict such as "
            f"dict(max_norm=1.0) or dict(clip_value=0.5), got {type(clip_grad).__name__} "
            f"({clip_grad!r})")
    args = dict(to_plain(clip_grad))
    kind = args.pop("type", None)
    if kind is None:
        kind = "value" if "clip_value" in args else "norm"
    if kind not in _KEYS:
        raise ValueError(f"clip_grad: type={kind!r} is not a clipping type; expected "
                         f"'norm' or 'value' ({suggest(str(kind), _KEYS)})")
    valid = _KEYS[kind]
    for key in args:
        if key not in valid:
            raise ValueError(
                f"clip_grad: unknown key {key!r} for clipping by {kind} "
                f"({suggest(key, valid)}); clipping by norm takes {', '.join(_KEYS['norm'])}; "
                f"clipping by value takes {', '.join(_KEYS['value'])}")
    required = _REQUIRED[kind]
    if required not in args:
        raise ValueAssertionError(f"clip_grad: clipping by {kind} needs {required!r}, "
                         f"got {dict(clip_grad)!r}")
    _check_positive(required, args[required])
    if "norm_type" in args:
        args["norm_type"] = _norm_type(args["norm_type"])
    return ClipGrad(kind, args)


def _norm_type(value: Any) -> float:
    """``norm_type`` as a float > 0 (``'inf'`` allowed), or an error naming the key."""
    try:
        number = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is None or not number > 0:
        raise ValueAssertionError(f"clip_grad.norm_type={value!r} is not a norm order; expected "
                                  "a number > 0 or 'inf' (2.0: the Euclidean norm)")
    return number


_MEANING = {"max_norm": "the largest total gradient norm kept",
            "clip_value": "the largest absolute gradient value kept"}


def _check_positive(key: str, value: Any) -> None:
    """Refuse a threshold that is not a number > 0 (clipping to 0 or below erases updates)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeAssertionError(f"clip_grad.{key}={value!r} ({type(value).__name__}) is not a "
                                 f"number; expected a number > 0 ({_MEANING[key]}), e.g. "
                                 f"{key}=1.0")
    if not value > 0:
        raise ValueAssertionError(f"clip_grad.{key}={value!r} must be > 0 ({_MEANING[key]}); "
                                  f"remove clip_grad to turn clipping off")
