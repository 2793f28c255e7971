"""``BaseOptimWrapper``: the interface every optimizer wrapper has (MMEngine's ``base.py``).

Subclasses implement the update (:meth:`BaseOptimWrapper.update_params`,
:meth:`~BaseOptimWrapper.backward`, :meth:`~BaseOptimWrapper.step`,
:meth:`~BaseOptimWrapper.zero_grad`); the optimizer surface (param groups, defaults,
learning rates, momenta, state dicts) is shared here. When the optimizer has several
param groups, ``base_param_settings`` holds its defaults as one more group, which
schedulers step too and ``get_lr()`` reports as ``'base_lr'``, as in MMEngine.

Example:
    >>> import torch
    >>> from accelwrap.optim.optimizer.base import BaseOptimWrapper
    >>> class Plain(BaseOptimWrapper):
    ...     def update_params(self, loss): loss.backward(); self.step(); self.zero_grad()
    ...     def backward(self, loss, **kwargs): loss.backward(**kwargs)
    ...     def step(self, **kwargs): self.optimizer.step(**kwargs)
    ...     def zero_grad(self, **kwargs): self.optimizer.zero_grad(**kwargs)
    >>> Plain(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)).get_lr()
    {'lr': [0.1]}
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Any

import torch


class BaseOptimWrapper(metaclass=ABCMeta):
    """Abstract optimizer wrapper: the update is the subclass's, the optimizer surface is here.

    Args:
        optimizer: The torch optimizer.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.base_param_settings: dict | None = None
        if len(optimizer.param_groups) > 1:
            self.base_param_settings = {"params": torch.tensor([0.0]), **optimizer.defaults}

    @abstractmethod
    def update_params(self, *args: Any, **kwargs: Any) -> None:
        """Update the parameters from a loss (backward, step, zero_grad)."""

    @abstractmethod
    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        """Back-propagate ``loss``."""

    @abstractmethod
    def zero_grad(self, **kwargs: Any) -> None:
        """Clear the gradients."""

    @abstractmethod
    def step(self, **kwargs: Any) -> None:
        """Update the parameters from their gradients."""

    @property
    def param_groups(self) -> list[dict]:
        """The optimizer's groups, plus a ``base_param_settings`` group when there are several."""
        if self.base_param_settings is not None:
            return self.optimizer.param_groups + [self.base_param_settings]
        return self.optimizer.param_groups

    @property
    def defaults(self) -> dict:
        """The optimizer's defaults."""
        return self.optimizer.defaults

    def get_lr(self) -> dict[str, list[float]]:
        """``{'lr': [...]}`` per group, plus ``'base_lr'`` for multi-group optimizers."""
        result = {}
        if self.base_param_settings is not None:
            result["base_lr"] = [self.base_param_settings["lr"]]
        result["lr"] = [group["lr"] for group in self.optimizer.param_groups]
        return result

    def get_momentum(self) -> dict[str, list[float]]:
        """``{'momentum': [...]}`` per group (``betas[0]`` for Adam-style, else 0)."""
        values = []
        for group in self.optimizer.param_groups:
            if "momentum" in group:
                values.append(group["momentum"])
            elif "betas" in group:
                values.append(group["betas"][0])
            else:
                values.append(0)
        return {"momentum": values}

    def state_dict(self) -> dict:
        """The optimizer's state dict (plus ``base_param_settings`` for several groups)."""
        state = self.optimizer.state_dict()
        if self.base_param_settings is not None:
            state["base_param_settings"] = self.base_param_settings
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a dict from :meth:`state_dict` (the argument is not modified).

        Args:
            state_dict: The saved state.
        """
        state = dict(state_dict)
        base = state.pop("base_param_settings", None)
        if base is not None:
            self.base_param_settings = base
        self.optimizer.load_state_dict(state)


__all__ = ["BaseOptimWrapper"]
