"""Train from a YAML config: the entry point users launch.

Usage::

    python scripts/train.py --config configs/digits_sgd_multistep.yaml
    accelerate launch --config_file launch_configs/cpu_2proc.yaml scripts/train.py \\
        --config configs/digits_sgd_multistep.yaml --work-dir work_dirs/ddp \\
        [--resume auto|PATH] [key=value ...]

``key=value`` overrides use dotted paths (``optim_wrapper.optimizer.lr=0.05``,
``train_cfg.max_epochs=2``); ``+key=value`` adds a key the config does not have.
The merged config is saved as ``<work_dir>/config.yaml``. Without CUDA the run uses
the CPU; a multi-process CPU launch joins one gloo group (see ``launch_configs/``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from omegaconf import OmegaConf

try:
    import accelwrap  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from accelwrap.config import load_config  # noqa: E402 - after the source-checkout fallback
from accelwrap.errors import CheckpointError, ConfigError, LaunchError, RegistryError  # noqa: E402
from accelwrap.runner import Runner  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description="Train with accelwrap from a YAML config.")
    parser.add_argument("--config", required=True, help="experiment YAML (configs/*.yaml)")
    parser.add_argument("--work-dir", help="where checkpoints and logs go "
                        "(default: the config's work_dir, else work_dirs/<config name>)")
    parser.add_argument("--resume", help="'auto' (latest complete checkpoint in the work dir, "
                        "if any) or a checkpoint folder")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted config overrides, e.g. train_cfg.max_epochs=2")
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace):
    """Load the config, apply overrides and the command-line work dir / resume."""
    cfg = load_config(args.config, args.overrides)
    extra = {}
    if args.work_dir:
        extra["work_dir"] = args.work_dir
    elif "work_dir" not in cfg:
        extra["work_dir"] = str(Path("work_dirs") / Path(args.config).stem)
    if args.resume:
        extra["resume"] = args.resume
    return OmegaConf.merge(cfg, extra) if extra else cfg


def main(argv: list[str] | None = None) -> int:
    """Run training; user errors print one clear message and return 1."""
    args = parse_args(argv)

    try:
        cfg = build_config(args)
        runner = Runner.from_cfg(cfg)
        runner.train()
        runner.accelerator.end_training()
    except (ConfigError, RegistryError, CheckpointError, LaunchError, FileNotFoundError,
            ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


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


if __name__ == "__main__":
    exit_now(main())
