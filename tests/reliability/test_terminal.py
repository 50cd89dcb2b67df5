"""Families 8 and 9 of issue 15 where the corpus cannot look: a real terminal's output,
the memory bound on checkpoints, the time taken over a huge one."""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gancli import ui, views
from gancli.cli import app
from gancli.engine import checkpoint
from gancli.engine.errors import CheckpointError
from gancli.engine.inspection import inspect_target

runner = CliRunner()
EVIL = '"[/oops] [red]x \\e[31mRED\\e[0m :smile: \\e]0;title\\a \\u202eevil"'


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_markup_and_escapes_are_shown_on_a_terminal_not_obeyed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    preset = tmp_path / "evil.yaml"
    preset.write_text(f"description: {EVIL}\ndata:\n  limit: 64\n")
    screen = Terminal()
    monkeypatch.setattr("sys.stdout", screen)
    console = ui.make_console(False)
    assert console.is_terminal  # Rich's panels and tables, not the plain text
    views.render_report(inspect_target(str(preset)), console)
    views.render_presets({"[bold]evil": "\x1b[2J[/oops]"}, console)
    shown = screen.getvalue()
    for text in ("[/oops] [red]x", "\\x1b[31mRED", ":smile:", "\\x1b]0;title\\x07", "\\u202e"):
        assert text in shown, text
    for raw in ("\x1b[31mRED", "\x1b]0;", "\x07", "\u202e", "\x1b[2J", "😄"):
        assert raw not in shown, repr(raw)
    assert "[bold]evil" in shown


def test_an_error_quoting_a_newline_stays_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--name", "ok\n\x1b[2Jx", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "\x1b" not in result.output
    assert "--name 'ok\\n\\x1b[2Jx'" in result.output


def test_a_huge_sparse_checkpoint_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    with open(path, "wb") as fh:
        fh.truncate(100 * 2**30)  # 100 GB of hole: no room on disk, hours to hash
    started = time.perf_counter()
    result = runner.invoke(app, ["inspect", str(path)])
    assert time.perf_counter() - started < 10
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "107.4 GB with no zip directory at its end" in result.output


def test_a_checkpoint_larger_than_free_memory_is_refused_with_both_sizes(
    tmp_path: Path, trained_runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    shutil.copy(trained_runs["cgan"] / "checkpoints" / "last.pt", path)
    monkeypatch.setattr(checkpoint, "available_memory", lambda: 1000)
    with pytest.raises(CheckpointError, match=r"needs about .* MB of memory and 1.0 KB is free"):
        checkpoint.load_checkpoint(path)
    # inspect says so without hashing the file
    report = runner.invoke(app, ["inspect", str(path.parent.parent), "--json"])
    assert report.exit_code == 2, report.output
    assert os.path.getsize(path) > 1000
