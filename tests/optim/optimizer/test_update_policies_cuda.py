"""Token-normalised accumulation and the non-finite policy on every device at hand: the CPU
always, the CUDA GPU when there is one (scripts/gpu_check.sh runs this file there), each
compared with a plain-torch reference written here.

The CUDA cases are the ones CI cannot run: the window's token count kept on the GPU, an fp16
CUDA GradScaler unscaling token-normalised gradients, and an inf loss under bf16 autocast
(which has no loss scaler to skip it) caught by ``nonfinite: {policy: skip}``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from accelwrap.optim import AmpOptimWrapper, OptimWrapper

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
ROWS = (3, 7, 5)  # rows ("tokens") of the three micro-batches of one window


def _model(device: str) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).to(device)


def _window(device: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(n, 16, generator=gen).to(device),
             torch.randn(n, 4, generator=gen).to(device)) for n in ROWS]


def _summed(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The micro-batch's loss summed over its rows (squared error summed per row)."""
    return (model(x).float() - y).pow(2).sum()


def _big_batch_step(device: str, lr: float) -> list[torch.Tensor]:
    """One SGD step on all rows of the window at once: the mean over rows."""
    model = _model(device)
    xs, ys = zip(*_window(device))
    loss = _summed(model, torch.cat(xs), torch.cat(ys)) / sum(ROWS)
    loss.backward()
    with torch.no_grad():
        return [p - lr * p.grad for p in model.parameters()]


def _accumulate(wrapper: OptimWrapper, model: nn.Module, device: str) -> None:
    for x, y in _window(device):
        with wrapper.optim_context(model):
            loss = _summed(model, x, y)
        wrapper.update_params(loss, num_tokens=torch.tensor(len(x), device=device))


@pytest.mark.parametrize("device", DEVICES)
def test_token_normalised_window_equals_one_big_batch(device):
    model = _model(device)
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1), accumulative_counts=3,
                           loss_normalization="tokens")
    _accumulate(wrapper, model, device)
    assert wrapper.last_update_applied
    for ours, ref in zip(model.parameters(), _big_batch_step(device, 0.1)):
        torch.testing.assert_close(ours, ref, atol=1e-6 if device == "cpu" else 1e-5, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_amp_token_normalised_window_is_the_fp32_update_within_precision(device, dtype):
    """Low precision moves the update by a few percent (bf16 ~8%); a missed unscale (x256)
    or token division (x15) would be far outside the 20% allowed."""
    if device == "cpu" and dtype == "float16" and not hasattr(torch.amp, "GradScaler"):
        pytest.skip("this torch has no CPU GradScaler")
    model = _model(device)
    start = [p.detach().clone() for p in model.parameters()]
    wrapper = AmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                              dtype=dtype, loss_scale=dict(init_scale=256.0),
                              accumulative_counts=3, loss_normalization="tokens")
    _accumulate(wrapper, model, device)
    assert wrapper.last_update_applied and not wrapper.step_was_skipped
    for ours, ref, p0 in zip(model.parameters(), _big_batch_step(device, 0.1), start):
        ours_delta, ref_delta = (ours.detach() - p0).double(), (ref - p0).double()
        error = float((ours_delta - ref_delta).norm() / ref_delta.norm())
        assert error < 0.2, (dtype, error)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [None, "bfloat16"])
def test_nonfinite_skip_drops_an_inf_update_then_applies_the_next(device, dtype):
    model = _model(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    policy = dict(policy="skip", check="grad")
    wrapper = (OptimWrapper(optimizer, nonfinite=policy) if dtype is None else
               AmpOptimWrapper(optimizer=optimizer, dtype=dtype, nonfinite=policy))
    before = [p.detach().clone() for p in model.parameters()]
    x, y = _window(device)[0]
    with wrapper.optim_context(model):
        loss = _summed(model, x, y) * float("inf")
    wrapper.update_params(loss)
    assert not wrapper.last_update_applied and wrapper.nonfinite_skips == 1
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with wrapper.optim_context(model):
        loss = _summed(model, x, y)
    wrapper.update_params(loss)
    assert wrapper.last_update_applied and wrapper.nonfinite_skips == 1
    params = list(model.parameters())
    assert all(torch.isfinite(p).all() for p in params)
    assert any(not torch.equal(a, b) for a, b in zip(before, params))
