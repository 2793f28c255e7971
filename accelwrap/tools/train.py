"""``accelwrap train``: train from a YAML config (also what ``scripts/train.py`` runs).

Usage::

    accelwrap train configs/digits_sgd_multistep.yaml train_cfg.max_epochs=2
    accelerate launch --config_file launch_configs/cpu_2proc.yaml scripts/train.py \\
        configs/digits_sgd_multistep.yaml --work-dir work_dirs/ddp [--resume auto|PATH]

``key=value`` overrides (anywhere on the line) use dotted paths
(``optim_wrapper.optimizer.lr=0.05``); ``+key=value`` adds a key the config does not
have. ``--config FILE`` is accepted in place of the positional path. Every process of a
multi-process launch loads the config itself, so its ``custom_imports`` are imported
in each. The merged config is saved as ``<work_dir>/config.yaml``; each run logs into its own
folder ``<work_dir>/<YYYYmmdd_HHMMSS>/`` (text log, ``scalars.jsonl``, TensorBoard
events), which a resumed run continues. ``--resume auto`` on a finished run logs
"already finished at iter N; nothing to do" and exits 0; with no checkpoint yet it warns
that there is nothing to resume and starts from scratch. One run at a time per work dir
(a lock file, :mod:`accelwrap.runner.workdir`); a fresh run into a work dir with
checkpoints is refused unless ``--overwrite`` (which deletes them). SIGTERM makes the
run save a checkpoint and exit with status 75 (:mod:`accelwrap.runner.preemption`).

Example:
    >>> args = parse_args(['a=1', 'cfg.yaml', '--resume', 'auto', 'b=2'])
    >>> args.config, args.overrides, args.resume, args.overwrite
    ('cfg.yaml', ['a=1', 'b=2'], 'auto', False)
    >>> parse_args(['--config', 'cfg.yaml', 'a=1']).overrides
    ['a=1']
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from accelwrap.config import load_config
from accelwrap.errors import CheckpointError, ConfigError, LaunchError, RegistryError
from accelwrap.runner import Runner
from accelwrap.runner.preemption import Preempted
from accelwrap.runner.run_log import configure_logging
from accelwrap.runner.save_failure import LastSaveFailed
from accelwrap.runner.workdir import WorkDirError
from accelwrap.tools.common import add_config_args, settle_config

__all__ = ["add_train_args", "build_config", "exit_now", "main", "parse_args"]

_KEPT_UNTIL_EXIT: list[Runner] = []  # see run_train


def add_train_args(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``accelwrap train`` (and ``scripts/train.py``)."""
    add_config_args(parser)
    parser.add_argument("--work-dir", help="where checkpoints and logs go "
                        "(default: the config's work_dir, else work_dirs/<config name>)")
    parser.add_argument("--resume", help="'auto' (latest complete checkpoint in the work dir, "
                        "if any) or a checkpoint folder")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over in a work dir that holds checkpoints, deleting them "
                        "(a fresh run there is refused otherwise)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (overrides may come before or after options)."""
    parser = argparse.ArgumentParser(prog="accelwrap train",
                                     description="Train with accelwrap from a YAML config.")
    add_train_args(parser)
    args = parser.parse_intermixed_args(argv)
    return settle_config(parser, args)


def build_config(args: argparse.Namespace) -> DictConfig:
    """Load the config, apply overrides and the command-line work dir / resume."""
    cfg = load_config(args.config, args.overrides)
    extra = {}
    if args.work_dir:
        extra["work_dir"] = args.work_dir
    elif "work_dir" not in cfg:
        extra["work_dir"] = str(Path("work_dirs") / Path(args.config).stem)
    if args.resume:
        extra["resume"] = args.resume
    if getattr(args, "overwrite", False):
        extra["overwrite"] = True
    return OmegaConf.merge(cfg, extra) if extra else cfg


def run_train(args: argparse.Namespace) -> int:
    """Train; user errors print one clear message and return 1.

    Logging goes to stderr (rank 0; other ranks warnings only) and to the run's text log.

    Returns:
        0 when the run ended, 1 for a user error (another run holds the work dir
        included), 74 when it trained to the end but its last checkpoint could not be
        written (``on_error: warn``), :data:`~accelwrap.runner.preemption.PREEMPTED_EXIT_CODE`
        (75) when a preemption signal stopped it after writing a checkpoint.
    """
    configure_logging(main=int(os.environ.get("RANK", "0")) == 0)
    runner = None
    try:
        cfg = build_config(args)
        runner = Runner.from_cfg(cfg)
        runner.config_file = args.config
        runner.train()
        runner.accelerator.end_training()
    except (Preempted, LastSaveFailed) as stop:  # both logged by the runner
        return stop.code
    except (ConfigError, RegistryError, CheckpointError, LaunchError, WorkDirError,
            FileNotFoundError, ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if runner is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # Freed here, the DDP model's gloo process group joins its threads, which can
            # wait forever on a peer that already left (seen in 1 of 6 two-process runs);
            # kept, it goes with the process (exit_now skips the teardown).
            _KEPT_UNTIL_EXIT.append(runner)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``scripts/train.py``'s entry: parse the arguments and train."""
    return run_train(parse_args(argv))


def exit_now(status: int) -> None:
    """Leave a multi-process run without the interpreter's teardown (single process: ``sys.exit``).

    gloo's C++ threads can abort the teardown ("terminate called without an active
    exception", SIGABRT) even after ``end_training`` destroyed the process group; the
    launcher then reports a finished run as failed and stops the other ranks. By now
    checkpoints, logs and trackers are written and closed, so nothing is lost.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        sys.exit(status)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
