"""The CUDA paths: fp16 AMP with torch's CUDA GradScaler, through an Accelerator too, and
bitsandbytes' 8-bit optimizers. Skipped with a reason on a machine without a CUDA GPU
(CI has none); they run on a GPU machine
(`python -m pytest tests/optim/optimizer/test_amp_cuda.py`).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from accelwrap.optim import AmpOptimWrapper, build_optim_wrapper, make_accelerator, prepare

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (CPU AMP is covered by test_amp.py)")


def _model_and_data(seed: int = 0
                    ) -> tuple[torch.nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 4)).cuda()
    data = [(torch.randn(8, 16, device="cuda"), torch.randn(8, 4, device="cuda")) for _ in range(6)]
    return model, data


def test_fp16_default_on_cuda_matches_a_torch_amp_loop():
    model, data = _model_and_data()
    wrapper = AmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    assert wrapper.cast_dtype == torch.float16 and wrapper.loss_scaler.is_enabled()
    ref_model, _ = _model_and_data()
    ref_opt = torch.optim.SGD(ref_model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cuda")
    for x, y in data:
        with wrapper.optim_context(model):
            loss = F.mse_loss(model(x).float(), y)
        wrapper.update_params(loss)
        with torch.autocast("cuda", dtype=torch.float16):
            ref_loss = F.mse_loss(ref_model(x).float(), y)
        scaler.scale(ref_loss).backward()
        scaler.step(ref_opt)
        scaler.update()
        ref_opt.zero_grad()
    for ours, ref in zip(model.parameters(), ref_model.parameters()):
        assert torch.equal(ours, ref)


def test_fp16_overflow_on_cuda_skips_and_halves_the_scale():
    model, data = _model_and_data()
    wrapper = AmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    before = [p.detach().clone() for p in model.parameters()]
    scale = wrapper.loss_scaler.get_scale()
    with wrapper.optim_context(model):
        loss = model(data[0][0]).float().sum() * float("inf")
    wrapper.update_params(loss)
    assert wrapper.step_was_skipped and wrapper.loss_scaler.get_scale() == scale / 2
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_fp16_through_an_accelerator_on_cuda():
    model, data = _model_and_data()
    cfg = dict(type="AmpOptimWrapper", dtype="float16", optimizer=dict(type="SGD", lr=0.1))
    accelerator = make_accelerator(cfg)
    assert accelerator.mixed_precision == "fp16" and accelerator.scaler is not None
    wrapper = build_optim_wrapper(model, cfg)
    model, wrapper = prepare(accelerator, model, wrapper)
    start = [p.detach().clone() for p in model.parameters()]
    for x, y in data:
        with wrapper.optim_context(model):
            loss = F.mse_loss(model(x).float(), y)
        wrapper.update_params(loss)
    assert wrapper.skipped_steps < len(data)
    assert any(not torch.equal(a, b) for a, b in zip(start, model.parameters()))


@pytest.mark.parametrize("name", ["AdamW8bit", "PagedAdamW8bit", "Lion8bit"])
def test_bitsandbytes_optimizers_build_and_step(name):
    pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed")
    model, data = _model_and_data()
    wrapper = build_optim_wrapper(model, dict(optimizer=dict(type=name, lr=1e-3)))
    start = [p.detach().clone() for p in model.parameters()]
    x, y = data[0]
    wrapper.update_params(F.mse_loss(model(x), y))
    assert type(wrapper.optimizer).__name__ == name
    assert any(not torch.equal(a, b) for a, b in zip(start, model.parameters()))
