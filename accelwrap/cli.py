"""The ``accelwrap`` command: train, port an MMEngine config, look at a config before training.

``accelwrap train CONFIG [key=value ...] [--work-dir DIR] [--resume auto|PATH]
[--overwrite]`` trains
(:mod:`accelwrap.tools.train`; ``scripts/train.py`` is the same for ``accelerate
launch``); ``accelwrap convert OLD.py -o NEW.yaml`` turns an MMEngine Python config into
the YAML accelwrap reads (:mod:`accelwrap.tools.convert`; it runs the Python file, as
MMEngine does). ``accelwrap check CONFIG`` lists every problem in a config;
``accelwrap groups CONFIG`` prints the parameter groups the optimizer will get;
``accelwrap schedule CONFIG`` steps the schedulers through the whole run and plots (or
writes as CSV) every scheduled value. Each takes the config as ``CONFIG`` or ``--config
CONFIG`` and dotted ``key=value`` overrides, exactly like ``accelwrap train``.
``accelwrap merge-shards CHECKPOINT OUT`` turns an FSDP sharded checkpoint's model into
one ``model.safetensors``. ``accelwrap test CONFIG --checkpoint PATH`` runs the test loop
once and logs its ``Epoch(test)`` metrics. Each command lives in the
:mod:`accelwrap.tools` module of its name.

Example:
    >>> main(['check', 'configs/does_not_exist.yaml'])  # doctest: +SKIP
    1
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from accelwrap.errors import ConfigError
from accelwrap.runner.preemption import die_with_launcher
from accelwrap.tools.check import run_check
from accelwrap.tools.common import add_config_args, settle_config
from accelwrap.tools.convert import CONVERT_HELP, run_convert
from accelwrap.tools.groups import run_groups
from accelwrap.tools.merge_shards import run_merge_shards
from accelwrap.tools.schedule import run_schedule
from accelwrap.tools.test import add_test_args, run_test_command
from accelwrap.tools.train import add_train_args, parse_args, run_train

__all__ = ["build_parser", "main"]


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``accelwrap`` parser and one parser per command (``check``, ``groups``, ...)."""
    parser = argparse.ArgumentParser(prog="accelwrap",
                                     description="Train from a config, port an MMEngine config, "
                                                 "look at a config before training with it; "
                                                 "merge sharded checkpoints.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser("train", help="train from a YAML config")
    add_train_args(train)
    convert = commands.add_parser("convert", help="MMEngine Python config -> accelwrap YAML "
                                  "(runs the Python file)", description=CONVERT_HELP,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    convert.add_argument("source", help="the MMEngine config (.py; its _base_ files too)")
    convert.add_argument("-o", "--output", required=True, metavar="NEW.yaml",
                         help="the YAML to write")
    check = commands.add_parser("check", help="report every problem in a config (exit 1 if any)")
    add_config_args(check)
    groups = commands.add_parser("groups", help="table of parameters and their optimizer settings")
    add_config_args(groups)
    groups.add_argument("--merged", action="store_true",
                        help="one row per distinct setting and rule instead of one per parameter")
    schedule = commands.add_parser("schedule", help="preview every scheduled hyperparameter")
    add_config_args(schedule)
    schedule.add_argument("--out", metavar="PNG", help="write a plot (needs matplotlib)")
    schedule.add_argument("--csv", metavar="CSV", help="write iteration-by-iteration values")
    schedule.add_argument("--epoch-length", type=int, metavar="N",
                          help="iterations per epoch (default: from train_dataloader)")
    test = commands.add_parser("test", help="run the test loop once with a checkpoint")
    add_test_args(test)
    merge = commands.add_parser("merge-shards",
                                help="merge an FSDP sharded checkpoint's model into one file")
    merge.add_argument("checkpoint", help="a checkpoint folder holding pytorch_model_fsdp_0/")
    merge.add_argument("output_dir", help="where model.safetensors is written")
    return parser, {"train": train, "convert": convert, "check": check, "groups": groups,
                    "schedule": schedule, "test": test, "merge-shards": merge}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``accelwrap`` command.

    Args:
        argv: The arguments (without the program name); defaults to ``sys.argv[1:]``.

    Returns:
        The exit status: 0 on success, 1 when the config has problems; ``train`` also 74
        (its last checkpoint could not be written under ``on_error: warn``) and 75
        (preempted), as ``scripts/train.py``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, commands = build_parser()
    if not argv or argv[0] not in commands:
        parser.parse_args(argv)  # prints help or the usage error, and exits
    if argv[0] == "train":
        die_with_launcher()  # SIGTERM (a preemption) when a launcher that started it exits
        return run_train(parse_args(argv[1:]))
    # overrides may come before or after options such as --out
    args = commands[argv[0]].parse_intermixed_args(argv[1:])
    if "config_option" in args:
        settle_config(commands[argv[0]], args)
    args.command = argv[0]
    try:
        if args.command == "check":
            return run_check(args.config, args.overrides)
        if args.command == "convert":
            return run_convert(args.source, args.output)
        if args.command == "test":
            return run_test_command(args)
        if args.command == "merge-shards":
            return run_merge_shards(args.checkpoint, args.output_dir)
        if args.command == "groups":
            return run_groups(args.config, args.overrides, merged=args.merged)
        return run_schedule(args.config, args.overrides, out=args.out, csv=args.csv,
                            epoch_length=args.epoch_length)
    except (ConfigError, ValueError, TypeError, KeyError) as err:
        print(f"accelwrap {args.command}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
