"""``accelwrap test CONFIG --checkpoint PATH [key=value ...]``: run the test loop once.

The config's ``test_dataloader`` is run with the checkpoint's weights (loaded as
``load_from``; with an ``EMAHook``, the checkpoint's averaged weights) and the metrics are
logged as one ``Epoch(test) [n/n]`` line (:mod:`accelwrap.runner.testing`). Before
anything is built or written, the checkpoint's files are checked against its manifest, as
a resume checks them: a damaged one is an error naming the file, the checkpoint and the
newest intact checkpoint beside it (a folder without a manifest is tested, with a note).

Example:
    >>> from accelwrap.tools.common import settle_config
    >>> parser = argparse.ArgumentParser(prog='accelwrap test')
    >>> add_test_args(parser)
    >>> args = parser.parse_intermixed_args(['--config', 'c.yaml', '--checkpoint', 'ck', 'x=1'])
    >>> settle_config(parser, args).config, args.checkpoint, args.overrides
    ('c.yaml', 'ck', ['x=1'])
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from omegaconf import OmegaConf

from accelwrap.config import load_config
from accelwrap.errors import CheckpointError, ConfigError, RegistryError
from accelwrap.runner import Runner
from accelwrap.runner.run_log import configure_logging
from accelwrap.tools.common import add_config_args

__all__ = ["add_test_args", "run_test_command"]

logger = logging.getLogger("accelwrap")


def add_test_args(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``accelwrap test``."""
    add_config_args(parser)
    parser.add_argument("--checkpoint", required=True,
                        help="a checkpoint folder (or weights file) to test")
    parser.add_argument("--work-dir", help="the run's work dir (default: the config's, else "
                        "work_dirs/<config name>)")


def run_test_command(args: argparse.Namespace) -> int:
    """Build the runner with the checkpoint's weights (``load_from`` verifies them first:
    :func:`~accelwrap.runner.weights.load_weights`) and test; user errors (a damaged
    checkpoint included) return 1."""
    configure_logging(main=int(os.environ.get("RANK", "0")) == 0)
    try:
        cfg = load_config(args.config, args.overrides)
        work_dir = args.work_dir or cfg.get("work_dir") or str(Path("work_dirs")
                                                              / Path(args.config).stem)
        cfg = OmegaConf.merge(cfg, {"work_dir": work_dir, "load_from": args.checkpoint,
                                    "resume": False})
        Runner.from_cfg(cfg).test()
    except (ConfigError, RegistryError, CheckpointError, FileNotFoundError, ValueError,
            TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
