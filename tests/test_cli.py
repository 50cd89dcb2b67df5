"""The command line through Typer's CliRunner and real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

import gancli
from gancli.cli import app
from gancli.engine.checkpoint import load_checkpoint

runner = CliRunner()
TINY = ["--limit", "256", "--batch-size", "32", "--epochs", "1"]


def invoke(*args: str):
    return runner.invoke(app, list(args))


def assert_clean_error(result, code: int, fragment: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]


def test_train_json_prints_one_object_and_writes_the_run(tmp_path: Path) -> None:
    result = invoke("train", "--preset", "dcgan-mnist", *TINY, "--out", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert {"run_dir", "epochs", "steps", "seconds", "images_per_second", "final"} <= set(payload)
    assert payload["epochs"] == 1 and payload["steps"] == 8
    assert payload["images_per_second"] > 0
    run = Path(payload["run_dir"])
    assert run.name == "dcgan-mnist-001"
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "samples/epoch_0001.png",
        "checkpoints/last.pt",
        "losses.png",
    ):
        assert (run / name).is_file()


def test_plain_output_off_a_terminal_has_no_control_codes(tmp_path: Path) -> None:
    result = invoke("train", "--preset", "gan-mnist", *TINY, "--out", str(tmp_path), "--name", "x")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\r" not in result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"run {tmp_path / 'x-001'} on cpu")
    assert ", 1 epoch x 8 steps" in lines[0]
    assert lines[-2].startswith("epoch 1/1  step 8  loss_d ")  # after any notes
    assert lines[-1].startswith("done: 1 epoch, 8 steps in ")


def test_quiet_prints_nothing(tmp_path: Path) -> None:
    result = invoke("train", "--preset", "gan-mnist", *TINY, "--out", str(tmp_path), "--quiet")
    assert result.exit_code == 0 and result.output == ""
    assert (tmp_path / "gan-mnist-001" / "checkpoints" / "last.pt").is_file()


def test_runs_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANCLI_RUNS_DIR", str(tmp_path / "env-runs"))
    assert invoke("train", "--preset", "gan-mnist", *TINY, "--quiet").exit_code == 0
    assert (tmp_path / "env-runs" / "gan-mnist-001" / "config.yaml").is_file()


def test_dry_run_prints_the_resolved_config_and_writes_nothing(tmp_path: Path) -> None:
    result = invoke(
        "train",
        "--preset",
        "wgan-gp-mnist",
        "--set",
        "optim.lr_g=5e-5",
        "--epochs",
        "2",
        "--set",
        "training.epochs=9",
        "--out",
        str(tmp_path),
        "--dry-run",
    )
    assert result.exit_code == 0, result.output
    config = yaml.safe_load(result.output)
    assert config["optim"]["lr_g"] == 5e-5
    assert config["training"]["epochs"] == 2  # the dedicated flag wins over --set
    assert config["objective"]["loss"] == "wgan-gp"
    assert not any(tmp_path.iterdir())
    as_json = invoke("train", "--preset", "cgan-mnist", "--dry-run", "--json")
    assert json.loads(as_json.stdout)["model"]["conditional"] is True


def test_resume_through_the_cli(tmp_path: Path) -> None:
    first = invoke("train", "--preset", "gan-mnist", *TINY, "--out", str(tmp_path), "--quiet")
    assert first.exit_code == 0
    run = tmp_path / "gan-mnist-001"
    result = invoke("train", "--resume", str(run), "--epochs", "2", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert (payload["epochs"], payload["start_epoch"], payload["start_step"]) == (2, 1, 8)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 2
    assert (run / "samples" / "epoch_0002.png").is_file()
    assert not (tmp_path / "gan-mnist-002").exists()
    # The last line tells the whole run apart from what this resume added.
    more = invoke("train", "--resume", str(run), "--epochs", "3")
    assert more.output.splitlines()[-1].startswith(
        "done: 3 epochs, 24 steps in all; resumed at step 16 (epoch 3), 8 steps in "
    ), more.output
    # A finished run with no --epochs: nothing to do, and the way to go on is named.
    again = invoke("train", "--resume", str(run))
    assert again.exit_code == 0, again.output
    assert (
        "the run has finished its 3 epochs: nothing left to train; pass --epochs N (more "
        "than 3) to train it further"
    ) in again.output
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 3


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--preset", "nope"], "unknown preset 'nope'"),
        (
            ["--preset", "dcgan-mnist", "--set", "training.epochs=0"],
            "training.epochs: must be >= 1",
        ),
        (["--preset", "dcgan-mnist", "--set", "optim.lr=1"], "optim.lr: unknown key"),
        (["--preset", "dcgan-mnist", "--set", "noequals"], "expected section.key=value"),
        (["--preset", "dcgan-mnist", "--epochs", "-1"], "training.epochs: must be >= 1"),
        (["--preset", "dcgan-mnist", "--batch-size", "0"], "training.batch_size: must be >= 2"),
        (["--preset", "dcgan-mnist", "--device", "tpu"], "--device 'tpu'"),
        (["--preset", "dcgan-mnist", "--device", "cuda:99"], "--device cuda"),
        (["--preset", "dcgan-mnist", "--limit", "100", "--name", "a/b"], "--name 'a/b'"),
        (
            ["--preset", "wgan-mnist", "--limit", "100", "--set", "objective.n_critic=5"],
            "training.batch_size: 64 x objective.n_critic 5",
        ),
        (["--resume", "/nonexistent/run"], "run directory not found"),
        (["--resume", "/tmp", "--preset", "dcgan-mnist"], "drop --preset"),
        (["--resume", "/tmp", "--seed", "0"], "drop --seed"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], fragment: str) -> None:
    result = invoke("train", *args, "--out", str(tmp_path))
    assert_clean_error(result, 2, fragment)


def test_missing_data_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GANCLI_DATA_DIR", str(tmp_path / "none"))
    result = invoke(
        "train",
        "--preset",
        "dcgan-mnist",
        "--data-dir",
        str(tmp_path / "x"),
        "--out",
        str(tmp_path),
    )
    assert_clean_error(result, 2, "--data-dir " + str(tmp_path / "x") + ": no such folder")
    assert not (
        tmp_path / "dcgan-mnist-001"
    ).exists()  # no run directory for a run that never began


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "not a readable gancli checkpoint"),
        (b"PK\x03\x04garbage", "not a readable gancli checkpoint"),
    ],
)
def test_corrupt_checkpoint_on_resume(tmp_path: Path, content: bytes, fragment: str) -> None:
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "last.pt").write_bytes(content)
    assert_clean_error(invoke("train", "--resume", str(tmp_path / "run")), 2, fragment)


def test_checkpoint_of_the_wrong_kind(tmp_path: Path) -> None:
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "run" / "checkpoints" / "last.pt")
    result = invoke("train", "--resume", str(tmp_path / "run"))
    assert_clean_error(result, 2, "not a gancli checkpoint")


class Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_pickle_never_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    torch.save(
        {"format": "gancli-checkpoint", "payload": Boom()},
        tmp_path / "run" / "checkpoints" / "last.pt",
    )
    result = invoke("train", "--resume", str(tmp_path / "run"))
    assert_clean_error(result, 2, "refused by weights-only loading")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "command",
    ["train", "sample", "export", "animate", "evaluate", "inspect", "presets", "report"],
)
def test_every_command_has_help_with_an_example(command: str) -> None:
    help_text = invoke(command, "--help")
    assert help_text.exit_code == 0 and "Example" in help_text.output
    if command not in ("evaluate",):
        assert "--json" in help_text.output and "--quiet" in help_text.output


def test_sample_help_shows_the_mission_example() -> None:
    assert "gancli sample --digit 7 -n 64" in invoke("sample", "--help").output


def test_evaluate_without_any_run_is_one_line(tmp_path: Path) -> None:
    assert_clean_error(
        invoke("evaluate", "--runs", str(tmp_path)),
        2,
        "train one first (gancli train --preset cgan-digits needs no download)",
    )
    result = invoke("train-evaluator", "mnist")
    assert_clean_error(result, 2, "Missing option '--out'")


def test_version_and_module_entry_point() -> None:
    assert invoke("--version").output.strip() == f"gancli {gancli.__version__}"
    out = subprocess.run([sys.executable, "-m", "gancli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "train" in out.stdout


# --------------------------------------------------------------------------- help and completion

COMMANDS = [
    "train", "sample", "export", "animate", "evaluate", "train-evaluator", "inspect", "presets",
    "report",
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_help_is_grouped_with_one_copyable_example_per_line(command: str) -> None:
    short = runner.invoke(app, [command, "-h"], env={"COLUMNS": "200"})
    long = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert short.exit_code == 0 and short.output == long.output
    flags = [line for line in short.output.splitlines() if "<bool>" in line]
    assert all("--help" in line for line in flags)  # gancli's flags take no value, say none
    assert "Output" in short.output  # --json and --quiet have their own panel
    lines = [line.strip() for line in short.output.splitlines()]
    examples = [line for line in lines[lines.index("Examples:") + 1 :] if line]
    assert examples and all(line.startswith(("gancli ", "torchrun ")) for line in examples)


def test_help_names_the_choices_and_groups_the_options() -> None:
    train = runner.invoke(app, ["train", "-h"], env={"COLUMNS": "200"}).output
    for panel in ("Recipe", "Data", "Run folder", "Device", "Output"):
        assert f"─ {panel} ─" in train
    assert "fp32|bf16|fp16" in train and "auto|cpu|cuda|cuda:N|mps" in train
    evaluate = runner.invoke(app, ["evaluate", "-h"], env={"COLUMNS": "200"}).output
    assert "evaluator|inception" in evaluate
    bad = invoke("evaluate", "--extractor", "vgg")
    assert bad.exit_code == 2 and "evaluator" in bad.output and "Traceback" not in bad.output


def test_a_mistyped_preset_or_key_gets_the_nearest_name(tmp_path: Path) -> None:
    assert_clean_error(invoke("train", "--preset", "dcgan-mnst"), 2, "did you mean dcgan-mnist?")
    result = invoke("train", "--preset", "gan-mnist", "--set", "training.epoch=2", "--dry-run")
    assert_clean_error(result, 2, "did you mean training.epochs?")


def complete(*words: str, runs: Path | None = None) -> list[str]:
    """What the installed `gancli` script offers for the last word, as bash asks for it."""
    script = Path(sys.executable).with_name("gancli")
    env = {**os.environ, "_GANCLI_COMPLETE": "complete_bash",
           "COMP_WORDS": " ".join(["gancli", *words]), "COMP_CWORD": str(len(words))}  # fmt: skip
    if runs is not None:
        env["GANCLI_RUNS_DIR"] = str(runs)
    done = subprocess.run([script], env=env, capture_output=True, text=True, check=True)
    return done.stdout.split()


@pytest.mark.slow
def test_shell_completion_offers_presets_runs_and_class_names(
    trained_runs: dict[str, Path],
) -> None:
    assert complete("train", "--preset", "cgan-m") == ["cgan-mnist"]
    root = trained_runs["cgan"].parent
    offered = complete("sample", "", runs=root)
    assert str(trained_runs["cgan"]) in offered and str(trained_runs["dcgan-ema"]) in offered
    assert complete("inspect", f"{root}/cgan") == [str(trained_runs["cgan"])]
    assert complete("sample", str(trained_runs["cgan"]), "--digit", "") == [
        "all", *"0123456789"
    ]  # fmt: skip
    # Only what `sample` accepts: an unconditional run (self-conditioned or not) takes no class.
    assert complete("sample", str(trained_runs["dcgan-ema"]), "--digit", "") == []
    now = time.time()
    for age, run in enumerate((trained_runs["cgan"], trained_runs["dcgan-ema"])):
        os.utime(run / "checkpoints" / "last.pt", (now - 100 * age, now - 100 * age))
    assert complete("sample", "--class", "7", runs=root) == ["7"]  # the latest run's classes


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["train", "--epochs", "abc"], "Invalid value for '--epochs'"),
        (["sample", "-n", "0"], "'--num' / '-n'"),
        (["train", "--bogus"], "No such option: --bogus"),
        (["nope"], "No such command 'nope'"),
    ],
)
def test_typer_usage_errors_are_one_line_too(args: list[str], fragment: str) -> None:
    result = invoke(*args)
    assert_clean_error(result, 2, fragment)
    assert "-h)" in result.output  # where to look next
