"""Small example models, registered by name in ``MODELS`` so configs can build them.

They follow the runner's model contract (see :mod:`accelwrap.runner.runner`):

* ``forward(**batch)`` returns a loss tensor or a dict whose keys containing
  ``'loss'`` are summed into the loss that is optimized;
* optionally ``train_step(batch, optim_wrapper)`` takes over the whole update
  (the GAN, with an ``OptimWrapperDict``);
* optionally ``val_step(batch)`` returns per-sample metric tensors.

Example:
    >>> import torch
    >>> model = MODELS.build(dict(type='MLPClassifier', hidden_dims=[8]))
    >>> out = model(inputs=torch.rand(4, 64), labels=torch.tensor([0, 1, 2, 3]))
    >>> sorted(out)
    ['loss']
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from accelwrap.registry import MODELS
from accelwrap.runner.data import ring_modes

__all__ = ["MODELS", "MLPClassifier", "ToyGAN", "check_sizes", "frozen", "mlp"]


def check_sizes(owner: str, dropout: float = 0.0, lists: Sequence[str] = (),
                **sizes: Any) -> None:
    """Refuse a width that is not a positive integer, or a dropout outside ``[0, 1)``.

    Args:
        owner: The model's name, used in messages.
        dropout: A dropout probability.
        lists: The names in ``sizes`` that hold a list of widths (one per layer).
        **sizes: Argument name -> a width, or a list of widths for the names in ``lists``.

    Raises:
        TypeError: A width is not an integer, or a list of widths is not a list.
        ValueError: A width below 1, or ``dropout`` outside ``[0, 1)``.

    Example:
        >>> check_sizes('MLPClassifier', num_classes=0)
        Traceback (most recent call last):
        ValueError: MLPClassifier: num_classes must be an integer >= 1, got 0
    """
    for name, value in sizes.items():
        many = name in lists
        expected = ("a list of integers >= 1 (one width per hidden layer)" if many
                    else "an integer >= 1")
        if many and not isinstance(value, (list, tuple)):
            raise TypeError(f"{owner}: {name} must be {expected}, got {value!r}")
        for width in value if many else [value]:
            if isinstance(width, bool) or not isinstance(width, int):
                raise TypeError(f"{owner}: {name} must be {expected}, got {value!r}")
            if width < 1:
                raise ValueError(f"{owner}: {name} must be {expected}, got {value!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
            or not 0.0 <= dropout < 1.0:
        raise ValueError(f"{owner}: dropout must be a probability in [0, 1), got {dropout!r}")


def mlp(in_features: int, hidden_dims: Sequence[int], out_features: int,
        dropout: float = 0.0, norm: bool = False) -> nn.Sequential:
    """A ReLU multi-layer perceptron ``in -> hidden... -> out``.

    Args:
        in_features: Input width.
        hidden_dims: Widths of the hidden layers.
        out_features: Output width.
        dropout: Dropout probability after each hidden activation.
        norm: Put a ``LayerNorm`` before each hidden activation.

    Returns:
        The network.

    Raises:
        TypeError, ValueError: A width that is not a positive integer, or a dropout
            outside ``[0, 1)``.
    """
    check_sizes("mlp", dropout, lists=["hidden_dims"], in_features=in_features,
                hidden_dims=hidden_dims, out_features=out_features)
    layers: list[nn.Module] = []
    width = in_features
    for hidden in hidden_dims:
        layers.append(nn.Linear(width, hidden))
        if norm:
            layers.append(nn.LayerNorm(hidden))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = hidden
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Use ``module`` as a fixed function: its parameters get no gradient, DDP stays out.

    Inside, the parameters do not require gradients, so a backward through the
    module's output leaves their ``.grad`` (an accumulation window in progress)
    untouched. A DDP-wrapped module also runs in ``no_sync()``: otherwise its forward
    arms the reducer, and the module's next backward -- even one inside its own
    ``no_sync()`` window -- would all-reduce.

    Args:
        module: A module, DDP-wrapped or not.

    Example:
        >>> net = torch.nn.Linear(2, 1)
        >>> x = torch.ones(1, 2, requires_grad=True)
        >>> with frozen(net):
        ...     net(x).sum().backward()
        >>> net.weight.grad is None, x.grad.tolist() == net.weight.tolist()
        (True, True)
    """
    params = [p for p in module.parameters() if p.requires_grad]
    for param in params:
        param.requires_grad_(False)
    no_sync = getattr(module, "no_sync", None)
    try:
        with no_sync() if callable(no_sync) else contextlib.nullcontext():
            yield
    finally:
        for param in params:
            param.requires_grad_(True)


@MODELS.register_module()
class MLPClassifier(nn.Module):
    """A multi-layer perceptron classifier trained with cross-entropy.

    Args:
        in_features: Input width (64 for the 8x8 digits).
        hidden_dims: Hidden layer widths.
        num_classes: Number of classes.
        dropout: Dropout probability (exercises the RNG that resume must restore).
        norm: Use ``LayerNorm`` in the hidden layers (gives ``paramwise_cfg``
            ``norm_decay_mult`` something to act on).

    Example:
        >>> import torch
        >>> model = MLPClassifier(hidden_dims=[8])
        >>> sorted(model.val_step({'inputs': torch.rand(2, 64), 'labels': torch.tensor([1, 2])}))
        ['accuracy', 'loss']
    """

    def __init__(self, in_features: int = 64, hidden_dims: Sequence[int] = (128,),
                 num_classes: int = 10, dropout: float = 0.0, norm: bool = False) -> None:
        super().__init__()
        check_sizes("MLPClassifier", dropout, lists=["hidden_dims"], in_features=in_features,
                    hidden_dims=hidden_dims, num_classes=num_classes)
        self.net = mlp(in_features, list(hidden_dims), num_classes, dropout, norm)

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return ``{'loss': cross-entropy}``."""
        return {"loss": F.cross_entropy(self.net(inputs), labels)}

    @torch.no_grad()
    def val_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-sample ``accuracy`` (0/1) and ``loss`` on a validation batch."""
        logits = self.net(batch["inputs"])
        return {"accuracy": (logits.argmax(1) == batch["labels"]).float(),
                "loss": F.cross_entropy(logits, batch["labels"], reduction="none")}


@MODELS.register_module()
class ToyGAN(nn.Module):
    """A small GAN for 2-D points: its ``train_step`` updates D, then G.

    Use it with an ``OptimWrapperDict`` whose keys are ``generator`` and
    ``discriminator``; each member may accumulate gradients on its own
    (``accumulative_counts``), since the discriminator is :func:`frozen` during the
    generator's step. ``val_step`` draws as many fake points as the batch has and
    reports, per point, the distance to the nearest ring mode (``mode_dist``) and
    whether it lies within ``4 * std`` of one (``near_mode``).

    Args:
        latent_dim: Size of the noise vector.
        hidden_dim: Width of both networks' hidden layers.
        num_modes: Modes of the target ring (for the validation metric).
        radius: Ring radius (for the validation metric).
        std: Spread of each mode (for the validation metric).
    """

    def __init__(self, latent_dim: int = 8, hidden_dim: int = 64, num_modes: int = 8,
                 radius: float = 2.0, std: float = 0.05) -> None:
        super().__init__()
        check_sizes("ToyGAN", latent_dim=latent_dim, hidden_dim=hidden_dim, num_modes=num_modes)
        for name, value in (("radius", radius), ("std", std)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"ToyGAN: {name} must be a number > 0, got {value!r}")
        self.latent_dim = latent_dim
        self.std = std
        self.generator = mlp(latent_dim, [hidden_dim, hidden_dim], 2)
        self.discriminator = mlp(2, [hidden_dim, hidden_dim], 1)
        self.register_buffer("modes", ring_modes(num_modes, radius), persistent=False)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Generate ``len(inputs)`` points (the runner uses ``train_step`` instead)."""
        return self.sample(len(inputs), inputs.device)

    def sample(self, count: int, device: torch.device) -> torch.Tensor:
        """Draw ``count`` generated points."""
        return self.generator(torch.randn(count, self.latent_dim, device=device))

    def train_step(self, batch: dict[str, torch.Tensor], optim_wrapper) -> dict[str, torch.Tensor]:
        """One discriminator update then one generator update (non-saturating loss)."""
        real = batch["inputs"]
        count = len(real)
        d_wrapper, g_wrapper = optim_wrapper["discriminator"], optim_wrapper["generator"]
        with torch.no_grad():
            fake = self.sample(count, real.device)
        with d_wrapper.optim_context(self.discriminator):
            logits = self.discriminator(torch.cat([real, fake])).squeeze(1)
            target = torch.cat([torch.ones(count), torch.zeros(count)]).to(logits)
            loss_d = F.binary_cross_entropy_with_logits(logits, target)
        d_wrapper.update_params(loss_d)
        with g_wrapper.optim_context(self.generator), frozen(self.discriminator):
            logits = self.discriminator(self.sample(count, real.device)).squeeze(1)
            loss_g = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        g_wrapper.update_params(loss_g)
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach()}

    @torch.no_grad()
    def val_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per generated point: distance to the nearest mode and whether it is near one."""
        fake = self.sample(len(batch["inputs"]), batch["inputs"].device)
        dist = torch.cdist(fake, self.modes.to(fake)).min(dim=1).values
        return {"mode_dist": dist, "near_mode": (dist < 4 * self.std).float()}
