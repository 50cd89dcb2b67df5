"""Usage: plot_losses(run.log.read(), run.losses_plot)

The loss, discriminator-output and (with --eval-every) FID curves of a run, from its
metrics.jsonl.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gancli.engine.files import atomic_write


def plot_losses(records: list[dict[str, Any]], out: Path) -> None:
    """Panels against G steps: both losses; D(x) with D(G(z)); FID and classes covered when
    the run was trained with --eval-every."""
    steps = [r for r in records if r.get("kind") == "step"]
    if not steps:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = [r for r in records if r.get("kind") == "eval"]
    rows = 3 if evals else 2
    x = [r["step"] for r in steps]
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
    for epoch in (r for r in records if r.get("kind") == "epoch"):
        for ax in axes:
            ax.axvline(epoch["step"], color="0.85", linewidth=0.8, zorder=0)
    fig.tight_layout()
    try:
        with atomic_write(out) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
