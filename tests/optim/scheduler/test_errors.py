"""Every bad input gets a message naming the key, the value and what was expected."""

from __future__ import annotations

import pytest
import torch

from accelwrap.optim import OptimWrapper, OptimWrapperDict
from accelwrap.optim.scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    CosineRestartLR,
    LinearLR,
    LinearMomentum,
    MetricNotFoundError,
    MultiStepLR,
    OneCycleLR,
    ReduceOnPlateauLR,
    StepLR,
)
from accelwrap.registry import PARAM_SCHEDULERS


@pytest.fixture
def opt():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)


def build(cfg: dict, optimizer, epoch_length: int | None = None):
    return PARAM_SCHEDULERS.build(cfg, default_args=dict(optimizer=optimizer,
                                                          epoch_length=epoch_length))


@pytest.mark.parametrize("cls", [LinearLR, CosineAnnealingLR, ReduceOnPlateauLR])
def test_end_not_after_begin(opt, cls):
    with pytest.raises(ValueError, match=r"end should be larger than begin, but got "
                                         r"begin=5, end=5"):
        cls(opt, begin=5, end=5)


def test_negative_t_max(opt):
    with pytest.raises(ValueError,
                       match=r"CosineAnnealingLR: T_max must be in \(0.0, None\], got -3"):
        CosineAnnealingLR(opt, T_max=-3)


def test_zero_factors_that_would_divide_by_zero(opt):
    with pytest.raises(ValueError, match=r"LinearLR: start_factor must be in \(0.0, 1.0\], got 0"):
        LinearLR(opt, start_factor=0)
    with pytest.raises(ValueError, match=r"ConstantLR: factor must be in \(0.0, 1.0\], got 0"):
        ConstantLR(opt, factor=0)


def test_plateau_monitor_missing_names_key_and_metrics(opt):
    sched = ReduceOnPlateauLR(opt, monitor="val_loss")
    with pytest.raises(MetricNotFoundError, match=r"monitor 'val_loss' is not in the validation "
                                                  r"metrics \['acc', 'loss'\]"):
        sched.step({"loss": 1.0, "acc": 0.5})
    assert issubclass(MetricNotFoundError, KeyError) and issubclass(MetricNotFoundError, ValueError)


def test_plateau_arguments(opt):
    with pytest.raises(ValueError, match="only support by_epoch=True"):
        ReduceOnPlateauLR(opt, by_epoch=False)
    with pytest.raises(ValueError, match=r"mode lesser is unknown! rule must be one of "
                                         r"\['less', 'greater'\], got "
                                         "'lesser'; did you mean 'less'"):
        ReduceOnPlateauLR(opt, rule="lesser")
    with pytest.raises(ValueError, match=r"Factor should be < 1.0: .* factor=1.5"):
        ReduceOnPlateauLR(opt, factor=1.5)
    with pytest.raises(ValueError, match=r"expected 1 min_lrs, got 2: min_value has "
                                         r"\[0.0, 0.1\] but the optimizer has 1"):
        ReduceOnPlateauLR(opt, min_value=[0.0, 0.1])
    with pytest.raises(TypeError, match="metrics type should be dict"):
        ReduceOnPlateauLR(opt).step(0.5)
    with pytest.raises(ValueError, match="cannot be converted to iteration-based"):
        build(dict(type="ReduceOnPlateauLR", convert_to_iter_based=True), opt, epoch_length=5)


def test_onecycle_past_total_steps_raises(opt):
    sched = OneCycleLR(opt, eta_max=0.5, total_steps=3, by_epoch=False)
    for _ in range(3):  # a loop of total_steps iterations, stepping after each, works
        sched.step()
    with pytest.raises(ValueError, match=r"OneCycleLR: Tried to step 5 times. The specified "
                                         r"number of total steps is 3"):
        sched.step()


def test_onecycle_arguments(opt):
    with pytest.raises(ValueError, match="anneal_strategy must be 'cos' or 'linear', got 'cosine'"):
        OneCycleLR(opt, eta_max=0.5, total_steps=10, anneal_strategy="cosine")
    with pytest.raises(ValueError,
                       match="eta_max has 2 values but the optimizer has 1 param groups"):
        OneCycleLR(opt, eta_max=[0.5, 0.1], total_steps=10)
    with pytest.raises(ValueError, match=r"div_factor must be in \(0.0, None\], got 0"):
        OneCycleLR(opt, eta_max=0.5, total_steps=10, div_factor=0)


def test_converted_counts_are_integers(opt):
    sched = build(dict(type="MultiStepLR", milestones=[1.5, 3], convert_to_iter_based=True), opt, 7)
    assert list(sched.milestones) == [11, 21] and not sched.by_epoch
    restart = build(dict(type="CosineRestartLR", periods=[0.5, 1.5], restart_weights=[1, 1],
                         eta_min=0.0, convert_to_iter_based=True), opt, 7)
    assert restart.periods == [4, 11]
    step = build(dict(type="StepLR", step_size=0.5, begin=0.5, end=2.5,
                      convert_to_iter_based=True), opt, 5)
    assert (step.step_size, step.begin, step.end) == (3, 3, 13)


def test_conversion_arguments(opt):
    with pytest.raises(ValueError, match="needs epoch_length"):
        build(dict(type="StepLR", step_size=2, convert_to_iter_based=True), opt)
    with pytest.raises(ValueError, match="`epoch_length` must be a positive integer, but got 0"):
        StepLR.build_iter_from_epoch(opt, step_size=2, epoch_length=0)
    with pytest.raises(ValueError, match="StepLR: step_size must be an integer >= 1, got 0"):
        build(dict(type="StepLR", step_size=0.05, convert_to_iter_based=True), opt, 5)


def test_targets(opt):
    with pytest.raises(TypeError, match="``optimizer`` should be an Optimizer or an "
                                        "OptimWrapper .* "
                                        "got str"):
        StepLR("sgd", step_size=2)
    members = OptimWrapperDict(a=OptimWrapper(opt))
    with pytest.raises(TypeError, match=r"OptimWrapperDict-like mapping with members \['a'\]"):
        StepLR(members, step_size=2)
    adagrad = torch.optim.Adagrad([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="LinearMomentum: optimizer must support momentum "
                                         "when using momentum scheduler: Adagrad has neither "
                                         "'momentum' nor 'betas'"):
        LinearMomentum(adagrad)
    with pytest.raises(ValueError, match="param_name 'weight_decy' is not a key of "
                                         "param_groups\\[0\\]; did you mean 'weight_decay'"):
        build(dict(type="LinearParamScheduler", param_name="weight_decy"), opt)


def test_arguments_and_types(opt):
    with pytest.raises(TypeError, match="MultiStepLR: missing a required argument: 'milestones'"):
        MultiStepLR(opt)
    with pytest.raises(TypeError,
                       match="unexpected argument 'milestone'; did you mean 'milestones'"):
        build(dict(type="MultiStepLR", milestone=[2]), opt)
    with pytest.raises(TypeError, match="StepLR: begin must be an integer, got 1.5"):
        StepLR(opt, step_size=2, begin=1.5)
    with pytest.raises(ValueError, match="StepLR: last_step must be >= -1, got -2"):
        StepLR(opt, step_size=2, last_step=-2)
    with pytest.raises(ValueError, match="param 'initial_lr' is not specified in param_groups"
                                         "\\[0\\] when resuming an optimizer: last_step=3 "):
        StepLR(opt, step_size=2, last_step=3)
    with pytest.raises(ValueError, match="Either `eta_min` or `eta_min_ratio` should be "
                                         "specified, not both"):
        CosineRestartLR(opt, periods=[2], eta_min=0.0, eta_min_ratio=0.1)
    with pytest.raises(ValueError, match=r"periods and restart_weights should have the same "
                                         r"length \(and not be empty\), got periods=\[2, 3\], "
                                         r"restart_weights=\[1\]"):
        CosineRestartLR(opt, periods=[2, 3])
    with pytest.raises(TypeError, match="milestones must be a list, got 3"):
        MultiStepLR(opt, milestones=3)


def test_step_param_schedulers_when(opt):
    from accelwrap.optim.scheduler import step_param_schedulers

    with pytest.raises(ValueError, match=r"when must be one of \['iter', 'epoch', 'val'\], got "
                                         "'iters'; did you mean 'iter'"):
        step_param_schedulers([StepLR(opt, step_size=1)], "iters")
