"""Shared fixtures: made-up IDX datasets, the real ones when present, an isolated
environment, tiny runs.

Every test runs on a fresh clone with no data and no network: `data_dir` is a data root of
gancli's built-in digits written as MNIST, Fashion-MNIST and notMNIST IDX files. Only the
tests whose claim is about the real files ask for `real_data_dir` ($GANCLI_DATA_DIR, else
../shared/data beside the repository); without them those tests skip, with one summary
line, unless GANCLI_REQUIRE_REAL_DATA=1 (CI), which makes a missing dataset a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import make_idx_root

REPO = Path(__file__).resolve().parents[1]
REAL_DATASETS = ("MNIST", "FashionMNIST", "notMNIST")
REAL_DATA_SKIP = "real datasets not found"


def _real_data_dir() -> Path:
    env = os.environ.get("GANCLI_DATA_DIR")
    return Path(env).resolve() if env else (REPO.parent / "shared" / "data").resolve()


REAL_DATA_DIR = _real_data_dir()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torchvision-style data root of built-in digits: MNIST, FashionMNIST, notMNIST."""
    return make_idx_root(tmp_path_factory.mktemp("idx-data"))


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real MNIST, Fashion-MNIST and notMNIST files, for claims about them."""
    missing = [name for name in REAL_DATASETS if not (REAL_DATA_DIR / name / "raw").is_dir()]
    if not missing:
        return REAL_DATA_DIR
    message = f"{REAL_DATA_SKIP} under {REAL_DATA_DIR} ({', '.join(missing)})"
    if os.environ.get("GANCLI_REQUIRE_REAL_DATA") == "1":
        pytest.fail(f"GANCLI_REQUIRE_REAL_DATA=1 and {message}", pytrace=False)
    pytest.skip(message)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line for the real-data tests that were skipped: what went unchecked, and how."""
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if REAL_DATA_SKIP in str(getattr(report, "longrepr", ""))
    ]
    if skipped:
        terminalreporter.write_line(
            f"real data: {len(skipped)} tests of claims about the real MNIST, Fashion-MNIST "
            f"and notMNIST files (their counts, the evaluators' accuracy) were skipped: none "
            f"under {REAL_DATA_DIR}; to run them, GANCLI_DATA_DIR=DIR python -m pytest -q "
            "with DIR holding MNIST/raw, FashionMNIST/raw and notMNIST/raw",
            yellow=True,
        )


@pytest.fixture(autouse=True)
def isolated_env(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    """No test downloads, reads the user's cache or real data, or writes into the repository."""
    monkeypatch.setenv("GANCLI_NO_DOWNLOAD", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("GANCLI_RUNS_DIR", raising=False)
    monkeypatch.setenv("GANCLI_DATA_DIR", str(data_dir))
    monkeypatch.setenv("GANCLI_DEBIAN_DATASETS", str(tmp_path_factory.mktemp("no-debian")))


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Path]:
    """Tiny finished runs to sample, animate and inspect: conditional, EMA, 3 epochs."""
    from gancli.engine.config import load_config
    from gancli.engine.options import RuntimeOptions
    from gancli.engine.starting import new_trainer

    root = tmp_path_factory.mktemp("trained")
    options = RuntimeOptions(data_dir=str(data_dir), device="cpu")
    runs = {}
    for key, preset, sets in (
        ("cgan", "cgan-mnist", []),
        ("dcgan-ema", "dcgan-mnist", ["training.ema=0.9"]),
    ):
        flags = {"data.limit": 320, "training.batch_size": 32, "training.epochs": 3}
        config = load_config(preset, sets, flags)
        trainer = new_trainer(config, options, preset_name=preset, out=str(root))
        trainer.fit()
        runs[key] = trainer.run.path
    return runs
