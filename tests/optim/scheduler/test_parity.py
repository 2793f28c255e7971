"""Parity with MMEngine: every registered scheduler, and compositions, at every iteration.

Parametrized over ``PARAM_SCHEDULERS``: a newly registered class fails here until its
family has configurations in ``FAMILY_CASES``.
"""

from __future__ import annotations

import pytest

import accelwrap.optim  # noqa: F401 - fills the registry
from accelwrap.registry import PARAM_SCHEDULERS
from tests.optim.scheduler.simulate import assert_rows_close, both

SUFFIXES = ("ParamScheduler", "Momentum", "LR")

# Per family: configurations in epochs (by_epoch=True) and in iterations (by_epoch=False)
# for a run of 6 epochs x 5 iterations.
FAMILY_CASES = {
    "Constant": [dict(factor=0.5, begin=1, end=4),
                 dict(factor=0.25, by_epoch=False, begin=3, end=17)],
    "CosineAnnealing": [
        dict(eta_min=0.001), dict(T_max=2, eta_min_ratio=0.1, begin=1),
        dict(by_epoch=False, T_max=7, eta_min=0.002, begin=2, end=26),
        dict(by_epoch=False, eta_min_ratio=0.05, begin=4)],
    "CosineRestart": [
        dict(periods=[2, 3], restart_weights=[1, 0.5], eta_min=0.001),
        dict(by_epoch=False, periods=[7, 10, 5], restart_weights=[1, 0.6, 0.3], eta_min_ratio=0.1,
             begin=2)],
    "Exponential": [dict(gamma=0.8, begin=1), dict(gamma=0.95, by_epoch=False, end=20)],
    "Linear": [dict(start_factor=0.25, end=4),
               dict(start_factor=0.1, end_factor=0.5, by_epoch=False, begin=2, end=12)],
    "MultiStep": [dict(milestones=[2, 4], gamma=0.5), dict(milestones=[0, 7, 13], by_epoch=False)],
    "OneCycle": [dict(eta_max=0.5, by_epoch=False),
                 dict(eta_max=0.3, total_steps=20, pct_start=0.4, anneal_strategy="linear",
                      three_phase=True, by_epoch=False, begin=5, end=25),
                 dict(eta_max=0.4, end=5)],
    "Poly": [dict(eta_min=0.001, power=2.0, end=5), dict(power=0.5, by_epoch=False, begin=3)],
    "Step": [dict(step_size=2, gamma=0.5), dict(step_size=4, gamma=0.7, by_epoch=False, begin=1)],
    "ReduceOnPlateau": [dict(monitor="loss", patience=1, factor=0.5),
                        dict(monitor="loss", patience=0, factor=0.5, cooldown=1, min_value=0.02,
                             threshold=0.05, threshold_rule="abs", begin=1)],
}


def split_name(name: str) -> tuple[str, str]:
    """('MultiStep', 'LR') from 'MultiStepLR'."""
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix
    raise AssertionError(f"unexpected scheduler name {name}")


def class_cases():
    for name in PARAM_SCHEDULERS.keys():
        family, suffix = split_name(name)
        for index in range(len(FAMILY_CASES.get(family, [None]))):
            yield pytest.param(name, index, id=f"{name}-{index}")


@pytest.mark.parametrize("wrapped", [False, True], ids=["optimizer", "wrapper"])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("kind", ["sgd", "adamw"])
@pytest.mark.parametrize("name,index", list(class_cases()))
def test_every_class_matches_mmengine(name, index, kind, groups, wrapped):
    family, suffix = split_name(name)
    assert family in FAMILY_CASES, f"add configurations for {family} to FAMILY_CASES"
    cfg = dict(type=name, **FAMILY_CASES[family][index])
    if suffix == "ParamScheduler":
        # MMEngine's OneCycle only accepts 'lr'; the others schedule weight decay.
        cfg["param_name"] = "lr" if family == "OneCycle" else "weight_decay"
    mm_rows, aw_rows = both([cfg], kind, groups, wrapped)
    assert_rows_close(mm_rows, aw_rows)


COMPOSITIONS = {
    "warmup+cosine": [
        dict(type="LinearLR", start_factor=0.1, by_epoch=False, end=8),
        dict(type="CosineAnnealingLR", by_epoch=True, begin=1, eta_min=1e-3,
             convert_to_iter_based=True)],
    "warmup+multistep": [
        dict(type="LinearLR", start_factor=0.2, by_epoch=False, end=6),
        dict(type="MultiStepLR", milestones=[2, 4], gamma=0.3)],
    "overlapping": [
        dict(type="LinearLR", start_factor=0.2, by_epoch=False, end=12),
        dict(type="CosineAnnealingLR", by_epoch=False, T_max=30, eta_min=0.01),
        dict(type="ExponentialLR", gamma=0.97, by_epoch=False, begin=5, end=20),
        dict(type="PolyLR", eta_min=0.003, power=1.5, by_epoch=False, begin=10, end=28)],
    "overlapping-trough": [
        dict(type="CosineAnnealingLR", by_epoch=False, T_max=6, eta_min_ratio=0.1),
        dict(type="MultiStepLR", milestones=[4, 9, 15], gamma=0.5, by_epoch=False),
        dict(type="ConstantLR", factor=0.5, by_epoch=False, begin=3, end=11)],
    "gaps": [
        dict(type="LinearLR", start_factor=0.3, end_factor=0.8, by_epoch=False, end=5),
        dict(type="CosineAnnealingLR", by_epoch=False, begin=10, end=25, eta_min_ratio=0.05),
        dict(type="StepLR", step_size=1, gamma=0.5, begin=5)],
    "epoch+iter": [
        dict(type="StepLR", step_size=2, gamma=0.5, by_epoch=True),
        dict(type="PolyLR", by_epoch=False, power=1.5, eta_min=0.001),
        dict(type="CosineRestartLR", periods=[3, 3], restart_weights=[1, 0.5], eta_min=0.0)],
    "convert_to_iter_based": [
        dict(type="LinearLR", start_factor=0.25, end=1, convert_to_iter_based=True),
        dict(type="MultiStepLR", milestones=[2, 4], convert_to_iter_based=True),
        dict(type="CosineRestartLR", periods=[2, 2], restart_weights=[1, 0.5], eta_min=0.0,
             begin=1, end=5, convert_to_iter_based=True),
        dict(type="OneCycleLR", eta_max=0.2, begin=5, end=6, convert_to_iter_based=True),
        dict(type="StepMomentum", step_size=2, gamma=0.9, convert_to_iter_based=True),
        dict(type="PolyParamScheduler", param_name="weight_decay", power=2.0,
             convert_to_iter_based=True)],
    "lr+momentum+weight_decay": [
        dict(type="LinearLR", start_factor=0.1, by_epoch=False, end=5),
        dict(type="CosineAnnealingLR", by_epoch=False, begin=5, eta_min_ratio=0.01),
        dict(type="LinearMomentum", start_factor=0.9, by_epoch=False, end=10),
        dict(type="CosineAnnealingMomentum", by_epoch=False, begin=10, eta_min=0.5),
        dict(type="CosineAnnealingParamScheduler", param_name="weight_decay", eta_min_ratio=0.1,
             by_epoch=False)],
    "warmup+plateau": [
        dict(type="LinearLR", start_factor=0.5, by_epoch=False, end=5),
        dict(type="ReduceOnPlateauLR", monitor="loss", patience=0, factor=0.5),
        dict(type="ReduceOnPlateauMomentum", monitor="loss", patience=1, factor=0.9)],
}


@pytest.mark.parametrize("wrapped", [False, True], ids=["optimizer", "wrapper"])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("kind", ["sgd", "adamw"])
@pytest.mark.parametrize("name", list(COMPOSITIONS))
def test_compositions_match_mmengine(name, kind, groups, wrapped):
    mm_rows, aw_rows = both(COMPOSITIONS[name], kind, groups, wrapped)
    assert_rows_close(mm_rows, aw_rows)


@pytest.mark.parametrize("wrapped", [False, True], ids=["optimizer", "wrapper"])
def test_plateau_per_group_min_value_matches_mmengine(wrapped):
    cfg = dict(type="ReduceOnPlateauLR", patience=0, factor=0.3, min_value=[0.02, 0.01])
    mm_rows, aw_rows = both([cfg], "sgd", 2, wrapped)
    assert_rows_close(mm_rows, aw_rows)
    assert aw_rows[-1][1][0] == 0.01  # the floor was reached
