"""The non-finite policy and the loss-spike rule of an optimizer wrapper.

``nonfinite=dict(policy=..., check=...)``:

- ``policy``: ``'skip'`` (no optimizer step, gradients zeroed, counted in
  ``nonfinite_skips``, a warning names the update), ``'stop'`` (raise
  :class:`~accelwrap.errors.NonFiniteError` naming the update), ``'warn'`` (apply it and
  warn) or ``'off'`` (no check at all).
- ``check``: ``'grad'`` (a NaN/inf in some gradient: the total norm of norm clipping is
  reused; without it one fused pass over the gradients sets a flag on the device, see
  :mod:`~accelwrap.optim.optimizer.finite_check`, and no norm is measured; sharded
  gradients are judged by their global norm) or ``'loss'`` (the window's loss is not
  finite).

Without a ``nonfinite`` setting the wrapper warns when the norm it already has (clipping
by norm) is not finite, and computes nothing more. With a loss scaler (fp16) the scaler's
own skip handles inf/NaN gradients; the gradient check is left to it.

Every rank takes the same decision: the gradients tested are global (DDP all-reduces
them before the update, so every rank tests the same values; FSDP's norm is reduced over
the shards), and the loss is all-reduced with the
window's token count in one collective (a NaN on any rank makes the sum NaN everywhere).

``spike=dict(window=N, sigmas=k)`` skips an update whose loss exceeds the mean of the
last ``N`` applied losses by more than ``k`` standard deviations (checked once ``N``
losses are known), the rule of OLMo-core; skipped updates are counted in ``spike_skips``.

``'warn'`` reads a flag on an accelerator at the next update (or at
:meth:`UpdateGuard.progress_state`), so it adds no host synchronisation to the step (a CPU
flag is read at once: that costs nothing); ``'skip'`` and ``'stop'`` must know
before stepping and read it at once.

Example:
    >>> import torch
    >>> guard = UpdateGuard(dict(policy='skip'), None, 'OptimWrapper')
    >>> guard.begin()
    1
    >>> guard.judge_grad(torch.tensor(float('nan')), iteration=3)
    True
    >>> guard.progress_state()['nonfinite_skips']
    1
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from accelwrap.errors import NonFiniteError, suggest
from accelwrap.optim.optimizer.finite_check import read_flag
from accelwrap.optim.optimizer.grad_norm import clipped_norm
from accelwrap.registry import to_plain

logger = logging.getLogger("accelwrap")

__all__ = ["CHECKS", "POLICIES", "NonFiniteSetting", "SpikeSetting", "UpdateGuard",
           "UpdateReport", "parse_nonfinite", "parse_spike"]

POLICIES = ("warn", "skip", "stop", "off")
CHECKS = ("grad", "loss")


@dataclass(frozen=True)
class NonFiniteSetting:
    """A validated ``nonfinite`` setting.

    Attributes:
        policy: ``'warn'``, ``'skip'``, ``'stop'`` or ``'off'``.
        check: ``'grad'`` or ``'loss'``.
        explicit: Whether the user set it (the default only reuses an existing norm).
    """

    policy: str = "warn"
    check: str = "grad"
    explicit: bool = False


@dataclass(frozen=True)
class SpikeSetting:
    """A validated ``spike`` setting: ``window`` applied losses, ``sigmas`` deviations."""

    window: int
    sigmas: float


def _mapping(value: Any, key: str, owner: str, example: str) -> dict:
    if not isinstance(value, Mapping) and not hasattr(value, "keys"):
        raise TypeError(f"{owner}: {key} must be a dict such as {example}, got "
                        f"{type(value).__name__} ({value!r})")
    return dict(to_plain(value))


def _choice(args: dict, key: str, name: str, choices: tuple, default: str, owner: str) -> str:
    value = args.get(name, default)
    if value not in choices:
        raise ValueError(f"{owner}: {key}.{name}={value!r} is not valid; expected one of "
                         f"{', '.join(map(repr, choices))} ({suggest(str(value), choices)})")
    return value


def parse_nonfinite(value: Any, owner: str = "OptimWrapper") -> NonFiniteSetting:
    """Validate a ``nonfinite`` setting (``None``: the default, warn on a known norm).

    Raises:
        TypeError: Not a dict.
        ValueError: An unknown key, policy or check (the valid ones are listed).

    Example:
        >>> parse_nonfinite(dict(policy='skip'))
        NonFiniteSetting(policy='skip', check='grad', explicit=True)
    """
    if value is None:
        return NonFiniteSetting()
    args = _mapping(value, "nonfinite", owner, "dict(policy='skip', check='grad')")
    for name in args:
        if name not in ("policy", "check"):
            raise ValueError(f"{owner}: nonfinite has no key {name!r} "
                             f"({suggest(str(name), ('policy', 'check'))}); it takes policy "
                             f"({'|'.join(POLICIES)}) and check ({'|'.join(CHECKS)})")
    return NonFiniteSetting(_choice(args, "nonfinite", "policy", POLICIES, "warn", owner),
                            _choice(args, "nonfinite", "check", CHECKS, "grad", owner), True)


def parse_spike(value: Any, owner: str = "OptimWrapper") -> SpikeSetting | None:
    """Validate a ``spike`` setting (``None``: no spike rule).

    Raises:
        TypeError: Not a dict, or a value of the wrong type.
        ValueError: A missing or unknown key, ``window < 2`` or ``sigmas <= 0``.

    Example:
        >>> parse_spike(dict(window=50, sigmas=6))
        SpikeSetting(window=50, sigmas=6.0)
    """
    if value is None:
        return None
    args = _mapping(value, "spike", owner, "dict(window=100, sigmas=6)")
    unknown = sorted(set(args) - {"window", "sigmas"})
    if unknown or set(args) != {"window", "sigmas"}:
        raise ValueError(f"{owner}: spike needs exactly the keys 'window' (how many applied "
                         f"losses the running mean covers) and 'sigmas' (how many standard "
                         f"deviations above it is a spike), got {sorted(args)}")
    window, sigmas = args["window"], args["sigmas"]
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise ValueError(f"{owner}: spike.window={window!r} must be an int >= 2 (applied "
                         "losses in the running mean)")
    if isinstance(sigmas, bool) or not isinstance(sigmas, (int, float)) or not sigmas > 0:
        raise ValueError(f"{owner}: spike.sigmas={sigmas!r} must be a number > 0 (standard "
                         "deviations above the running mean)")
    return SpikeSetting(window, float(sigmas))


def _bad(value: torch.Tensor | float, flag: bool) -> str | None:
    """Read ``value`` once: None when finite, else how to show it in a message.

    With ``flag``, ``value`` is a NaN/inf flag tensor (nonzero: set); a set flag is
    cleared here, so the next update starts clear without an op of its own.
    """
    number = read_flag(value) if flag else float(value)  # the one host read of this update
    if flag:
        if number == 0.0:
            return None
        value.zero_()
        return "a gradient holds NaN/inf"
    return None if math.isfinite(number) else str(number)


class UpdateGuard:
    """Decides, once per update, whether it is applied; keeps the counters.

    Args:
        nonfinite: The ``nonfinite`` setting (see :func:`parse_nonfinite`).
        spike: The ``spike`` setting (see :func:`parse_spike`).
        owner: The wrapper's class name, for messages.

    Attributes:
        updates: Updates attempted so far (the number messages name).
        nonfinite_skips: Updates skipped for a NaN/inf gradient norm or loss.
        spike_skips: Updates skipped by the spike rule.
    """

    def __init__(self, nonfinite: Any = None, spike: Any = None,
                 owner: str = "OptimWrapper") -> None:
        self.setting = parse_nonfinite(nonfinite, owner)
        self.spike = parse_spike(spike, owner)
        self.updates = 0
        self.nonfinite_skips = 0
        self.spike_skips = 0
        self._losses: deque[float] = deque(maxlen=self.spike.window if self.spike else 1)
        self._candidate: float | None = None
        self._pending: tuple | None = None
        self._checks_loss = self.setting.policy != "off" and self.setting.check == "loss"

    @property
    def tracks_loss(self) -> bool:
        """Whether the window's loss is needed (``check='loss'`` or a spike rule)."""
        return self._checks_loss or self.spike is not None

    def checks_grad(self, has_norm: bool, scaled: bool) -> bool:
        """Whether the gradient norm is checked at this update.

        Args:
            has_norm: Norm clipping measures the norm anyway.
            scaled: A loss scaler (fp16) is active and does its own inf/NaN skip.
        """
        setting = self.setting
        return (setting.policy != "off" and setting.check == "grad" and not scaled
                and (setting.explicit or has_norm))

    def begin(self) -> int:
        """Start an update: report a deferred warning, count the update; return its number."""
        self._report_pending()
        self._candidate = None
        self.updates += 1
        return self.updates

    def judge_loss(self, loss: torch.Tensor | None, iteration: int) -> bool:
        """Whether the update must be skipped for its (global) loss.

        The loss is read from the device at most once (for the check and the spike rule
        together; not at all for ``policy='warn'`` without a spike rule).

        Args:
            loss: The window's loss over every rank, or None when not tracked.
            iteration: The wrapper's counter, for messages.

        Raises:
            NonFiniteError: ``policy='stop'``, ``check='loss'`` and the loss is not finite.
        """
        if loss is None:
            return False
        value: torch.Tensor | float = loss if self.spike is None else float(loss)
        if self._checks_loss and self._act("loss", value, iteration):
            return True
        if self.spike is None:
            return False
        return self._spike(value, iteration)

    def _spike(self, value: float, iteration: int) -> bool:
        if not math.isfinite(value):
            return False  # the non-finite policy's business, and kept out of the window
        if len(self._losses) == self.spike.window:
            mean = sum(self._losses) / len(self._losses)
            std = math.sqrt(sum((x - mean) ** 2 for x in self._losses) / len(self._losses))
            if value > mean + self.spike.sigmas * std:
                self.spike_skips += 1
                logger.warning("update %d (iteration %d) skipped: loss %.6g is more than %g "
                               "standard deviations (%.3g) above the mean %.6g of the last %d "
                               "applied updates (spike rule; %d skipped so far)", self.updates,
                               iteration, value, self.spike.sigmas, std, mean,
                               self.spike.window, self.spike_skips)
                return True
        self._candidate = value
        return False

    def judge_grad(self, norm: torch.Tensor, iteration: int, flag: bool = False) -> bool:
        """Whether the update must be skipped for a non-finite gradient.

        Args:
            norm: The global gradient norm, or with ``flag`` a one-element tensor that is
                nonzero when some gradient holds a NaN/inf (see
                :class:`~accelwrap.optim.optimizer.finite_check.GradFlag`; cleared here
                once read as set).
            iteration: The wrapper's counter, for messages.
            flag: ``norm`` is such a flag.

        Raises:
            NonFiniteError: ``policy='stop'`` and the norm is not finite (the flag is set).
        """
        return self._act("gradient norm", norm, iteration, flag)

    def applied(self) -> None:
        """The update was applied: its loss joins the spike window."""
        if self._candidate is not None:
            self._losses.append(self._candidate)
            self._candidate = None

    def _act(self, what: str, value: torch.Tensor | float, iteration: int,
             flag: bool = False) -> bool:
        policy = self.setting.policy
        if policy == "warn":  # a device value is read at the next update: no host sync now
            self._pending = (what, value, self.updates, iteration, flag)
            if not isinstance(value, torch.Tensor) or value.device.type == "cpu":
                self._report_pending()  # reading it costs nothing: warn at once
            return False
        shown = _bad(value, flag)
        if shown is None:
            return False
        if policy == "stop":
            raise NonFiniteError(
                f"non-finite {what} ({shown}) at update {self.updates} (iteration "
                f"{iteration}); nonfinite.policy='stop' ends the run. Resume from the last "
                f"checkpoint saved before iteration {iteration} (with a lower learning rate, "
                f"or nonfinite.policy='skip' to drop such updates)", self.updates, iteration)
        self.nonfinite_skips += 1
        logger.warning("update %d (iteration %d) skipped: non-finite %s (%s); gradients zeroed "
                       "on every rank (nonfinite.policy='skip'; %d skipped so far)",
                       self.updates, iteration, what, shown, self.nonfinite_skips)
        return True

    def _report_pending(self) -> None:
        if self._pending is None:
            return
        what, value, update, iteration, flag = self._pending
        self._pending = None
        shown = _bad(value, flag)
        if shown is not None:
            logger.warning("update %d (iteration %d) was applied with a non-finite %s (%s) "
                           "(nonfinite.policy='warn'; 'skip' drops such updates, 'stop' ends "
                           "the run)", update, iteration, what, shown)

    def progress_state(self) -> dict[str, Any]:
        """The counters and the spike window as plain JSON values."""
        self._report_pending()
        return {"updates": self.updates, "nonfinite_skips": self.nonfinite_skips,
                "spike_skips": self.spike_skips, "spike_losses": list(self._losses)}

    def load_progress_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`progress_state` returned (missing keys keep their value)."""
        self.updates = int(state.get("updates", self.updates))
        self.nonfinite_skips = int(state.get("nonfinite_skips", self.nonfinite_skips))
        self.spike_skips = int(state.get("spike_skips", self.spike_skips))
        if "spike_losses" in state:
            self._losses.clear()
            self._losses.extend(float(x) for x in state["spike_losses"])


class UpdateReport:
    """What an optimizer wrapper reports about its updates: grad norms and skip counters.

    Mixed into ``OptimWrapper``, which sets ``_guard`` (an :class:`UpdateGuard`) and the
    norm ``_grad_norm`` (a tensor) and the threshold ``_clip_max`` of norm clipping (or
    None) at each update.
    """

    _guard: UpdateGuard
    _grad_norm: torch.Tensor | None
    _clip_max: float | None

    @property
    def grad_norm(self) -> float | None:
        """Global gradient norm of the last update, before clipping (None if not measured)."""
        return None if self._grad_norm is None else float(self._grad_norm)

    @property
    def grad_norm_clipped(self) -> float | None:
        """Global gradient norm after clipping by norm (None without norm clipping)."""
        if self._grad_norm is None or self._clip_max is None:
            return None
        return clipped_norm(float(self._grad_norm), self._clip_max)

    @property
    def nonfinite_skips(self) -> int:
        """Updates skipped for a NaN/inf gradient norm or loss (``nonfinite.policy='skip'``)."""
        return self._guard.nonfinite_skips

    @property
    def spike_skips(self) -> int:
        """Updates skipped by the ``spike`` rule."""
        return self._guard.spike_skips

    def progress_state(self) -> dict[str, Any]:
        """The update counters and the spike window, as plain JSON values (for checkpoints)."""
        return self._guard.progress_state()

    def load_progress_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`progress_state` returned."""
        self._guard.load_progress_state(state)
