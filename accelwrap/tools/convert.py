"""``accelwrap convert OLD.py -o NEW.yaml``: an MMEngine Python config as accelwrap YAML.

The Python file is **executed**, as MMEngine executes it (only convert files you trust):
its ``_base_`` files first (one or a list, paths relative to the file, ``.py`` or YAML;
bases may not share top-level keys), then the file itself with ``{{_base_.x}}``
references, ``{{$ENV:default}}`` and the predefined ``{{fileDirname}}``-style variables
substituted as MMEngine does, ``_base_`` readable as a dict with attribute access, and
its variables merged onto the bases (``_delete_=True`` replaces instead of merging).
What comes out is plain values: helper variables, arithmetic and comprehensions are
already evaluated.

The result keeps every section accelwrap reads, maps MMEngine's loop and hook sections
onto accelwrap's (``train_cfg.type`` -> ``by_epoch``; ``default_hooks`` -> its
``checkpoint`` and ``logger`` settings), and drops helper variables and sections
accelwrap does not implement; :func:`convert` returns what it mapped, kept and dropped.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / 'base.py').write_text("base_lr = 0.01\\n"
    ...     "optim_wrapper = dict(optimizer=dict(type='SGD', lr=base_lr, momentum=0.9))\\n")
    >>> _ = (d / 'exp.py').write_text("_base_ = './base.py'\\nmax_epochs = 12\\n"
    ...     "train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=2)\\n"
    ...     "optim_wrapper = dict(optimizer=dict(lr=_base_.base_lr * 2))\\n"
    ...     "val_cfg = {{_base_.optim_wrapper.optimizer}}\\n")
    >>> cfg, report = convert(d / 'exp.py')
    >>> cfg['optim_wrapper'], cfg['train_cfg']
    ({'optimizer': {'type': 'SGD', 'lr': 0.02, 'momentum': 0.9}}, {'max_epochs': 12, \
'val_interval': 2, 'by_epoch': True})
    >>> cfg['val_cfg']  # {{_base_.x}}: the base's value, as MMEngine substitutes it
    {'type': 'SGD', 'lr': 0.01, 'momentum': 0.9}
    >>> report[0]
    'mapped: train_cfg.type=EpochBasedTrainLoop -> train_cfg.by_epoch=True'
"""

from __future__ import annotations

import ast
import copy
import os
import re
import sys
import types
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from accelwrap.config import BASE_KEY, DELETE_KEY, SECTIONS, ConfigError, parse_yaml
from accelwrap.errors import suggest
from accelwrap.runner.runner import Runner
from accelwrap.runner.train_cfg import LOOP_TYPES

__all__ = ["CONVERT_HELP", "convert", "read_python_config", "run_convert", "to_yaml"]

CONVERT_HELP = """\
Convert an MMEngine Python config (with its _base_ files) into the YAML accelwrap reads.

The config file is executed with Python, as MMEngine does: convert only files you trust.
_base_ chains, {{_base_.x}}, _delete_=True, helper variables, arithmetic and
comprehensions are evaluated; the YAML holds the resulting values. train_cfg.type and
default_hooks are mapped onto accelwrap's settings, sections accelwrap does not
implement are dropped, and every mapping, kept section and dropped key is printed."""

# Sections accelwrap ignores and the converter leaves out: name -> why.
_DROPPED = {
    "env_cfg": "Accelerate sets up processes and backends (see launch_configs/)",
    "visualizer": "accelwrap logs scalars through default_hooks.logger",
    "vis_backends": "trackers are default_hooks.logger.trackers",
    "log_processor": "the logger writes every scalar as is",
    "launcher": "launch with accelerate launch or torchrun",
    "log_level": "configure Python's logging instead",
    "default_scope": "types are looked up in accelwrap's registries (custom_imports brings "
                     "your own)",
}
# default_hooks entries accelwrap reads, and the keys it reads in each.
_HOOKS = {"checkpoint": ("CheckpointHook", {"type", "interval", "by_epoch", "max_keep_ckpts",
                                            "save_last"}),
          "logger": ("LoggerHook", {"type", "interval"})}
_BASE_REF = re.compile(r"\{\{\s*" + BASE_KEY + r"\.([\w.]+)\s*\}\}")
_ENV_REF = re.compile(r"\{\{['\"]?\s*\$(\w+)\s*:\s*(.*?)\s*['\"]?\}\}")


class _AttrDict(dict):
    """The ``_base_`` a config reads: a dict whose keys are also attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            value = self[name]
        except KeyError:
            raise AttributeError(f"_base_ has no {name!r}; {suggest(name, self)}") from None
        return _AttrDict(value) if isinstance(value, dict) else value


def _substitute_text(text: str, path: Path) -> tuple[str, dict[str, str]]:
    """Predefined and environment variables, and ``{{_base_.x}}`` -> placeholder strings."""
    for name, value in (("fileDirname", str(path.parent)), ("fileBasename", path.name),
                        ("fileBasenameNoExtension", path.stem), ("fileExtname", path.suffix)):
        text = re.sub(r"\{\{\s*" + name + r"\s*\}\}", value.replace("\\", "/"), text)
    text = _ENV_REF.sub(lambda m: os.environ.get(m.group(1), m.group(2)), text)
    placeholders: dict[str, str] = {}
    for var in sorted(set(_BASE_REF.findall(text))):
        key = f"_{var}_{uuid.uuid4().hex[:6]}"
        placeholders[key] = var
        text = re.sub(r"\{\{\s*" + BASE_KEY + r"\." + re.escape(var) + r"\s*\}\}", f'"{key}"', text)
    return text, placeholders


def _base_files(tree: ast.Module, path: Path) -> list[Path]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == BASE_KEY
                                                for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                raise ConfigError(f"{path}: {BASE_KEY} must be a path or a list of paths "
                                  "written literally") from None
            names = [value] if isinstance(value, str) else list(value)
            for name in names:
                if "::" in name:
                    raise ConfigError(f"{path}: {BASE_KEY} {name!r} names a package's config; "
                                      "copy that file next to yours and name it by path")
            return [(path.parent / name).resolve() for name in names]
    return []


def _lookup(base: Mapping, dotted: str, path: Path) -> Any:
    value: Any = base
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise ConfigError(f"{path}: {{{{_base_.{dotted}}}}}: the bases have no {part!r}")
        value = value[part]
    return copy.deepcopy(value)


def _substitute(value: Any, placeholders: dict[str, str], base: Mapping, path: Path) -> Any:
    if isinstance(value, str) and value in placeholders:
        return _lookup(base, placeholders[value], path)
    if isinstance(value, Mapping):
        return {k: _substitute(v, placeholders, base, path) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_substitute(v, placeholders, base, path) for v in value)
    return value


def _merge(child: Mapping, base: Mapping) -> dict:
    """MMEngine's merge: mappings merge key by key unless the child sets ``_delete_=True``."""
    out = copy.deepcopy(dict(base))
    for key, value in child.items():
        if isinstance(value, Mapping) and key in out and not value.get(DELETE_KEY, False):
            if not isinstance(out[key], Mapping):
                raise ConfigError(f"{key}: a dict cannot merge into the base's "
                                  f"{type(out[key]).__name__} (set {DELETE_KEY}=True to replace "
                                  "it)")
            out[key] = _merge(value, out[key])
        else:
            out[key] = copy.deepcopy(value)
    return out


def _strip_delete(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _strip_delete(v) for k, v in value.items() if k != DELETE_KEY}
    if isinstance(value, (list, tuple)):
        return [_strip_delete(v) for v in value]
    return value


def read_python_config(path: str | os.PathLike, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Evaluate an MMEngine config file (and its ``_base_`` chain) the way MMEngine does.

    Args:
        path: A ``.py`` config (a YAML base is read as YAML).
        chain: The files that named this one as a base (to refuse cycles).

    Returns:
        The merged config: plain values, tuples kept as lists, helper variables included.

    Raises:
        ConfigError: A missing file, a cycle, bases sharing a key, a new-style (lazy
            import) config, or a ``{{_base_.x}}`` that names nothing.
    """
    path = Path(path).resolve()
    if path in chain:
        raise ConfigError(f"{BASE_KEY}: inheritance cycle "
                          + " -> ".join(str(p) for p in (*chain, path)))
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist"
                          + (f" (named by {chain[-1]})" if chain else ""))
    if path.suffix in (".yaml", ".yml", ".json"):
        return _strip_delete(parse_yaml(path.read_text(encoding="utf-8")) or {})
    text, placeholders = _substitute_text(path.read_text(encoding="utf-8"), path)
    if "read_base()" in text:
        raise ConfigError(f"{path}: a new-style (lazy import, read_base) config; convert the "
                          "old-style (_base_ = [...]) form")
    tree = ast.parse(text, str(path))
    base: dict[str, Any] = {}
    for base_path in _base_files(tree, path):
        part = read_python_config(base_path, (*chain, path))
        shared = sorted(set(base) & set(part))
        if shared:
            raise ConfigError(f"{path}: bases share top-level keys {shared} (MMEngine refuses "
                              "this too)")
        base.update(part)
    tree.body = [n for n in tree.body if not (isinstance(n, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == BASE_KEY for t in n.targets))]
    scope: dict[str, Any] = {BASE_KEY: _AttrDict(copy.deepcopy(base))}
    exec(compile(tree, str(path), "exec"), scope)  # noqa: S102 - MMEngine runs configs too
    own = {k: v for k, v in scope.items() if k != BASE_KEY and not k.startswith("__")
           and not isinstance(v, (types.FunctionType, types.ModuleType, type))}
    return _strip_delete(_merge(_substitute(own, placeholders, base, path), base))


def _plain(value: Any, where: str, report: list[str]) -> Any:
    """YAML-ready values (tuples -> lists); anything else is dropped with a note."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            item = _plain(v, f"{where}.{k}", report)
            if item is not _SKIP:
                out[str(k)] = item
        return out
    if isinstance(value, (list, tuple)):
        items = [_plain(x, f"{where}.{i}", report) for i, x in enumerate(value)]
        return [v for v in items if v is not _SKIP]
    report.append(f"dropped: {where} ({type(value).__name__} {value!r} is not a YAML value)")
    return _SKIP


_SKIP = object()


def _map_train_cfg(train_cfg: Mapping, report: list[str]) -> dict:
    out = dict(train_cfg)
    loop = out.pop("type", None)
    if loop is None:
        return out
    short = loop.rsplit(".", 1)[-1] if isinstance(loop, str) else loop
    if short not in LOOP_TYPES:
        out["type"] = loop  # accelwrap check reports it
        return out
    out["by_epoch"] = LOOP_TYPES[short]
    if not out["by_epoch"] and "val_interval" not in out:
        out["val_interval"] = 1000
        report.append("mapped: train_cfg.val_interval=1000 (IterBasedTrainLoop's default)")
    report.insert(0, f"mapped: train_cfg.type={loop} -> train_cfg.by_epoch={out['by_epoch']}")
    return out


def _map_hooks(hooks: Mapping, report: list[str]) -> dict:
    out = {}
    for name, hook in hooks.items():
        if name not in _HOOKS or not isinstance(hook, Mapping) \
                or hook.get("type", _HOOKS[name][0]) != _HOOKS[name][0]:
            kind = hook.get("type", "?") if isinstance(hook, Mapping) else hook
            report.append(f"dropped: default_hooks.{name} ({kind}: not one of accelwrap's "
                          "hooks; it runs its own timing, scheduler stepping and seeding)")
            continue
        keep = {k: v for k, v in hook.items() if k in _HOOKS[name][1] and k != "type"}
        extra = sorted(set(hook) - _HOOKS[name][1])
        if extra:
            report.append(f"dropped: default_hooks.{name}.{', '.join(extra)} (not read by "
                          "accelwrap)")
        out[name] = keep
    report.append(f"mapped: default_hooks -> {sorted(out) or 'none'}")
    return out


def convert(path: str | os.PathLike) -> tuple[dict[str, Any], list[str]]:
    """The accelwrap config of an MMEngine Python config, and what was mapped/kept/dropped.

    Args:
        path: The MMEngine config file.

    Returns:
        ``(config, report)``: the config as plain values; one line per mapping, kept
        section and dropped key.
    """
    raw = read_python_config(path)
    known = set(SECTIONS) | set(Runner.config_keys())
    report: list[str] = []
    out: dict[str, Any] = {}
    for key, value in raw.items():
        value = _plain(value, key, report)
        if value is _SKIP:
            continue
        if key in _DROPPED:
            report.append(f"dropped: {key} (not implemented: {_DROPPED[key]})")
        elif key not in known:
            hint = suggest(key, known, list_all=False)
            report.append(f"dropped: {key} (a helper variable: its value is written where it is "
                          f"used; if it is a section, {hint})")
        elif key == "train_cfg" and isinstance(value, Mapping):
            out[key] = _map_train_cfg(value, report)
        elif key == "default_hooks" and isinstance(value, Mapping):
            out[key] = _map_hooks(value, report)
        else:
            out[key] = value
    report.append("kept: " + ", ".join(k for k in out))
    return out, report


def to_yaml(cfg: Mapping[str, Any]) -> str:
    """YAML text of a converted config (block style, keys in config order)."""
    return yaml.safe_dump(dict(cfg), sort_keys=False, default_flow_style=False, width=100)


def run_convert(source: str, output: str) -> int:
    """The ``accelwrap convert`` command: write the YAML, print the report.

    Args:
        source: The MMEngine Python config.
        output: The YAML file to write.

    Returns:
        0 (errors raise and are reported by the command line).
    """
    cfg, report = convert(source)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(f"# converted by accelwrap convert from {source}\n" + to_yaml(cfg),
                            encoding="utf-8")
    for line in report:
        print(line)
    print(f"wrote {output} (check it: accelwrap check {output})", file=sys.stderr)
    return 0
