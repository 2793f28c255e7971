"""The non-finite policy, the spike rule, the global grad norm and ``on: updates`` (1 process)."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
import yaml

from accelwrap.errors import NonFiniteError
from accelwrap.optim import OptimWrapper
from accelwrap.optim.scheduler import build_param_schedulers, step_param_schedulers
from tests.optim.optimizer.wrapper_cases import make_data, make_model

COUNTS = 2


def _wrapper(model, **kwargs) -> OptimWrapper:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return OptimWrapper(optimizer, accumulative_counts=COUNTS, **kwargs)


def _train(wrapper, model, data, poison=(), scale=None, schedulers=None) -> None:
    """Iterations in ``poison`` get a NaN loss; ``scale`` maps an iteration to a loss factor."""
    wrapper.initialize_count_status(model, 0, len(data))
    for i, (x, y) in enumerate(data):
        with wrapper.optim_context(model):
            loss = F.mse_loss(model(x), y)
        if i in poison:
            loss = loss * float("nan")
        if scale is not None:
            loss = loss * scale.get(i, 1.0)
        wrapper.update_params(loss)
        if schedulers is not None:
            step_param_schedulers(schedulers, "iter")


def _without(data, window: int) -> tuple[list, list[int]]:
    """The data minus accumulation window ``window`` (what a skipped update leaves)."""
    drop = set(range(window * COUNTS, (window + 1) * COUNTS))
    return [b for i, b in enumerate(data) if i not in drop]


def _assert_params_equal(a, b) -> None:
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=1e-7)


@pytest.mark.parametrize("check", ["grad", "loss"])
def test_skip_drops_the_update_on_the_nan_window_only(check, caplog):
    data = make_data(8)
    model, reference = make_model(), make_model()
    wrapper = _wrapper(model, nonfinite=dict(policy="skip", check=check))
    with caplog.at_level(logging.WARNING, logger="accelwrap"):
        _train(wrapper, model, data, poison={3})  # window 1 (iterations 2, 3)
    assert wrapper.nonfinite_skips == 1
    assert any("update 2 (iteration 4) skipped: non-finite" in r.getMessage()
               for r in caplog.records)
    _train(_wrapper(reference), reference, _without(data, 1))
    _assert_params_equal(model, reference)  # no step, no momentum change: as if never seen


def test_stop_raises_naming_the_update_and_iteration():
    model = make_model()
    wrapper = _wrapper(model, nonfinite=dict(policy="stop"))
    with pytest.raises(NonFiniteError, match=r"update 3 \(iteration 6\).*policy='stop'") as info:
        _train(wrapper, model, make_data(8), poison={5})
    assert (info.value.update, info.value.iteration) == (3, 6)


def test_warn_applies_the_update_and_warns(caplog):
    model = make_model()
    wrapper = _wrapper(model, nonfinite=dict(policy="warn"))
    with caplog.at_level(logging.WARNING, logger="accelwrap"):
        _train(wrapper, model, make_data(4), poison={1})
    assert all(torch.isnan(p).all() for p in model.parameters())  # applied
    messages = [r.getMessage() for r in caplog.records]
    assert any("update 1 (iteration 2) was applied with a non-finite gradient norm" in m
               for m in messages), messages
    assert wrapper.nonfinite_skips == 0


def test_default_only_reuses_the_clipping_norm(caplog):
    model = make_model()
    plain = _wrapper(model)
    _train(plain, model, make_data(4))
    assert plain.grad_norm is None  # no clipping: nothing measured, nothing extra computed
    model = make_model()
    clipped = _wrapper(model, clip_grad=dict(max_norm=1.0))
    with caplog.at_level(logging.WARNING, logger="accelwrap"):
        _train(clipped, model, make_data(4), poison={1})
        clipped.progress_state()
    assert any("non-finite gradient norm" in r.getMessage() for r in caplog.records)


def test_spike_rule_skips_a_loss_far_above_the_running_mean(caplog):
    data = make_data(16)
    model, reference = make_model(), make_model()
    wrapper = _wrapper(model, spike=dict(window=3, sigmas=3))
    with caplog.at_level(logging.WARNING, logger="accelwrap"):
        _train(wrapper, model, data, scale={12: 50.0, 13: 50.0})  # window 6
    assert wrapper.spike_skips == 1 and wrapper.nonfinite_skips == 0
    assert any("spike rule" in r.getMessage() for r in caplog.records)
    _train(_wrapper(reference), reference, _without(data, 6))
    _assert_params_equal(model, reference)
    state = wrapper.progress_state()
    assert state["updates"] == 8 and len(state["spike_losses"]) == 3


def test_progress_state_round_trips_as_json():
    import json

    model = make_model()
    wrapper = _wrapper(model, nonfinite=dict(policy="skip"), spike=dict(window=2, sigmas=1))
    _train(wrapper, model, make_data(10), poison={1})
    state = json.loads(json.dumps(wrapper.progress_state()))
    other = _wrapper(make_model(), nonfinite=dict(policy="skip"), spike=dict(window=2, sigmas=1))
    other.load_progress_state(state)
    assert other.progress_state() == state and other.nonfinite_skips == 1


@pytest.mark.parametrize("value,match", [
    (dict(policy="skp"), r"nonfinite.policy='skp'.*did you mean 'skip'"),
    (dict(check="grads"), r"nonfinite.check='grads'"),
    (dict(polcy="skip"), r"nonfinite has no key 'polcy'"),
    ("skip", r"nonfinite must be a dict"),
])
def test_bad_nonfinite_settings_name_key_and_choices(value, match):
    with pytest.raises((ValueError, TypeError), match=match):
        _wrapper(make_model(), nonfinite=value)


@pytest.mark.parametrize("value,match", [
    (dict(window=1, sigmas=3), r"spike.window=1 must be an int >= 2"),
    (dict(window=5, sigmas=0), r"spike.sigmas=0 must be a number > 0"),
    (dict(window=5), r"spike needs exactly the keys 'window'.*'sigmas'"),
])
def test_bad_spike_settings_name_key_and_value(value, match):
    with pytest.raises(ValueError, match=match):
        _wrapper(make_model(), spike=value)


def test_on_updates_ticks_only_on_applied_updates():
    data = make_data(8)  # 4 windows of 2; window 1 is skipped
    # PyYAML (YAML 1.1) reads an unquoted key `on` as True: the builder takes that too
    cfg = yaml.safe_load("- {type: StepLR, step_size: 1, gamma: 0.5, by_epoch: false, on: updates}")
    assert True in cfg[0]
    model = make_model()
    wrapper = _wrapper(model, nonfinite=dict(policy="skip"))
    schedulers = build_param_schedulers(cfg, wrapper)
    _train(wrapper, model, data, poison={2}, schedulers=schedulers)
    assert wrapper.get_lr()["lr"] == [pytest.approx(0.1 * 0.5 ** 3)]  # 3 applied updates
    # the default still ticks after every iteration (MMEngine's behaviour)
    model = make_model()
    wrapper = _wrapper(model, nonfinite=dict(policy="skip"))
    iterations = {**{k: v for k, v in cfg[0].items() if k is not True}, "on": "iterations"}
    schedulers = build_param_schedulers([iterations], wrapper)
    _train(wrapper, model, data, poison={2}, schedulers=schedulers)
    assert wrapper.get_lr()["lr"] == [pytest.approx(0.1 * 0.5 ** 8)]


def test_on_updates_refuses_what_cannot_tell_an_update():
    wrapper = _wrapper(make_model())
    with pytest.raises(ValueError, match=r"on='update' is not valid.*did you mean 'updates'"):
        build_param_schedulers([dict(type="StepLR", step_size=1, by_epoch=False, on="update")],
                               wrapper)
    with pytest.raises(ValueError, match="needs an iteration-based scheduler"):
        build_param_schedulers([dict(type="StepLR", step_size=1, on="updates")], wrapper)
    optimizer = torch.optim.SGD(make_model().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="needs an OptimWrapper"):
        build_param_schedulers([dict(type="StepLR", step_size=1, by_epoch=False, on="updates")],
                               optimizer)


@pytest.mark.parametrize("max_norm", [0.2, 100.0])
def test_grad_norm_before_and_after_clipping_are_the_measured_norms(max_norm):
    x, y = make_data(1)[0]
    model, reference = make_model(), make_model()
    F.mse_loss(reference(x), y).backward()
    grads = torch.cat([p.grad.flatten() for p in reference.parameters()])
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.0),
                           clip_grad=dict(max_norm=max_norm))
    F.mse_loss(model(x), y).backward()
    wrapper.step()
    after = torch.cat([p.grad.flatten() for p in model.parameters()]).norm()
    assert wrapper.grad_norm == pytest.approx(grads.norm().item(), rel=1e-6)
    assert wrapper.grad_norm_clipped == pytest.approx(after.item(), rel=1e-5)
    assert wrapper.grad_norm_clipped == pytest.approx(min(grads.norm().item(), max_norm),
                                                      rel=1e-5)


@pytest.mark.parametrize("clip,match", [
    (dict(max_norm=0), r"clip_grad.max_norm=0 must be > 0"),
    (dict(max_norm=-1.0), r"clip_grad.max_norm=-1.0 must be > 0"),
    (dict(max_norm="big"), r"clip_grad.max_norm='big' \(str\) is not a number; expected a number"),
    (dict(clip_value=0), r"clip_grad.clip_value=0 must be > 0"),
])
def test_clip_thresholds_must_be_positive_numbers(clip, match):
    with pytest.raises((ValueError, TypeError), match=match):
        _wrapper(make_model(), clip_grad=clip)


def test_on_updates_does_not_tick_when_the_fp16_loss_scaler_skips():
    from accelwrap.optim import AmpOptimWrapper

    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    wrapper = AmpOptimWrapper(loss_scale=1024.0, dtype="float16", optimizer=optimizer)
    schedulers = build_param_schedulers(
        [dict(type="StepLR", step_size=1, gamma=0.5, by_epoch=False, on="updates")], wrapper)
    _train(wrapper, model, make_data(4), scale={1: float("inf")}, schedulers=schedulers)
    assert wrapper.skipped_steps == 1 and wrapper.nonfinite_skips == 0  # the scaler's own skip
    assert wrapper.get_lr()["lr"] == [pytest.approx(0.1 * 0.5 ** 3)]  # 3 of 4 updates applied
