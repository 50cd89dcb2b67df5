"""Usage: plot_losses(run.log.read(), run.losses_plot, title=run.path.name)

The loss, discriminator-output and (with --eval-every) FID curves of a run, from its
metrics.jsonl, with the ends of epochs marked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gancli.engine.files import atomic_write

MAX_EPOCH_MARKS = 20  # more lines than this turn a long run's plot into a grey smear


def epoch_marks(
    records: list[dict[str, Any]], most: int = MAX_EPOCH_MARKS
) -> list[tuple[int, int]]:
    """(G step, epoch) where each finished epoch ended, from the epoch records, in order.

    A resumed run may hold an epoch's record twice; its last one counts. Beyond `most`
    epochs only every k-th is kept, k the first of 1, 2, 5, 10, 20, 50, ... that leaves at
    most `most`, so the marks fall on round epoch numbers."""
    ends: dict[int, int] = {}
    for record in records:
        if record.get("kind") == "epoch":
            ends[record["epoch"]] = record["step"]
    every = _round_interval(len(ends), most)
    return [(step, epoch) for epoch, step in sorted(ends.items()) if epoch % every == 0]


def _round_interval(count: int, most: int) -> int:
    """The first of 1, 2, 5, 10, 20, 50, ... that cuts `count` marks down to `most` or fewer."""
    scale = 1
    while True:
        for step in (1, 2, 5):
            if count // (step * scale) <= max(1, most):
                return step * scale
        scale *= 10


def plot_losses(records: list[dict[str, Any]], out: Path, title: str = "") -> None:
    """Panels against G steps: both losses; D(x) with D(G(z)); FID and classes covered when
    the run was trained with --eval-every. Light vertical lines mark where epochs ended,
    numbered on a top axis; `title` (the run's name) heads the figure."""
    steps = [r for r in records if r.get("kind") == "step"]
    if not steps:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = [r for r in records if r.get("kind") == "eval"]
    rows = 3 if evals else 2
    x = [r["step"] for r in steps]
    # 8 x 3 inches a panel at 100 dpi, text at 11 pt: readable without zooming in.
    with plt.rc_context({"font.size": 11}):
        fig, axes = plt.subplots(rows, 1, figsize=(8, 3 * rows), sharex=True)
        top, middle = axes[0], axes[1]
        top.plot(x, [r["loss_d"] for r in steps], label="loss D")
        top.plot(x, [r["loss_g"] for r in steps], label="loss G")
        top.set_ylabel("loss")
        top.legend(loc="upper right")
        middle.plot(x, [r["d_real"] for r in steps], label="D(x)")
        middle.plot(x, [r["d_fake"] for r in steps], label="D(G(z))")
        middle.set_ylabel("discriminator output")
        middle.legend(loc="upper right")
        if evals:
            bottom, at = axes[2], [r["step"] for r in evals]
            bottom.plot(at, [r["fid"] for r in evals], "o-", color="tab:purple", label="FID")
            bottom.set_yscale("log")
            bottom.set_ylabel("FID (evaluator)")
            coverage = bottom.twinx()
            coverage.plot(at, [r["coverage"] for r in evals], "s--", color="tab:green")
            coverage.set_ylabel("classes covered", color="tab:green")
            coverage.set_ylim(bottom=0)
        axes[-1].set_xlabel("generator step")
        marks = epoch_marks(records)
        for step, _ in marks:
            for ax in axes:
                ax.axvline(step, color="0.8", linewidth=0.8, zorder=0)
        if marks:
            # The same steps on a top axis, numbered by epoch: where each epoch ended.
            epochs = top.secondary_xaxis("top")
            epochs.set_xticks([step for step, _ in marks], [str(e) for _, e in marks])
            epochs.set_xlabel("end of epoch")
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        try:
            with atomic_write(out) as tmp:
                fig.savefig(tmp, dpi=100)
        finally:
            plt.close(fig)
