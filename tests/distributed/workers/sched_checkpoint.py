"""Worker: schedulers checkpointed with accelerator.save_state / load_state, then resumed.

Trains a few epochs with warm-up + cosine (lr), a momentum and a weight-decay schedule, an
epoch-based MultiStep and a ReduceOnPlateau, all prepared with ``accelwrap.optim.prepare``
(``step_scheduler_with_optimizer=False``). It saves mid-run, keeps going to the end, then
builds everything afresh with a new Accelerator, loads the checkpoint and finishes again.
Reports both trajectories (lr, betas[0], weight decay of every group at every iteration).
Run by tests/distributed/test_scheduler_checkpoint.py under torchrun (1 and 2 processes).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from accelwrap.optim import OptimWrapper, make_accelerator, prepare
from accelwrap.optim.scheduler import build_param_schedulers, step_param_schedulers
from tests.distributed.launch import finish_worker, write_result

EPOCHS, EPOCH_LENGTH, SAVE_AFTER = 4, 5, 2
METRICS = [1.0, 1.1, 1.2, 0.5]
CFG = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=False, end=4),
    dict(type="CosineAnnealingLR", by_epoch=True, begin=1, eta_min_ratio=0.01,
         convert_to_iter_based=True),
    dict(type="MultiStepLR", milestones=[3], gamma=0.5),
    dict(type="CosineAnnealingMomentum", by_epoch=False, eta_min=0.8),
    dict(type="LinearParamScheduler", param_name="weight_decay", start_factor=0.5, by_epoch=False),
    dict(type="ReduceOnPlateauLR", monitor="loss", patience=0, factor=0.5),
]


class BaseGroup:
    """The OptimWrapper's extra ``base_param_settings`` group: scheduled too (as in MMEngine),
    but not part of the optimizer state that ``save_state`` writes, so checkpoint it here."""

    def __init__(self, wrapper: OptimWrapper) -> None:
        self.wrapper = wrapper

    def state_dict(self) -> dict:
        return {k: v for k, v in self.wrapper.base_param_settings.items() if k != "params"}

    def load_state_dict(self, state: dict) -> None:
        self.wrapper.base_param_settings.update(state)


def build(accelerator):
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    optimizer = torch.optim.AdamW([{"params": [model.weight]},
                                   {"params": [model.bias], "lr": 0.05, "betas": (0.8, 0.99)}],
                                  lr=0.1, weight_decay=0.01)
    wrapper = OptimWrapper(optimizer)
    schedulers = build_param_schedulers(CFG, wrapper, epoch_length=EPOCH_LENGTH,
                                        max_epochs=EPOCHS, max_iters=EPOCHS * EPOCH_LENGTH)
    model, wrapper, *schedulers = prepare(accelerator, model, wrapper, *schedulers)
    accelerator.register_for_checkpointing(BaseGroup(wrapper))
    return model, wrapper, schedulers


def train(accelerator, model, wrapper, schedulers, start: int, save_dir: str | None) -> list:
    rows = []
    for epoch in range(start, EPOCHS):
        for _ in range(EPOCH_LENGTH):
            loss = model(torch.randn(3, 4)).pow(2).mean()
            wrapper.update_params(loss)
            rows.append([[g["lr"], g["betas"][0], g["weight_decay"]] for g in wrapper.param_groups])
            step_param_schedulers(schedulers, "iter")
        step_param_schedulers(schedulers, "epoch")
        step_param_schedulers(schedulers, "val", {"loss": METRICS[epoch]})
        if save_dir is not None and epoch + 1 == SAVE_AFTER:
            accelerator.save_state(save_dir)
    return rows


def main(save_dir: str) -> None:
    accelerator = make_accelerator(cpu=True)
    model, wrapper, schedulers = build(accelerator)
    full = train(accelerator, model, wrapper, schedulers, 0, save_dir)
    accelerator.wait_for_everyone()
    fresh = make_accelerator(cpu=True)
    model, wrapper, schedulers = build(fresh)
    fresh.load_state(save_dir)
    resumed = train(fresh, model, wrapper, schedulers, SAVE_AFTER, None)
    write_result({"rank": accelerator.process_index, "world": accelerator.num_processes,
                  "full": full, "resumed": resumed,
                  "files": sorted(p.name for p in Path(save_dir).iterdir())})


if __name__ == "__main__":
    main(sys.argv[1])
    finish_worker()
