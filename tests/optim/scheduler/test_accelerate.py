"""Schedulers with Accelerate in one process: prepare accepts them, multi-stepping is refused."""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator
from accelerate.scheduler import AcceleratedScheduler
from torch import nn

from accelwrap.optim import OptimWrapper, make_accelerator, prepare
from accelwrap.optim.scheduler import CosineAnnealingLR, MultiStepLR


def parts():
    model = nn.Linear(2, 1)
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    return model, wrapper, CosineAnnealingLR(wrapper, T_max=4, by_epoch=False)


def test_accelerate_prepare_accepts_and_forwards_once():
    accelerator = Accelerator(cpu=True, step_scheduler_with_optimizer=False)
    opt = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=1.0)
    sched = MultiStepLR(opt, milestones=[1], by_epoch=False)
    opt, wrapped = accelerator.prepare(opt, sched)
    assert isinstance(wrapped, AcceleratedScheduler) and wrapped.scheduler is sched
    wrapped.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1) and wrapped.get_last_lr() == [0.1]


def test_multi_stepping_setup_is_refused():
    accelerator = Accelerator(cpu=True)  # step_scheduler_with_optimizer=True by default
    model, wrapper, sched = parts()
    with pytest.raises(ValueError, match="step_scheduler_with_optimizer=True, so Accelerate would "
                                         "step every scheduler num_processes times"):
        prepare(accelerator, model, wrapper, sched)


def test_save_state_and_load_state_restore_the_schedule(tmp_path):
    accelerator = make_accelerator(cpu=True)
    model, wrapper, sched = prepare(accelerator, *parts())
    sched.step()
    accelerator.save_state(tmp_path)
    expected = []
    for _ in range(3):
        sched.step()
        expected.append(wrapper.param_groups[0]["lr"])

    fresh = make_accelerator(cpu=True)
    model, wrapper, sched = prepare(fresh, *parts())
    fresh.load_state(tmp_path)  # reads the scheduler with torch.load(weights_only=True)
    got = []
    for _ in range(3):
        sched.step()
        got.append(wrapper.param_groups[0]["lr"])
    assert got == expected and sched.last_step == 4
