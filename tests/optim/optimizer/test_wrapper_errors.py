"""Bad input to OptimWrapper: each a clear exception whose message names the problem."""

from __future__ import annotations

import copy

import pytest
import torch
from accelerate import Accelerator
from omegaconf import OmegaConf

from accelwrap.optim import OptimWrapper
from accelwrap.registry import OPTIM_WRAPPERS
from tests.optim.optimizer.wrapper_cases import make_model, make_optimizer


@pytest.fixture
def optimizer():
    return make_optimizer("sgd", make_model())


@pytest.mark.parametrize("clip_grad,error,message", [
    (dict(max_norm=1, norm="inf"), ValueError, r"unknown key 'norm'.*'norm_type'"),
    (dict(max_norm=1, norm="inf"), ValueError,
     r"clipping by norm takes max_norm, norm_type.*by value takes clip_value"),
    (dict(max_nrom=1), ValueError, r"did you mean 'max_norm'"),
    (dict(type="value", max_norm=1), ValueError, r"unknown key 'max_norm' for clipping by value"),
    (dict(type="norm", clip_value=1), ValueError, r"unknown key 'clip_value' for clipping by norm"),
    (dict(type="l2", max_norm=1), ValueError, r"type='l2'.*'norm' or 'value'"),
    (dict(norm_type=2), ValueError, r"clipping by norm needs 'max_norm'"),
    (dict(), ValueError, r"needs 'max_norm'"),
    (0.5, TypeError, r"clip_grad must be a dict.*got float"),
])
def test_bad_clip_grad(optimizer, clip_grad, error, message):
    with pytest.raises(error, match=message):
        OptimWrapper(optimizer, clip_grad=clip_grad)


def test_clip_grad_is_not_mutated_and_value_is_inferred(optimizer):
    cfg = dict(type="norm", max_norm=1.0, norm_type=2)
    saved = copy.deepcopy(cfg)
    OptimWrapper(optimizer, clip_grad=cfg)
    OptimWrapper(optimizer, clip_grad=cfg)  # MMEngine fails here: its first call popped 'type'
    assert cfg == saved
    assert OptimWrapper(optimizer, clip_grad=dict(clip_value=0.2))._clip.kind == "value"
    assert OptimWrapper(optimizer, clip_grad=OmegaConf.create({"max_norm": 3}))._clip.kind == "norm"


@pytest.mark.parametrize("counts,error,message", [
    (0, ValueError, r"accumulative_counts must be a positive int .*got 0"),
    (-2, ValueError, r"got -2"),
    (1.5, TypeError, r"accumulative_counts must be a positive int, got float \(1.5\)"),
    (True, TypeError, r"got bool"),
])
def test_bad_accumulative_counts(optimizer, counts, error, message):
    with pytest.raises(error, match=message):
        OptimWrapper(optimizer, accumulative_counts=counts)


def test_not_an_optimizer():
    with pytest.raises(TypeError, match=r"optimizer must be a torch.optim.Optimizer, got list"):
        OptimWrapper([torch.nn.Parameter(torch.zeros(1))])


def test_accelerator_with_its_own_accumulation_is_refused(optimizer):
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=4)
    with pytest.raises(ValueError, match=r"gradient_accumulation_steps=4.*"
                                         r"gradient_accumulation_steps=1.*accumulative_counts=4"):
        OptimWrapper(optimizer, accumulative_counts=2, accelerator=accelerator)


class ThroughAccelerate(OptimWrapper):
    fast_path = False  # clip through accelerator.clip_grad_norm_, as under FSDP / DeepSpeed


def test_clip_keys_accelerate_does_not_take_are_refused_before_preparing(optimizer):
    accelerator = Accelerator(cpu=True)
    with pytest.raises(ValueError, match=r"clip_grad keys \['foreach'\] are not supported by "
                                         r"Accelerate's clipping under NO"):
        ThroughAccelerate(optimizer, clip_grad=dict(max_norm=1.0, foreach=True),
                          accelerator=accelerator)
    assert accelerator._optimizers == []
    # calling torch directly, the same key is torch's own argument and works
    OptimWrapper(optimizer, clip_grad=dict(max_norm=1.0, foreach=True), accelerator=accelerator)


def test_count_past_max_counts_is_an_error(optimizer):
    wrapper = OptimWrapper(optimizer, accumulative_counts=4)
    wrapper.initialize_count_status(make_model(), 12, 12)
    with pytest.raises(ValueError, match=r"inner_count=12 is past max_counts=12"):
        wrapper.scale_loss(torch.tensor(1.0))


def test_registered_wrappers():
    for name in ("OptimWrapper", "AmpOptimWrapper", "ApexOptimWrapper"):
        assert name in OPTIM_WRAPPERS
    built = OPTIM_WRAPPERS.build(dict(type="OptimWrapper", clip_grad=dict(max_norm=1)),
                                 default_args=dict(optimizer=make_optimizer("sgd", make_model())))
    assert isinstance(built, OptimWrapper)
