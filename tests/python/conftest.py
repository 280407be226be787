"""Fixtures shared by the SDK and gateway tests: a real Warrant server per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness import Server, start_server


@pytest.fixture(scope="module")
def warrant_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("warrant") / "data")
    yield srv
    assert srv.stop() == 0, "the server did not shut down cleanly"
