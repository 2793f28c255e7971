"""The training loop: iterations, epoch ends, validation, checkpoints, logging.

Order of one iteration: update -> iteration-based schedulers -> log -> (iteration
validation) -> preemption check -> (checkpoint) -> test kill point -> (preempted: stop,
see :mod:`accelwrap.runner.preemption`). Order at an epoch end: epoch-based
schedulers -> validation -> ``ReduceOnPlateau*`` with the metrics -> checkpoint. A
checkpoint is written only once every parameter's gradient is cleared (never inside
an accumulation window, whose partial gradients are not part of the saved state);
a save that falls inside a window waits for the window to close. Under
``default_hooks.checkpoint.on_error: warn`` a run whose last save failed ends with
:class:`~accelwrap.runner.save_failure.LastSaveFailed` (exit status 74), not as finished.

Example:
    >>> # TrainLoop(runner).run()  -- driven by Runner.train()
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch

from accelwrap.errors import NonFiniteError
from accelwrap.optim.scheduler import step_param_schedulers
from accelwrap.runner.best import BestTracker, best_name
from accelwrap.runner.checkpoint_find import find_latest
from accelwrap.runner.checkpoint_parts import collect_state, restore_state
from accelwrap.runner.data_position import epoch_loader
from accelwrap.runner.fault_points import kill_point
from accelwrap.runner.log_output import (
    MetricLogger,
    optim_scalars,
    parse_losses,
)
from accelwrap.runner.preemption import Preempted, PreemptionWatch
from accelwrap.runner.rng import restore_rng
from accelwrap.runner.run_log import IterTimer
from accelwrap.runner.save_failure import LastSaveFailed

__all__ = ["TrainLoop", "call_model", "train_to_end", "validate"]

logger = logging.getLogger("accelwrap")


def call_model(model: Any, batch: Any) -> Any:
    """``model(**batch)`` for a dict, ``model(*batch)`` for a tuple/list, else ``model(batch)``.

    Example:
        >>> call_model(lambda x, y: x - y, {'y': 1, 'x': 3}), call_model(lambda x, y: x - y, (3, 1))
        (2, 2)
    """
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (list, tuple)):
        return model(*batch)
    return model(batch)


def _grads_clear(model: torch.nn.Module) -> bool:
    return all(p.grad is None or not bool(p.grad.any()) for p in model.parameters())


class TrainLoop:
    """Runs the training of one :class:`~accelwrap.runner.Runner` from its current position.

    Attributes:
        epoch: Epochs completed.
        iter: Iterations completed (global).
        batch_in_epoch: Batches of the current epoch already consumed.
        best: The best-checkpoint tracker (``default_hooks.checkpoint.save_best``), or None.
        last_checkpoint: The folder of the last checkpoint this loop wrote, or None.
        held: The optimizer scalars of the checkpoint resumed (part 'held log scalars'),
            logged until the wrapper measures them again.
        preemption: The run's :class:`~accelwrap.runner.preemption.PreemptionWatch`, or
            None (no preemption signals are watched).
    """

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.epoch = 0
        self.iter = 0
        self.batch_in_epoch = 0
        self._pending: str | None = None  # 'iter' or 'epoch': a save is due
        self._last_saved = -1
        self._last_tried: str | None = None  # the name of the last checkpoint _save wrote
        self.last_checkpoint: str | None = None
        self._last_written = -1  # the iteration of last_checkpoint
        self.held: dict[str, float] = {}  # optimizer scalars as saved, until measured again
        self.preemption: PreemptionWatch | None = None  # set by Runner.train
        self._logger: MetricLogger | None = None
        self._timer: IterTimer | None = None
        self._schedulers = runner.param_schedulers
        ckpt = runner.checkpoint_cfg
        self._ema = getattr(runner, "ema", None)
        self.best = BestTracker(ckpt.save_best, ckpt.rule) if ckpt.save_best else None

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        """The JSON-serializable runner state stored with each checkpoint.

        Its keys are those of the parts accelwrap writes into ``runner_state.json``
        (:data:`~accelwrap.runner.checkpoint_parts.PARTS`).
        """
        return collect_state(self)

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from a saved state (after ``accelerator.load_state``)."""
        restore_state(self, state)

    # ------------------------------------------------------------------- run
    def run(self, resume_rng: dict[str, Any] | None = None) -> None:
        """Train until ``max_iters``; save the last checkpoint if asked to.

        Args:
            resume_rng: When resuming inside an epoch, the RNG state loaded from the
                checkpoint (:func:`~accelwrap.runner.rng.rng_snapshot`); it is put
                back once the epoch's iterator has been created.
        """
        runner = self.runner
        log_cfg = runner.logger_cfg
        self._logger = MetricLogger(runner.accelerator, runner.run_dir, log_cfg.interval,
                                    log_cfg.progress_bar, runner.max_iters, self.iter,
                                    resumed=runner.run_dir_reused, initial_epoch=self.epoch,
                                    epoch_length=runner.epoch_length,
                                    by_epoch=runner.schedule.by_epoch)
        self._timer = IterTimer(self.iter, runner.max_iters)
        while self.iter < runner.max_iters:
            self._run_epoch(resume_rng)
            resume_rng = None
            if self.batch_in_epoch >= runner.epoch_length:
                self._end_epoch()
        if runner.checkpoint_cfg.save_last and self._last_saved != self.iter:
            self._pending = "epoch" if runner.checkpoint_cfg.by_epoch else "iter"
            self._save(force=True)
        runner.checkpoints.wait()  # a background (async) save is published before the end
        self._check_last_save()

    def _check_last_save(self) -> None:
        """Raise :class:`LastSaveFailed` when the last save was not published (it failed
        under ``on_error: warn``, synchronously or in the background; no later save wrote
        it). ``latest`` is the main process's (broadcast): every process decides alike."""
        if self._last_tried is None:
            return
        acc = self.runner.accelerator
        latest = find_latest(self.runner.checkpoints.directory) if acc.is_main_process else None
        if acc.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            latest = broadcast_object_list([latest], from_process=0)[0]
        if latest is None or latest.name != self._last_tried:
            raise LastSaveFailed(self._last_tried, self.iter, latest)

    def _run_epoch(self, resume_rng: dict[str, Any] | None) -> None:
        runner = self.runner
        loader = epoch_loader(self)  # from the epoch's position (data_position)
        self._timer.mark()
        for batch in loader:
            self._timer.data_ready()
            if resume_rng is not None:
                # Creating the epoch's iterator drew from the global RNG, which the
                # uninterrupted run did before the checkpoint: undo that draw.
                restore_rng(resume_rng)
                resume_rng = None
            self._run_iter(batch)
            if self.iter >= runner.max_iters:
                break
        if resume_rng is not None:
            restore_rng(resume_rng)

    def _run_iter(self, batch: Any) -> None:
        runner = self.runner
        try:
            log_vars = self._train_step(batch)
        except NonFiniteError as err:
            raise NonFiniteError(f"{err}. {self._last_good()}", err.update, err.iteration) from err
        if self._ema is not None:
            self._ema.update(self.iter, self.epoch)
        self.iter += 1
        self.batch_in_epoch += 1
        self._timer.iter_done()
        if self._logger.should_log(self.iter):
            # The learning rate this iteration used, as MMEngine logs it.
            scalars = {**log_vars,
                       **optim_scalars(runner.optim_wrapper, runner.logger_cfg.per_group)}
            for key, value in self.held.items():  # until the resumed wrapper measures again
                scalars.setdefault(key, value)
            self._logger.log_train(self.epoch, self.iter, self.batch_in_epoch, scalars,
                                   self._timer.report(self.iter))
        step_param_schedulers(self._schedulers, "iter")
        self._logger.advance()
        if not runner.schedule.by_epoch and runner.schedule.val_due(self.iter, runner.max_iters):
            self._validate()
        ckpt = runner.checkpoint_cfg
        if not ckpt.by_epoch and self.iter % ckpt.interval == 0:
            self._pending = "iter"
        stopping = self._preemption_due()
        self._save()
        kill_point("iter", self.iter)
        if stopping and self._last_written == self.iter:
            runner.checkpoints.wait()  # the checkpoint is published before the exit
            raise Preempted(self.preemption.signal_name, self.iter, self.last_checkpoint)
        self._timer.mark()  # validation, checkpoints and logging are not training time

    def _last_good(self) -> str:
        """Which checkpoint a stopped run can go back to, for its error message."""
        last = self.last_checkpoint or self.runner.resume_from
        if last is None:
            return "No checkpoint was written yet: restart from scratch"
        return f"The last good checkpoint is {str(last)!r} (resume with --resume {last})"

    def _preemption_due(self) -> bool:
        """Whether a signal asks to stop (agreed by all processes); makes a save due.

        Never at the last iteration: the run ends there anyway (and saves its last
        checkpoint as configured).
        """
        watch = self.preemption
        if watch is None or self.iter >= self.runner.max_iters or not watch.requested():
            return False
        self._pending = self._pending or "iter"
        return True

    def _train_step(self, batch: Any) -> dict[str, Any]:
        runner = self.runner
        if runner.custom_step:
            return dict(runner.model.train_step(batch, runner.optim_wrapper) or {})
        with runner.optim_wrapper.optim_context(runner.train_model):
            outputs = call_model(runner.train_model, batch)
        num_tokens = None
        if isinstance(outputs, Mapping) and "num_tokens" in outputs:
            # the micro-batch's token count for loss_normalization='tokens': not a loss
            outputs = dict(outputs)
            num_tokens = outputs.pop("num_tokens")
        loss, log_vars = parse_losses(outputs)
        if num_tokens is None:
            runner.optim_wrapper.update_params(loss)
            return log_vars
        runner.optim_wrapper.update_params(loss, num_tokens=num_tokens)
        log_vars["num_tokens"] = torch.as_tensor(num_tokens).detach()
        return log_vars

    def _end_epoch(self) -> None:
        runner = self.runner
        self.epoch += 1
        self.batch_in_epoch = 0
        if not runner.schedule.by_epoch:
            return
        step_param_schedulers(self._schedulers, "epoch")
        if runner.schedule.val_due(self.epoch, runner.schedule.max_epochs):
            self._validate()
        ckpt = runner.checkpoint_cfg
        if ckpt.by_epoch and self.epoch % ckpt.interval == 0:
            self._pending = "epoch"
        self._save()

    def _validate(self) -> None:
        runner = self.runner
        if runner.val_dataloader is None:
            return
        if self._ema is not None:
            self._ema.swap()  # validate the averaged weights, as MMEngine's EMAHook does
        try:
            metrics = validate(runner)
        finally:
            if self._ema is not None:
                self._ema.swap()
        self._logger.log_val(self.epoch, self.iter, metrics, len(runner.val_dataloader))
        step_param_schedulers(self._schedulers, "val", metrics)
        if self.best is not None and self.best.improved(metrics):
            self._save_best()

    def _save_best(self) -> None:
        """Write the best checkpoint (replacing the previous one), as after a save."""
        by_epoch = self.runner.checkpoint_cfg.by_epoch
        name = best_name(self.best.metric, f"epoch_{self.epoch}" if by_epoch
                         else f"iter_{self.iter}")
        previous, self.best.checkpoint = self.best.checkpoint, name
        self._logger.flush()
        self.runner.checkpoints.save(name, self.state(), loop=self, replaces=previous)
        logger.info("The best checkpoint with %.4f %s at %d %s is saved to %s", self.best.score,
                    self.best.metric, self.epoch if by_epoch else self.iter,
                    "epoch" if by_epoch else "iter", name)

    def _save(self, force: bool = False) -> None:
        if self._pending is None:
            return
        models = [self.runner.model] if self.runner.custom_step else [self.runner.train_model]
        if not force and not all(_grads_clear(m) for m in models):
            return
        self._logger.flush()
        at_epoch_end = self._pending == "epoch" and self.batch_in_epoch == 0
        name = f"epoch_{self.epoch}" if at_epoch_end else f"iter_{self.iter}"
        path = self.runner.checkpoints.save(name, self.state(), loop=self)
        # tried: a failed save (on_error='warn') is not redone
        self._last_saved, self._last_tried = self.iter, name
        if path is not None:  # None: the write failed under on_error='warn'
            self._last_written, self.last_checkpoint = self.iter, str(path)
        self._pending = None

    def close(self) -> None:
        """Close the log file and the progress bar."""
        if self._logger is not None:
            self._logger.close()


def train_to_end(runner: Any, loop: TrainLoop, resume_rng: dict[str, Any] | None) -> None:
    """Run ``loop`` with the preemption signals watched; end the trackers; log the end.

    Args:
        runner: The :class:`~accelwrap.runner.Runner`.
        loop: Its loop, restored from the checkpoint resumed (if any).
        resume_rng: See :meth:`TrainLoop.run`.

    Raises:
        Preempted: A preemption checkpoint was written (logged as a warning).
        LastSaveFailed: The run's last save failed under ``on_error: warn`` (logged as an
            error, in place of ``finished at iter N``).
    """
    try:
        with PreemptionWatch(runner.accelerator, runner.checkpoint_cfg.preempt_signals) as watch:
            loop.preemption = watch
            loop.run(resume_rng)
    except (Preempted, LastSaveFailed) as stop:
        _finish_trackers(runner.accelerator)
        logger.log(logging.WARNING if isinstance(stop, Preempted) else logging.ERROR, "%s",
                   stop)
        raise
    finally:
        loop.close()
    runner.accelerator.wait_for_everyone()
    _finish_trackers(runner.accelerator)
    logger.info("finished at iter %d; run folder %s", loop.iter, runner.run_dir)


def _finish_trackers(accelerator: Any) -> None:
    for tracker in accelerator.trackers:
        tracker.finish()


def validate(runner: Any, loader: Any = None) -> dict[str, float]:
    """Run ``val_step`` (or the loss) over the validation set (or ``loader``); metrics
    averaged over all ranks."""
    acc = runner.accelerator
    model = runner.model
    step = getattr(model, "val_step", None)
    totals: dict[str, list[float]] = {}
    runner.train_model.eval()
    with torch.no_grad():
        for batch in (runner.val_dataloader if loader is None else loader):
            if callable(step):
                outputs = step(batch)
            else:
                outputs = {"loss": parse_losses(call_model(runner.train_model, batch))[0]}
            for name, value in outputs.items():
                value = torch.as_tensor(value).detach().float()
                gathered = (acc.gather(value.reshape(1)) if value.ndim == 0
                            else acc.gather_for_metrics(value))
                total = totals.setdefault(name, [0.0, 0])
                total[0] += float(gathered.sum())
                total[1] += gathered.numel()
    runner.train_model.train()
    return {name: total / max(count, 1) for name, (total, count) in totals.items()}

