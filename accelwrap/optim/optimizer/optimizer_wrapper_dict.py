"""``OptimWrapperDict``: several named optimizer wrappers (a GAN's ``gen`` and ``disc``).

Each member keeps its own accumulation, clipping and loss scaler; the dict saves and
loads them together and reports their learning rates as ``'<name>.lr'``. Updating
through the dict is ambiguous (which loss? which scaler?), so ``update_params``,
``backward``, ``step`` and ``optim_context`` raise, as in MMEngine.

:func:`named_members` is the one way the rest of accelwrap walks the wrappers of a run,
whether it has one wrapper or a dict of them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from accelwrap.errors import TypeAssertionError, suggest
from accelwrap.optim.optimizer.optimizer_wrapper import OptimWrapper


class OptimWrapperDict(OptimWrapper):
    """A name -> :class:`OptimWrapper` container with MMEngine's dict behaviour.

    Args:
        **optim_wrappers: The wrappers, by name.

    Raises:
        TypeError: A value is not an ``OptimWrapper``.

    Example:
        >>> gen, disc = nn.Linear(2, 2), nn.Linear(2, 1)
        >>> wrappers = OptimWrapperDict(
        ...     gen=OptimWrapper(torch.optim.SGD(gen.parameters(), lr=0.1)),
        ...     disc=OptimWrapper(torch.optim.Adam(disc.parameters(), lr=0.01)))
        >>> wrappers.get_lr()
        {'gen.lr': [0.1], 'disc.lr': [0.01]}
        >>> wrappers.get_momentum()
        {'gen.momentum': [0], 'disc.momentum': [0.9]}
    """

    def __init__(self, **optim_wrappers: OptimWrapper) -> None:  # noqa: D107 - no super().__init__
        for name, wrapper in optim_wrappers.items():
            if not isinstance(wrapper, OptimWrapper) or isinstance(wrapper, OptimWrapperDict):
                raise TypeAssertionError(
                    f"`OptimWrapperDict` only accept OptimWrapper instance: {name!r} must be an "
                    f"OptimWrapper, got {type(wrapper).__name__}; wrap it first, e.g. "
                    f"{name}=OptimWrapper(optimizer)")
        self.optim_wrappers: dict[str, OptimWrapper] = dict(optim_wrappers)

    def _not_here(self, what: str) -> NotImplementedError:
        member = next(iter(self.optim_wrappers), "gen")
        return NotImplementedError(f"`{what}` should be called by each optimizer separately: "
                                   f"OptimWrapperDict.{what} is ambiguous; call it on one member, "
                                   f"e.g. optim_wrapper[{member!r}].{what}(...)")

    def update_params(self, loss: torch.Tensor, step_kwargs: dict | None = None,
                      zero_kwargs: dict | None = None) -> None:
        """Raises ``NotImplementedError``: update each member separately."""
        raise self._not_here("update_params")

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        """Raises ``NotImplementedError``: each member has its own loss scaler."""
        raise self._not_here("backward")

    def step(self, **kwargs: Any) -> None:
        """Raises ``NotImplementedError``: step each member separately."""
        raise self._not_here("step")

    def optim_context(self, model: nn.Module) -> Any:
        """Raises ``NotImplementedError``: enter one member's context."""
        raise self._not_here("optim_context")

    def zero_grad(self, **kwargs: Any) -> None:
        """Zero the gradients of every member."""
        for wrapper in self.optim_wrappers.values():
            wrapper.zero_grad(**kwargs)

    def initialize_count_status(self, model: nn.Module, init_counts: int, max_counts: int) -> None:
        """Does nothing: the dict cannot tell which model belongs to which member."""

    @property
    def param_groups(self) -> dict[str, list[dict]]:
        """Each member's ``param_groups``, by name."""
        return {name: wrapper.param_groups for name, wrapper in self.optim_wrappers.items()}

    def get_lr(self) -> dict[str, list[float]]:
        """``{'<name>.lr': [...]}`` (and ``'<name>.base_lr'`` for multi-group members)."""
        result = {}
        for name, wrapper in self.optim_wrappers.items():
            lrs = wrapper.get_lr()
            if "base_lr" in lrs:
                result[f"{name}.base_lr"] = lrs["base_lr"]
            result[f"{name}.lr"] = lrs["lr"]
        return result

    def get_momentum(self) -> dict[str, list[float]]:
        """``{'<name>.momentum': [...]}`` for every member."""
        return {f"{name}.momentum": wrapper.get_momentum()["momentum"]
                for name, wrapper in self.optim_wrappers.items()}

    def state_dict(self) -> dict:
        """Each member's state dict, by name."""
        return {name: wrapper.state_dict() for name, wrapper in self.optim_wrappers.items()}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load each member's state.

        Args:
            state_dict: ``{name: member_state}``; every name must be a member.

        Raises:
            KeyError: A name that is not a member (close names are suggested).
        """
        unknown = [name for name in state_dict if name not in self.optim_wrappers]
        if unknown:
            raise KeyError(f"OptimWrapperDict.load_state_dict: {unknown[0]!r} is not a member; "
                           f"{suggest(unknown[0], self.optim_wrappers)}")
        for name, state in state_dict.items():
            self.optim_wrappers[name].load_state_dict(state)

    def items(self) -> Iterator[tuple[str, OptimWrapper]]:
        """``(name, wrapper)`` pairs."""
        yield from self.optim_wrappers.items()

    def values(self) -> Iterator[OptimWrapper]:
        """The wrappers."""
        yield from self.optim_wrappers.values()

    def keys(self) -> Iterator[str]:
        """The names."""
        yield from self.optim_wrappers.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.optim_wrappers)

    def __getitem__(self, key: str) -> OptimWrapper:
        if key not in self.optim_wrappers:
            raise KeyError(f"OptimWrapperDict has no member {key!r}; "
                           f"{suggest(key, self.optim_wrappers)}")
        return self.optim_wrappers[key]

    def __contains__(self, key: object) -> bool:
        return key in self.optim_wrappers

    def __len__(self) -> int:
        return len(self.optim_wrappers)

    def __repr__(self) -> str:
        return "".join(f"name: {name}\n{wrapper!r}"
                       for name, wrapper in self.optim_wrappers.items())


def members_of(optim_wrapper: Any) -> dict[str, Any] | None:
    """The members of an ``OptimWrapperDict`` (or a plain dict of wrappers); None otherwise."""
    if isinstance(optim_wrapper, Mapping):
        return dict(optim_wrapper)
    groups = getattr(optim_wrapper, "param_groups", None)
    if isinstance(groups, Mapping) and callable(getattr(optim_wrapper, "items", None)):
        return dict(optim_wrapper.items())
    return None


def named_members(optim_wrapper: Any) -> dict[str, Any]:
    """Every wrapper of a run by name: an ``OptimWrapperDict``'s members, else ``{'': it}``.

    Args:
        optim_wrapper: An ``OptimWrapper``, ``OptimWrapperDict`` or torch optimizer.

    Returns:
        ``{member name: wrapper}``; a single wrapper is keyed by ``''``.

    Example:
        >>> import torch
        >>> from accelwrap.optim.optimizer.optimizer_wrapper_dict import named_members
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> list(named_members(opt)), list(named_members({'gen': opt, 'disc': opt}))
        ([''], ['gen', 'disc'])
    """
    members = members_of(optim_wrapper)
    return members if members is not None else {"": optim_wrapper}


__all__ = ["OptimWrapperDict", "members_of", "named_members"]
