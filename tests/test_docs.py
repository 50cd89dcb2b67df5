"""The README and docs/: every link and anchor resolves, every picture is there, and the
export snippets run as written on the run the README's command 1 makes."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gancli.cli import app

REPO = Path(__file__).resolve().parents[1]
RUN = "runs/cgan-digits-001"  # what the README's command 1 leaves


PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def documents() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in PAGES)


def anchors(page: Path) -> set[str]:
    """The anchors a repository host gives the page's headings (outside code blocks)."""
    found: set[str] = set()
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    for title in re.findall(r"^#{1,6} +(.+?) *$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in found:
            n += 1
            candidate = f"{slug}-{n}"
        found.add(candidate)
    return found


def test_every_link_and_anchor_resolves() -> None:
    assert len(PAGES) >= 7  # the README and the pages behind it
    broken = []
    for page in PAGES:
        text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):
                continue  # a web address: not checked offline
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and anchor not in anchors(file):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken


def test_the_readme_is_short_and_shows_pictures_first() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    pictures = re.findall(r"!\[[^\]]+\]\((docs/images/[^)]+)\)", readme)
    assert len(pictures) >= 3
    assert readme.index(pictures[0]) < readme.index("## A tour")  # before the tour
    for picture in pictures:
        assert (REPO / picture).stat().st_size > 1000


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.M | re.S)


@pytest.mark.slow
def test_the_export_snippets_run_on_the_run_command_1_makes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = documents()
    assert f"`{RUN}/`" in text  # the README says command 1 makes this run
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    # Command 1's training, on fewer images: the same preset, the same run folder.
    tiny = ["--limit", "256", "--batch-size", "32", "--epochs", "1", "--quiet"]
    trained = runner.invoke(app, ["train", "--preset", "cgan-digits", *tiny])
    assert trained.exit_code == 0, trained.output
    assert (tmp_path / RUN / "checkpoints" / "last.pt").is_file()
    commands = [
        shlex.split(line.split("#")[0])[1:]
        for block in code_blocks(text, "bash")
        for line in block.splitlines()
        if line.startswith(f"gancli export {RUN}")
    ]
    assert len(commands) >= 2
    for args in commands:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
    snippets = [b for b in code_blocks(text, "python") if "/export/generator." in b]
    assert len(snippets) >= 2  # TorchScript and ONNX Runtime
    for snippet in snippets:
        assert f'"{RUN}/export/generator.' in snippet  # the run the export commands wrote
        run = subprocess.run(
            [sys.executable, "-c", snippet + "\nassert images.shape[0] == n\n"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr[-2000:]
    # The Python form of the commands, on the same run.
    (api,) = [b for b in code_blocks(text, "python") if "SampleJob(" in b]
    assert f'run="{RUN}"' in api
    run = subprocess.run(
        [sys.executable, "-c", api], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "sevens.png").is_file() and (tmp_path / RUN / "eval.json").is_file()
