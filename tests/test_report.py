"""`gancli report`: one self-contained HTML page per run, read by a parser and by chromium."""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image, ImageSequence
from typer.testing import CliRunner

from gancli.cli import app
from gancli.engine.records import MetricsLog
from gancli.engine.report import MAX_GRIDS, pick_evenly
from gancli.engine.runs import RunDir
from gancli.engine.scoring import EvalReport, Scores, append_record

runner = CliRunner()
SECTIONS = [
    "summary",
    "config",
    "grids",
    "progress",
    "losses",
    "evaluation",
    "warnings",
    "checkpoints",
]
HOSTILE = "<script>alert(1)</script>"
HOSTILE_NAME = "<img src=x onerror=alert(1)>"  # a folder name can hold this, not a slash


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines


VOID = {"meta", "img", "br", "hr", "input", "link", "source", "wbr"}


class Page(HTMLParser):
    """What a browser would build from the page, as far as the tests need: section ids in
    order, every element's attributes, images, and the text of each section."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.sections: list[str] = []
        self.text: dict[str, str] = {}
        self.title = ""
        self.header = ""
        self._where: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.tags.append((tag, values))
        if tag == "section":
            self.sections.append(values.get("id", ""))
            self.text[values.get("id", "")] = ""
        if tag not in VOID:
            self._where.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._where:
            while self._where.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if self._where and self._where[-1] == "title" and "svg" not in self._where:
            self.title += data
        if "header" in self._where:
            self.header += data
        if self.sections:
            self.text[self.sections[-1]] += data

    def images(self) -> list[dict[str, str]]:
        return [attrs for tag, attrs in self.tags if tag == "img"]


def decode(uri: str) -> Image.Image:
    """The image a data: URI holds, loaded whole (every frame of a GIF)."""
    head, _, payload = uri.partition(",")
    assert re.fullmatch(r"data:image/(png|gif);base64", head), head
    image = Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))
    for frame in ImageSequence.Iterator(image):
        frame.load()
    assert image.format.lower() == head.split("/")[1].split(";")[0]
    return image


def copy_run(source: Path, target: Path) -> RunDir:
    shutil.copytree(source, target)
    return RunDir(target)


def make_hostile(run: RunDir) -> None:
    """A description, class names, a warning and a config value that are markup."""
    config = yaml.safe_load(run.config.read_text())
    config["description"] = HOSTILE
    config["data"]["dataset"] = "folder:<i>digits</i>"
    run.config.write_text(yaml.safe_dump(config))
    names = [f"<b>{c}</b>" for c in "0123456789"]
    model = Scores(12.5, 9, kid=0.1, kid_std=0.01, precision=0.5, recall=0.4, accuracy=0.8)
    model.class_shares = [0.1] * 10
    floor = Scores(0.05, 10, precision=0.87, recall=0.88, source=f"real {HOSTILE}")
    record = EvalReport(
        "checkpoints/last.pt", 3, False, 100, 0, "evaluator", "0" * 64, "0" * 64, 0.99,
        "mnist", "MNIST test split", names, model, floor,
    )  # fmt: skip
    append_record(run, record)
    MetricsLog(run.metrics).append(
        {"kind": "warning", "epoch": 3, "step": 30, "message": f"D wins {HOSTILE}"}
    )


@pytest.fixture(scope="module")
def hostile_report(trained_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """A finished conditional run named and described as markup, with an evaluation and a
    warning, and its report.html."""
    run = copy_run(trained_runs["cgan"], tmp_path_factory.mktemp("report") / HOSTILE_NAME)
    make_hostile(run)
    result = invoke("report", run.path, "--json")
    assert result.exit_code == 0, result.output
    return run, json.loads(result.stdout)


def test_report_shows_every_section_with_valid_embedded_images(hostile_report) -> None:
    run, payload = hostile_report
    out = Path(payload["out"])
    assert out == run.path / "report.html"
    assert payload["grids"] == payload["grids_total"] == 3 and payload["problems"] == []
    assert payload["checkpoints"] == ["last.pt", "previous.pt"]
    text = out.read_text(encoding="utf-8")
    page = Page(text)
    assert page.sections == SECTIONS
    images = page.images()
    assert len(images) == 5  # three epoch grids, the real images, the progress GIF
    grids = sorted(run.samples.glob("epoch_*.png"))
    for img, grid in zip(images[:3], grids, strict=True):
        picture = decode(img["src"])
        assert picture.format == "PNG"
        assert picture.tobytes() == Image.open(grid).tobytes()  # the file itself, in order
        # enlarged by a whole factor, drawn with hard pixel edges
        assert int(img["width"]) % picture.width == 0 and int(img["width"]) > picture.width
        assert img["class"] == "pixels"
    assert [decode(i["src"]).format for i in images] == ["PNG"] * 4 + ["GIF"]
    assert decode(images[4]["src"]).n_frames == 3
    assert "image-rendering: pixelated" in text
    assert "epoch 1" in page.text["grids"] and "epoch 3" in page.text["grids"]
    # loss curves as two inline drawings, with the three epoch ends numbered
    svgs = re.findall(r"<svg .*?</svg>", text, re.S)
    assert len(svgs) == 2 and all("<polyline" in s for s in svgs)
    assert all(s.count("stroke-dasharray") == 3 for s in svgs)
    evaluation = page.text["evaluation"]
    assert "12.500" in evaluation and "0.050" in evaluation and "9/10" in evaluation
    assert "FID is 250.0x the real floor" in evaluation
    assert "D wins" in page.text["warnings"]
    assert "last.pt" in page.text["checkpoints"] and "previous.pt" in page.text["checkpoints"]
    # self-contained: nothing to fetch, nothing to run
    assert not [t for t, _ in page.tags if t in ("script", "link", "iframe", "object")]
    assert "http:" not in text and "https:" not in text and "url(" not in text
    assert all(i["src"].startswith("data:") for i in images)


def test_report_escapes_run_supplied_text(hostile_report) -> None:
    _, payload = hostile_report
    text = Path(payload["out"]).read_text(encoding="utf-8")
    page = Page(text)
    assert HOSTILE not in text and "<b>0</b>" not in text and "<img src=x" not in text
    assert html.escape(HOSTILE) in text
    # the markup comes back as the very characters, where a reader sees text
    assert page.title == f"gancli report: {HOSTILE_NAME}"
    assert HOSTILE in page.text["warnings"] and "<b>3</b>: 10.0%" in page.text["evaluation"]
    assert f"real {HOSTILE}" in page.text["evaluation"]
    assert "folder:<i>digits</i>" in page.text["config"] and HOSTILE in page.header
    assert not [a for _, attrs in page.tags for a in attrs if a.startswith("on")]
    assert [a["src"][:5] for a in page.images()] == ["data:"] * 5


def test_report_of_a_damaged_unfinished_run_shows_what_there_is(
    trained_runs: dict[str, Path], tmp_path: Path
) -> None:
    run = copy_run(trained_runs["cgan"], tmp_path / "broken")
    lines = run.metrics.read_text().splitlines(keepends=True)
    run.metrics.write_text("".join([*lines[:2], "junk, not JSON\n", *lines[2:]]))
    run.evaluations.write_text("[{not json")
    grid = run.epoch_grid(2)
    grid.write_bytes(grid.read_bytes()[:200])  # cut short
    run.epoch_grid(3).unlink()
    run.progress_gif.unlink()
    for checkpoint in run.checkpoints.glob("*.pt"):
        checkpoint.unlink()  # stopped in its first epoch
    result = invoke("report", run.path, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    problems = "\n".join(payload["problems"])
    assert "metrics.jsonl line 3 is damaged" in problems
    assert "eval.json is damaged" in problems
    assert "epoch_0002.png is not a readable image" in problems
    page = Page((run.path / "report.html").read_text(encoding="utf-8"))
    assert page.sections == ["problems", *SECTIONS]
    assert payload["grids"] == 1 and payload["grids_total"] == 2
    assert "No progress.gif" in page.text["progress"]
    assert "losses.png as training last drew it" in page.text["losses"]
    assert "No checkpoints yet" in page.text["checkpoints"]
    for img in page.images():
        decode(img["src"])  # what is shown is whole
    human = invoke("report", run.path)
    assert human.exit_code == 0 and "3 problem(s) named on the page" in human.output


def test_report_of_a_run_without_grids_or_metrics(
    trained_runs: dict[str, Path], tmp_path: Path
) -> None:
    run = copy_run(trained_runs["cgan"], tmp_path / "fresh")
    for path in [*run.samples.glob("*.png"), run.metrics, run.losses_plot, run.progress_gif]:
        path.unlink()
    result = invoke("report", run.path, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["problems"] == []
    page = Page((run.path / "report.html").read_text(encoding="utf-8"))
    assert page.sections == SECTIONS
    assert "No epoch grids yet" in page.text["grids"]
    assert "No losses logged yet" in page.text["losses"]
    assert "No evaluation" in page.text["evaluation"]


def test_report_refuses_what_is_not_a_run(trained_runs: dict[str, Path], tmp_path: Path) -> None:
    one_error_line(invoke("report", tmp_path), "is it a gancli run?")
    one_error_line(invoke("report", tmp_path / "nowhere"), "run directory not found")
    (tmp_path / "file.txt").write_text("x")
    one_error_line(invoke("report", tmp_path / "file.txt"), "takes a run directory")
    run = copy_run(trained_runs["cgan"], tmp_path / "odd")
    run.metrics.unlink()
    run.metrics.mkdir()  # a folder where gancli keeps a file, as inspect refuses
    one_error_line(invoke("report", run.path), "metrics.jsonl is not a regular file")
    assert not (run.path / "report.html").exists()


def test_report_replaces_only_its_own_page(trained_runs: dict[str, Path], tmp_path: Path) -> None:
    run = copy_run(trained_runs["cgan"], tmp_path / "run")
    assert invoke("report", run.path, "-q").exit_code == 0
    own = run.path / "report.html"
    own.write_text("old page")
    result = invoke("report", run.path, "-q")
    assert result.exit_code == 0 and result.output == ""
    assert own.read_text().startswith("<!DOCTYPE html>")  # its own page: rewritten
    mine = tmp_path / "mine.html"
    mine.write_text("precious")
    one_error_line(invoke("report", run.path, "--out", mine), "pass --force to replace it")
    assert mine.read_text() == "precious"
    assert invoke("report", run.path, "--out", mine, "--force", "-q").exit_code == 0
    assert mine.read_text().startswith("<!DOCTYPE html>")
    one_error_line(invoke("report", run.path, "--out", tmp_path / "r.txt"), "use a .html file")
    one_error_line(invoke("report", run.path, "--out", tmp_path), "use a .html file")
    (tmp_path / "dir.html").mkdir()
    one_error_line(invoke("report", run.path, "--out", tmp_path / "dir.html"), "is a folder")


def test_long_runs_show_an_even_selection_of_grids(
    trained_runs: dict[str, Path], tmp_path: Path
) -> None:
    run = copy_run(trained_runs["cgan"], tmp_path / "long")
    first = run.epoch_grid(1).read_bytes()
    for epoch in range(1, 31):
        run.epoch_grid(epoch).write_bytes(first)
    result = invoke("report", run.path, "--json")
    payload = json.loads(result.stdout)
    assert (payload["grids"], payload["grids_total"]) == (MAX_GRIDS, 30)
    page = Page((run.path / "report.html").read_text(encoding="utf-8"))
    assert f"{MAX_GRIDS} of 30 epoch grids, evenly spaced" in page.text["grids"]
    captions = re.findall(r"epoch (\d+)", page.text["grids"])
    numbers = [int(n) for n in captions]
    assert numbers[0] == 1 and numbers[-1] == 30 and numbers == sorted(set(numbers))
    human = invoke("report", run.path)
    assert f"({MAX_GRIDS} of 30 epoch grids" in human.output


def test_pick_evenly() -> None:
    assert pick_evenly(list(range(5)), 24) == [0, 1, 2, 3, 4]
    picked = pick_evenly(list(range(100)), 24)
    assert len(picked) == 24 and picked[0] == 0 and picked[-1] == 99
    assert picked == sorted(set(picked))
    gaps = {b - a for a, b in itertools.pairwise(picked)}
    assert gaps <= {4, 5}  # evenly spread
    assert pick_evenly(list(range(10)), 1) == [9]


# --------------------------------------------------------------------------- in a browser

CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMIUM = next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)

# Test-only: a page that loads the report in a frame and writes what the browser made of
# it into its own DOM, which chromium's --dump-dom prints. The report holds no script.
HARNESS = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>harness</title></head><body>
<pre id="result">no result: the frame never loaded</pre>
<iframe id="report" width="1200" height="800"></iframe>
<script>
var frame = document.getElementById("report");
frame.addEventListener("load", function () {
  var result;
  try {
    var doc = frame.contentDocument;
    var view = frame.contentWindow;
    result = {
      title: doc.title,
      heading: doc.querySelector("h1").textContent,
      sections: Array.prototype.map.call(doc.querySelectorAll("section"), function (s) {
        return s.id + ":" + s.querySelector("h2").textContent;
      }),
      images: Array.prototype.map.call(doc.images, function (img) {
        return {complete: img.complete, naturalWidth: img.naturalWidth,
                shownWidth: img.getBoundingClientRect().width,
                rendering: view.getComputedStyle(img).imageRendering};
      }),
      charts: Array.prototype.map.call(doc.querySelectorAll("svg.chart"), function (svg) {
        return svg.getBoundingClientRect().width;
      }),
      scripts: doc.scripts.length
    };
  } catch (error) {
    result = {error: String(error)};
  }
  document.getElementById("result").textContent = JSON.stringify(result);
});
frame.src = REPORT_URL;
</script></body></html>
"""


@pytest.mark.skipif(
    CHROMIUM is None,
    reason=f"no chromium binary found on PATH (looked for {', '.join(CHROMIUM_NAMES)}); "
    "install Debian's chromium (.ci/run does when it runs as root)",
)
def test_report_renders_in_chromium(hostile_report, tmp_path: Path) -> None:
    _, payload = hostile_report
    harness = tmp_path / "harness.html"
    harness.write_text(HARNESS.replace("REPORT_URL", json.dumps(Path(payload["out"]).as_uri())))
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",  # root in a container has no sandbox to use
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--allow-file-access-from-files",  # lets the harness read the framed file: page
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=15000",
        "--dump-dom",
        harness.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    found = re.search(r'<pre id="result">(.*?)</pre>', done.stdout, re.S)
    assert found, (done.returncode, done.stdout[-1000:], done.stderr[-2000:])
    seen: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    assert "error" not in seen, seen
    assert seen["title"] == f"gancli report: {HOSTILE_NAME}"
    assert seen["heading"] == HOSTILE_NAME  # shown as text, not made an element
    assert [s.split(":")[0] for s in seen["sections"]] == SECTIONS
    assert seen["scripts"] == 0
    images = seen["images"]
    assert len(images) == 5
    for image in images:
        assert image["complete"] and image["naturalWidth"] > 0, images
        assert image["rendering"] == "pixelated"
        assert image["shownWidth"] >= 2 * image["naturalWidth"]  # enlarged on screen
    assert len(seen["charts"]) == 2 and all(width > 300 for width in seen["charts"])
