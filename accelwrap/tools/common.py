"""What the preview commands share: loading a config and building its model cheaply.

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

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from accelwrap.config import load_config
from accelwrap.errors import ConfigError
from accelwrap.registry import to_plain
from accelwrap.runner.build import build_model

logger = logging.getLogger(__name__)

__all__ = ["build_model_cheaply", "load_plain", "render_table", "require"]


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
    """Raise a ``ConfigError`` naming every top-level key ``command`` needs and ``cfg`` lacks."""
    missing = [f"{key}: required by 'accelwrap {command}' but missing from the config"
               for key in keys if key not in cfg]
    if missing:
        raise ConfigError(missing)


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
