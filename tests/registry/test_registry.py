"""Registry trees: parents, children, scoped names, locations, dotted paths, errors."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from accelwrap.errors import RegistryError, UnknownTypeError
from accelwrap.registry import OPTIMIZERS, PARAM_SCHEDULERS, Registry, build_from_cfg


class Box:
    def __init__(self, size: int = 1) -> None:
        self.size = size


class Ball:
    pass


@pytest.fixture
def tree() -> tuple[Registry, Registry, Registry]:
    root = Registry("toy", scope="t_root")
    left = Registry("toy", parent=root, scope="t_left")
    right = Registry("toy", parent=root, scope="t_right")
    root.register_module(module=Box)
    left.register_module(module=Ball)
    return root, left, right


def test_signature_is_mmengines():
    mm = pytest.importorskip("mmengine.registry")
    import inspect
    ours = list(inspect.signature(Registry).parameters)
    assert ours == list(inspect.signature(mm.Registry).parameters)
    assert ours == ["name", "build_func", "parent", "scope", "locations"]


def test_child_falls_back_to_parent_and_is_listed(tree):
    root, left, right = tree
    assert left.get("Box") is Box and right.get("Box") is Box
    assert root.children == {"t_left": left, "t_right": right}
    assert left.parent is root and left.root is root and root.root is root
    assert "Ball" in left and "Ball" not in right and "Ball" not in root


def test_scoped_names_resolve_like_mmengine(tree):
    root, left, right = tree
    assert root.get("t_left.Ball") is Ball  # a child by scope
    assert right.get("t_left.Ball") is Ball  # a sibling, through the root
    assert left.get("t_root.Box") is Box  # the root by its scope
    assert left.get("t_left.Ball") is Ball  # its own scope
    with pytest.raises(UnknownTypeError):
        left.get("t_left.Box")  # an explicit own scope does not fall back to the parent
    with pytest.raises(UnknownTypeError):
        root.get("Ball")  # a parent never looks into its children without a scope


def test_mmengine_scope_means_accelwraps_root():
    assert OPTIMIZERS.get("mmengine.SGD") is OPTIMIZERS.get("accelwrap.SGD") is torch.optim.SGD
    root = Registry("o", scope="accelwrap")
    root.register_module(module=torch.optim.SGD)
    child = Registry("optimizer", parent=root, scope="t_alias")
    assert child.get("mmengine.SGD") is torch.optim.SGD


def test_full_dotted_path_resolves_to_the_object(tree):
    root = tree[0]
    assert root.get("torch.optim.SGD") is torch.optim.SGD
    assert "collections.OrderedDict" in root
    with pytest.raises(UnknownTypeError):
        root.get("collections")  # a module is no type (MMEngine would return the module)


def test_child_inherits_or_overrides_build_func(tree):
    root, left, _ = tree
    assert root.build_func is build_from_cfg and left.build_func is build_from_cfg
    sched = Registry("s", parent=PARAM_SCHEDULERS, scope="t_sched")
    assert sched.build_func is PARAM_SCHEDULERS.build_func

    def custom(cfg, registry, default_args=None):
        return ("custom", registry.name, default_args)

    own = Registry("own", build_func=custom, parent=root, scope="t_own")
    assert own.build({"type": "Box"}) == ("custom", "own", None)
    assert own.build({"type": "Box"}, default_args={"a": 1}) == ("custom", "own", {"a": 1})
    assert Registry("grandchild", parent=own, scope="t_gc").build_func is custom


def test_duplicate_child_scope_is_refused(tree):
    root = tree[0]
    with pytest.raises(ValueError, match="scope 't_left' exists already") as info:
        Registry("again", parent=root, scope="t_left")
    assert isinstance(info.value, AssertionError)  # what MMEngine raises


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"scope": 3}, "scope must be a string, got 3"),
    ({"parent": "OPTIMIZERS"}, "parent must be a Registry, got 'OPTIMIZERS'"),
    ({"locations": "myproj.optim"}, "locations must be a list of module names"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(TypeError, match=match) as info:
        Registry("bad", **kwargs)
    assert isinstance(info.value, AssertionError)


def test_scope_is_inferred_from_the_calling_package():
    assert Registry("inferred").scope == "tests"
    assert OPTIMIZERS.scope == "accelwrap"


def test_register_module_names_and_force(tree):
    root = tree[0]
    root.register_module(name=["A", "B"], module=Ball)
    assert root.get("A") is root.get("B") is Ball
    with pytest.raises(RegistryError, match="'A' is already registered in toy") as info:
        root.register_module(name="A", module=Box)
    assert isinstance(info.value, KeyError)
    root.register_module(name="A", force=True, module=Box)
    assert root.get("A") is Box
    with pytest.raises(TypeError, match="must be a string, got 3"):
        root.register_module(name=3, module=Box)


def test_unknown_name_in_child_suggests_from_the_whole_chain(tree):
    _, left, _ = tree
    with pytest.raises(UnknownTypeError) as info:
        left.get("Bax")
    message = str(info.value)
    assert "'Bax' is not registered in toy (nor in its parents toy)" in message
    assert "did you mean 'Box'" in message and isinstance(info.value, KeyError)


def test_missing_hint_of_a_parent_is_shown_in_a_child(tree):
    root, left, _ = tree
    root.add_missing_hint("Fancy", "`pip install fancy` brings it")
    with pytest.raises(UnknownTypeError, match="not available in toy: `pip install fancy`"):
        left.get("Fancy")


def write_package(tmp_path, name: str, files: dict[str, str]) -> None:
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for file, text in files.items():
        (package / file).write_text(textwrap.dedent(text))


def test_locations_are_imported_on_first_lookup_only(tmp_path, monkeypatch, tree):
    root = tree[0]
    write_package(tmp_path, "t_locpkg", {"models.py": """
        from tests.registry.test_registry import LOCATED
        @LOCATED.register_module()
        class Located:
            pass
        """})
    monkeypatch.syspath_prepend(str(tmp_path))
    global LOCATED
    LOCATED = Registry("located", parent=root, scope="t_loc", locations=["t_locpkg.models"])
    assert "t_locpkg.models" not in sys.modules and len(LOCATED) == 0
    assert LOCATED.get("Located").__name__ == "Located"
    assert "t_locpkg.models" in sys.modules and LOCATED.get("Box") is Box


def test_a_location_that_fails_to_import_names_itself(tree):
    broken = Registry("broken", parent=tree[0], scope="t_broken", locations=["t_no_such.mod"])
    with pytest.raises(ModuleNotFoundError, match="broken .scope 't_broken'.: importing its "
                                                  "location 't_no_such.mod' failed"):
        broken.get("Box")
    with pytest.raises(ModuleNotFoundError):  # tried again, not silently marked as done
        broken.get("Box")


def test_contains_does_not_import_lazy_entries(tree):
    root = tree[0]
    root.register_lazy("Lazy", "t_never_imported_module", "X")
    assert "Lazy" in root and "t_never_imported_module" not in sys.modules
    assert root.keys() == ["Box", "Lazy"] and len(root) == 2
