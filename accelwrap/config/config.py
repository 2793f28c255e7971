"""YAML configs: ``_base_`` inheritance, dotted ``key=value`` overrides, saving.

A config file may name one or more parents with ``_base_`` (paths relative to the
file). Parents merge first, in order, then the file itself; a mapping that sets
``_delete_: true`` replaces the inherited mapping instead of merging into it.

Overrides use dotted paths, list indices included (``param_scheduler.1.T_max=5``).
Overriding a key the config does not have is an error with suggestions (a typo would
otherwise train silently with the default); prefix ``+`` to add a new key on purpose
(``+model.dropout=0.1``). Every problem is collected into one :class:`ConfigError`.

Loading also resolves ``${...}`` variables and ``${calc:...}`` arithmetic, drops helper
variables (:mod:`accelwrap.config.variables`) and imports the config's ``custom_imports``
(:mod:`accelwrap.config.imports`).

YAML is read as YAML 1.2 reads numbers and booleans, the way Python (and so an MMEngine
config) writes them: ``1e-4`` and ``5E-3`` are floats, not the strings PyYAML's YAML 1.1
rules make of them, and only ``true``/``false`` are booleans: ``on``, ``off``, ``yes``,
``no`` stay strings (a scheduler's ``on: updates`` is the key ``'on'``, and
``by_epoch: yes`` is refused by name instead of being read as ``True``). A mapping that
repeats a key is an error naming both lines (YAML 1.1 would keep the later value without
a word).

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / 'base.yaml').write_text('optim:\\n  lr: 0.1\\n  momentum: 0.9\\n')
    >>> _ = (d / 'exp.yaml').write_text('_base_: base.yaml\\noptim:\\n  lr: 0.2\\n')
    >>> cfg = load_config(d / 'exp.yaml', ['optim.momentum=0.5'])
    >>> (cfg.optim.lr, cfg.optim.momentum)
    (0.2, 0.5)
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from accelwrap.config.imports import import_custom_modules
from accelwrap.config.variables import quote_calc, resolve_config
from accelwrap.errors import ConfigError, suggest

BASE_KEY = "_base_"
DELETE_KEY = "_delete_"

__all__ = ["ConfigError", "ConfigLoader", "apply_overrides", "load_config", "merge_configs",
           "parse_yaml", "save_config"]


# Exponent floats without a dot (``1e-4``), which YAML 1.1 leaves as strings.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A YAML mapping that repeats a key (YAML itself would keep the later value unseen)."""


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats and booleans, duplicate keys refused.

    Example:
        >>> parse_yaml('lr: 1e-4\\nwd: 5E-2\\nsteps: 10')
        {'lr': 0.0001, 'wd': 0.05, 'steps': 10}
        >>> parse_yaml('{on: updates, shuffle: yes, by_epoch: false}')
        {'on': 'updates', 'shuffle': 'yes', 'by_epoch': False}
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        """Build a mapping, refusing a key that appears twice."""
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                first = seen[key].start_mark.line + 1
                raise DuplicateKeyError(
                    None, None, f"duplicate key {key!r} (first on line {first}); "
                    "YAML would silently keep only the later value", key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT,
                                   list("-+0123456789."))
# YAML 1.2 booleans: drop YAML 1.1's yes/no/on/off/y/n resolver, keep true/false.
ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in ConfigLoader.yaml_implicit_resolvers.items()}
ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:bool",
                                   re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                   list("tTfF"))


def parse_yaml(text: str) -> Any:
    """Parse YAML text with :class:`ConfigLoader` (what config files and overrides use).

    Args:
        text: YAML source.

    Returns:
        The plain Python value.

    Raises:
        yaml.YAMLError: The text is not valid YAML, or a mapping repeats a key.

    Example:
        >>> parse_yaml('[1e-3, 2, .5, 1.0e+2]')
        [0.001, 2, 0.5, 100.0]
    """
    return yaml.load(text, Loader=ConfigLoader)  # a SafeLoader: builds plain values only



def _read_yaml(path: Path, chain: tuple[Path, ...]) -> DictConfig:
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise ConfigError(f"{BASE_KEY}: inheritance cycle {cycle}")
    if not path.is_file():
        where = f" (named by {chain[-1]})" if chain else ""
        raise ConfigError(f"config file {str(path)!r} does not exist{where}")
    try:
        with open(path, encoding="utf-8") as f:
            data = parse_yaml(f.read())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return OmegaConf.create(quote_calc(data))


def merge_configs(base: DictConfig, child: DictConfig) -> DictConfig:
    """Merge ``child`` onto ``base`` (new object), honouring ``_delete_: true``.

    Args:
        base: The inherited config.
        child: The config that wins.

    Returns:
        A new merged ``DictConfig``; neither input is modified.

    Example:
        >>> base = OmegaConf.create({'optim': {'type': 'SGD', 'lr': 0.1}})
        >>> merge_configs(base, OmegaConf.create({'optim': {'lr': 0.2}}))
        {'optim': {'type': 'SGD', 'lr': 0.2}}
        >>> merge_configs(base, OmegaConf.create({'optim': {'_delete_': True, 'type': 'Adam'}}))
        {'optim': {'type': 'Adam'}}
    """
    merged = OmegaConf.to_container(base)
    _merge_into(merged, OmegaConf.to_container(child))
    return OmegaConf.create(merged)


def _merge_into(base: dict, child: Mapping) -> None:
    for key, value in child.items():
        replace = isinstance(value, dict) and bool(value.pop(DELETE_KEY, False))
        if isinstance(value, dict) and not replace and isinstance(base.get(key), dict):
            _merge_into(base[key], value)
        else:
            base[key] = _without_delete(value)


def _without_delete(value: Any) -> Any:
    """``value`` with every ``_delete_`` key removed, at any depth (nothing left to replace)."""
    if isinstance(value, dict):
        return {k: _without_delete(v) for k, v in value.items() if k != DELETE_KEY}
    if isinstance(value, list):
        return [_without_delete(v) for v in value]
    return value


def _load_tree(path: Path, chain: tuple[Path, ...] = ()) -> DictConfig:
    cfg = _read_yaml(path, chain)
    bases = cfg.pop(BASE_KEY, None)
    if bases is None:
        return _strip_delete(cfg)
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, (list, ListConfig)) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: {BASE_KEY} must be a path or a list of paths, got {bases!r}")
    merged = OmegaConf.create({})
    for base in bases:
        merged = merge_configs(merged, _load_tree((path.parent / base).resolve(), (*chain, path)))
    return merge_configs(merged, cfg)


def _strip_delete(cfg: DictConfig) -> DictConfig:
    return merge_configs(OmegaConf.create({}), cfg)


def load_config(path: str | os.PathLike, overrides: Iterable[str] = ()) -> DictConfig:
    """Load a YAML config with its ``_base_`` parents and apply ``key=value`` overrides.

    Args:
        path: The config file.
        overrides: Dotted ``key=value`` strings; ``+key=value`` adds a new key.

    Returns:
        The merged ``DictConfig``.

    Raises:
        ConfigError: Missing file, invalid YAML, an inheritance cycle, or bad overrides
            (all override problems in one report).
    """
    cfg = resolve_config(apply_overrides(_load_tree(Path(path).resolve()), overrides))
    import_custom_modules(cfg.get("custom_imports"))
    return cfg



def _parse_value(text: str) -> Any:
    """An override's value as YAML; text that is not YAML stays a string (a repeated key
    in a mapping is an error: :class:`DuplicateKeyError`)."""
    try:
        return quote_calc(parse_yaml(text)) if text.strip() else ""
    except DuplicateKeyError:
        raise
    except yaml.YAMLError:
        return text


def _has_path(cfg: DictConfig, dotted: str) -> tuple[bool, str, list[str] | str]:
    """Whether ``dotted`` exists; else the first missing part and either the keys of the
    mapping that lacks it (``+`` may add it there) or why it cannot be there (a sentence:
    its parent is a list or a value)."""
    node: Any = cfg
    done: list[str] = []
    for part in dotted.split("."):
        if isinstance(node, (DictConfig, dict)) and part in node:
            node = node[part]
        elif isinstance(node, (ListConfig, list)) and part.lstrip("-").isdigit() \
                and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            missing, parent = ".".join([*done, part]), ".".join(done) or "the config"
            if isinstance(node, (DictConfig, dict)):
                return False, missing, [str(k) for k in node]
            if isinstance(node, (ListConfig, list)):
                return False, missing, (f"{parent} is a list of {len(node)} item(s) "
                                        f"(indices 0 to {len(node) - 1}, or -1 for the last)")
            return False, missing, f"{parent} is a value ({node!r}), not a mapping"
        done.append(part)
    return True, dotted, []


def apply_overrides(cfg: DictConfig, overrides: Iterable[str]) -> DictConfig:
    """Return a copy of ``cfg`` with dotted ``key=value`` overrides applied.

    Args:
        cfg: The config; not modified.
        overrides: ``key=value`` strings (values parsed as YAML: ``0.1``, ``true``,
            ``[1, 2]``); ``+key=value`` may add a key that does not exist yet.

    Returns:
        A new ``DictConfig``.

    Raises:
        ConfigError: Every malformed override and unknown key, with suggestions.

    Example:
        >>> cfg = OmegaConf.create({'optim': {'lr': 0.1}})
        >>> apply_overrides(cfg, ['optim.lr=0.2', '+optim.momentum=0.9'])
        {'optim': {'lr': 0.2, 'momentum': 0.9}}
        >>> apply_overrides(cfg, ['optim.lrr=1'])
        Traceback (most recent call last):
        accelwrap.errors.ConfigError: 1 problem in the configuration:
          - override 'optim.lrr=1': the config has no key 'optim.lrr'; did you mean 'lr'? ...
    """
    out = OmegaConf.create(OmegaConf.to_container(cfg))
    problems = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        add = key.startswith("+")
        key = key.lstrip("+").strip()
        if not sep or not key:
            problems.append(f"override {item!r}: expected key=value "
                            f"(e.g. optim_wrapper.optimizer.lr=0.1)")
            continue
        exists, missing, siblings = _has_path(out, key)
        if not exists and isinstance(siblings, str):  # under a list or a value: + cannot add
            problems.append(f"override {item!r}: the config has no {missing!r}: {siblings}")
            continue
        if not exists and not add:
            near = suggest(missing.rsplit(".", 1)[-1], siblings) if siblings else "it is empty"
            problems.append(f"override {item!r}: the config has no key {missing!r}; {near} "
                            f"(write +{key}=... to add a new key)")
            continue
        try:
            OmegaConf.update(out, key, _parse_value(raw), merge=False, force_add=add)
        except DuplicateKeyError as err:
            problems.append(f"override {item!r}: its value repeats a key: {err.problem}")
        except OmegaConfBaseException as err:
            problems.append(f"override {item!r}: {err}".splitlines()[0])
    if problems:
        raise ConfigError(problems)
    return out


def save_config(cfg: DictConfig | Mapping, path: str | os.PathLike) -> Path:
    """Write ``cfg`` as YAML atomically (a crash never leaves a half-written file).

    Args:
        cfg: The config to save (interpolations are resolved).
        path: Destination file; parent folders are created.

    Returns:
        The written path.

    Example:
        >>> import tempfile, pathlib
        >>> path = save_config({'optim': {'lr': 0.1}}, pathlib.Path(tempfile.mkdtemp()) / 'a.yaml')
        >>> print(path.read_text(), end='')
        optim:
          lr: 0.1
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    node = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg))
    text = OmegaConf.to_yaml(node, resolve=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
