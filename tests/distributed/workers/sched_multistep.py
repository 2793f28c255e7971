"""Worker: a scheduler prepared by plain ``accelerator.prepare`` with Accelerate's defaults.

With 2 processes, ``AcceleratedScheduler`` would step it twice per call; the scheduler
must refuse at the first step and leave the learning rate untouched. With
``step_scheduler_with_optimizer=False`` it steps once per call.

Usage: torchrun --nproc_per_node 2 sched_multistep.py {default|safe} [...]: each mode named
is one case (its own Accelerator, model and scheduler) in the same job; the result is keyed
by mode.
"""

import sys

import torch
from accelerate import Accelerator

from accelwrap.optim.scheduler import MultiStepLR
from tests.distributed.launch import finish_worker, write_result


def run_case(mode: str) -> dict:
    """``default``: Accelerate's stepping (once per process); ``safe``: once per call."""
    accelerator = Accelerator(cpu=True, step_scheduler_with_optimizer=mode == "default")
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = MultiStepLR(optimizer, milestones=[1, 2], gamma=0.5, by_epoch=False)
    model, optimizer, prepared = accelerator.prepare(model, optimizer, scheduler)
    error = None
    try:
        prepared.step()
    except RuntimeError as err:
        error = str(err)
    return {"world": accelerator.num_processes, "error": error,
            "lr": optimizer.param_groups[0]["lr"]}


write_result({mode: run_case(mode) for mode in sys.argv[1:]})
finish_worker()
