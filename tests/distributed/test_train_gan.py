"""The GAN (custom ``train_step``, ``OptimWrapperDict``, sub-modules prepared one by one).

One real 2-process run of a shortened ``configs/gan_ring2d.yaml`` (accelerate launch,
``launch_configs/cpu_2proc.yaml``) with per-member accumulation, checked against a
1-process run with the same global batch and against MMEngine's schedulers; and the
discriminator's accumulation window checked against its closed form in one process.
"""

from __future__ import annotations

import copy
import importlib.util
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from accelwrap.optim import OptimWrapper, OptimWrapperDict
from accelwrap.runner.models import ToyGAN
from tests.distributed.launch import REPO, accelerate_launch, read_results
from tests.runner.helpers import records, run

WORKER = Path(__file__).parent / "workers" / "train_gan.py"
EPOCHS, EPOCH_LENGTH = 3, 8
# 512 points, 32 per rank and iteration: 8 iterations per epoch on each of 2 ranks.
SHORT = ["train_dataloader.dataset.num_samples=512", "val_dataloader.dataset.num_samples=256",
         f"train_cfg.max_epochs={EPOCHS}", "train_cfg.val_interval=1",
         "param_scheduler.generator.0.end=10", "param_scheduler.generator.1.begin=1",
         "param_scheduler.discriminator.0.step_size=1",
         "+optim_wrapper.discriminator.accumulative_counts=2"]
HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


def _mmengine_lrs() -> dict[str, list[float]]:
    """Each member's lr at every iteration when MMEngine's runner steps SHORT's schedulers."""
    from mmengine.optim import CosineAnnealingLR, LinearLR, StepLR

    from tests.runner.test_runner import _mmengine_lrs as drive

    def optimizer():
        return torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3, betas=(0.5, 0.999))

    gen, disc = optimizer(), optimizer()
    gen_scheds = [LinearLR(gen, start_factor=0.1, by_epoch=False, begin=0, end=10),
                  CosineAnnealingLR(gen, eta_min=1e-4, by_epoch=True, begin=1, end=EPOCHS)]
    disc_scheds = [StepLR(disc, step_size=1, gamma=0.5, by_epoch=True, begin=0, end=EPOCHS)]
    return {"generator.lr": drive(gen_scheds, gen, EPOCHS, EPOCH_LENGTH),
            "discriminator.lr": drive(disc_scheds, disc, EPOCHS, EPOCH_LENGTH)}


@pytest.mark.distributed
def test_gan_in_two_processes(tmp_path):
    work = tmp_path / "ddp"
    trackers = "[tensorboard]" if HAS_TENSORBOARD else "null"
    args = [str(work), *SHORT, "train_dataloader.batch_size=32",
            "default_hooks.logger.progress_bar=false", f"default_hooks.logger.trackers={trackers}"]
    accelerate_launch(tmp_path / "results", WORKER, REPO / "launch_configs" / "cpu_2proc.yaml",
                      args)
    ranks = read_results(tmp_path / "results")
    assert [r["rank"] for r in ranks] == [0, 1] and ranks[0]["pid"] != ranks[1]["pid"]
    for rank in ranks:
        assert (rank["num_processes"] == 2
                and rank["distributed_type"] == "DistributedType.MULTI_CPU")
        assert rank["ddp"] == {"generator": "DistributedDataParallel",
                               "discriminator": "DistributedDataParallel"}
        assert rank["epoch_length"] == EPOCH_LENGTH
        # One all-reduce per update: the discriminator (accumulative_counts=2) syncs only
        # at the end of its windows, and not during the generator's step.
        assert rank["optimizer_steps"] == {"generator": 24, "discriminator": 12}
        assert rank["reductions"] == {"generator": 24, "discriminator": 12}
    assert ranks[0]["params"] == ranks[1]["params"]

    # The same global batch in one process: the lr columns are those of MMEngine's runner.
    single = tmp_path / "single"
    run("gan_ring2d", single, *SHORT, "train_dataloader.batch_size=64")
    expected = _mmengine_lrs()
    two, one = ({column: [r[column] for r in records(w, "train")] for column in [*expected, "iter"]}
                for w in (work, single))
    assert two == one
    assert one["iter"] == list(range(1, EPOCHS * EPOCH_LENGTH + 1))
    for column, values in expected.items():
        assert one[column] == pytest.approx(values, rel=1e-12)
    assert len(records(work, "val")) == EPOCHS

    if HAS_TENSORBOARD:
        _only_rank_zero_wrote_events(work, ranks[0]["pid"])


def _only_rank_zero_wrote_events(work: Path, pid: int) -> None:
    from tests.runner.test_tensorboard import event_scalars, jsonl_as_events

    files = list(work.rglob("events.out.tfevents.*"))
    writers = {int(re.match(r"events\.out\.tfevents\.[\d.]+\.[^.]+\.(\d+)\.", f.name).group(1))
               for f in files}
    assert files and writers == {pid}
    events = event_scalars(work)
    assert events == jsonl_as_events(work)
    assert {"train/generator.lr", "train/discriminator.lr", "train/loss_d",
            "val/near_mode"} <= set(events)


def test_discriminator_accumulates_across_the_generator_step():
    """D (accumulative_counts=2) updates once with the mean of two iterations' gradients.

    The generator's step back-propagates through the discriminator; none of that may
    land in the discriminator's accumulated gradients.
    """
    torch.manual_seed(0)
    model = ToyGAN(hidden_dim=16)
    reference = copy.deepcopy(model)
    disc = OptimWrapper(torch.optim.SGD(model.discriminator.parameters(), lr=1.0),
                        accumulative_counts=2)
    gen = OptimWrapper(torch.optim.SGD(model.generator.parameters(), lr=0.0))
    wrappers = OptimWrapperDict(discriminator=disc, generator=gen)
    wrappers.initialize_count_status(model, 0, 2)
    batches = [torch.randn(8, 2) for _ in range(2)]
    torch.manual_seed(1)
    for real in batches:
        model.train_step({"inputs": real}, wrappers)

    torch.manual_seed(1)
    params = list(reference.discriminator.parameters())
    total = [torch.zeros_like(p) for p in params]
    for real in batches:
        fake = reference.sample(8, real.device).detach()
        reference.sample(8, real.device)  # the generator step's draw
        logits = reference.discriminator(torch.cat([real, fake])).squeeze(1)
        loss = F.binary_cross_entropy_with_logits(logits,
                                                  torch.cat([torch.ones(8), torch.zeros(8)]))
        total = [t + g for t, g in zip(total, torch.autograd.grad(loss, params))]
    for got, param, grad in zip(model.discriminator.parameters(), params, total):
        torch.testing.assert_close(got, param - grad / 2)
    assert all(p.grad is None for p in model.discriminator.parameters())
