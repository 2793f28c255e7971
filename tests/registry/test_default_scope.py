"""DefaultScope and scope switching: MMEngine's API and its effect on building."""

from __future__ import annotations

import pytest

from accelwrap.registry import DefaultScope, Registry, init_default_scope


class Box:
    pass


class FancyBox:
    pass


def test_api_matches_mmengines():
    mm = pytest.importorskip("mmengine.registry")
    for scope_cls in (DefaultScope, mm.DefaultScope):
        saved = dict(scope_cls._instance_dict)
        try:
            first = scope_cls.get_instance("t_first", scope_name="alpha")
            assert scope_cls.get_current_instance() is first and first.scope_name == "alpha"
            assert first.instance_name == "t_first"
            assert scope_cls.check_instance_created("t_first")
            assert not scope_cls.check_instance_created("t_none")
            with scope_cls.overwrite_default_scope("beta"):
                assert scope_cls.get_current_instance().scope_name == "beta"
                with scope_cls.overwrite_default_scope(None):
                    assert scope_cls.get_current_instance().scope_name == "beta"
            # (MMEngine restores deep copies, so compare names rather than identity)
            assert scope_cls.get_current_instance().instance_name == "t_first"
            with pytest.warns(UserWarning):
                again = scope_cls.get_instance("t_first", scope_name="gamma")
            assert again.scope_name == "alpha"
        finally:
            scope_cls._instance_dict = saved


def test_no_instance_means_none():
    assert DefaultScope.get_current_instance() is None


def test_bad_scope_name_is_refused():
    with pytest.raises(TypeError, match="scope_name must be a string, got 3") as info:
        DefaultScope.get_instance("t_bad", scope_name=3)
    assert isinstance(info.value, AssertionError)


def test_init_default_scope_sets_and_switches():
    init_default_scope("alpha")
    assert DefaultScope.get_current_instance().scope_name == "alpha"
    init_default_scope("alpha")
    assert len(DefaultScope._instance_dict) == 1
    init_default_scope("beta")
    assert DefaultScope.get_current_instance().scope_name == "beta"


@pytest.fixture
def tree() -> tuple[Registry, Registry]:
    root = Registry("thing", scope="t_dsroot")
    child = Registry("thing", parent=root, scope="t_dschild")
    root.register_module(module=Box)
    child.register_module(module=FancyBox)
    child.register_module(name="Box", module=FancyBox)
    return root, child


def test_default_scope_redirects_a_root_build_to_the_scoped_registry(tree):
    root, child = tree
    assert type(root.build({"type": "Box"})) is Box
    with DefaultScope.overwrite_default_scope("t_dschild"):
        assert type(root.build({"type": "Box"})) is FancyBox
        assert type(root.build({"type": "FancyBox"})) is FancyBox
    assert type(root.build({"type": "Box", "_scope_": "t_dschild"})) is FancyBox
    assert type(child.build({"type": "Box", "_scope_": "t_dsroot"})) is Box


def test_unknown_default_scope_falls_back_to_the_registry_itself(tree, caplog):
    root, _ = tree
    with DefaultScope.overwrite_default_scope("t_nowhere"):
        assert type(root.build({"type": "Box"})) is Box
    assert "no registry of scope 't_nowhere'" in caplog.text


def test_switch_scope_and_registry_yields_the_scoped_registry(tree):
    root, child = tree
    with root.switch_scope_and_registry("t_dschild") as registry:
        assert registry is child
        assert DefaultScope.get_current_instance().scope_name == "t_dschild"
    with root.switch_scope_and_registry(None) as registry:
        assert registry is root
    assert DefaultScope.get_current_instance() is None
