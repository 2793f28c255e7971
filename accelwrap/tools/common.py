"""What the commands share: their config arguments, loading a config and building its
model cheaply.

Every command that reads a config takes it as ``CONFIG`` or ``--config CONFIG``, with
dotted ``key=value`` overrides before or after it (:func:`add_config_args`,
:func:`settle_config`).

The model is built with the runner's own ``build_model`` under the ``meta`` device, so
parameter names, shapes and module types are real (and ``paramwise_cfg`` decides exactly
as in training) while no weights are allocated: a billion-parameter config previews in
the time it takes to construct its modules.

Example:
    >>> model = build_model_cheaply({'type': 'MLPClassifier', 'hidden_dims': [4096, 4096]})
    >>> next(model.parameters()).device.type
    'meta'
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from accelwrap.config import load_config
from accelwrap.errors import ConfigError
from accelwrap.registry import to_plain
from accelwrap.runner.build import build_model
from accelwrap.runner.runner import Runner
from accelwrap.runner.settings import runner_config_problems

logger = logging.getLogger(__name__)

__all__ = ["add_config_args", "build_model_cheaply", "load_plain", "render_table", "require",
           "settle_config"]


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """The config (positional, or ``--config``) and the ``key=value`` overrides of a command;
    parse with ``parse_intermixed_args`` and pass the result to :func:`settle_config`."""
    parser.add_argument("config", nargs="?", help="experiment YAML (configs/*.yaml)")
    parser.add_argument("--config", dest="config_option", metavar="CONFIG", action="append",
                        help="the experiment YAML, as an option")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted config overrides, e.g. optim_wrapper.optimizer.lr=0.1")


def settle_config(parser: argparse.ArgumentParser,
                  args: argparse.Namespace) -> argparse.Namespace:
    """Set ``args.config`` (``--config``, or the first positional word that is not
    ``key=value``) and ``args.overrides``; exit with a usage error for none or two.

    Example:
        >>> parser = argparse.ArgumentParser(prog='accelwrap check')
        >>> add_config_args(parser)
        >>> args = parser.parse_intermixed_args(['x=1', '--config', 'a.yaml'])
        >>> settle_config(parser, args).config, args.overrides
        ('a.yaml', ['x=1'])
    """
    words = ([args.config] if args.config else []) + list(args.overrides)
    given = list(args.config_option or [])  # --config, each time it was given
    if given:  # a path beside --config is a second config, not an override
        given += [w for w in words if "=" not in w]
    else:
        given = [w for w in words if "=" not in w or Path(w).exists()][:1]
        words = [w for w in words if w not in given]
    if len(given) > 1:
        parser.error(f"two configs given ({given[0]!r} and {given[1]!r}): {parser.prog} takes "
                     "one config (overrides are key=value)")
    if not given:
        parser.error(f"the config file is required ({parser.prog} CONFIG [key=value ...])")
    args.config, args.overrides = given[0], words
    return args


def load_plain(path: str, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Load a config with its ``_base_`` parents and overrides, as plain containers.

    Args:
        path: The config file.
        overrides: Dotted ``key=value`` overrides.

    Returns:
        The merged config as a dict.
    """
    return to_plain(load_config(path, overrides))


def require(cfg: Mapping[str, Any], *keys: str, command: str) -> None:
    """Raise one ``ConfigError`` naming every top-level key ``command`` needs and ``cfg``
    lacks, and every problem ``accelwrap check`` finds in it (a preview of a config that
    training would refuse names the key, not a crash of the preview)."""
    missing = [f"{key}: required by 'accelwrap {command}' but missing from the config"
               for key in keys if key not in cfg]
    problems = runner_config_problems(cfg, Runner.config_keys())
    if missing or problems:
        raise ConfigError(missing + problems)


def build_model_cheaply(model_cfg: Mapping[str, Any] | nn.Module) -> nn.Module:
    """Build the config's model as the runner does, on the ``meta`` device when possible.

    Args:
        model_cfg: The ``model`` section (a ``MODELS`` config) or a module.

    Returns:
        The model; its parameters live on ``meta`` unless its constructor needs real
        tensors (then it is built normally, which costs what training's build costs).
    """
    try:
        with torch.device("meta"):
            return build_model(model_cfg)
    except (ValueError, TypeError, KeyError):
        raise  # a config mistake: building normally would fail the same way
    except Exception as err:  # noqa: BLE001 - a constructor that computes with real tensors
        logger.info("building the model on the meta device failed (%s); building it normally", err)
        return build_model(model_cfg)


def render_table(header: list[str], body: list[list[str]], underline: bool = True) -> list[str]:
    """Left-aligned text columns, two spaces apart.

    Args:
        header: Column titles.
        body: Rows of cells (strings), as many as ``header``.
        underline: Put a line of dashes under the header.

    Returns:
        The lines, without trailing spaces.

    Example:
        >>> render_table(['name', 'lr'], [['fc.weight', '0.1']])
        ['name       lr', '---------  ---', 'fc.weight  0.1']
    """
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
             for row in [header, *body]]
    if underline:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return lines
