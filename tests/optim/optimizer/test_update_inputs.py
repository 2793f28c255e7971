"""What an update is given and when it reports: token counts, the loss, the warn policy.

A token count is a non-negative whole number whatever its form (int, NumPy integer, CPU
tensor); anything else is refused naming it (a count tensor on an accelerator is not read:
that would synchronise the device). The summed loss of ``'tokens'`` mode is one number. On
the CPU ``nonfinite.policy='warn'`` warns at the update itself (reading its flag costs
nothing there), so the last update of a script is reported too. A partial
``load_progress_state`` keeps what it does not name.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from accelwrap.optim import OptimWrapper
from accelwrap.optim.optimizer.nonfinite import UpdateGuard


def _wrapper(counts: int = 1, **kwargs) -> tuple[OptimWrapper, torch.nn.Linear]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    return OptimWrapper(torch.optim.SGD(model.parameters(), lr=1.0),
                        accumulative_counts=counts, **kwargs), model


def _summed_loss(model: torch.nn.Linear) -> torch.Tensor:
    return model(torch.ones(4, 3)).sum()


@pytest.mark.parametrize("counts", [1, 2], ids=["one micro-batch", "accumulated"])
@pytest.mark.parametrize("bad, error, shown", [
    (torch.tensor(-4), ValueError, "num_tokens=-4 is not a count"),
    (torch.tensor(2.5), ValueError, "num_tokens=2.5 is not a count"),
    (torch.tensor(float("nan")), ValueError, "num_tokens=nan is not a count"),
    (-4, ValueError, "num_tokens=-4 is not a count"),
    (2.5, TypeError, "got float (2.5)"),
    (torch.tensor(True), TypeError, "got a torch.bool tensor"),
    ("4", TypeError, "got str ('4')"),
], ids=["negative tensor", "fractional tensor", "nan tensor", "negative int", "float",
        "bool tensor", "str"])
def test_a_bad_token_count_is_refused_naming_it(counts, bad, error, shown):
    wrapper, model = _wrapper(counts, loss_normalization="tokens")
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(error, match="num_tokens") as info:
        wrapper.update_params(_summed_loss(model), num_tokens=bad)
    assert shown in str(info.value)
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))  # nothing applied


@pytest.mark.parametrize("count", [np.int64(4), torch.tensor(4), torch.tensor(4.0), 4],
                         ids=["numpy int", "int tensor", "whole float tensor", "int"])
def test_every_form_of_a_count_gives_the_mean_over_its_tokens(count):
    wrapper, model = _wrapper(loss_normalization="tokens")
    torch.manual_seed(0)
    reference = torch.nn.Linear(3, 1)
    expected = reference(torch.ones(4, 3)).sum() / 4
    expected.backward()
    wrapper.update_params(_summed_loss(model), num_tokens=count)
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.detach(), q.detach() - q.grad, rtol=0, atol=1e-7)


def test_a_tokens_mode_loss_must_be_one_number():
    wrapper, model = _wrapper(loss_normalization="tokens")
    with pytest.raises(ValueError, match=r"summed loss as one number, got .* shape \(4,\)"):
        wrapper.update_params(model(torch.ones(4, 3)).squeeze(1), num_tokens=4)


def test_warn_on_the_cpu_reports_the_update_itself(caplog):
    wrapper, model = _wrapper(nonfinite=dict(policy="warn"))
    with caplog.at_level(logging.WARNING, logger="accelwrap"):
        wrapper.update_params(_summed_loss(model) * float("nan"))  # the last update: no next
    assert "update 1 (iteration 1) was applied with a non-finite gradient norm" in caplog.text
    assert all(torch.isnan(p).all() for p in model.parameters())  # warn applies it


def test_a_partial_progress_state_keeps_the_spike_window():
    guard = UpdateGuard(None, dict(window=3, sigmas=3.0))
    guard.load_progress_state({"updates": 4, "spike_losses": [0.1, 0.2, 0.3]})
    guard.load_progress_state({"updates": 10})
    assert guard.progress_state() == {"updates": 10, "nonfinite_skips": 0, "spike_skips": 0,
                                      "spike_losses": [0.1, 0.2, 0.3]}
