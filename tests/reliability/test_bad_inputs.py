"""A corpus of malformed configs, overrides, flags and damaged run folders: each refusal
gets one line and its exit code, and changes no file."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile import FAMILIES, changed_paths, command_clean, prepare_command, snapshot
from scenarios import clean_failure, corpus, corpus_args
from typer.testing import CliRunner

from gancli.cli import app

runner = CliRunner()
CORPUS = corpus()


def test_the_corpus_is_large_and_varied() -> None:
    assert len(CORPUS) >= 500
    assert {e["kind"] for e in CORPUS} == {"set", "preset", "flags", "command"}
    scenarios_only = {5, 7, 12, 13, 15}  # streams, signals, caches, presets, completion
    assert {e["family"] for e in CORPUS if "family" in e} == set(FAMILIES) - scenarios_only
    assert len({e["id"] for e in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("entry", CORPUS, ids=[e["id"] for e in CORPUS])
@pytest.mark.slow
def test_bad_input(entry: dict, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if entry["kind"] != "command":
        result = runner.invoke(app, ["train", *corpus_args(entry, tmp_path)])
        assert clean_failure(result.exit_code, result.output, entry["expect"]), (
            entry,
            result.output,
        )
        return
    args = prepare_command(entry, tmp_path, request.getfixturevalue("tiny_run"))
    before = snapshot(tmp_path)
    result = runner.invoke(app, args)
    output = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        output += f"\nTraceback: {result.exception!r}"
    changed = changed_paths(before, snapshot(tmp_path))
    problem = command_clean(entry, result.exit_code, output, changed, tmp_path)
    assert not problem, (problem, entry["args"], output[-2000:])
