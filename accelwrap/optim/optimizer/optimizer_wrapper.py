"""``OptimWrapper``: MMEngine's optimizer wrapper, optionally backed by an Accelerator.

The wrapper owns gradient accumulation (its counter, the loss divisor and the last
incomplete window), clipping and the update. With an ``accelerate.Accelerator`` it
skips gradient synchronisation through ``accelerator.no_sync`` during accumulation,
clips through the accelerator (unscaling only its own optimizer) and steps the
prepared optimizer. Where Accelerate adds nothing (single process or DDP, no FSDP /
DeepSpeed / XLA) the same operations are called on torch directly; that choice is made
once, when the wrapper is bound, and gives identical numbers.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from accelwrap.errors import TypeAttributeError
from accelwrap.optim import _accelerate_compat as glue
from accelwrap.optim.optimizer.accumulation import AccumulationCount
from accelwrap.optim.optimizer.base import BaseOptimWrapper
from accelwrap.optim.optimizer.clip_grad import parse_clip_grad
from accelwrap.optim.optimizer.finite_check import GradFlag
from accelwrap.optim.optimizer.grad_norm import (
    first_device,
    full_value,
    gradients,
    scale_grads,
    total_norm,
)
from accelwrap.optim.optimizer.loss_normalization import LossWindow, world_size
from accelwrap.optim.optimizer.nonfinite import UpdateGuard, UpdateReport
from accelwrap.optim.optimizer.wrapper_args import check_accumulative_counts, check_not_optimizer
from accelwrap.registry import OPTIM_WRAPPERS

_NULL_CONTEXT = contextlib.nullcontext()  # reusable; returned on the hot path


@OPTIM_WRAPPERS.register_module()
class OptimWrapper(AccumulationCount, UpdateReport, BaseOptimWrapper):
    """A common interface for updating parameters: accumulation, clipping, stepping.

    Args:
        optimizer: The torch optimizer (or one returned by ``accelerator.prepare``).
        accumulative_counts: Update the parameters every this many calls of
            :meth:`update_params`; the loss is divided accordingly.
        clip_grad: ``None``, ``dict(max_norm=..., norm_type=...)`` (clip by norm) or
            ``dict(clip_value=...)`` (clip by value); ``type='norm'|'value'`` is also
            accepted. Never modified.
        accelerator: Optional ``accelerate.Accelerator``. It must have
            ``gradient_accumulation_steps=1`` (the wrapper accumulates). An optimizer
            that was not prepared yet is prepared with it.
        loss_normalization: ``'mean'`` (MMEngine's: divide each loss by the window size)
            or ``'tokens'`` (each loss is a micro-batch's sum, passed with ``num_tokens``;
            the update is the mean over every token of the window on every rank). See
            :mod:`~accelwrap.optim.optimizer.loss_normalization`.
        nonfinite: ``dict(policy='warn'|'skip'|'stop'|'off', check='grad'|'loss')``; see
            :mod:`~accelwrap.optim.optimizer.nonfinite`. None: warn when the norm of
            norm clipping is not finite.
        spike: ``dict(window=N, sigmas=k)``: skip an update whose loss is more than ``k``
            standard deviations above the mean of the last ``N`` applied ones.

    Attributes:
        fast_path: Class attribute; when True (default) a bound wrapper calls torch
            directly wherever Accelerate's method would do exactly the same.
        step_was_skipped: Whether the last :meth:`step` was skipped by a loss scaler
            (an inf/NaN gradient in fp16).
        skipped_steps: How many steps the loss scaler has skipped so far.
        last_update_applied: Whether the latest call changed the parameters (False
            after a backward without an update, or an update skipped by the loss scaler,
            the non-finite policy or the spike rule).

    Example:
        >>> model = nn.Linear(2, 1)
        >>> wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1),
        ...                        accumulative_counts=2, clip_grad=dict(max_norm=1.0))
        >>> for _ in range(4):
        ...     with wrapper.optim_context(model):
        ...         loss = model(torch.ones(3, 2)).sum()
        ...     wrapper.update_params(loss)
        >>> wrapper.inner_count, wrapper.grad_norm is not None
        (4, True)
    """

    fast_path: bool = True

    def __init__(self, optimizer: torch.optim.Optimizer, accumulative_counts: int = 1,
                 clip_grad: dict | None = None, accelerator: Any = None,
                 loss_normalization: str = "mean", nonfinite: dict | None = None,
                 spike: dict | None = None) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeAttributeError(f"{type(self).__name__}: optimizer must be a "
                                     f"torch.optim.Optimizer, got {type(optimizer).__name__} "
                                     f"({optimizer!r})")
        self._accumulative_counts = check_accumulative_counts(accumulative_counts)
        self._clip = parse_clip_grad(clip_grad)
        self._by_norm = self._clip is not None and self._clip.kind == "norm"
        self.clip_grad_kwargs = dict(self._clip.kwargs) if self._clip else None
        if self._clip is not None:  # MMEngine's attributes, set only with clipping as there
            self.clip_func = self._clip.function
            self.grad_name = "grad_norm" if self._by_norm else "grad_value"
        super().__init__(optimizer)
        self._inner_count = 0
        self._max_counts = -1
        self._remainder_counts = -1
        self._grad_norm: torch.Tensor | None = None
        self._clip_max: float | None = None
        self._guard = UpdateGuard(nonfinite, spike, type(self).__name__)
        self._flags = GradFlag()
        self._window = LossWindow(loss_normalization, track_loss=self._guard.tracks_loss)
        self.loss_normalization = self._window.mode
        self.last_update_applied = False
        self.step_was_skipped = False
        self.skipped_steps = 0
        self._step_hook = None
        self.bind(accelerator)

    # ------------------------------------------------------------------ binding
    def validate_accelerator(self, accelerator: Any) -> None:
        """Raise if this wrapper cannot work with ``accelerator``; called before preparing.

        Args:
            accelerator: An ``accelerate.Accelerator``.

        Raises:
            ValueError: Its ``gradient_accumulation_steps`` is not 1, or ``clip_grad``
                has keys that Accelerate's clipping does not take (where the wrapper
                clips through Accelerate: FSDP, DeepSpeed, ...), or a setting that needs
                the gradients before the update is used under DeepSpeed.
        """
        glue.check_accumulation(accelerator)
        owned = [name for name, used in (("loss_normalization='tokens'", self._window.tokens_mode),
                                         ("nonfinite", self._guard.setting.explicit),
                                         ("spike", self._guard.spike is not None)) if used]
        if owned and glue.is_deepspeed(accelerator):
            raise ValueError(f"{', '.join(owned)} cannot work under DeepSpeed: its engine "
                             "steps inside accelerator.backward, before the wrapper sees the "
                             "gradients; remove the setting (DeepSpeed skips fp16 overflows "
                             "itself) or use DDP/FSDP")
        extra = sorted(set(self._clip.kwargs) - {"max_norm", "norm_type", "clip_value"}
                       ) if self._clip is not None else []
        if extra and not self._calls_torch(accelerator):
            raise ValueError(f"clip_grad keys {extra} are not supported by Accelerate's "
                             f"clipping under {glue.distributed_type(accelerator)}; "
                             "use max_norm/norm_type or clip_value only")

    def _calls_torch(self, accelerator: Any) -> bool:
        """Whether the bound wrapper calls torch directly (no Accelerate method in between)."""
        return accelerator is None or (self.fast_path and glue.is_direct(accelerator))

    def bind(self, accelerator: Any = None, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Attach the wrapper to ``accelerator`` (or to plain PyTorch when ``None``).

        Args:
            accelerator: An ``accelerate.Accelerator`` or ``None``.
            optimizer: The optimizer ``accelerator.prepare`` returned for this wrapper;
                when omitted, the current optimizer is prepared if it is not yet.

        Raises:
            ValueError: See :meth:`validate_accelerator`.
        """
        if accelerator is not None:
            self.validate_accelerator(accelerator)
            if optimizer is None and not glue.is_prepared(self.optimizer):
                optimizer = accelerator.prepare(self.optimizer)
        if optimizer is not None:
            self.optimizer = optimizer
        self.accelerator = accelerator
        self._raw = glue.unwrap_optimizer(self.optimizer)
        self._direct = self._calls_torch(accelerator)
        self._deepspeed = accelerator is not None and glue.is_deepspeed(accelerator)
        self._world = world_size(accelerator)  # processes whose gradients are averaged
        self._divide_at_backward = (self._window.tokens_mode and self._accumulative_counts == 1
                                    and self._world == 1)
        self._no_sync = accelerator.no_sync if (
            accelerator is not None and glue.needs_no_sync(accelerator)) else None
        self._set_scaler(self._pick_scaler(accelerator))

    def _pick_scaler(self, accelerator: Any) -> torch.amp.GradScaler | None:
        """The loss scaler to use: the accelerator's (fp16), none without one."""
        return None if accelerator is None else accelerator.scaler

    def _set_scaler(self, scaler: torch.amp.GradScaler | None) -> None:
        if self._step_hook is not None:
            self._step_hook.remove()
            self._step_hook = None
        self._scaler = scaler if scaler is not None and scaler.is_enabled() else None
        if self._scaler is not None:
            self._step_hook = self._raw.register_step_post_hook(self._mark_stepped)
        # decided once per binding: the gradient check of every update, and whether
        # 'tokens' mode divides by seeding the backward (torch called directly, no scaler)
        self._check_grad = self._guard.checks_grad(self._by_norm, self._scaler is not None)
        self._seeded = self._divide_at_backward and self._direct and self._scaler is None

    def _mark_stepped(self, *_: Any) -> None:
        self._stepped = True

    # ------------------------------------------------------------ the update
    def update_params(self, loss: torch.Tensor, step_kwargs: dict | None = None,
                      zero_kwargs: dict | None = None, num_tokens: Any = None) -> None:
        """Backward ``loss`` (divided for accumulation); step and zero when due.

        Args:
            loss: The loss of this iteration (``loss_normalization='tokens'``: its sum).
            step_kwargs: Keyword arguments for the optimizer's ``step``.
            zero_kwargs: Keyword arguments for the optimizer's ``zero_grad``.
            num_tokens: The micro-batch's valid tokens or samples (an int or a 0-d
                tensor); required in ``'tokens'`` mode, ignored in ``'mean'`` mode.
        """
        if num_tokens is None:  # a subclass's backward(loss, **kwargs) may pass kwargs on
            self.backward(self.scale_loss(loss))
        else:
            self.backward(self.scale_loss(loss), num_tokens=num_tokens)
        if self.should_update():
            self.step(**(step_kwargs or {}))
            self.zero_grad(**(zero_kwargs or {}))

    def backward(self, loss: torch.Tensor, num_tokens: Any = None, **kwargs: Any) -> None:
        """Back-propagate ``loss`` (through the loss scaler / Accelerator); count it.

        Args:
            loss: The (already divided) loss; in ``'tokens'`` mode the summed loss.
            num_tokens: Its valid tokens (``'tokens'`` mode, see :meth:`update_params`).
            **kwargs: Passed to ``Tensor.backward``.
        """
        if self._seeded and "gradient" not in kwargs:  # see LossWindow.seed
            kwargs["gradient"] = self._window.seed(loss, num_tokens, type(self).__name__)
            self._book()
            loss.backward(**kwargs)
            return
        loss = self._count(loss, num_tokens)
        if self._deepspeed:  # the engine steps inside backward at the window's end only
            glue.deepspeed_backward(self.accelerator, loss, self.should_update(), **kwargs)
        elif not self._direct:
            self.accelerator.backward(loss, **kwargs)
        elif self._scaler is not None:
            self._scaler.scale(loss).backward(**kwargs)
        else:
            loss.backward(**kwargs)

    def _count(self, loss: torch.Tensor, num_tokens: Any) -> torch.Tensor:
        """Book one backward (the window's tokens and loss, the counter); the loss to use."""
        if self._window.active:
            loss = self._window.add(loss, num_tokens, type(self).__name__,
                                    self._divide_at_backward)
        self._book()
        return loss

    def _book(self) -> None:
        self._inner_count += 1
        self.last_update_applied = False

    def step(self, **kwargs: Any) -> None:
        """Normalise by tokens, clip, apply the non-finite policy, then step the optimizer.

        Args:
            **kwargs: Passed to the optimizer's ``step``.

        Raises:
            NonFiniteError: ``nonfinite.policy='stop'`` and the update is not finite.
        """
        self._guard.begin()
        factor = None
        if self._window.active:
            closed = self._window.close(first_device(self._raw) if self._world > 1 else None,
                                        self._world)
            if self._guard.judge_loss(closed.loss, self._inner_count):
                self._grad_norm = None  # not measured for this update
                return self._skip_update()
            factor = closed.factor
        flag = norm = None
        if self._check_grad and not self._by_norm:  # no clipping norm to reuse
            grads = gradients(self._raw)
            flag = self._flags.test(grads, factor)  # one fused pass, scaling included
            if flag is None:  # sharded or unusual gradients: the global norm decides
                if factor is not None:
                    scale_grads(grads, factor)
                norm = total_norm(grads)
        elif factor is not None:
            scale_grads(gradients(self._raw), factor)
        if self._clip is not None:
            self._clip_grad()
        if not self._by_norm:
            self._grad_norm = norm
        if flag is not None:
            if self._guard.judge_grad(flag, self._inner_count, flag=True):
                return self._skip_update()
        elif (self._check_grad and self._grad_norm is not None  # None: DeepSpeed clips itself
                and self._guard.judge_grad(self._grad_norm, self._inner_count)):
            return self._skip_update()
        self._apply_step(kwargs)
        self.last_update_applied = not (self._scaler is not None and self.step_was_skipped)
        if self.last_update_applied:
            self._guard.applied()

    def _skip_update(self) -> None:
        self.zero_grad()
        self.last_update_applied = False

    def _apply_step(self, kwargs: dict) -> None:
        if self._scaler is not None:
            self._scaled_step(kwargs)
        elif self._direct:
            self._raw.step(**kwargs)
        else:
            self.optimizer.step(**kwargs)

    def _scaled_step(self, kwargs: dict) -> None:
        self._stepped = False
        self._scaler.step(self._raw, **kwargs)
        self._scaler.update(self._static_scale())
        self.step_was_skipped = not self._stepped
        self.skipped_steps += self.step_was_skipped

    def _static_scale(self) -> float | None:
        """A fixed loss scale to restore after every update (None: dynamic)."""
        return None

    def zero_grad(self, **kwargs: Any) -> None:
        """Zero the optimizer's gradients.

        Args:
            **kwargs: Passed to the optimizer's ``zero_grad`` (e.g. ``set_to_none``).
        """
        (self._raw if self._direct else self.optimizer).zero_grad(**kwargs)

    def _clip_grad(self) -> None:
        if self._deepspeed:  # the engine has clipped already; p.grad is None under ZeRO
            self._grad_norm = self._clip_max = None  # clip_value is refused under DeepSpeed
            if self._by_norm:
                self._grad_norm = glue.deepspeed_grad_norm(self.accelerator)
                self._clip_max = glue.deepspeed_clip_max(self.accelerator)
            return
        params = [p for group in self._raw.param_groups for p in group["params"]
                  if p.requires_grad and p.grad is not None]
        if not params:
            return
        if self._direct:
            if self._scaler is not None:
                self._scaler.unscale_(self._raw)
            result = self._clip.function(params, **self._clip.kwargs)
        else:
            with glue.only_optimizer(self.accelerator, self.optimizer):
                result = self._accelerator_clip(params)
        if self._by_norm:
            self._grad_norm = full_value(result)
            self._clip_max = self._clip.kwargs["max_norm"]
        else:
            self._grad_norm = self._clip_max = None

    def _accelerator_clip(self, params: list[torch.Tensor]) -> torch.Tensor | None:
        if self._clip.kind == "norm":
            return self.accelerator.clip_grad_norm_(params, **self._clip.kwargs)
        return self.accelerator.clip_grad_value_(params, **self._clip.kwargs)

    def optim_context(self, model: nn.Module) -> contextlib.AbstractContextManager:
        """Skip gradient synchronisation while accumulating (use as ``with``).

        Args:
            model: The (possibly DDP-wrapped / prepared) training model.

        Returns:
            ``accelerator.no_sync(model)`` (or ``model.no_sync()`` without an
            accelerator) when this backward does not end a window, else a null context.
        """
        if self.should_sync():
            return _NULL_CONTEXT
        if self._no_sync is not None:
            return self._no_sync(model)
        if self.accelerator is None and hasattr(model, "no_sync"):
            return model.no_sync()
        return _NULL_CONTEXT

    def __repr__(self) -> str:
        return (f"Type: {type(self).__name__}\n_accumulative_counts: {self._accumulative_counts}\n"
                f"optimizer: \n{self.optimizer!r}\n")


__all__ = ["OptimWrapper", "check_accumulative_counts", "check_not_optimizer"]
