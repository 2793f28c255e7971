"""The one docstring template of every generated scheduler class, and each family's text.

``{what}`` in a family's text becomes "learning rate", "momentum" or "value of
``param_name``" depending on the variant.

Example:
    >>> 'milestones' in render('MultiStep', 'LR', 'MultiStepLR', ['optimizer', 'milestones'])
    True
"""

from __future__ import annotations

import textwrap

WHAT = {"LR": "learning rate", "Momentum": "momentum", "Param": "value of ``param_name``"}

COMMON_DOCS = {
    "optimizer": "A torch optimizer or an ``OptimWrapper`` (anything with ``param_groups``).",
    "param_name": "The param-group key to schedule, e.g. ``'lr'``, ``'momentum'`` or "
                  "``'weight_decay'``.",
    "begin": "First step (inclusive) at which the scheduler acts. Defaults to 0.",
    "end": "Step (exclusive) at which it stops; the value is held afterwards. Defaults to "
           "``INF``; ``build_param_schedulers`` uses the run length.",
    "last_step": "Index of the last step taken, to resume without a state dict "
                 "(needs ``initial_<param>`` in every group). Defaults to -1.",
    "by_epoch": "Step once per epoch (True) or once per iteration (False). Defaults to True.",
    "verbose": "Log every value change. Defaults to False.",
}

ETA_MIN_RATIO = ("The minimum as a fraction of each group's initial value; give either this "
                 "or ``eta_min``. Defaults to None.")

FAMILIES: dict[str, dict] = {
    "Constant": {
        "summary": "Multiply the {what} by a constant ``factor`` until the last step of the window.",
        "args": {"factor": "Multiplier in (0, 1] applied until ``end - 1``. Defaults to 1/3 "
                           "(0 is refused: restoring the value would divide by zero)."},
        "example": "factor=0.5, end=4",
    },
    "CosineAnnealing": {
        "summary": "Anneal the {what} along half a cosine from its current value to ``eta_min``.",
        "details": "The value at step ``t`` of the window is ``eta_min + (v0 - eta_min) * (1 + "
                   "cos(pi * t / T_max)) / 2`` where ``v0`` is the value the scheduler took over "
                   "(SGDR without restarts). Past ``T_max`` the cosine climbs back, as in MMEngine.",
        "args": {"T_max": "Half-period in steps (positive). Defaults to ``end - begin``.",
                 "eta_min": "Minimum value. Defaults to 0 when ``eta_min_ratio`` is not given.",
                 "eta_min_ratio": ETA_MIN_RATIO},
        "example": "T_max=10, eta_min=1e-4, end=10",
    },
    "CosineRestart": {
        "summary": "Cosine annealing of the {what} restarted at the start of every period.",
        "details": "Period ``i`` starts from ``initial value * restart_weights[i]`` and anneals "
                   "to ``eta_min``; after the last period the value is held.",
        "args": {"periods": "Length of every cosine period (positive integers).",
                 "restart_weights": "Multiplier of the initial value at each restart, one per "
                                    "period. Defaults to ``(1,)``.",
                 "eta_min": "Minimum value. Defaults to 0 when ``eta_min_ratio`` is not given "
                            "(MMEngine requires one of the two).",
                 "eta_min_ratio": ETA_MIN_RATIO},
        "example": "periods=[5, 5], restart_weights=[1, 0.5], eta_min=0.0",
    },
    "Exponential": {
        "summary": "Multiply the {what} by ``gamma`` at every step.",
        "args": {"gamma": "Multiplicative decay per step (>= 0)."},
        "example": "gamma=0.9",
    },
    "Linear": {
        "summary": "Scale the {what} by a factor moving linearly from ``start_factor`` to "
                   "``end_factor`` (a warm-up when below 1).",
        "details": "The factor at step ``t`` is ``start_factor + (end_factor - start_factor) * t "
                   "/ (end - begin - 1)``.",
        "args": {"start_factor": "Factor at the first step, in (0, 1]. Defaults to 1/3 (0 is "
                                 "refused: the chained update would divide by zero; use e.g. "
                                 "1e-3).",
                 "end_factor": "Factor at the last step of the window, in [0, 1]. Defaults to 1."},
        "example": "start_factor=0.1, end=5",
    },
    "MultiStep": {
        "summary": "Multiply the {what} by ``gamma`` at every milestone.",
        "args": {"milestones": "Strictly increasing step indices (counted from ``begin``).",
                 "gamma": "Multiplicative decay at each milestone. Defaults to 0.1."},
        "example": "milestones=[8, 11], gamma=0.1",
    },
    "OneCycle": {
        "summary": "Set the {what} by the 1cycle policy (Super-Convergence, Smith & Topin).",
        "details": "It rises from ``eta_max / div_factor`` to ``eta_max`` over ``pct_start`` of "
                   "the cycle, then falls to ``eta_max / div_factor / final_div_factor`` (or, "
                   "with ``three_phase``, falls back first and then to the minimum). Values are "
                   "absolute, not chained; stepping past ``total_steps`` raises.",
        "args": {"eta_max": "Peak value: one number or one per param group. Defaults to 0.",
                 "total_steps": "Steps in the cycle. Defaults to ``end - begin``.",
                 "pct_start": "Fraction of the cycle spent rising, in [0, 1]. Defaults to 0.3.",
                 "anneal_strategy": "``'cos'`` or ``'linear'``. Defaults to ``'cos'``.",
                 "div_factor": "Start value is ``eta_max / div_factor``. Defaults to 25.",
                 "final_div_factor": "Minimum is the start value / ``final_div_factor``. "
                                     "Defaults to 1e4.",
                 "three_phase": "Use three phases (rise, fall back, anneal). Defaults to False."},
        "example": "eta_max=0.1, total_steps=10, end=10",
    },
    "Poly": {
        "summary": "Decay the {what} polynomially to ``eta_min`` over the window.",
        "details": "The value at step ``t`` is ``eta_min + (v0 - eta_min) * (1 - t / (end - begin "
                   "- 1)) ** power``.",
        "args": {"eta_min": "Value at the last step. Defaults to 0.",
                 "power": "Exponent of the polynomial. Defaults to 1."},
        "example": "eta_min=0.0, power=2.0, end=10",
    },
    "Step": {
        "summary": "Multiply the {what} by ``gamma`` every ``step_size`` steps.",
        "args": {"step_size": "Steps between decays (a positive integer).",
                 "gamma": "Multiplicative decay. Defaults to 0.1."},
        "example": "step_size=3, gamma=0.5",
    },
    "ReduceOnPlateau": {
        "summary": "Reduce the {what} when a validation metric stops improving.",
        "details": "Stepped with the validation metrics (``step(metrics)``, ``need_val_args`` is "
                   "True); ``step()`` without metrics only counts epochs. After more than "
                   "``patience`` validations without improvement the value is multiplied by "
                   "``factor`` (not below ``min_value``).",
        "args": {"monitor": "Name of the metric to watch. Defaults to ``'loss'``.",
                 "rule": "``'less'`` (lower is better) or ``'greater'``. Defaults to ``'less'``.",
                 "factor": "Multiplier in [0, 1) applied on a plateau. Defaults to 0.1.",
                 "patience": "Validations without improvement that are tolerated. Defaults to 10.",
                 "threshold": "Minimum change that counts as improvement. Defaults to 1e-4.",
                 "threshold_rule": "``'rel'`` (relative to the best) or ``'abs'``. "
                                   "Defaults to ``'rel'``.",
                 "cooldown": "Validations to wait after a reduction. Defaults to 0.",
                 "min_value": "Lower bound: one number or one per param group. Defaults to 0.",
                 "eps": "Changes smaller than this are skipped. Defaults to 1e-8."},
        "example": "monitor='loss', patience=2",
        "step": "sched.step({'loss': 0.5})",
    },
}

TEMPLATE = """{summary}

{details}Args:
{args}

Example:
    >>> import torch
    >>> from accelwrap.optim.scheduler import {name}
    >>> opt = torch.optim.{optim}([torch.nn.Parameter(torch.zeros(1))], lr=0.1{extra})
    >>> sched = {name}(opt{param}, {example})
    >>> {step}
"""

MOMENTUM_NOTE = ("The momentum is ``momentum`` for SGD-style optimizers and ``betas[0]`` for "
                 "Adam-style ones. ")


def render(family: str, kind: str, name: str, arg_names: list[str]) -> str:
    """The docstring of the ``kind`` ('LR', 'Momentum', 'Param') class of ``family``.

    Args:
        family: A key of :data:`FAMILIES`.
        kind: 'LR', 'Momentum' or 'Param'.
        name: The class name.
        arg_names: The constructor's arguments, in order.

    Returns:
        The docstring.
    """
    text = FAMILIES[family]
    what = WHAT[kind]
    docs = {**COMMON_DOCS, **text["args"]}
    args = "\n".join(f"    {arg}: {docs[arg].format(what=what)}" for arg in arg_names)
    details = text.get("details", "").format(what=what)
    if kind == "Momentum":
        details = MOMENTUM_NOTE + details
    details = textwrap.fill(details, width=88)
    args = "\n".join(textwrap.fill(line, width=88, subsequent_indent=" " * 8)
                     for line in args.splitlines())
    momentum = kind == "Momentum"
    return TEMPLATE.format(
        summary=text["summary"].format(what=what), details=f"{details}\n\n" if details else "",
        args=args, name=name, optim="SGD", extra=", momentum=0.9" if momentum else "",
        param=", 'weight_decay'" if kind == "Param" else "", example=text["example"],
        step=text.get("step", "sched.step()"))
