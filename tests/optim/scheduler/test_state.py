"""State: save mid-run, build fresh, load, continue -> the uninterrupted trajectory.

Also: state dicts are plain data (``torch.load(weights_only=True)``), an edited schedule
takes effect on resume, and ``last_step`` resumes without a state dict.
"""

from __future__ import annotations

import io
import math

import pytest
import torch

from accelwrap.optim.scheduler import CosineAnnealingLR, LinearLR, MultiStepLR
from accelwrap.registry import PARAM_SCHEDULERS
from tests.optim.scheduler.simulate import assert_rows_close, build_aw, make_target, run
from tests.optim.scheduler.test_parity import COMPOSITIONS, FAMILY_CASES, split_name


def roundtrip(state: dict) -> dict:
    """Through torch.save / torch.load(weights_only=True), as Accelerate does."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def class_cfg(name: str) -> dict:
    family, suffix = split_name(name)
    cfg = dict(type=name, **FAMILY_CASES[family][-1])
    if suffix == "ParamScheduler":
        cfg["param_name"] = "lr" if family == "OneCycle" else "weight_decay"
    return cfg


@pytest.mark.parametrize("wrapped", [False, True], ids=["optimizer", "wrapper"])
@pytest.mark.parametrize("cfgs", [[class_cfg(n)] for n in PARAM_SCHEDULERS.keys()]
                         + list(COMPOSITIONS.values()),
                         ids=list(PARAM_SCHEDULERS.keys()) + list(COMPOSITIONS))
def test_resume_reproduces_the_uninterrupted_run(cfgs, wrapped):
    for stop in (2, 3):
        _, target = make_target("aw", "adamw", 2, wrapped)
        expected = run(build_aw(cfgs, target), target)

        _, target = make_target("aw", "adamw", 2, wrapped)
        schedulers = build_aw(cfgs, target)
        first = run(schedulers, target, epochs=stop)
        saved_opt = roundtrip(target.state_dict())
        saved = [roundtrip(s.state_dict()) for s in schedulers]

        _, target = make_target("aw", "adamw", 2, wrapped)
        fresh = build_aw(cfgs, target)
        target.load_state_dict(saved_opt)
        for scheduler, state in zip(fresh, saved):
            scheduler.load_state_dict(state)
        assert_rows_close(expected, first[:-1] + run(fresh, target, start=stop), rtol=1e-13)


def test_state_dict_holds_plain_progress_only():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    state = MultiStepLR(opt, milestones=[3], by_epoch=False).state_dict()
    assert "milestones" not in state and "optimizer" not in state
    assert roundtrip(state) == state


def lone_lrs(sched, opt, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        sched.step()
    return out


def test_edited_schedule_takes_effect_on_resume():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = CosineAnnealingLR(opt, T_max=10, by_epoch=False)
    lone_lrs(sched, opt, 5)
    saved_opt, saved = roundtrip(opt.state_dict()), roundtrip(sched.state_dict())
    # Resume with a longer cosine: the value follows the edited curve from the same base.
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = CosineAnnealingLR(opt, T_max=20, by_epoch=False)
    opt.load_state_dict(saved_opt)
    sched.load_state_dict(saved)
    got = lone_lrs(sched, opt, 6)[1:]
    for t, value in zip(range(6, 11), got):
        assert math.isclose(value, (1 + math.cos(math.pi * t / 20)) / 2, rel_tol=1e-12)


def test_edited_milestones_take_effect_on_resume():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = MultiStepLR(opt, milestones=[3, 6], gamma=0.5, by_epoch=False)
    lone_lrs(sched, opt, 4)
    saved_opt, saved = roundtrip(opt.state_dict()), roundtrip(sched.state_dict())
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = MultiStepLR(opt, milestones=[3, 8], gamma=0.5, by_epoch=False)
    opt.load_state_dict(saved_opt)
    sched.load_state_dict(saved)
    assert lone_lrs(sched, opt, 7)[1:] == [0.5, 0.5, 0.5, 0.25, 0.25, 0.25]  # t = 5..10


def test_last_step_resumes_without_state_dict():
    params = [torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD(params, lr=1.0)
    sched = LinearLR(opt, start_factor=0.2, end=11, by_epoch=False)
    reference = lone_lrs(sched, opt, 11)
    opt = torch.optim.SGD(params, lr=1.0)
    opt.param_groups[0].update(initial_lr=1.0, lr=reference[4])
    sched = LinearLR(opt, start_factor=0.2, end=11, by_epoch=False, last_step=4)
    assert math.isclose(opt.param_groups[0]["lr"], reference[5], rel_tol=1e-12)


def test_load_state_dict_errors_name_the_problem():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = LinearLR(opt, by_epoch=False)
    with pytest.raises(ValueError, match=r"missing keys \['_anchor'"):
        sched.load_state_dict({k: v for k, v in sched.state_dict().items() if k != "_anchor"})
    two = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))]},
                           {"params": [torch.nn.Parameter(torch.zeros(1))]}], lr=0.1)
    with pytest.raises(ValueError, match="saved for 1 param groups, this optimizer has 2"):
        LinearLR(two, by_epoch=False).load_state_dict(sched.state_dict())
