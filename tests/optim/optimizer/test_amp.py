"""AmpOptimWrapper on CPU: bf16 and fp16 really run, overflow skips, errors say what to pass.

References: MMEngine's AmpOptimWrapper for bf16 (its CUDA-only guard lifted; on CPU its
CUDA GradScaler disables itself, so it autocasts without scaling, as bf16 should), and a
hand-written ``torch.autocast`` + ``GradScaler('cpu')`` loop for fp16.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator

from accelwrap.optim import AmpOptimWrapper, ApexOptimWrapper, OptimWrapperDict, make_accelerator
from tests.optim.optimizer.wrapper_cases import (
    assert_same,
    make_data,
    make_model,
    make_optimizer,
    params_of,
    train,
)

MODES = ("plain", "accelerator")


def amp_wrapper(mode: str, dtype: str, model, **kwargs) -> AmpOptimWrapper:
    optimizer = make_optimizer("sgd", model)
    if mode == "plain":
        return AmpOptimWrapper(optimizer=optimizer, dtype=dtype, **kwargs)
    cfg = dict(type="AmpOptimWrapper", dtype=dtype, loss_scale=kwargs.get("loss_scale", "dynamic"))
    accelerator = make_accelerator(cfg, cpu=True)
    return AmpOptimWrapper(optimizer=accelerator.prepare(optimizer), dtype=dtype,
                           accelerator=accelerator, **kwargs)


def mmengine_amp(monkeypatch):
    """MMEngine's AmpOptimWrapper module, usable on CPU.

    Its constructor refuses a machine without CUDA, and its ``optim_context`` imports
    ``mmengine.runner.amp``, whose package needs OpenCV (absent from mmengine-lite); the
    ``amp`` module itself is loaded from its file instead.
    """
    from mmengine.optim.optimizer import amp_optimizer_wrapper as mm_amp
    monkeypatch.setattr(mm_amp, "is_cuda_available", lambda: True)
    if "mmengine.runner.amp" not in sys.modules:
        path = mm_amp.__file__.replace("optim/optimizer/amp_optimizer_wrapper.py", "runner/amp.py")
        spec = importlib.util.spec_from_file_location("mmengine.runner.amp", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        monkeypatch.setitem(sys.modules, "mmengine.runner.amp", module)
    return mm_amp


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("counts,clip", [(1, None), (3, dict(max_norm=0.5))])
def test_bf16_matches_mmengine(mode, counts, clip, monkeypatch):
    mm_amp = mmengine_amp(monkeypatch)
    mm_model = make_model()
    mm = mm_amp.AmpOptimWrapper(optimizer=make_optimizer("sgd", mm_model), dtype="bfloat16",
                                accumulative_counts=counts, clip_grad=dict(clip) if clip else None)
    want = train(mm, mm_model, make_data(9), 9)
    model = make_model()
    wrapper = amp_wrapper(mode, "bfloat16", model, accumulative_counts=counts, clip_grad=clip)
    assert_same(train(wrapper, model, make_data(9), 9), want)
    assert not wrapper.loss_scaler.is_enabled()


def fp16_reference(data, clip: float | None) -> tuple[list[torch.Tensor], float]:
    """The textbook torch AMP loop on CPU; returns the parameters and the final scale."""
    model = make_model()
    optimizer = make_optimizer("sgd", model)
    scaler = torch.amp.GradScaler("cpu")
    for x, y in data:
        with torch.autocast("cpu", dtype=torch.float16):
            loss = F.mse_loss(model(x), y)
        scaler.scale(loss).backward()
        if clip is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
    return params_of(model), scaler.get_scale()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("clip", [None, 0.5])
def test_fp16_matches_torch_amp_loop(mode, clip):
    data = make_data(6)
    model = make_model()
    wrapper = amp_wrapper(mode, "float16", model,
                          clip_grad=None if clip is None else dict(max_norm=clip))
    want, scale = fp16_reference(data, clip)
    assert_same(train(wrapper, model, data), want)
    assert wrapper.loss_scaler.get_scale() == scale < 65536.0  # some steps overflowed
    assert 2.0 ** wrapper.skipped_steps == 65536.0 / scale  # each skip halved the scale


@pytest.mark.parametrize("mode", MODES)
def test_fp16_overflow_skips_the_step(mode):
    model = make_model()
    wrapper = amp_wrapper(mode, "float16", model, loss_scale=dict(init_scale=256.0))
    x, y = make_data(1)[0]
    before = params_of(model)
    scale = wrapper.loss_scaler.get_scale()
    with wrapper.optim_context(model):
        loss = F.mse_loss(model(x), y) * float("inf")
    wrapper.update_params(loss)
    assert wrapper.step_was_skipped and wrapper.skipped_steps == 1
    assert wrapper.loss_scaler.get_scale() == scale / 2
    assert_same(params_of(model), before)
    train(wrapper, model, [(x, y)])
    assert not wrapper.step_was_skipped and wrapper.skipped_steps == 1
    assert not torch.equal(params_of(model)[0], before[0])


def test_static_loss_scale_is_kept_after_overflow():
    model = make_model()
    wrapper = AmpOptimWrapper(optimizer=make_optimizer("sgd", model), dtype="float16",
                              loss_scale=512.0)
    x, y = make_data(1)[0]
    wrapper.update_params(F.mse_loss(model(x), y) * float("inf"))
    assert wrapper.step_was_skipped and wrapper.loss_scaler.get_scale() == 512.0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype,want", [("bfloat16", torch.bfloat16), ("float16", torch.float16)])
def test_autocast_really_runs_low_precision(mode, dtype, want):
    model = make_model()
    wrapper = amp_wrapper(mode, dtype, model)
    x = torch.randn(3, 4)
    with wrapper.optim_context(model):
        inside = model(x)
    assert inside.dtype == want and model(x).dtype == torch.float32


def test_default_dtype_is_bf16_on_cpu():
    wrapper = AmpOptimWrapper(optimizer=make_optimizer("sgd", make_model()))
    assert wrapper.cast_dtype == torch.bfloat16


def test_state_dict_carries_the_loss_scaler():
    model = make_model()
    wrapper = AmpOptimWrapper(optimizer=make_optimizer("sgd", model), dtype="float16")
    x, y = make_data(1)[0]
    wrapper.update_params(F.mse_loss(model(x), y) * float("inf"))
    state = wrapper.state_dict()
    assert state["loss_scaler"]["scale"] == 32768.0
    fresh = AmpOptimWrapper(optimizer=make_optimizer("sgd", model), dtype="float16")
    fresh.load_state_dict(state)
    assert fresh.loss_scaler.get_scale() == 32768.0 and "loss_scaler" in state
    assert "loss_scaler" in AmpOptimWrapper(optimizer=make_optimizer("sgd", model)).state_dict()


class SlowAmpOptimWrapper(AmpOptimWrapper):
    """Routes every call through Accelerate (no torch shortcuts)."""

    fast_path = False


@pytest.mark.parametrize("cls", [AmpOptimWrapper, SlowAmpOptimWrapper])
def test_two_fp16_wrappers_unscale_only_their_own_optimizer(cls):
    """Clipping gen must not unscale disc's gradients in the middle of its window."""
    accelerator = make_accelerator(mixed_precision="fp16", cpu=True)
    gen_model, disc_model = make_model(0), make_model(1)
    wrappers = OptimWrapperDict(
        gen=cls(optimizer=make_optimizer("sgd", gen_model), clip_grad=dict(max_norm=0.1),
                accelerator=accelerator),
        disc=cls(optimizer=make_optimizer("sgd", disc_model), accumulative_counts=2,
                             clip_grad=dict(max_norm=0.1), accelerator=accelerator))
    x, y = make_data(1)[0]
    with wrappers["disc"].optim_context(disc_model):
        wrappers["disc"].update_params(F.mse_loss(disc_model(x), y))
    disc_grads = [p.grad.clone() for p in disc_model.parameters()]
    with wrappers["gen"].optim_context(gen_model):
        wrappers["gen"].update_params(F.mse_loss(gen_model(x), y))
    assert_same([p.grad for p in disc_model.parameters()], disc_grads)


def test_dtype_typo():
    with pytest.raises(ValueError, match=r"dtype='bfloat61'.*did you mean 'bfloat16'"):
        AmpOptimWrapper(optimizer=make_optimizer("sgd", make_model()), dtype="bfloat61")
    with pytest.raises(ValueError, match=r"torch.float32 cannot be autocast"):
        AmpOptimWrapper(optimizer=make_optimizer("sgd", make_model()), dtype=torch.float32)
    with pytest.raises(TypeError, match=r"loss_scale must be 'dynamic'"):
        AmpOptimWrapper(optimizer=make_optimizer("sgd", make_model()), loss_scale="static")


def test_mixed_precision_mismatch_says_what_to_pass():
    accelerator = Accelerator(cpu=True)
    with pytest.raises(ValueError, match=r"Accelerator\(mixed_precision='bf16'\).*mixed_precision="
                                         r"'no'.*make_accelerator"):
        AmpOptimWrapper(optimizer=make_optimizer("sgd", make_model()), dtype="bfloat16",
                        accelerator=accelerator)


def test_make_accelerator_follows_the_wrapper_config():
    cfg = dict(type="AmpOptimWrapper", dtype="float16", loss_scale=dict(init_scale=256.0))
    with pytest.raises(ValueError, match=r"mixed_precision='bf16' contradicts.*pass mixed_precision"
                                         r"='fp16'"):
        make_accelerator(cfg, cpu=True, mixed_precision="bf16")
    accelerator = make_accelerator(cfg, cpu=True)
    assert accelerator.mixed_precision == "fp16"
    assert accelerator.scaler.get_scale() == 256.0
    wrapper = AmpOptimWrapper(optimizer=make_optimizer("sgd", make_model()),
                              accelerator=accelerator)
    assert wrapper.cast_dtype == torch.float16 and wrapper.loss_scaler is accelerator.scaler


def test_apex_missing_is_explained():
    with pytest.raises(ImportError, match=r"NVIDIA apex.*CUDA.*Use AmpOptimWrapper"):
        ApexOptimWrapper(optimizer=make_optimizer("sgd", make_model()))


def test_apex_state_dict_keeps_the_base_settings_of_a_multi_group_optimizer(monkeypatch):
    # apex needs CUDA; a stand-in with apex.amp's state functions checks only the wrapper's
    # bookkeeping: the same base_param_settings round trip as OptimWrapper's.
    fake_amp = type(sys)("apex.amp")
    fake_amp.state_dict = lambda: {"loss_scaler0": {"loss_scale": 128.0}}
    fake_amp.load_state_dict = lambda state: None
    fake_apex = type(sys)("apex")
    fake_apex.amp = fake_amp
    monkeypatch.setitem(sys.modules, "apex", fake_apex)
    monkeypatch.setitem(sys.modules, "apex.amp", fake_amp)
    wrapper = ApexOptimWrapper(optimizer=make_optimizer("adamw", make_model()))
    state = wrapper.state_dict()
    assert state["apex_amp"] == {"loss_scaler0": {"loss_scale": 128.0}}
    assert state["base_param_settings"]["lr"] == 0.05
    state["base_param_settings"] = {**state["base_param_settings"], "lr": 0.5}
    wrapper.load_state_dict(state)
    assert wrapper.get_lr()["base_lr"] == [0.5]
    assert wrapper._pending_amp_state == {"loss_scaler0": {"loss_scale": 128.0}}


@pytest.mark.parametrize("mixed_precision, scaled", [("fp16", True), ("bf16", False)])
def test_plain_cpu_accelerator_gets_the_wrappers_loss_scaler_for_fp16(mixed_precision, scaled):
    accelerator = Accelerator(cpu=True, mixed_precision=mixed_precision)
    assert accelerator.scaler is None  # what Accelerate leaves out on CPU
    wrapper = AmpOptimWrapper(optimizer=make_optimizer("sgd", make_model()), loss_scale=512.0,
                              accelerator=accelerator)
    if scaled:
        assert wrapper.loss_scaler is accelerator.scaler and accelerator.scaler.get_scale() == 512.0
    else:
        assert accelerator.scaler is None and not wrapper.loss_scaler.is_enabled()
