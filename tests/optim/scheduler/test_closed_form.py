"""Independent checks: closed forms written here, and PyTorch's own OneCycleLR."""

from __future__ import annotations

import math

import pytest
import torch

from accelwrap.optim.scheduler import (
    CosineAnnealingLR,
    CosineRestartLR,
    ExponentialLR,
    LinearLR,
    MultiStepLR,
    OneCycleLR,
    PolyLR,
    StepLR,
)

BASE = 0.2


def values(scheduler_cls, steps: int, **kwargs) -> list[float]:
    """lr at steps 0..steps-1 of a lone iteration-based scheduler."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE)
    sched = scheduler_cls(opt, by_epoch=False, **kwargs)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        sched.step()
    return out


def close(actual: list[float], expected: list[float]) -> None:
    for t, (a, e) in enumerate(zip(actual, expected)):
        assert math.isclose(a, e, rel_tol=1e-12, abs_tol=1e-15), (t, a, e)


def test_cosine_is_half_a_cosine():
    T, eta_min = 12, 0.01
    expected = [eta_min + (BASE - eta_min) * (1 + math.cos(math.pi * t / T)) / 2
                for t in range(T + 1)]
    close(values(CosineAnnealingLR, T + 1, T_max=T, eta_min=eta_min, end=T + 1), expected)


def test_cosine_eta_min_ratio_and_held_after_end():
    got = values(CosineAnnealingLR, 15, eta_min_ratio=0.1, end=10)
    expected = [BASE * 0.1 + BASE * 0.9 * (1 + math.cos(math.pi * t / 10)) / 2 for t in range(10)]
    close(got[:10], expected)
    close(got[10:], [expected[-1]] * 5)


def test_linear_is_a_straight_line():
    end, s, e = 9, 0.1, 0.7
    expected = [BASE * (s + (e - s) * t / (end - 1)) for t in range(end)] + [BASE * e] * 3
    close(values(LinearLR, end + 3, start_factor=s, end_factor=e, end=end), expected)


def test_poly_is_polynomial():
    end, p, m = 11, 2.0, 0.001
    expected = [m + (BASE - m) * (1 - t / (end - 1)) ** p for t in range(end)]
    close(values(PolyLR, end, eta_min=m, power=p, end=end), expected)


def test_step_multistep_exponential():
    close(values(StepLR, 10, step_size=3, gamma=0.5), [BASE * 0.5 ** (t // 3) for t in range(10)])
    close(values(MultiStepLR, 10, milestones=[2, 7], gamma=0.1),
          [BASE * 0.1 ** ((t >= 2) + (t >= 7)) for t in range(10)])
    close(values(ExponentialLR, 10, gamma=0.9), [BASE * 0.9 ** t for t in range(10)])


def test_cosine_restart_starts_each_period_from_weighted_base():
    got = values(CosineRestartLR, 12, periods=[4, 6], restart_weights=[1.0, 0.5], eta_min=0.0)
    expected = [BASE * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(4)]
    expected += [BASE * 0.5 * (1 + math.cos(math.pi * t / 6)) / 2 for t in range(6)]
    close(got[:10], expected)
    close(got[10:], [expected[-1]] * 2)


@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize("strategy", ["cos", "linear"])
def test_onecycle_matches_torch(strategy, three_phase):
    total = 20
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE)
    ref = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=0.5, total_steps=total, pct_start=0.35, anneal_strategy=strategy,
        three_phase=three_phase, cycle_momentum=False)
    expected = []
    for _ in range(total):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    got = values(OneCycleLR, total, eta_max=0.5, total_steps=total, pct_start=0.35,
                 anneal_strategy=strategy, three_phase=three_phase, end=total)
    close(got, expected)
