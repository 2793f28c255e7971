"""``Runner``: MMEngine's training runner on Accelerate, with exact resume.

**Model contract.** A plain ``nn.Module`` works with no extra code: each batch is
passed to ``forward`` (``model(**batch)`` for a dict, ``model(*batch)`` for a
tuple/list, ``model(batch)`` otherwise), and ``forward`` returns a loss tensor or a
dict whose keys containing ``'loss'`` are summed (each is logged separately). A model
may define ``train_step(batch, optim_wrapper)`` to run the update itself (a GAN with an
``OptimWrapperDict``; its direct sub-modules are then prepared one by one, so each is
DDP-wrapped), returning a dict of scalars to log; and ``val_step(batch)`` returning
``{name: tensor}`` -- per-sample values of shape ``(batch,)`` averaged over the
validation set, or 0-d values averaged over batches. Without ``val_step`` the
validation metric is the mean loss.

**Stepping** is MMEngine's: iteration-based schedulers after every iteration,
epoch-based ones after every epoch, ``ReduceOnPlateau*`` after validation with its
metrics; ``initialize_count_status`` makes the last accumulation window update.

Example:
    >>> # runner = Runner.from_cfg(load_config('configs/digits_sgd_multistep.yaml'))
    >>> # runner.train()
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from accelwrap.config import save_config
from accelwrap.errors import ConfigError
from accelwrap.optim.accelerator import prepare
from accelwrap.optim.optimizer import OptimWrapper, build_optim_wrapper
from accelwrap.optim.optimizer.optimizer_wrapper_dict import named_members
from accelwrap.registry import RUNNERS, to_plain
from accelwrap.runner import build, preflight
from accelwrap.runner.checkpoint import CheckpointManager, wants_resume
from accelwrap.runner.checkpoint_layout import Layout
from accelwrap.runner.data import build_dataloader
from accelwrap.runner.data_position import resume_policy
from accelwrap.runner.default_hooks import parse_default_hooks
from accelwrap.runner.ema import parse_custom_hooks
from accelwrap.runner.log_capture import keeps_early_records, log_fatal
from accelwrap.runner.log_output import flat_config, init_trackers
from accelwrap.runner.loops import TrainLoop, train_to_end
from accelwrap.runner.rng import rng_snapshot
from accelwrap.runner.run_log import (
    RUN_DIR_KEY,
    banner,
    configure_logging,
    latest_run_dir,
    new_run_dir,
    open_log_file,
    release_logging,
    saved_state,
)
from accelwrap.runner.settings import REQUIRED_KEYS, runner_arguments, runner_config_problems
from accelwrap.runner.state_parts import restore_before_load
from accelwrap.runner.testing import parse_test_cfg, run_test
from accelwrap.runner.train_cfg import parse_train_cfg
from accelwrap.runner.weights import load_weights, shape_map
from accelwrap.runner.workdir import claim_work_dir, parse_overwrite

logger = logging.getLogger(__name__)

__all__ = ["REQUIRED_KEYS", "Runner"]


@RUNNERS.register_module()
class Runner:
    """Builds everything a training run needs and runs it.

    Args:
        model: An ``nn.Module`` or a ``MODELS`` config (see the model contract above).
        work_dir: Folder for checkpoints, the saved config and one timestamped folder
            per run (``<YYYYmmdd_HHMMSS>/``: the text log, ``scalars.jsonl``, TensorBoard
            events; a resumed run continues its run's folder).
        train_dataloader: A ``DataLoader`` or ``dict(dataset=..., batch_size=...,
            shuffle=..., num_workers=...)``.
        optim_wrapper: An ``OptimWrapper``/``OptimWrapperDict`` or its config, e.g.
            ``dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9))``.
        train_cfg: ``dict(by_epoch=True, max_epochs=N)`` or ``dict(by_epoch=False,
            max_iters=N)``, plus ``val_interval`` / ``val_begin``.
        val_dataloader: Optional validation ``DataLoader`` or config.
        param_scheduler: A scheduler, a config dict, a list of them, or a dict of lists
            (one per ``OptimWrapperDict`` member). A missing ``end`` is the run length.
        default_hooks: ``dict(checkpoint=dict(interval=1, by_epoch=None,
            max_keep_ckpts=3, save_last=True), logger=dict(interval=1,
            trackers='auto', progress_bar=True))``.
        randomness: ``dict(seed=0, deterministic=False, diff_rank_seed=False)``
            (``deterministic`` -> ``torch.use_deterministic_algorithms``, through
            Accelerate's ``set_seed``; ``seed=None`` draws a seed shared by every process,
            as in MMEngine).
        resume: False, True/``'auto'`` (latest complete checkpoint in the work dir, if
            any) or a checkpoint path.
        load_from: Weights to start from (a checkpoint folder or a weights file);
            ignored when a checkpoint is resumed.
        accelerator: An ``Accelerator`` or a dict of its arguments.
        experiment_name: Name used for trackers (defaults to the work dir's name).
        test_dataloader: Optional test ``DataLoader`` or config, for :meth:`test`.
        test_cfg: ``dict(type='TestLoop')`` or None.
        custom_hooks: MMEngine's list; ``dict(type='EMAHook', momentum=...)`` averages the
            weights (:mod:`accelwrap.runner.ema`), any other type is not run (one warning).
        overwrite: Start over in a work dir that holds checkpoints, deleting them (a
            fresh run there is refused otherwise); not with ``resume``. See
            :mod:`accelwrap.runner.workdir`.
        cfg: The full config, saved as ``<work_dir>/config.yaml``.

    Attributes:
        run_dir: The run's folder (set by :meth:`train`).
        run_dir_reused: Whether :meth:`train` continues an earlier attempt's run folder
            (a resume, or ``resume='auto'`` before any checkpoint) instead of a new one.
        config_file: The config file the run came from, for the start banner (``accelwrap
            train`` sets it).
        early_log: What the runner logged before the run's text log opened (a
            :class:`~accelwrap.runner.log_capture.EarlyRecords`), written into it first.

    Example:
        >>> # Runner(model=dict(type='MLPClassifier'), work_dir='work_dirs/x',
        >>> #        train_dataloader=dict(dataset=dict(type='DigitsDataset'), batch_size=32),
        >>> #        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        >>> #        train_cfg=dict(by_epoch=True, max_epochs=2)).train()
    """

    @keeps_early_records  # for the text log, which opens in train()
    def __init__(self, model: nn.Module | Mapping, work_dir: str, train_dataloader: Any,
                 optim_wrapper: Any, train_cfg: Mapping, val_dataloader: Any = None,
                 param_scheduler: Any = None, default_hooks: Mapping | None = None,
                 randomness: Mapping | None = None, resume: bool | str = False,
                 load_from: str | None = None, accelerator: Any = None,
                 experiment_name: str | None = None, custom_hooks: Any = None,
                 test_dataloader: Any = None, test_cfg: Mapping | None = None,
                 overwrite: bool = False, cfg: Mapping | None = None) -> None:
        from accelerate.utils import set_seed

        self.work_dir = Path(work_dir)
        self.cfg = cfg
        self.experiment_name = experiment_name or self.work_dir.name
        self.schedule = parse_train_cfg(train_cfg)
        self.checkpoint_cfg, self.logger_cfg = parse_default_hooks(default_hooks, self.schedule)
        self.ema, notes = parse_custom_hooks(custom_hooks)
        parse_test_cfg(test_cfg)
        for note in notes:
            logger.warning(note)
        seed, diff_rank_seed, deterministic = _parse_randomness(randomness)
        self.accelerator = build.build_accelerator(accelerator or {}, optim_wrapper,
                                                   str(self.work_dir), self.logger_cfg.trackers)
        self.checkpoints = CheckpointManager(self.accelerator, self.work_dir / "checkpoints",
                                             self.checkpoint_cfg.max_keep_ckpts)
        self.overwrite = parse_overwrite(overwrite, resume)
        self.resume_from = self.checkpoints.resolve(resume)
        self._resume_asked = resume
        self.run_dir: Path | None = None
        self.run_dir_reused = False
        self.config_file: str | None = None
        if seed is None:
            seed = build.shared_random_seed(self.accelerator)
        set_seed(seed, device_specific=diff_rank_seed, deterministic=deterministic)
        self.seed = seed
        self.model = build.build_model(model)
        self.fingerprint = shape_map(self.model.state_dict())
        if load_from and self.resume_from is None:
            load_weights(self.model, load_from)
        self.train_dataloader = build_dataloader(train_dataloader, "train_dataloader")
        preflight.check(self.model, model, self.train_dataloader, optim_wrapper,
                        param_scheduler, forward=self.schedule.preflight)
        self.val_dataloader = (build_dataloader(val_dataloader, "val_dataloader")
                               if val_dataloader is not None else None)
        self._test_dataloader = test_dataloader  # built by test() only: training never needs it
        self.load_from = load_from
        self._prepare(optim_wrapper, param_scheduler)
        if self.ema is not None:
            self.ema.attach(self._trained_model())  # unwrapped: no communication under DDP

    # ---------------------------------------------------------------- building
    @classmethod
    def from_cfg(cls, cfg: Mapping) -> Runner:
        """Build a runner from a full config (checked first: every problem in one error).

        Args:
            cfg: A ``DictConfig`` or dict with the constructor's arguments as keys.

        Returns:
            The runner.

        Raises:
            ConfigError: Unknown or missing top-level keys, unregistered types, bad
                arguments -- all listed together.
        """
        plain = to_plain(cfg)
        problems = runner_config_problems(plain, cls.config_keys(), required=REQUIRED_KEYS)
        if problems:
            raise ConfigError(problems + preflight.forward_trial(plain, problems))
        kwargs, notes = runner_arguments(plain, cls.config_keys())
        for note in notes:
            logger.info(note)
        return cls(**kwargs, cfg=cfg)

    @classmethod
    def config_keys(cls) -> list[str]:
        """The top-level keys a runner config may have: the constructor's arguments.

        Example:
            >>> 'train_cfg' in Runner.config_keys() and 'cfg' not in Runner.config_keys()
            True
        """
        return [name for name in inspect.signature(cls).parameters if name != "cfg"]

    def _prepare(self, optim_wrapper_cfg: Any, scheduler_cfg: Any) -> None:
        acc = self.accelerator
        train_loader = self.train_dataloader  # as built: its resume_data setting
        self.train_dataloader = prepare(acc, self.train_dataloader)
        if self.val_dataloader is not None:
            self.val_dataloader = prepare(acc, self.val_dataloader)
        self.epoch_length = len(self.train_dataloader)
        if self.epoch_length == 0:
            raise ValueError("train_dataloader yields no batches (dataset smaller than one batch "
                             "with drop_last=True?)")
        self.max_iters = self.schedule.total_iters(self.epoch_length)
        wrapper = (optim_wrapper_cfg if isinstance(optim_wrapper_cfg, OptimWrapper)
                   else build_optim_wrapper(self.model, optim_wrapper_cfg))
        schedulers = build.build_schedulers(scheduler_cfg, wrapper, self.schedule,
                                            self.epoch_length)
        groups = schedulers.values() if isinstance(schedulers, dict) else [schedulers]
        flat = [s for group in groups for s in group]
        self.custom_step = callable(getattr(self.model, "train_step", None))
        if self.custom_step:
            names = [n for n, m in self.model.named_children() if any(True for _ in m.parameters())]
            prepared = prepare(acc, *[getattr(self.model, n) for n in names], wrapper, *flat)
            for name, module in zip(names, prepared[:len(names)]):
                setattr(self.model, name, module)
            self.train_model = self.model
        else:
            names = [""]
            self.train_model, _, *_ = prepare(acc, self.model, wrapper, *flat)
        self.optim_wrapper = wrapper
        self.param_schedulers = schedulers
        # Read when a checkpoint of another world size or batch size is resumed.
        self.resume_data = resume_policy(train_loader)
        self.scheduler_kinds = build.scheduler_kinds(scheduler_cfg, schedulers)
        # What Accelerate now saves, so that saves and loads check the declared files.
        self.checkpoints.layout = Layout.of(
            acc, models=len(names), optimizers=len(named_members(wrapper)),
            schedulers=sum(isinstance(s, LRScheduler) for s in flat), ema=self.ema is not None)

    # ---------------------------------------------------------------- training
    def train(self) -> nn.Module:
        """Resume (or load weights), then train to the end; returns the model.

        Logs to the ``accelwrap`` logger, and on the main process to the run's text log
        ``<run_dir>/<run_dir name>.log``: the start banner, the resume point, a line every
        ``default_hooks.logger.interval`` iterations and the validation metrics. While it
        trains, the work dir is locked (:mod:`accelwrap.runner.workdir`) and the
        ``preempt_signals`` are watched (:mod:`accelwrap.runner.preemption`).

        Returns:
            The trained model (unwrapped).

        Raises:
            WorkDirError: Another run holds the work dir, or a fresh run would overwrite
                its checkpoints (nothing is written then).
            Preempted: A preemption signal arrived; the checkpoint is written (a
                ``SystemExit`` with status 75).
            LastSaveFailed: Under ``on_error: warn`` the run's last save failed; the newest
                checkpoint that stays is named (a ``SystemExit`` with status 74).
        """
        with self.early_log:  # a stale lock taken over, checkpoints deleted (--overwrite)
            lock = claim_work_dir(self.accelerator, self.work_dir, self.checkpoints.directory,
                                  fresh=self.resume_from is None, overwrite=self.overwrite)
        try:
            return self._train()
        finally:
            if lock is not None:
                lock.release()

    def _train(self) -> nn.Module:
        saved = saved_state(self.resume_from)
        self.run_dir = self._choose_run_dir(saved)
        main = self.accelerator.is_main_process
        handlers = configure_logging(self.run_dir / f"{self.run_dir.name}.log", main)
        self.early_log.replay(handlers)  # what __init__ and the lock logged, first
        try:
            logger.info("%s", banner(self, saved))
            loop = TrainLoop(self)
            resume_rng = self._resume(loop)
            handlers = open_log_file(handlers)
            if loop.iter >= self.max_iters:
                logger.info("already finished at iter %d; nothing to do", loop.iter)
                return self._trained_model()
            self._write_run_files(loop.iter if self.run_dir_reused else None)
            for wrapper in named_members(self.optim_wrapper).values():
                wrapper.initialize_count_status(self.model, loop.iter, self.max_iters)
            train_to_end(self, loop, resume_rng)  # logs how it ends (loops.py)
            return self._trained_model()
        except (Exception, KeyboardInterrupt) as err:
            log_fatal(handlers, err)  # the text log says why the run stopped, too
            raise
        finally:
            release_logging(handlers)

    def test(self) -> dict[str, float]:
        """Run ``test_dataloader`` once with the model as built (``load_from``'s weights).

        Returns:
            The metrics, also logged as one ``Epoch(test)`` line.

        Raises:
            ValueError: The config has no ``test_dataloader``.
        """
        if self._test_dataloader is None:
            raise ValueError("test_dataloader: required to test; add a test_dataloader section "
                             "(like val_dataloader)")
        loader = build_dataloader(self._test_dataloader, "test_dataloader")
        return run_test(self, prepare(self.accelerator, loader), self.load_from)

    def _choose_run_dir(self, saved: Mapping[str, Any]) -> Path:
        """The resumed run's folder, else a new timestamped one (the same on every rank).

        ``resume='auto'`` with no checkpoint yet continues the newest run folder: an
        attempt killed before its first checkpoint, restarted from scratch (its records
        are dropped, see ``MetricLogger``), so one run keeps one folder.
        """
        self.run_dir_reused = True
        if self.resume_from is not None:
            name = saved.get(RUN_DIR_KEY)
            found = self.work_dir / name if name else latest_run_dir(self.work_dir)
            if found is not None:
                return found
        elif wants_resume(self._resume_asked):
            found = latest_run_dir(self.work_dir)
            if found is not None:
                return found
        self.run_dir_reused = False
        path = new_run_dir(self.work_dir)
        if self.accelerator.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            path = Path(broadcast_object_list([str(path)], from_process=0)[0])
        return path

    def _resume(self, loop: TrainLoop) -> Any:
        """Load the checkpoint being resumed into ``loop``; the RNG to restore, if any."""
        if self.resume_from is None:
            if wants_resume(self._resume_asked):
                logger.warning("resume %s: nothing to resume, no complete checkpoint in %s; "
                               "starting from scratch", self._resume_asked,
                               self.checkpoints.directory)
            return None
        restore_before_load(loop, self.resume_from)
        state = self.checkpoints.load(self.resume_from, self.fingerprint, loop=loop)
        loop.restore(state)
        logger.info("resumed from %s (epoch %d, iter %d)", self.resume_from, loop.epoch, loop.iter)
        if loop.batch_in_epoch > 0:
            return rng_snapshot()  # the RNG as saved (see TrainLoop.run)
        return None

    def _trained_model(self) -> nn.Module:
        # Every engine keeps self.model as its inner module (FSDP2, AMP: changed in place);
        # Accelerate's unwrap_model would import DeepSpeed (~3.5 s) wherever it is installed.
        return self.model

    def _write_run_files(self, resumed_at: int | None) -> None:
        acc = self.accelerator
        if acc.is_main_process:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            self.checkpoints.clean_partial()
            if self.cfg is not None:  # overwrite was this start's action, not the run's setting
                save_config({key: value for key, value in to_plain(self.cfg).items()
                             if key != "overwrite"}, self.work_dir / "config.yaml")
        if self.logger_cfg.trackers:
            # TensorBoard writes <run_dir>/<experiment_name>/events.*
            acc.project_configuration.logging_dir = str(self.run_dir)
            config = flat_config(self.cfg) if self.cfg is not None else {}
            init_trackers(acc, self.experiment_name, config, resumed_at)
        acc.wait_for_everyone()


def _parse_randomness(randomness: Mapping | None) -> tuple[int | None, bool, bool]:
    args = dict(to_plain(randomness) or {})
    unknown = sorted(set(args) - {"seed", "diff_rank_seed", "deterministic"})
    if unknown:
        raise TypeError(f"randomness: unknown keys {unknown}; expected 'seed', "
                        "'deterministic' and 'diff_rank_seed'")
    seed = args.get("seed", 0)
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ValueError(f"randomness.seed: expected an integer or null (a random seed, as in "
                         f"MMEngine), got {seed!r}")
    return seed, bool(args.get("diff_rank_seed", False)), bool(args.get("deterministic", False))

