"""Each test starts and ends without a default scope."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from accelwrap.registry import DefaultScope


@pytest.fixture(autouse=True)
def no_default_scope() -> Iterator[None]:
    saved = dict(DefaultScope._instance_dict)
    DefaultScope._instance_dict = {}
    yield
    DefaultScope._instance_dict = saved
