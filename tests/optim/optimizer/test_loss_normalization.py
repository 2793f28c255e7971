"""``loss_normalization``: 'tokens' equals one large batch; 'mean' still equals MMEngine."""

from __future__ import annotations

import copy
from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper as MMOptimWrapper

from accelwrap.optim import AmpOptimWrapper, OptimWrapper, build_optim_wrapper, make_accelerator
from tests.optim.optimizer import token_cases as tc
from tests.optim.optimizer.wrapper_cases import make_data
from tests.optim.optimizer.wrapper_cases import make_model as make_mse_model

ITERS, COUNTS = 8, 3  # windows of 3, 3 and a remainder of 2


def _train_tokens(wrapper, model, batches, as_tensor: bool, autocast: bool = True) -> None:
    wrapper.initialize_count_status(model, 0, len(batches))
    for batch in batches:
        with wrapper.optim_context(model) if autocast else nullcontext():
            total, count = tc.loss_sum(model, batch)
        wrapper.update_params(total, num_tokens=count if as_tensor else int(count))


def _reference_params(batches, max_norm=None, accumulate=COUNTS):
    model = tc.make_token_model()
    optimizer = tc.make_optimizer(model)
    groups = [[batches[i] for i in w] for w in tc.windows(len(batches), accumulate)]
    tc.reference(model, optimizer, groups, max_norm)
    return [p.detach() for p in model.parameters()]


@pytest.mark.parametrize("as_tensor", [False, True])
@pytest.mark.parametrize("max_norm", [None, 0.05])
@pytest.mark.parametrize("accumulate", [COUNTS, 1])  # 1: divided at the backward instead
# skip: without clipping the window's factor is applied by the fused NaN/inf test's pass
@pytest.mark.parametrize("nonfinite", [None, dict(policy="skip", check="grad")])
def test_tokens_mode_equals_one_large_batch_per_window(as_tensor, max_norm, accumulate,
                                                       nonfinite):
    batches = tc.token_batches(ITERS, seed=3)
    counts = [int(b[2].sum()) for b in batches]
    assert len(set(counts)) > 3  # really uneven micro-batches
    model = tc.make_token_model()
    clip = None if max_norm is None else dict(max_norm=max_norm)
    wrapper = OptimWrapper(tc.make_optimizer(model), accumulative_counts=accumulate,
                           clip_grad=clip, loss_normalization="tokens", nonfinite=nonfinite)
    _train_tokens(wrapper, model, batches, as_tensor)
    assert wrapper.nonfinite_skips == 0
    for got, want in zip(model.parameters(), _reference_params(batches, max_norm, accumulate)):
        torch.testing.assert_close(got.detach(), want, rtol=0, atol=1e-6)
    if max_norm is not None:  # the clipping really happened (else the test proves little)
        assert wrapper.grad_norm > max_norm
        assert wrapper.grad_norm_clipped == pytest.approx(max_norm, rel=1e-4)


def test_mean_mode_differs_from_one_large_batch_on_uneven_batches():
    """The reason for 'tokens': MMEngine's divisor is not the large-batch mean here."""
    batches = tc.token_batches(ITERS, seed=3)
    model = tc.make_token_model()
    wrapper = OptimWrapper(tc.make_optimizer(model), accumulative_counts=COUNTS)
    wrapper.initialize_count_status(model, 0, ITERS)
    for batch in batches:
        total, count = tc.loss_sum(model, batch)
        wrapper.update_params(total / count, num_tokens=count)  # ignored in 'mean' mode
    diff = max((a.detach() - b).abs().max().item()
               for a, b in zip(model.parameters(), _reference_params(batches)))
    assert diff > 1e-3


class SlowAmpOptimWrapper(AmpOptimWrapper):
    fast_path = False  # every call through Accelerate's own methods


@pytest.mark.parametrize("mode", ["plain", "accelerator", "accelerate calls"])
def test_tokens_mode_with_an_fp16_loss_scaler_unscales_before_the_factor(mode):
    """The loss is scaled by 1024 (fp16 GradScaler; with an accelerator, Accelerate's); the
    forward stays fp32 so the numbers can be compared exactly: only the scaling (a power of
    two) differs from the reference."""
    batches = tc.token_batches(ITERS, seed=5)
    model = tc.make_token_model()
    optimizer, kwargs, cls = tc.make_optimizer(model), {}, AmpOptimWrapper
    if mode != "plain":
        accelerator = make_accelerator(dict(type="AmpOptimWrapper", dtype="float16",
                                            loss_scale=1024.0), cpu=True)
        optimizer, kwargs = accelerator.prepare(optimizer), dict(accelerator=accelerator)
        cls = SlowAmpOptimWrapper if mode == "accelerate calls" else AmpOptimWrapper
    wrapper = cls(loss_scale=1024.0, dtype="float16", optimizer=optimizer,
                  accumulative_counts=COUNTS, loss_normalization="tokens", **kwargs)
    assert wrapper._direct == (mode != "accelerate calls")
    assert wrapper.loss_scaler.is_enabled()
    _train_tokens(wrapper, model, batches, as_tensor=True, autocast=False)
    assert wrapper.skipped_steps == 0 and wrapper.loss_scaler.get_scale() == 1024.0
    for got, ref in zip(model.parameters(), _reference_params(batches)):
        torch.testing.assert_close(got.detach(), ref, rtol=0, atol=1e-6)


def test_tokens_mode_from_config_and_a_window_without_tokens_keeps_zero_gradients():
    model = tc.make_token_model()
    wrapper = build_optim_wrapper(model, dict(optimizer=dict(type="SGD", lr=0.1),
                                              loss_normalization="tokens"))
    assert wrapper.loss_normalization == "tokens"
    before = [p.detach().clone() for p in model.parameters()]
    x, y, mask = tc.token_batches(1, seed=0)[0]
    total, count = tc.loss_sum(model, (x, y, torch.zeros_like(mask)))
    wrapper.update_params(total, num_tokens=count)
    for got, want in zip(model.parameters(), before):
        assert torch.equal(got.detach(), want)  # zero gradients, no NaN


def test_tokens_mode_without_num_tokens_names_the_setting():
    model = tc.make_token_model()
    wrapper = OptimWrapper(tc.make_optimizer(model), loss_normalization="tokens")
    total, _ = tc.loss_sum(model, tc.token_batches(1, seed=0)[0])
    with pytest.raises(ValueError, match="loss_normalization='tokens' needs num_tokens"):
        wrapper.update_params(total)
    with pytest.raises(TypeError, match="num_tokens must be a non-negative int"):
        wrapper.update_params(total, num_tokens=2.5)


def test_an_unknown_loss_normalization_lists_the_choices():
    with pytest.raises(ValueError, match=r"loss_normalization='token'.*'mean'.*'tokens'"):
        OptimWrapper(tc.make_optimizer(tc.make_token_model()), loss_normalization="token")


@pytest.mark.parametrize("clip", [None, dict(max_norm=0.5)])
def test_mean_mode_equals_mmengine_including_the_remainder_window(clip):
    data = make_data(ITERS)
    ours, theirs = make_mse_model(), make_mse_model()
    wrapper = OptimWrapper(torch.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9),
                           accumulative_counts=COUNTS, clip_grad=copy.deepcopy(clip),
                           loss_normalization="mean")
    reference = MMOptimWrapper(torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9),
                               accumulative_counts=COUNTS, clip_grad=copy.deepcopy(clip))
    for w, model in ((wrapper, ours), (reference, theirs)):
        w.initialize_count_status(model, 0, ITERS)
        for x, y in data:
            with w.optim_context(model):
                loss = F.mse_loss(model(x), y)
            w.update_params(loss)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)
