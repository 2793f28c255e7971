"""Runner behaviour: metrics, MMEngine's scheduler stepping, accumulation, the model contract."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from accelwrap.errors import LaunchError
from accelwrap.registry import RUNNERS
from accelwrap.runner import Runner
from tests.runner.helpers import config, records, run


def test_default_config_reaches_its_stated_accuracy(tmp_path):
    runner = run("digits_sgd_multistep", tmp_path)
    val = records(tmp_path, "val")
    assert len(val) == 10 and val[-1]["accuracy"] >= 0.96
    assert (tmp_path / "config.yaml").is_file()
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "epoch_10"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["epoch_10", "epoch_9",
                                                                            "latest"]
    assert runner.optim_wrapper.get_lr()["lr"] == pytest.approx([0.001])


def _mmengine_lrs(schedulers, optimizer, epochs, epoch_length, val_losses=None):
    """The lr of every iteration when MMEngine's ParamSchedulerHook drives ``schedulers``."""
    lrs = []
    for epoch in range(epochs):
        for _ in range(epoch_length):
            lrs.append(optimizer.param_groups[0]["lr"])
            for s in schedulers:
                if not s.by_epoch:
                    s.step()
        for s in schedulers:
            if s.by_epoch:
                s.step()
        for s in schedulers:
            if val_losses is not None and getattr(s, "need_val_args", False):
                s.step({"loss": val_losses[epoch]})
    return lrs


def test_lr_of_every_iteration_matches_mmengine(tmp_path):
    from mmengine.optim import LinearLR, MultiStepLR

    runner = run("digits_sgd_multistep", tmp_path, "train_cfg.max_epochs=3",
                 "train_dataloader.batch_size=128", "param_scheduler.0.end=15",
                 "param_scheduler.1.milestones=[1,2]")
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    scheds = [LinearLR(opt, start_factor=0.1, by_epoch=False, begin=0, end=15),
              MultiStepLR(opt, milestones=[1, 2], gamma=0.1, by_epoch=True, begin=0, end=3)]
    expected = _mmengine_lrs(scheds, opt, 3, runner.epoch_length)
    assert [r["lr"] for r in records(tmp_path, "train")] == pytest.approx(expected, rel=1e-12)


def test_reduce_on_plateau_steps_after_validation_like_mmengine(tmp_path):
    from mmengine.optim import ReduceOnPlateauLR

    runner = run("digits_plateau", tmp_path, "train_cfg.max_epochs=6",
                 "train_dataloader.batch_size=256", "param_scheduler.0.patience=0",
                 "param_scheduler.0.factor=0.5", "optim_wrapper.optimizer.lr=0.5")
    losses = [r["loss"] for r in records(tmp_path, "val")]
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.5, momentum=0.9)
    sched = ReduceOnPlateauLR(opt, monitor="loss", rule="less", factor=0.5, patience=0,
                              min_value=0.001, by_epoch=True, begin=0, end=6)
    expected = _mmengine_lrs([sched], opt, 6, runner.epoch_length, losses)
    logged = [r["lr"] for r in records(tmp_path, "train")]
    assert logged == pytest.approx(expected, rel=1e-12)
    assert min(logged) < 0.5  # the rule fired (the val loss rose after epoch 5)


def test_last_short_accumulation_window_still_updates(tmp_path):
    # 10 iterations with accumulative_counts=4: updates after 4, 8 and the short window 9-10.
    runner = run("digits_sgd_multistep", tmp_path, "train_cfg={by_epoch: false, max_iters: 10}",
                 "+optim_wrapper.accumulative_counts=4",
                 "optim_wrapper.optimizer={type: Adam, lr: 0.001}",
                 "param_scheduler=null", "default_hooks.checkpoint={interval: 5, by_epoch: false}")
    state = runner.optim_wrapper.optimizer.state_dict()["state"]
    assert {int(s["step"]) for s in state.values()} == {3}
    assert runner.optim_wrapper.inner_count == 10


class TwoLosses(nn.Module):
    """forward returns two losses and a non-loss metric."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(64, 10)

    def forward(self, inputs, labels):
        logits = self.net(inputs)
        return {"loss_ce": nn.functional.cross_entropy(logits, labels),
                "loss_l2": 1e-3 * logits.pow(2).mean(),
                "top1": (logits.argmax(1) == labels).float().mean()}


def test_dict_of_losses_is_summed_and_each_part_logged(tmp_path):
    Runner(model=TwoLosses(), work_dir=str(tmp_path),
           train_dataloader=dict(dataset=dict(type="DigitsDataset"), batch_size=256),
           val_dataloader=dict(dataset=dict(type="DigitsDataset", split="val"), batch_size=256),
           optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.1)),
           train_cfg=dict(by_epoch=True, max_epochs=1),
           default_hooks=dict(logger=dict(progress_bar=False, trackers=[]))).train()
    train = records(tmp_path, "train")
    assert all(r["loss"] == pytest.approx(r["loss_ce"] + r["loss_l2"], rel=1e-6) for r in train)
    assert all("top1" in r for r in train)
    # No val_step: validation reports the mean loss.
    assert list(records(tmp_path, "val")[0]) == ["mode", "epoch", "iter", "loss"]


def test_gan_train_step_with_optim_wrapper_dict_logs_each_member(tmp_path):
    runner = run("gan_ring2d", tmp_path, "train_cfg.max_epochs=2", "train_cfg.val_interval=1",
                 "param_scheduler.generator.1.begin=1")
    first = records(tmp_path, "train")[0]
    assert {"loss_d", "loss_g", "generator.lr", "discriminator.lr",
            "generator.momentum"} <= set(first)
    assert (first["generator.lr"] == pytest.approx(1e-4)
            and first["discriminator.lr"] == pytest.approx(1e-3))
    assert {"near_mode", "mode_dist"} <= set(records(tmp_path, "val")[-1])
    assert sorted(runner.param_schedulers) == ["discriminator", "generator"]


def test_paramwise_groups_log_every_group_when_asked(tmp_path):
    run("digits_adamw_cosine", tmp_path, "train_cfg.max_epochs=2",
        "+default_hooks.logger.per_group=true")
    first = records(tmp_path, "train")[0]
    assert {"base_lr", "lr.0", "lr.1", "momentum.0", "grad_norm"} <= set(first)


def test_multi_process_launch_without_a_process_group_fails_loudly(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(LaunchError, match="WORLD_SIZE=2.*cpu_2proc.yaml"):
        run("digits_sgd_multistep", tmp_path, "+accelerator={cpu: false}")
    assert not list(tmp_path.rglob("scalars.jsonl"))


def test_runners_registry_builds_the_runner_from_a_config(tmp_path):
    """A project's ``RUNNERS.build(cfg)`` (MMEngine's entry point) gets accelwrap's Runner."""
    cfg = config("digits_sgd_multistep", tmp_path, "train_cfg.max_epochs=1")
    runner = RUNNERS.build(OmegaConf.to_container(cfg))
    assert type(runner) is Runner and runner.schedule.max_epochs == 1


def test_a_null_seed_draws_a_fresh_seed_each_run_as_mmengine_does(tmp_path):
    seeds = [Runner.from_cfg(config("digits_sgd_multistep", tmp_path / str(i),
                                    "+randomness.seed=null")).seed for i in range(2)]
    assert all(isinstance(s, int) for s in seeds) and seeds[0] != seeds[1]
