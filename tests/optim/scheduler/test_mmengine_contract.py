"""Side by side with MMEngine: attributes, warnings, exception types and phrases, OneCycle's end.

Every registered scheduler that MMEngine also has is built with the same arguments in both
libraries; what MMEngine exposes, raises or warns is the reference.
"""

from __future__ import annotations

import warnings

import mmengine.optim  # noqa: F401 - fills MMEngine's registry
import pytest
import torch
from mmengine.registry import PARAM_SCHEDULERS as MM_SCHEDULERS

from accelwrap.registry import PARAM_SCHEDULERS
from tests.optim.scheduler.test_parity import split_name

#: Family -> arguments (epoch counts are whole, so MMEngine's conversion is exact).
ARGS = {
    "Constant": dict(factor=0.5, end=6),
    "CosineAnnealing": dict(T_max=6, eta_min=0.001, end=8),
    "CosineRestart": dict(periods=[3, 4], restart_weights=[1, 0.5], eta_min_ratio=0.1),
    "Exponential": dict(gamma=0.9),
    "Linear": dict(start_factor=0.25, end_factor=0.9, end=5),
    "MultiStep": dict(milestones=[2, 5], gamma=0.5),
    "OneCycle": dict(eta_max=0.2, total_steps=9, pct_start=0.4, final_div_factor=4.0),
    "Poly": dict(eta_min=0.001, power=2.0, end=7),
    "ReduceOnPlateau": dict(monitor="acc", rule="greater", patience=2, min_value=0.001),
    "Step": dict(step_size=3, gamma=0.5),
}
SHARED = sorted(name for name in PARAM_SCHEDULERS.keys() if name in MM_SCHEDULERS.module_dict)
#: MMEngine's attributes that are progress or internals, not configuration.
NOT_SETTINGS = {"optimizer", "last_step", "base_values", "_global_step", "_last_value",
                "best", "rule_worse", "num_bad_epochs", "cooldown_counter", "anneal_func",
                "_schedule_phases", "use_betas"}


def optimizer(kind: str = "sgd") -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))]
    groups = [{"params": params[:1]}, {"params": params[1:], "lr": 0.5}]
    if kind == "adam":
        return torch.optim.AdamW(groups, lr=0.1, weight_decay=0.01)
    return torch.optim.SGD(groups, lr=0.1, momentum=0.9, weight_decay=0.01)


def arguments(name: str) -> dict:
    family, suffix = split_name(name)
    args = dict(ARGS[family])
    if suffix == "ParamScheduler":
        args["param_name"] = "lr" if family == "OneCycle" else "weight_decay"
    return args


def both(name: str, build=None, **extra):
    """(MMEngine's scheduler, accelwrap's) of class ``name``, each on its own optimizer."""
    out = []
    for registry in (MM_SCHEDULERS, PARAM_SCHEDULERS):
        cls = registry.get(name)
        make = getattr(cls, build) if build else cls
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out.append(make(optimizer(), **arguments(name), **extra))
    return out


@pytest.mark.parametrize("convert", [False, True], ids=["as_given", "build_iter_from_epoch"])
@pytest.mark.parametrize("name", SHARED)
def test_every_argument_is_an_attribute_with_mmengines_value(name, convert):
    if convert and split_name(name)[0] == "ReduceOnPlateau":
        pytest.skip("MMEngine cannot convert ReduceOnPlateau either")
    extra = dict(epoch_length=4) if convert else {}
    theirs, ours = both(name, "build_iter_from_epoch" if convert else None, **extra)
    settings = {k: v for k, v in vars(theirs).items() if k not in NOT_SETTINGS}
    assert settings, name
    for key, value in settings.items():
        assert hasattr(ours, key), f"{name}.{key} is missing (MMEngine: {value!r})"
        assert getattr(ours, key) == value, f"{name}.{key}: {getattr(ours, key)!r} != {value!r}"


def _warning_of(action) -> list[tuple[type, str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        action()
    return [(w.category, str(w.message)) for w in caught
            if "optimizer.step()" in str(w.message)]


CHAINABLE = [n for n in SHARED if split_name(n)[0] != "ReduceOnPlateau"]


@pytest.mark.parametrize("name", CHAINABLE)
def test_scheduler_step_before_optimizer_step_warns_as_mmengine(name):
    for before in (True, False):
        seen = []
        for scheduler in both(name):
            def action(scheduler=scheduler):
                if not before:
                    scheduler.optimizer.step()
                scheduler.step()
            seen.append(_warning_of(action))
        assert seen[0] == seen[1] and bool(seen[0]) is before, (name, before, seen)


@pytest.mark.parametrize("name", CHAINABLE)
def test_replaced_optimizer_step_warns_as_mmengine(name):
    seen = []
    for scheduler in both(name):
        scheduler.optimizer.step = lambda: None
        scheduler.optimizer.step()
        seen.append(_warning_of(scheduler.step))
    assert seen[0] == seen[1] and seen[0][0][0] is UserWarning


def _raised(action) -> BaseException:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - compared below
            return exc
    raise AssertionError("nothing was raised")


def _call(name: str, *args, method: str | None = None, **kwargs):
    def action(registry):
        cls = registry.get(name)
        return (getattr(cls, method) if method else cls)(*args, **kwargs)
    return action


SGD, ASGD = optimizer(), torch.optim.ASGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
#: (case, call, MMEngine's phrase that accelwrap's message contains; None: no phrase).
BAD = [
    ("not an optimizer", _call("StepLR", "sgd", step_size=1), "should be an Optimizer"),
    ("end before begin", _call("StepLR", SGD, step_size=1, begin=5, end=3),
     "end should be larger than begin"),
    ("no momentum", _call("StepMomentum", ASGD, step_size=1),
     "optimizer must support momentum when using momentum scheduler"),
    ("resume without initial", _call("StepLR", optimizer(), step_size=1, last_step=4),
     "param 'initial_lr' is not specified"),
    ("bad param_name", _call("StepParamScheduler", SGD, param_name="wd", step_size=1), None),
    ("float last_step", _call("StepLR", SGD, step_size=1, last_step=1.5), None),
    ("last_step < -1", _call("StepLR", SGD, step_size=1, last_step=-2), None),
    ("epoch_length -1", _call("StepLR", SGD, step_size=1, epoch_length=-1,
                              method="build_iter_from_epoch"), "must be a positive integer"),
    ("convert by_epoch=False", _call("StepLR", SGD, step_size=1, by_epoch=False, epoch_length=2,
                                     method="build_iter_from_epoch"), "Only epoch-based kwargs"),
    ("eta_min and ratio", _call("CosineRestartLR", SGD, periods=[2], eta_min=0.0,
                                eta_min_ratio=0.1), "Either `eta_min` or `eta_min_ratio"),
    ("restart lengths", _call("CosineRestartLR", SGD, periods=[2, 3], eta_min=0.0),
     "periods and restart_weights should have the same length"),
    ("cosine eta_min and ratio", _call("CosineAnnealingLR", SGD, eta_min=0.0, eta_min_ratio=0.1),
     "Either `eta_min` or `eta_min_ratio"),
    ("plateau by_epoch", _call("ReduceOnPlateauLR", SGD, by_epoch=False), "only support by_epoch"),
    ("plateau factor", _call("ReduceOnPlateauLR", SGD, factor=2.0), "Factor should be < 1.0"),
    ("plateau min_value", _call("ReduceOnPlateauLR", SGD, min_value=[0.1] * 3),
     "expected 2 min_lrs, got 3"),
    ("plateau threshold", _call("ReduceOnPlateauLR", SGD, threshold=-1.0),
     "threshold -1.0 should be >= 0"),
    ("plateau rule", _call("ReduceOnPlateauLR", SGD, rule="foo"), "mode foo is unknown!"),
    ("plateau threshold_rule", _call("ReduceOnPlateauLR", SGD, threshold_rule="foo"),
     "threshold mode foo is unknown!"),
]


@pytest.mark.parametrize("action, phrase", [case[1:] for case in BAD], ids=[c[0] for c in BAD])
def test_errors_are_mmengines_type_and_carry_its_phrase(action, phrase):
    theirs, ours = _raised(lambda: action(MM_SCHEDULERS)), _raised(lambda: action(PARAM_SCHEDULERS))
    assert isinstance(ours, type(theirs)), (type(ours).__mro__, type(theirs))
    if phrase is not None:  # (MMEngine's bare asserts have no message to compare with)
        assert phrase in str(ours) and (phrase in str(theirs) or not str(theirs)), (theirs, ours)


@pytest.mark.parametrize("name", ["OneCycleLR", "OneCycleParamScheduler"])
def test_onecycle_loop_of_total_steps_steps_like_mmengine_then_refuses(name):
    theirs, ours = both(name)
    for _ in range(ours.total_steps):
        for scheduler in (theirs, ours):
            scheduler.optimizer.step()
            scheduler.step()
        assert ours.get_last_value() == pytest.approx(theirs.get_last_value(), rel=1e-12)
    for scheduler in (theirs, ours):  # one step more is refused by both
        with pytest.raises(ValueError, match="Tried to step 11 times. The specified number of "
                                             "total steps is 9"):
            scheduler.step()
