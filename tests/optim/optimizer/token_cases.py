"""Variable-length micro-batches and the one-large-batch reference for token normalisation.

Each micro-batch is ``(x, y, mask)``: ``B`` sequences of up to ``L`` tokens, ``mask``
marks the valid ones, and the number of valid tokens differs from micro-batch to
micro-batch. The reference trains on each accumulation window as ONE batch: the mean of
the per-token loss over every valid token of the window, one backward, one step. Shared
by the single-process tests and the 2-process worker.
"""

from __future__ import annotations

import torch
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def make_token_model(seed: int = 0) -> nn.Module:
    """A per-token MLP (4 -> 8 -> 1) with a fixed initialisation."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum and weight decay: any wrong scale shows in the parameters."""
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)


def token_batches(count: int, seed: int, lengths: tuple[int, ...] = (1, 7, 3, 12, 5, 2, 9)
                  ) -> list[Batch]:
    """``count`` micro-batches of 3 sequences (max 12 tokens) with uneven valid lengths."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for index in range(count):
        x = torch.randn(3, 12, 4, generator=gen)
        y = torch.randn(3, 12, 1, generator=gen)
        mask = torch.zeros(3, 12, dtype=torch.bool)
        for row in range(3):
            mask[row, :lengths[(index * 3 + row + seed) % len(lengths)]] = True
        out.append((x, y, mask))
    return out


def loss_sum(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The summed squared error over the valid tokens, and their number (a 0-d tensor)."""
    x, y, mask = batch
    per_token = ((model(x) - y) ** 2).squeeze(-1)
    return (per_token * mask).sum(), mask.sum()


def windows(count: int, accumulative_counts: int) -> list[range]:
    """The accumulation windows of ``count`` iterations (the last one may be short)."""
    return [range(start, min(start + accumulative_counts, count))
            for start in range(0, count, accumulative_counts)]


def reference(model: nn.Module, optimizer: torch.optim.Optimizer,
              window_batches: list[list[Batch]], max_norm: float | None = None) -> None:
    """Train on each window as one batch: mean loss over all its valid tokens, one step."""
    for batches in window_batches:
        sums, counts = zip(*(loss_sum(model, b) for b in batches))
        (torch.stack(sums).sum() / torch.stack(counts).sum()).backward()
        if max_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        optimizer.step()
        optimizer.zero_grad()


def clipped_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
                 max_norm: float) -> tuple[float, float]:
    """Backward ``loss``, clip to ``max_norm``, step; the gradient norm before and after
    clipping (the unsharded reference of the grad-norm workers)."""
    loss.backward()
    before = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
    after = float(torch.cat([p.grad.flatten() for p in model.parameters()]).norm())
    optimizer.step()
    optimizer.zero_grad()
    return before, after


def flat_params(model: nn.Module) -> list[list[float]]:
    """Every parameter as a flat list (JSON for a worker's result)."""
    return [p.detach().flatten().tolist() for p in model.parameters()]
