"""configs/seq_gru_tokens.yaml through the Runner: it learns, skips its poisoned micro-batches,
ticks its schedulers on applied updates, and its token-normalised accumulated updates equal
one large batch's steps (computed here with plain torch)."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from accelwrap.errors import NonFiniteError
from accelwrap.registry import DATASETS, MODELS
from accelwrap.runner import Runner
from tests.runner.helpers import config, records


def _train(tmp_path, *overrides: str, **merge) -> tuple[Runner, dict]:
    cfg = OmegaConf.merge(config("seq_gru_tokens", tmp_path, *overrides), merge)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner, OmegaConf.to_container(cfg, resolve=True)


def test_seq_config_learns_skips_poisoned_updates_and_schedules_on_updates(tmp_path):
    runner, cfg = _train(tmp_path, "train_cfg.max_iters=160", "train_cfg.val_interval=80",
                         "default_hooks.checkpoint.interval=80", "default_hooks.logger.interval=1",
                         "train_dataloader.dataset.poison_every=200")
    train, val = records(tmp_path, "train"), records(tmp_path, "val")
    per_token = [r["loss"] / r["num_tokens"] for r in train]
    finite = [v for v in per_token if math.isfinite(v)]
    assert len(train) == 160 and len(finite) < len(per_token)  # poisoned batches were met
    # per-token cross-entropy starts at chance, log(vocab), and falls well below it
    first, last = sum(finite[:20]) / 20, sum(finite[-20:]) / 20
    chance = math.log(cfg["model"]["vocab_size"])
    assert first > 0.9 * chance and last < 0.7 * chance, (first, last, chance)
    assert len(val) == 2 and val[1]["token_accuracy"] > val[0]["token_accuracy"] \
        > 1 / cfg["model"]["vocab_size"]

    wrapper = runner.optim_wrapper
    skipped = wrapper.nonfinite_skips
    assert skipped >= 1 and all(torch.isfinite(p).all() for p in runner.model.parameters())
    # Every poisoned micro-batch took its window's update with it: each window whose four
    # micro-batches hold a non-finite loss was skipped, and no other.
    losses = [r["loss"] for r in train]
    poisoned_windows = sum(not all(math.isfinite(v) for v in losses[i:i + 4])
                           for i in range(0, 160, 4))
    assert skipped == poisoned_windows

    # on: updates: after `applied` updates the lr is the closed form of LinearLR (10 updates)
    # then CosineAnnealingLR over [10, end) updates -- not its value after 40 windows.
    applied = 160 // 4 - skipped
    cosine, base = cfg["param_scheduler"][1], cfg["optim_wrapper"]["optimizer"]["lr"]
    eta_min, begin, end = cosine["eta_min"], cosine["begin"], cosine["end"]
    expected = eta_min + (base - eta_min) * (1 + math.cos(math.pi * (applied - begin)
                                                          / (end - begin))) / 2
    assert wrapper.get_lr()["lr"][0] == pytest.approx(expected, rel=1e-6)


def _reference(cfg: dict, initial: dict, lr: float, windows: list[range],
               mean_of_means: bool = False) -> dict:
    """Plain SGD, one step per window of micro-batches (``batch_size`` sequences each, in
    order): on the mean loss over every valid token of the window, or (``mean_of_means``,
    MMEngine's accumulation) on the mean over micro-batches of each one's token mean."""
    model = MODELS.build(cfg["model"])
    model.load_state_dict(initial)
    data = DATASETS.build(cfg["train_dataloader"]["dataset"])
    size = cfg["train_dataloader"]["batch_size"]
    for window in windows:
        parts = []
        for b in window:
            batch = {key: torch.stack([data[i][key] for i in range(b * size, (b + 1) * size)])
                     for key in ("tokens", "mask", "targets")}
            losses, _ = model.token_losses(batch["tokens"], batch["targets"])
            parts.append(((losses * batch["mask"]).sum(), batch["mask"].sum()))
        if mean_of_means:
            loss = sum(total / count for total, count in parts) / len(parts)
        else:
            loss = sum(total for total, _ in parts) / sum(count for _, count in parts)
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for param in model.parameters():
                param -= lr * param.grad
    return model.state_dict()


def test_token_normalised_accumulation_equals_one_big_batch(tmp_path):
    """5 micro-batches of 8 sequences, accumulation 3: one full window, then a remainder of 2."""
    lr = 0.5
    overrides = ["train_cfg.max_iters=5", "train_cfg.val_interval=5",
                 "default_hooks.checkpoint.interval=5", "train_dataloader.shuffle=false",
                 "train_dataloader.dataset.num_samples=40",
                 "train_dataloader.dataset.poison_every=0",
                 "optim_wrapper.accumulative_counts=3", "optim_wrapper.clip_grad=null",
                 "optim_wrapper.optimizer.type=SGD", f"optim_wrapper.optimizer.lr={lr}",
                 "optim_wrapper.optimizer.weight_decay=0", "param_scheduler=null"]
    model_cfg = OmegaConf.to_container(config("seq_gru_tokens", tmp_path).model, resolve=True)
    torch.manual_seed(1)
    initial = MODELS.build(model_cfg).state_dict()
    torch.save(initial, tmp_path / "initial.pt")
    runner, cfg = _train(tmp_path, *overrides, load_from=str(tmp_path / "initial.pt"))
    ours = {k: v.detach() for k, v in runner.model.state_dict().items()}

    windows = [range(0, 3), range(3, 5)]
    expected = _reference(cfg, initial, lr, windows)
    assert ours.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(ours[name], value, atol=1e-6, rtol=0)

    # The micro-batches differ in token count, so MMEngine's mean of means is another
    # update: the comparison above tells the two apart.
    naive = _reference(cfg, initial, lr, windows, mean_of_means=True)
    assert max(float((naive[k] - expected[k]).abs().max()) for k in expected) > 1e-4


def test_policy_stop_names_the_iteration_and_the_last_good_checkpoint(tmp_path):
    # Sample 199 is the first poisoned one; shuffle off: it is in iteration 200 // 8 = 25, whose
    # window of 4 micro-batches ends at iteration 28 with update 7.
    with pytest.raises(NonFiniteError) as err:
        _train(tmp_path, "train_cfg.max_iters=160", "default_hooks.checkpoint.interval=8",
               "train_dataloader.dataset.poison_every=200", "train_dataloader.shuffle=false",
               "optim_wrapper.nonfinite.policy=stop")
    message = str(err.value)
    latest = (tmp_path / "checkpoints" / "latest").read_text().strip()
    assert latest == "iter_24" and "update 7 (iteration 28)" in message, message
    assert f"{tmp_path / 'checkpoints' / 'iter_24'}" in message
