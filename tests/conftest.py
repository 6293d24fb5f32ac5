"""What every test area needs: the optional shared model set, and the `slow` marker on the areas that
start real processes (end-to-end runs, user journeys, QEMU). Area fixtures live beside their tests
(tests/server/conftest.py: databases, the in-process API, Mosquitto); helpers in tests/support."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.paths import REPO, SHARED_MODELS

if TYPE_CHECKING:
    from tinyfleet.server.stack import Stack

TESTS = REPO / "tests"
# Whole areas that are slow by nature: `make test-fast` (pytest -m "not slow") leaves them out.
SLOW_DIRS = (TESTS / "e2e", TESTS / "journeys")
SLOW_FILES = ("test_qemu_*.py",)  # the firmware under QEMU, wherever it is tested


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow = pytest.mark.slow
    for item in items:
        path = item.path
        if any(path.is_relative_to(d) for d in SLOW_DIRS) or any(path.match(g) for g in SLOW_FILES):
            item.add_marker(slow)


@pytest.fixture(scope="session")
def shared_models() -> Path:
    """The real TFLM models (and pairs/ of successive versions) kept beside the repository in
    ../shared/models; tests that need them are skipped when the folder is absent."""
    if not SHARED_MODELS.is_dir():
        pytest.skip(f"shared models folder {SHARED_MODELS} is absent (real TFLM models and version pairs)")
    return SHARED_MODELS


@pytest.fixture
def cli_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """A server in this process (SQLite, no broker) with the CLI pointed at it by TINYFLEET_API_URL and
    TINYFLEET_API_TOKEN, as a user's shell would be."""
    from tinyfleet.server.stack import run_stack

    with run_stack(data_dir=tmp_path / "server", background=False) as st:
        monkeypatch.setenv("TINYFLEET_API_URL", st.url)
        monkeypatch.setenv("TINYFLEET_API_TOKEN", st.token)
        yield st
