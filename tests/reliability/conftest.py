"""Fixtures of tests/reliability: a tiny trained run for the corpus's commands to damage."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile import make_tiny_run


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    return make_tiny_run(tmp_path_factory.mktemp("tiny"), data_dir)
