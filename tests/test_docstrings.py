"""Every ``Example`` in accelwrap's docstrings runs and prints what it shows."""

import doctest
import importlib
import pkgutil

import pytest

import accelwrap

MODULES = sorted(
    info.name for info in pkgutil.walk_packages(accelwrap.__path__, prefix="accelwrap.")
)


def test_the_package_is_walked():
    assert ("accelwrap.registry" in MODULES
            and "accelwrap.optim.optimizer.optimizer_wrapper" in MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
