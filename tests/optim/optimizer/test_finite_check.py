"""The fused NaN/inf gradient test (``finite_check.GradFlag``) and the wrapper paths using it.

``nonfinite.check='grad'`` without norm clipping tests every gradient element in one fused
pass; the gradients must come out bit for bit unchanged, a NaN/inf anywhere in any of them
must be caught, and a flag read as set must not leak into the next update.
"""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from accelwrap.errors import NonFiniteError
from accelwrap.optim import OptimWrapper
from accelwrap.optim.optimizer.finite_check import GradFlag, read_flag
from tests.optim.optimizer.wrapper_cases import make_data, make_model

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]  # gpu_check.sh: CUDA
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
BITS = {torch.float32: torch.int32, torch.float64: torch.int64,
        torch.bfloat16: torch.int16, torch.float16: torch.int16}


def _special(dtype: torch.dtype) -> torch.Tensor:
    info = torch.finfo(dtype)
    values = [0.0, -0.0, 1.0, -3.5, info.max, -info.max, info.tiny, info.tiny / 4, info.eps]
    return torch.tensor(values, dtype=dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_clean_gradients_are_left_bit_for_bit_unchanged(dtype, device):
    grads = [t.to(device) for t in (_special(dtype), torch.randn(5, 3).to(dtype),
                                    torch.zeros(0, dtype=dtype))]
    before = [g.clone() for g in grads]
    flag = GradFlag().test(grads)
    assert flag is not None and float(flag) == 0.0
    for got, want in zip(grads, before):
        assert torch.equal(got.view(BITS[dtype]), want.view(BITS[dtype]))  # subnormals, -0 too


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("where", [(0, 0), (1, 14), (2, 6)])
def test_one_bad_element_anywhere_sets_the_flag(dtype, bad, where, device):
    grads = [t.to(device) for t in (torch.randn(4).to(dtype), torch.randn(3, 5).to(dtype),
                                    _special(dtype))]
    tensor, index = where
    grads[tensor].view(-1)[index] = bad
    flags = GradFlag()
    flag = flags.test(grads)
    assert float(flag) == read_flag(flag) == 1.0  # the CPU flag's host view sees the kernel
    flags.reset(flag)
    grads[tensor].view(-1)[index] = 0.0
    assert read_flag(flags.test(grads)) == float(flag) == 0.0


def test_what_it_cannot_take_is_left_to_the_norm():
    flags = GradFlag()
    assert flags.test([]) is None

    class Sub(torch.Tensor):
        pass

    assert flags.test([torch.ones(2).as_subclass(Sub)]) is None  # e.g. FSDP2's DTensor
    assert flags.test([torch.ones(2).to_sparse()]) is None  # the kernel refuses sparse
    assert float(flags.test([torch.ones(2)])) == 0.0  # a refused call leaves no stale flag


def _wrapper(model, **kwargs) -> OptimWrapper:
    return OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), **kwargs)


def _update(wrapper, model, batch, poison: bool = False) -> None:
    """One update whose last weight gradient gets a single NaN element when ``poison``."""
    x, y = batch
    F.mse_loss(model(x), y).backward()
    if poison:
        next(reversed(list(model.parameters()))).grad.view(-1)[-1] = float("nan")
    wrapper.step()
    wrapper.zero_grad()


def test_skip_catches_a_single_nan_element_and_the_next_update_is_clean(caplog):
    data = make_data(3)
    model, reference = make_model(), make_model()
    wrapper = _wrapper(model, nonfinite=dict(policy="skip", check="grad"))
    plain = _wrapper(reference)
    with caplog.at_level(logging.WARNING, logger="accelwrap"):
        for i, batch in enumerate(data):
            _update(wrapper, model, batch, poison=i == 1)
            if i != 1:
                _update(plain, reference, batch)
    assert wrapper.nonfinite_skips == 1 and wrapper.grad_norm is None  # no norm measured
    assert [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()] == [
        "update 2 (iteration 0) skipped: non-finite gradient norm (a gradient holds NaN/inf); "
        "gradients zeroed on every rank (nonfinite.policy='skip'; 1 skipped so far)"]
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)  # no step, no momentum change


def test_warn_reports_once_at_the_update_on_the_cpu_and_stop_names_the_update(caplog):
    data = make_data(3)
    model, clean = make_model(), make_model()
    wrapper = _wrapper(model, nonfinite=dict(policy="warn"))
    with caplog.at_level(logging.WARNING, logger="accelwrap"):
        _update(wrapper, model, data[0])
        _update(wrapper, model, data[1], poison=True)  # applied: the parameters turn NaN
        assert len(caplog.records) == 1  # a CPU flag is read at once (it costs nothing)
        with torch.no_grad():  # start clean again: the flag must not leak into update 3
            for p, q in zip(model.parameters(), clean.parameters()):
                p.copy_(q)
        wrapper.optimizer.state.clear()
        _update(wrapper, model, data[2])
        wrapper.progress_state()
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and warned[0].startswith("update 2 (iteration 0) was applied with "
                                                     "a non-finite gradient norm"), warned
    model = make_model()
    wrapper = _wrapper(model, nonfinite=dict(policy="stop"))
    _update(wrapper, model, data[0])
    with pytest.raises(NonFiniteError, match=r"update 2 .*policy='stop'"):
        _update(wrapper, model, data[1], poison=True)
