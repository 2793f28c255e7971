"""Generate and register the LR, Momentum and Param class of every family.

One table (:data:`SPECS`) lists each family's math, its arguments in MMEngine's order
with their defaults, and which of them count epochs. From it come 29 classes with
MMEngine's names (``MultiStepLR``, ``LinearMomentum``, ``CosineAnnealingParamScheduler``,
``ReduceOnPlateauLR``, ...), real signatures (``inspect.signature`` and the registry's
argument checks see them), docstrings from one template, and registration in
``PARAM_SCHEDULERS``.

Example:
    >>> from accelwrap.registry import PARAM_SCHEDULERS
    >>> PARAM_SCHEDULERS.get('MultiStepLR').__name__
    'MultiStepLR'
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from accelwrap.optim.scheduler import families as fam
from accelwrap.optim.scheduler.base import COMMON_ARGS, INF, ParamScheduler
from accelwrap.optim.scheduler.chainable import ChainableScheduler
from accelwrap.optim.scheduler.docs import render
from accelwrap.optim.scheduler.onecycle import OneCycle
from accelwrap.optim.scheduler.plateau import ReduceOnPlateauScheduler
from accelwrap.registry import PARAM_SCHEDULERS

REQUIRED = inspect.Parameter.empty
COMMON = (("begin", 0), ("end", INF), ("last_step", -1), ("by_epoch", True), ("verbose", False))
SUFFIX = {"LR": "LR", "Momentum": "Momentum", "Param": "ParamScheduler"}

# The type of every argument name used in SPECS, for the generated signatures (so
# ``accelwrap check`` can tell ``milestones: 6`` from ``milestones: [6]``). Epoch counts
# are ``float``: fractional epochs are legal before conversion to iterations.
ANNOTATIONS: dict[str, Any] = {
    "optimizer": Any, "param_name": str, "begin": float, "end": float, "last_step": int,
    "by_epoch": bool, "verbose": bool, "factor": float, "T_max": float | None,
    "eta_min": float | list[float] | None, "eta_min_ratio": float | None,
    "periods": list[float], "restart_weights": list[float], "gamma": float,
    "start_factor": float, "end_factor": float, "milestones": list[float],
    "eta_max": float | list[float], "total_steps": float | None, "pct_start": float,
    "anneal_strategy": str, "div_factor": float, "final_div_factor": float,
    "three_phase": bool, "power": float, "step_size": float, "monitor": str, "rule": str,
    "patience": int, "threshold": float, "threshold_rule": str, "cooldown": int,
    "min_value": float | list[float], "eps": float,
}


@dataclass(frozen=True)
class Spec:
    """One family: its math, its arguments (MMEngine's order) and its epoch-count arguments."""

    name: str
    family: type | None
    args: tuple[tuple[str, Any], ...]
    epoch_counts: tuple[str, ...] | None = ()
    kinds: tuple[str, ...] = ("LR", "Momentum", "Param")
    base: type = field(default=ChainableScheduler)


SPECS = (
    Spec("Constant", fam.Constant, (("factor", 1.0 / 3), *COMMON)),
    Spec("CosineAnnealing", fam.CosineAnnealing,
         (("T_max", None), ("eta_min", None), *COMMON, ("eta_min_ratio", None)), ("T_max",)),
    Spec("CosineRestart", fam.CosineRestart,
         (("periods", REQUIRED), ("restart_weights", (1,)), ("eta_min", None),
          ("eta_min_ratio", None), *COMMON), ("periods",)),
    Spec("Exponential", fam.Exponential, (("gamma", REQUIRED), *COMMON)),
    Spec("Linear", fam.Linear, (("start_factor", 1.0 / 3), ("end_factor", 1.0), *COMMON)),
    Spec("MultiStep", fam.MultiStep,
         (("milestones", REQUIRED), ("gamma", 0.1), ("last_step", -1), ("begin", 0), ("end", INF),
          ("by_epoch", True), ("verbose", False)), ("milestones",)),
    Spec("OneCycle", OneCycle,
         (("eta_max", 0), ("total_steps", None), ("pct_start", 0.3), ("anneal_strategy", "cos"),
          ("div_factor", 25.0), ("final_div_factor", 1e4), ("three_phase", False), *COMMON),
         ("total_steps",), kinds=("LR", "Param")),
    Spec("Poly", fam.Poly, (("eta_min", 0), ("power", 1.0), *COMMON)),
    Spec("Step", fam.Step, (("step_size", REQUIRED), ("gamma", 0.1), *COMMON), ("step_size",)),
    Spec("ReduceOnPlateau", None,
         (("monitor", "loss"), ("rule", "less"), ("factor", 0.1), ("patience", 10),
          ("threshold", 1e-4), ("threshold_rule", "rel"), ("cooldown", 0), ("min_value", 0.0),
          ("eps", 1e-8), *COMMON), None, base=ReduceOnPlateauScheduler),
)


def _generated_init(self: ParamScheduler, *args: Any, **kwargs: Any) -> None:
    """Bind the arguments to the class signature, then hand them to the scheduler base."""
    cls = type(self)
    try:
        bound = cls._generated_signature.bind(self, *args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{cls.__name__}: {exc}") from None
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    arguments.pop("self")
    optimizer = arguments.pop("optimizer")
    param_name = arguments.pop("param_name", cls.fixed_param_name)
    common = {name: arguments.pop(name) for name in COMMON_ARGS}
    cls.scheduler_base.__init__(self, optimizer, param_name, arguments, **common)


class _GeneratedSignature:
    """``__signature__`` of a generated class, hidden from subclasses with their own ``__init__``."""

    def __get__(self, instance: Any, owner: type) -> inspect.Signature | None:
        if owner.__init__ is _generated_init:
            return owner._generated_signature.replace(
                parameters=list(owner._generated_signature.parameters.values())[1:])
        return None


def _signature(spec: Spec, kind: str) -> inspect.Signature:
    names = [("self", REQUIRED), ("optimizer", REQUIRED)]
    if kind == "Param":
        names.append(("param_name", REQUIRED))
    return inspect.Signature([
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default,
                          annotation=ANNOTATIONS.get(name, inspect.Parameter.empty))
        for name, default in [*names, *spec.args]])


def make_class(spec: Spec, kind: str) -> type:
    """Build the ``kind`` ('LR', 'Momentum' or 'Param') class of ``spec``.

    Args:
        spec: The family's entry of :data:`SPECS`.
        kind: Which variant.

    Returns:
        The new class (not yet registered).
    """
    name = spec.name + SUFFIX[kind]
    signature = _signature(spec, kind)
    arg_names = [p for p in signature.parameters if p != "self"]
    namespace = {
        "__module__": __name__,
        "__qualname__": name,
        "__doc__": render(spec.name, kind, name, arg_names),
        "__init__": _generated_init,
        "__signature__": _GeneratedSignature(),
        "_generated_signature": signature,
        "scheduler_base": spec.base,
        "fixed_param_name": {"LR": "lr", "Momentum": "momentum"}.get(kind),
        "schedules_momentum": kind == "Momentum",
        "epoch_count_args": spec.epoch_counts,
    }
    if spec.family is not None:
        namespace["family"] = spec.family
    return type(name, (spec.base,), namespace)


def _generate() -> dict[str, type]:
    classes = {}
    for spec in SPECS:
        for kind in spec.kinds:
            cls = make_class(spec, kind)
            PARAM_SCHEDULERS.register_module(module=cls)
            classes[cls.__name__] = cls
    return classes


GENERATED = _generate()
globals().update(GENERATED)

__all__ = sorted(GENERATED)
