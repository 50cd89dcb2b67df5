"""Shared fixtures: the real datasets in ../shared/data, an isolated environment, tiny runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_dir() -> Path:
    env = os.environ.get("GANCLI_DATA_DIR")
    return Path(env).resolve() if env else (REPO.parent / "shared" / "data").resolve()


DATA_DIR = _data_dir()


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test downloads, reads the user's cache or writes into the repository."""
    monkeypatch.setenv("GANCLI_NO_DOWNLOAD", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("GANCLI_RUNS_DIR", raising=False)
    monkeypatch.setenv("GANCLI_DATA_DIR", str(DATA_DIR))
    monkeypatch.setenv("GANCLI_DEBIAN_DATASETS", str(tmp_path_factory.mktemp("no-debian")))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "MNIST" / "raw").is_dir():
        pytest.fail(f"MNIST not found under {DATA_DIR}; set GANCLI_DATA_DIR to the shared data")
    return DATA_DIR


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Path]:
    """Tiny finished runs to sample, animate and inspect: conditional, EMA, 3 epochs."""
    from gancli.engine.config import load_config
    from gancli.engine.options import RuntimeOptions
    from gancli.engine.trainer import Trainer

    root = tmp_path_factory.mktemp("trained")
    options = RuntimeOptions(data_dir=str(data_dir), device="cpu")
    runs = {}
    for key, preset, sets in (
        ("cgan", "cgan-mnist", []),
        ("dcgan-ema", "dcgan-mnist", ["training.ema=0.9"]),
    ):
        flags = {"data.limit": 320, "training.batch_size": 32, "training.epochs": 3}
        config = load_config(preset, sets, flags)
        trainer = Trainer.new(config, options, preset_name=preset, out=str(root))
        trainer.fit()
        runs[key] = trainer.run.path
    return runs
