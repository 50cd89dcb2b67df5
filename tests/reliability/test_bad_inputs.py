"""A corpus of malformed configs, overrides and flags: each gets one line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from scenarios import clean_failure, corpus, corpus_args
from typer.testing import CliRunner

from gancli.cli import app

runner = CliRunner()
CORPUS = corpus()


def test_the_corpus_is_large_and_varied() -> None:
    assert len(CORPUS) >= 200
    assert {e["kind"] for e in CORPUS} == {"set", "preset", "flags"}


@pytest.mark.parametrize("entry", CORPUS, ids=[e["id"] for e in CORPUS])
def test_bad_input(entry: dict, tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", *corpus_args(entry, tmp_path)])
    assert clean_failure(result.exit_code, result.output, entry["expect"]), (
        entry,
        result.output,
    )
