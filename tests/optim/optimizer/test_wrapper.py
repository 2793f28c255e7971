"""OptimWrapper against MMEngine's own OptimWrapper: same model, data, config -> same numbers.

Each case runs without an accelerator, with a 1-process ``Accelerator(cpu=True)`` on the
fast path (torch called directly), and with the fast path switched off (every call goes
through Accelerate), so the fast path is proven to give Accelerate's numbers.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper as MMOptimWrapper

from accelwrap.optim import OptimWrapper, prepare
from tests.optim.optimizer.wrapper_cases import (
    assert_same,
    make_data,
    make_model,
    make_optimizer,
    mm_clip,
    params_of,
    train,
)

CLIPS = {
    "none": None,
    "norm": dict(max_norm=0.5),
    "inf_norm": dict(max_norm=0.3, norm_type="inf"),
    "value": dict(clip_value=0.05),
}
MODES = ("plain", "accelerator", "accelerate_calls")


class SlowOptimWrapper(OptimWrapper):
    """Routes every call through Accelerate (no torch shortcuts)."""

    fast_path = False


def build(mode: str, optimizer: torch.optim.Optimizer, model, **kwargs):
    """Our wrapper in one of the three modes; returns (wrapper, model)."""
    if mode == "plain":
        return OptimWrapper(optimizer, **kwargs), model
    accelerator = Accelerator(cpu=True, step_scheduler_with_optimizer=False)
    if mode == "accelerator":  # way (a): wrap the optimizer accelerator.prepare returned
        return (OptimWrapper(accelerator.prepare(optimizer), accelerator=accelerator, **kwargs),
                model)
    wrapper = SlowOptimWrapper(optimizer, **kwargs)  # way (b): the prepare helper
    model, wrapper = prepare(accelerator, model, wrapper)
    assert not wrapper._direct
    return wrapper, model


def reference(opt_kind: str, n: int, max_counts, **kwargs):
    model = make_model()
    wrapper = MMOptimWrapper(make_optimizer(opt_kind, model), **kwargs)
    return train(wrapper, model, make_data(n), max_counts), wrapper


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("clip", list(CLIPS))
@pytest.mark.parametrize("counts,max_counts", [(1, None), (2, None), (3, 10), (4, 10), (4, 12)])
@pytest.mark.parametrize("opt_kind", ["sgd", "adamw"])
def test_update_params_matches_mmengine(mode, clip, counts, max_counts, opt_kind):
    n = max_counts or 8
    want, mm = reference(opt_kind, n, max_counts, accumulative_counts=counts,
                         clip_grad=mm_clip(CLIPS[clip]))
    model = make_model()
    wrapper, model = build(mode, make_optimizer(opt_kind, model), model,
                           accumulative_counts=counts, clip_grad=CLIPS[clip])
    got = train(wrapper, model, make_data(n), max_counts)
    assert_same(got, want)
    assert wrapper.get_lr() == mm.get_lr()
    assert wrapper.get_momentum() == mm.get_momentum()
    assert wrapper.inner_count == mm.inner_count
    assert len(wrapper.param_groups) == len(mm.param_groups)


@pytest.mark.parametrize("mode", MODES)
def test_remainder_window_divides_by_remainder(mode):
    """10 iterations with accumulative_counts=4: windows of 4, 4 and a last one of 2."""
    model = make_model()
    wrapper, model = build(mode, make_optimizer("sgd", model), model, accumulative_counts=4)
    wrapper.initialize_count_status(model, 0, 10)
    divisors, updates = [], []
    for _ in range(10):
        divisors.append(1 / wrapper.scale_loss(torch.tensor(1.0)).item())
        wrapper._inner_count += 1
        updates.append(wrapper.should_update())
    assert divisors == [4] * 8 + [2] * 2
    assert [i + 1 for i, u in enumerate(updates) if u] == [4, 8, 10]


@pytest.mark.parametrize("mode", MODES)
def test_manual_backward_step_zero_grad_matches_mmengine(mode):
    data = make_data(6)
    mm_model = make_model()
    mm = MMOptimWrapper(make_optimizer("adamw", mm_model), clip_grad=dict(max_norm=0.5))
    model = make_model()
    wrapper, model = build(mode, make_optimizer("adamw", model), model,
                           clip_grad=dict(max_norm=0.5))
    for w, m in ((mm, mm_model), (wrapper, model)):
        for x, y in data:
            w.backward(F.mse_loss(m(x), y))
            w.step()
            w.zero_grad()
    assert_same(params_of(model), params_of(mm_model))
    assert wrapper.grad_norm == pytest.approx(
        MessageHub.get_current_instance().get_scalar("train/grad_norm").current(), rel=0, abs=0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("opt_kind", ["sgd", "adamw"])
def test_state_dict_round_trip(mode, opt_kind):
    data = make_data(10)
    want, mm = reference(opt_kind, 10, None, accumulative_counts=1)
    model = make_model()
    wrapper, model = build(mode, make_optimizer(opt_kind, model), model)
    train(wrapper, model, data[:5])
    state = wrapper.state_dict()
    assert set(state) == set(mm.state_dict())
    saved = dict(state)
    resumed_model = make_model()
    resumed_model.load_state_dict(model.state_dict())
    resumed = OptimWrapper(make_optimizer(opt_kind, resumed_model))
    resumed.load_state_dict(state)
    assert state == saved  # loading does not modify the caller's dict
    assert_same(train(resumed, resumed_model, data[5:]), want)
    assert resumed.get_lr() == mm.get_lr()


def test_loads_an_mmengine_state_dict():
    want, mm = reference("adamw", 6, None)
    model = make_model()
    train(MMOptimWrapper(make_optimizer("adamw", model)), model, make_data(6)[:3])
    mm_state = MMOptimWrapper(make_optimizer("adamw", model)).state_dict()
    wrapper = OptimWrapper(make_optimizer("adamw", model))
    wrapper.load_state_dict(mm_state)
    assert wrapper.base_param_settings["lr"] == mm.base_param_settings["lr"]


def test_base_lr_entry_for_multi_group_optimizers():
    model = make_model()
    assert OptimWrapper(make_optimizer("adamw", model)).get_lr() == {"base_lr": [0.05],
                                                                      "lr": [0.05, 0.01]}
    assert OptimWrapper(make_optimizer("sgd", model)).get_lr() == {"lr": [0.1]}
    assert OptimWrapper(make_optimizer("adamw", model)).get_momentum() == {"momentum": [0.8, 0.8]}


def test_grad_norm_is_none_without_norm_clipping():
    model = make_model()
    for clip in (None, dict(clip_value=0.1)):
        wrapper = OptimWrapper(make_optimizer("sgd", model), clip_grad=clip)
        train(wrapper, model, make_data(2))
        assert wrapper.grad_norm is None


def test_plain_wrapper_creates_no_accelerator_state():
    from accelerate.state import AcceleratorState, PartialState

    from accelwrap.optim import AmpOptimWrapper
    model = make_model()
    train(OptimWrapper(make_optimizer("sgd", model), accumulative_counts=2), model, make_data(4))
    train(AmpOptimWrapper(optimizer=make_optimizer("sgd", model)), model, make_data(2))
    assert not AcceleratorState._shared_state and not PartialState._shared_state
