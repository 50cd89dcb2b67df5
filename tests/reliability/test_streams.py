"""Output that cannot be written (a pipe whose reader left, a full device, a closed
descriptor) never stops the work or prints a traceback; a lost --json result is an error."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile import stream_case, train_on_a_terminal, train_piped_to_head

from gancli import ui


def test_training_piped_to_head_runs_to_the_end(tmp_path: Path, data_dir: Path) -> None:
    assert not train_piped_to_head(tmp_path, data_dir)


@pytest.mark.slow
def test_training_on_a_terminal_shows_its_bar_and_finishes(tmp_path: Path, data_dir: Path) -> None:
    assert not train_on_a_terminal(tmp_path, data_dir)


@pytest.mark.parametrize(
    ("command", "redirect", "json_out"),
    [
        ("presets", ">&-", True),
        ("presets", ">/dev/full", True),
        ("dry-run", ">&-", False),
        ("dry-run", ">/dev/full", False),
        ("dry-run", ">/dev/full", True),
        ("sample", ">/dev/full", True),
        ("inspect", ">&-", False),
        ("report", ">/dev/full", True),
        ("export", ">&-", False),
    ],
)
@pytest.mark.slow
def test_closed_or_full_stdout(
    tmp_path: Path, tiny_run: Path, command: str, redirect: str, json_out: bool
) -> None:
    assert not stream_case(tmp_path, tiny_run, command, redirect, json_out)


class Broken:
    """A stream whose writes fail like a pipe whose reader has gone."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self) -> int:
        raise OSError("no descriptor")


def test_a_lost_stdout_drops_human_output_but_not_the_json_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ui.sys, "stdout", Broken())
    console = ui.make_console(False)
    console.print("epoch 1/3 ...")  # would raise SystemExit(1) inside Rich, stopping training
    console.print("epoch 2/3 ...")
    assert console.file.lost  # type: ignore[attr-defined]
    with pytest.raises(ui.StorageError, match="cannot write the JSON result to stdout"):
        ui.print_json({"run_dir": "x"})
