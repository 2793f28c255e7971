"""``on: updates`` schedulers count updates: default ``end``, epoch conversion, ``step()``.

Expected values come from MMEngine's schedulers stepped once per applied update, from the
closed form of the cosine, or from the iteration-based schedule (a step function decays
for the first update applied after its milestone iteration).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from accelwrap.optim import OptimWrapper
from accelwrap.optim.scheduler import build_param_schedulers, step_param_schedulers
from tests.optim.scheduler.simulate import stepped_lrs

BASE = 1.0


def run(cfg: dict, iters: int, k: int, **build: int) -> list[tuple[int, float]]:
    """Train ``iters`` iterations with accumulation ``k``: (iteration, lr) of every update."""
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=BASE), accumulative_counts=k)
    wrapper.initialize_count_status(model, 0, iters)
    scheds = build_param_schedulers([dict(cfg, on="updates")], wrapper, **build)
    used = []
    for iteration in range(1, iters + 1):
        lr = wrapper.param_groups[0]["lr"]
        with wrapper.optim_context(model):
            loss = model(torch.ones(3, 2)).sum()
        wrapper.update_params(loss)
        if wrapper.last_update_applied:
            used.append((iteration, lr))
        step_param_schedulers(scheds, "iter")
    return used


def mmengine_lrs(name: str, updates: int, **kwargs: object) -> list[float]:
    """The lrs of MMEngine's scheduler (iteration-based) stepped once per update."""
    import mmengine.optim.scheduler as mm

    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=BASE)
    return stepped_lrs(opt, getattr(mm, name)(opt, by_epoch=False, **kwargs), updates)


@pytest.mark.parametrize("iters, k", [(40, 4), (10, 4), (16, 3), (7, 1), (9, 2)])
def test_default_end_counts_updates(iters, k):
    updates = math.ceil(iters / k)
    used = run(dict(type="CosineAnnealingLR", by_epoch=False, eta_min=0.0), iters, k,
               max_iters=iters)
    assert len(used) == updates
    expected = mmengine_lrs("CosineAnnealingLR", updates, begin=0, end=updates, eta_min=0.0)
    assert [lr for _, lr in used] == pytest.approx(expected, abs=1e-12)
    # the last update is at the cosine's last value of a T_max=updates schedule
    last = 0.5 * BASE * (1 + math.cos(math.pi * (updates - 1) / updates))
    assert used[-1][1] == pytest.approx(last, abs=1e-12)


@pytest.mark.parametrize("epochs, length, k", [(2, 8, 4), (3, 5, 2), (2, 8, 3), (2, 7, 1)])
def test_convert_to_iter_based_counts_updates(epochs, length, k):
    iters = epochs * length
    updates = math.ceil(iters / k)
    cfg = dict(type="CosineAnnealingLR", by_epoch=True, convert_to_iter_based=True, eta_min=0.0)
    used = run(cfg, iters, k, epoch_length=length, max_epochs=epochs)
    assert len(used) == updates
    expected = mmengine_lrs("CosineAnnealingLR", updates, begin=0, end=updates, eta_min=0.0)
    assert [lr for _, lr in used] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("length, k", [(8, 3), (8, 4), (5, 2), (7, 3)])
def test_converted_milestones_decay_the_first_update_after_them(length, k):
    epochs, gamma = 3, 0.5
    cfg = dict(type="MultiStepLR", by_epoch=True, convert_to_iter_based=True,
               milestones=[1, 2], gamma=gamma)
    used = run(cfg, epochs * length, k, epoch_length=length, max_epochs=epochs)
    for iteration, lr in used:  # iteration-based: iteration j (1-based) past m*length decays
        decays = sum(iteration > m * length for m in (1, 2))
        assert lr == pytest.approx(BASE * gamma ** decays), (iteration, lr)


def test_unknown_accumulation_is_a_clear_error():
    class Plain(OptimWrapper):
        pass

    wrapper = Plain(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1))
    del wrapper._accumulative_counts
    with pytest.raises(ValueError, match=r"param_scheduler\[0\] CosineAnnealingLR.*"
                                         r"_accumulative_counts"):
        build_param_schedulers([dict(type="CosineAnnealingLR", by_epoch=False, on="updates")],
                               wrapper, max_iters=10)


def test_explicit_end_is_kept_in_updates():
    wrapper = OptimWrapper(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1),
                           accumulative_counts=4)
    (sched,) = build_param_schedulers(
        [dict(type="LinearLR", by_epoch=False, end=3, on="updates")], wrapper, max_iters=40)
    assert (sched.begin, sched.end) == (0, 3)


@pytest.mark.parametrize("k", [1, 3, 4])
def test_scheduler_step_honours_on_updates(k):
    """A loop calling ``scheduler.step()`` itself ticks once per update, as the helper does."""
    iters, gamma = 12, 0.5
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=BASE), accumulative_counts=k)
    (sched,) = build_param_schedulers(
        [dict(type="StepLR", step_size=1, gamma=gamma, by_epoch=False, end=100, on="updates")],
        wrapper)
    for _ in range(iters):
        with wrapper.optim_context(model):
            loss = model(torch.ones(3, 2)).sum()
        wrapper.update_params(loss)
        sched.step()
    assert wrapper.param_groups[0]["lr"] == pytest.approx(BASE * gamma ** (iters // k))


def test_converted_step_size_decays_the_first_update_after_each_epoch():
    length, k, epochs, gamma = 8, 4, 3, 0.5
    cfg = dict(type="StepLR", by_epoch=True, convert_to_iter_based=True, step_size=1,
               gamma=gamma)
    used = run(cfg, epochs * length, k, epoch_length=length, max_epochs=epochs)
    assert [lr for _, lr in used] == pytest.approx(
        [BASE * gamma ** ((iteration - 1) // length) for iteration, _ in used])


def test_converted_step_size_that_is_not_whole_updates_warns():
    wrapper = OptimWrapper(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1),
                           accumulative_counts=4)
    with pytest.warns(UserWarning, match=r"param_scheduler\[0\] StepLR: step_size=1 epochs is "
                                         r"6 iterations, not a multiple of accumulative_counts=4"):
        (sched,) = build_param_schedulers(
            [dict(type="StepLR", convert_to_iter_based=True, step_size=1, on="updates")],
            wrapper, epoch_length=6, max_epochs=2)
    assert (sched.end, sched.step_size) == (3, 2)
