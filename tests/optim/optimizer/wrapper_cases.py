"""Shared fixtures for the optimizer-wrapper tests: a tiny model, data, optimizers and a loop.

The same loop drives accelwrap's wrappers and MMEngine's, so a test only has to build
both and compare the results.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def make_model(seed: int = 0) -> nn.Module:
    """A small MLP with a fixed initialisation."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def make_data(n: int, seed: int = 1, batch: int = 6) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` fixed (input, target) batches."""
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 4, generator=gen) * 3, torch.randn(batch, 2, generator=gen))
            for _ in range(n)]


def make_optimizer(kind: str, model: nn.Module) -> torch.optim.Optimizer:
    """``'sgd'``: one group with momentum; ``'adamw'``: two groups with different lr."""
    if kind == "sgd":
        return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    if kind == "adamw":
        return torch.optim.AdamW([{"params": model[0].parameters()},
                                  {"params": model[2].parameters(), "lr": 0.01}],
                                 lr=0.05, betas=(0.8, 0.99))
    raise ValueError(kind)


def train(wrapper, model: nn.Module, data, max_counts: int | None = None) -> list[torch.Tensor]:
    """Run the MMEngine-style loop (optim_context + update_params); return the parameters."""
    if max_counts is not None:
        wrapper.initialize_count_status(model, 0, max_counts)
    for x, y in data:
        with wrapper.optim_context(model):
            loss = F.mse_loss(model(x), y)
        wrapper.update_params(loss)
    return params_of(model)


def params_of(model: nn.Module) -> list[torch.Tensor]:
    """Detached copies of the parameters."""
    return [p.detach().clone() for p in model.parameters()]


def assert_same(got: list[torch.Tensor], want: list[torch.Tensor]) -> None:
    """Exact equality of two parameter lists (same operations in the same order)."""
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert torch.equal(a, b), (a - b).abs().max()


def mm_clip(clip_grad: dict | None) -> dict | None:
    """MMEngine's spelling of a clip setting (it needs ``type='value'`` and mutates the dict)."""
    if clip_grad is None:
        return None
    out = copy.deepcopy(clip_grad)
    if "clip_value" in out:
        out["type"] = "value"
    return out
