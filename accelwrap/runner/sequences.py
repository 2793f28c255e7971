"""Variable-length token sequences generated on the fly, and a small GRU that models them.

The pair exists to show token-normalised accumulation (``loss_normalization: tokens``):
micro-batches of sequences of random length hold different numbers of valid tokens, so
the mean of per-micro-batch means is not the mean over every token of the window.

* :class:`VariableLengthSequences` (``DATASETS``): seeded, no download. Each sample is
  a dict of fixed-length tensors (padded to ``max_len``), so PyTorch's default collate
  stacks them: ``tokens`` (``0`` is padding), ``mask`` (``True`` on valid positions)
  and ``targets`` (the token ``delay`` positions earlier: the model must remember it).
* :class:`SequenceGRU` (``MODELS``): embedding, GRU, linear head. Its ``forward``
  returns the micro-batch's *summed* cross-entropy over valid tokens under ``loss`` and
  the number of valid tokens under ``num_tokens``; ``val_step`` returns per-sample mean
  token loss and token accuracy.

Example:
    >>> data = VariableLengthSequences(num_samples=4, min_len=2, max_len=6, seed=0)
    >>> sample = data[0]
    >>> sorted(sample), tuple(sample['tokens'].shape)
    (['mask', 'targets', 'tokens'], (6,))
    >>> model = SequenceGRU(vocab_size=data.vocab_size, embed_dim=8, hidden_dim=8)
    >>> batch = {k: torch.stack([data[i][k] for i in range(4)]) for k in sample}
    >>> out = model(**batch)
    >>> int(out['num_tokens']) == int(batch['mask'].sum())
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from accelwrap.registry import DATASETS, MODELS
from accelwrap.runner.data import _TensorDataset

__all__ = ["SequenceGRU", "VariableLengthSequences"]


def _positive(owner: str, **values: int) -> None:
    """Raise a ``ValueError`` naming the first argument that is not a positive integer."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")


@DATASETS.register_module()
class VariableLengthSequences(_TensorDataset):
    """Random token sequences of random length, padded to ``max_len``; the task is an echo.

    Lengths are uniform in ``[min_len, max_len]``, tokens uniform in
    ``[1, vocab_size)`` (``0`` pads). The target at position ``t`` is the token at
    ``t - delay`` (``0`` for the first ``delay`` positions); padded positions have
    ``mask`` ``False`` and target ``0``.

    Args:
        num_samples: How many sequences.
        min_len: Shortest sequence.
        max_len: Longest sequence (and the padded length of every sample).
        vocab_size: Token ids are ``0`` (padding) to ``vocab_size - 1``.
        delay: How far back the target token lies.
        seed: Seed of the generator (fixed, independent of the global RNG).
        poison_every: When above 0, every ``poison_every``-th sample (indices
            ``poison_every - 1``, ``2 * poison_every - 1``, ...) carries ``poison``
            ``True``: :class:`SequenceGRU` makes the loss of a micro-batch holding one
            infinite, which demonstrates a non-finite policy.

    Raises:
        ValueError: A size is not a positive integer, ``min_len > max_len``, or
            ``vocab_size < 2``.

    Example:
        >>> data = VariableLengthSequences(num_samples=3, min_len=3, max_len=5, delay=1)
        >>> s = data[0]
        >>> n = int(s['mask'].sum())
        >>> s['targets'][1:n].tolist() == s['tokens'][:n - 1].tolist()
        True
    """

    def __init__(self, num_samples: int = 1024, min_len: int = 4, max_len: int = 32,
                 vocab_size: int = 16, delay: int = 1, seed: int = 0,
                 poison_every: int = 0) -> None:
        owner = type(self).__name__
        _positive(owner, num_samples=num_samples, min_len=min_len, max_len=max_len,
                  delay=delay)
        if min_len > max_len:
            raise ValueError(f"{owner}: min_len must be <= max_len, got min_len={min_len} "
                             f"and max_len={max_len}")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 2:
            raise ValueError(f"{owner}: vocab_size must be an integer >= 2 (0 is padding), "
                             f"got {vocab_size!r}")
        if isinstance(poison_every, bool) or not isinstance(poison_every, int) or poison_every < 0:
            raise ValueError(f"{owner}: poison_every must be an integer >= 0 (0: off), "
                             f"got {poison_every!r}")
        self.vocab_size = vocab_size
        gen = torch.Generator().manual_seed(seed)
        lengths = torch.randint(min_len, max_len + 1, (num_samples,), generator=gen)
        mask = torch.arange(max_len) < lengths[:, None]
        tokens = torch.randint(1, vocab_size, (num_samples, max_len), generator=gen) * mask
        targets = torch.zeros_like(tokens)
        targets[:, delay:] = tokens[:, :max_len - delay] if delay < max_len else 0
        tensors = {"tokens": tokens, "mask": mask, "targets": targets * mask}
        if poison_every:
            tensors["poison"] = torch.arange(1, num_samples + 1) % poison_every == 0
        super().__init__(**tensors)


@MODELS.register_module()
class SequenceGRU(nn.Module):
    """Token embedding, a GRU and a linear head; the loss is summed over valid tokens.

    ``forward`` returns ``{'loss': summed cross-entropy over the valid tokens,
    'num_tokens': their count}``: with ``loss_normalization: tokens`` the optimizer
    wrapper divides the gradients by the tokens of the whole accumulation window, so an
    accumulated update equals one large batch's. (The GRU runs left to right, so the
    padding after a sequence never reaches its valid positions.)

    Args:
        vocab_size: Number of token ids (as the dataset's).
        embed_dim: Embedding width.
        hidden_dim: GRU width.
        num_layers: Stacked GRU layers.

    Example:
        >>> model = SequenceGRU(vocab_size=5, embed_dim=4, hidden_dim=4)
        >>> tokens = torch.tensor([[1, 2, 0], [3, 4, 1]])
        >>> mask = tokens > 0
        >>> metrics = model.val_step({'tokens': tokens, 'mask': mask, 'targets': tokens})
        >>> sorted(metrics), tuple(metrics['token_accuracy'].shape)
        (['loss', 'token_accuracy'], (2,))
    """

    def __init__(self, vocab_size: int = 16, embed_dim: int = 32, hidden_dim: int = 64,
                 num_layers: int = 1) -> None:
        super().__init__()
        _positive(type(self).__name__, vocab_size=vocab_size, embed_dim=embed_dim,
                  hidden_dim=hidden_dim, num_layers=num_layers)
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.gru = nn.GRU(embed_dim, hidden_dim, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_dim, vocab_size)

    def token_losses(self, tokens: torch.Tensor, targets: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-position cross-entropy and logits, shapes ``(B, L)`` and ``(B, L, V)``."""
        hidden, _ = self.gru(self.embed(tokens))
        logits = self.head(hidden).float()
        losses = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        return losses, logits

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor,
                poison: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Return ``{'loss': summed loss over valid tokens, 'num_tokens': their count}``.

        A ``poison`` sample in the batch (see :class:`VariableLengthSequences`) makes
        the loss, and so every gradient, infinite.
        """
        losses, _ = self.token_losses(tokens, targets)
        loss = (losses * mask).sum()
        if poison is not None:
            loss = loss * torch.where(poison.any(), float("inf"), 1.0).to(loss)
        return {"loss": loss, "num_tokens": mask.sum()}

    @torch.no_grad()
    def val_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per sample: mean token ``loss`` and ``token_accuracy`` over its valid tokens."""
        mask = batch["mask"]
        losses, logits = self.token_losses(batch["tokens"], batch["targets"])
        correct = (logits.argmax(-1) == batch["targets"]) & mask
        count = mask.sum(1).clamp(min=1)
        return {"loss": (losses * mask).sum(1) / count,
                "token_accuracy": correct.sum(1).float() / count}
