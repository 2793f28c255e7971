"""Registry contract: registration forms, lookup, building from dict/DictConfig, errors."""

from __future__ import annotations

import copy

import pytest
import torch
from omegaconf import OmegaConf

from accelwrap.errors import RegistryError, UnknownTypeError
from accelwrap.registry import (
    OPTIM_WRAPPER_CONSTRUCTORS,
    OPTIM_WRAPPERS,
    OPTIMIZERS,
    PARAM_SCHEDULERS,
    Registry,
)


class Box:
    def __init__(self, size: int = 1, color: str = "red") -> None:
        self.size, self.color = size, color


def make_box(size: int) -> Box:
    return Box(size=size)


@pytest.fixture
def reg() -> Registry:
    return Registry("TOYS")


def test_decorator_registers_and_returns_the_class(reg):
    @reg.register_module()
    class Ball:
        pass

    assert Ball.__name__ == "Ball" and reg.get("Ball") is Ball
    assert "Ball" in reg and "Bat" not in reg and len(reg) == 1


def test_call_form_with_name_list_and_function(reg):
    assert reg.register_module(name=["Box", "Crate"], module=Box) is Box
    reg.register_module(module=make_box)
    assert reg.get("Box") is reg.get("Crate") is Box
    assert reg.build({"type": "make_box", "size": 3}).size == 3
    assert reg.keys() == ["Box", "Crate", "make_box"]
    assert reg.module_dict == {"Box": Box, "Crate": Box, "make_box": make_box}


def test_decorator_with_name(reg):
    @reg.register_module(name="Renamed")
    class Original:
        pass

    assert reg.get("Renamed") is Original and "Original" not in reg


def test_duplicate_name_needs_force(reg):
    reg.register_module(module=Box)
    reg.register_module(module=Box)  # the same object again is harmless

    class Other:
        pass

    with pytest.raises(RegistryError, match="'Box' is already registered in TOYS.*force=True"):
        reg.register_module(name="Box", module=Other)
    reg.register_module(name="Box", module=Other, force=True)
    assert reg.get("Box") is Other


def test_force_decorator_replaces(reg):
    reg.register_module(module=Box)

    @reg.register_module(name="Box", force=True)
    class NewBox:
        pass

    assert reg.get("Box") is NewBox


@pytest.mark.parametrize("bad", ["yes", 1])
def test_force_must_be_bool(reg, bad):
    with pytest.raises(TypeError, match="force must be a bool"):
        reg.register_module(module=Box, force=bad)


def test_only_callables_and_string_names(reg):
    with pytest.raises(TypeError, match="only classes and functions can be registered"):
        reg.register_module(module=3)
    with pytest.raises(TypeError, match="a registered name must be a string, got 7"):
        reg.register_module(name=7, module=Box)


def test_get_returns_classes_as_is(reg):
    assert reg.get(Box) is Box
    with pytest.raises(TypeError, match="'type' must be a name or a class, got 3"):
        reg.get(3)


@pytest.mark.parametrize("as_dictconfig", [False, True])
def test_build_from_dict_and_dictconfig_never_mutates(reg, as_dictconfig):
    reg.register_module(module=Box)
    plain = {"type": "Box", "size": 4}
    cfg = OmegaConf.create(plain) if as_dictconfig else plain
    before = copy.deepcopy(plain)
    box = reg.build(cfg, default_args={"color": "blue"})
    assert (box.size, box.color) == (4, "blue")
    assert (OmegaConf.to_container(cfg) if as_dictconfig else cfg) == before


def test_build_config_wins_over_default_args(reg):
    reg.register_module(module=Box)
    assert reg.build({"type": "Box", "color": "green"}, {"color": "blue"}).color == "green"


def test_build_with_class_as_type(reg):
    box = reg.build({"type": Box, "size": 2})
    assert isinstance(box, Box) and box.size == 2


def test_build_resolves_interpolations(reg):
    reg.register_module(module=Box)
    cfg = OmegaConf.create({"base": 5, "box": {"type": "Box", "size": "${base}"}})
    assert reg.build(cfg.box).size == 5


def test_unknown_name_lists_close_matches(reg):
    reg.register_module(module=Box)
    reg.register_module(name="Boxer", module=Box)
    with pytest.raises(UnknownTypeError) as info:
        reg.build({"type": "Bix"})
    message = str(info.value)
    assert "'Bix' is not registered in TOYS" in message and "did you mean 'Box'" in message
    assert isinstance(info.value, KeyError)  # what MMEngine raises


def test_unknown_optimizer_in_real_registry():
    with pytest.raises(UnknownTypeError, match="'Adamw' is not registered in OPTIMIZERS; "
                                               "did you mean 'AdamW'"):
        OPTIMIZERS.get("Adamw")


def test_unexpected_argument_lists_accepted_ones(reg):
    reg.register_module(module=Box)
    with pytest.raises(TypeError) as info:
        reg.build({"type": "Box", "sise": 1})
    message = str(info.value)
    assert "TOYS 'Box': unexpected argument 'sise'; did you mean 'size'?" in message
    assert "accepted: 'size', 'color'" in message
    with pytest.raises(TypeError,
                       match="unexpected argument 'zzz'; valid names are 'color', 'size'"):
        reg.build({"type": "Box", "zzz": 1})


def test_missing_required_argument(reg):
    reg.register_module(module=make_box)
    with pytest.raises(TypeError, match="missing required argument 'size'"):
        reg.build({"type": "make_box"})


def test_config_must_be_a_mapping_with_type(reg):
    reg.register_module(module=Box)
    with pytest.raises(TypeError, match="a config must be a dict, got list"):
        reg.build(["Box"])
    with pytest.raises(TypeError, match=r"has no 'type' key; valid names are 'Box'"):
        reg.build({"size": 1})


def test_missing_hint_is_shown_until_registered(reg):
    reg.add_missing_hint("Fancy", "`pip install fancy` brings it")
    with pytest.raises(UnknownTypeError,
                       match="'Fancy' is not available in TOYS: `pip install fancy`"):
        reg.get("Fancy")
    assert "Fancy" not in reg
    reg.register_module(name="Fancy", module=Box)
    assert reg.get("Fancy") is Box


def test_lazy_entry_imports_on_first_get(reg):
    reg.register_lazy("OrderedDict", "collections")
    assert "OrderedDict" in reg and "OrderedDict" in reg.keys()
    import collections
    assert reg.get("OrderedDict") is collections.OrderedDict
    assert reg.build({"type": "OrderedDict", "a": 1}) == {"a": 1}


def test_lazy_entry_that_fails_to_import_says_so(reg):
    reg.register_lazy("Nope", "accelwrap_no_such_module", hint="`pip install nope` fixes it")
    with pytest.raises(UnknownTypeError) as info:
        reg.get("Nope")
    message = str(info.value)
    assert "TOYS 'Nope': importing accelwrap_no_such_module.Nope failed" in message
    assert "ModuleNotFoundError" in message and "`pip install nope` fixes it" in message


def test_lazy_entry_respects_force(reg):
    reg.register_module(module=Box)
    with pytest.raises(RegistryError, match="already registered"):
        reg.register_lazy("Box", "collections", "OrderedDict")
    reg.register_lazy("Box", "collections", "OrderedDict", force=True)
    import collections
    assert reg.get("Box") is collections.OrderedDict
    reg.register_module(name="Box", module=Box, force=True)
    assert reg.get("Box") is Box


def test_the_four_registries_exist_and_are_filled():
    assert [r.name for r in (OPTIMIZERS, OPTIM_WRAPPERS, OPTIM_WRAPPER_CONSTRUCTORS,
                             PARAM_SCHEDULERS)] == [
        "OPTIMIZERS", "OPTIM_WRAPPERS", "OPTIM_WRAPPER_CONSTRUCTORS", "PARAM_SCHEDULERS"]
    assert OPTIMIZERS.get("SGD") is torch.optim.SGD
    assert "OptimWrapper" in OPTIM_WRAPPERS
    assert "DefaultOptimWrapperConstructor" in OPTIM_WRAPPER_CONSTRUCTORS


class ToySchedule:
    def __init__(self, optimizer, begin=0, end=10, by_epoch=True):
        self.optimizer, self.begin, self.end, self.by_epoch = optimizer, begin, end, by_epoch

    @classmethod
    def build_iter_from_epoch(cls, *args, begin=0, end=10, by_epoch=True, epoch_length=None,
                              **kwargs):
        return cls(*args, begin=begin * epoch_length, end=end * epoch_length, by_epoch=False,
                   **kwargs)


def test_scheduler_registry_converts_epochs_to_iterations():
    reg = Registry("SCHED", build_func=PARAM_SCHEDULERS._build_func)
    reg.register_module(module=ToySchedule)
    cfg = {"type": "ToySchedule", "begin": 1, "end": 3, "convert_to_iter_based": True}
    before = copy.deepcopy(cfg)
    sched = reg.build(cfg, default_args={"optimizer": "opt", "epoch_length": 5})
    assert (sched.begin, sched.end, sched.by_epoch) == (5, 15, False) and cfg == before
    plain = reg.build({"type": "ToySchedule"}, default_args={"optimizer": "o", "epoch_length": 5})
    assert (plain.begin, plain.end, plain.by_epoch) == (0, 10, True)
    with pytest.raises(ValueError, match="needs epoch_length"):
        reg.build(cfg, default_args={"optimizer": "opt"})
    with pytest.raises(ValueError, match="needs an epoch-based scheduler"):
        reg.build({**cfg, "by_epoch": False}, default_args={"optimizer": "o", "epoch_length": 2})
