"""Usage: plot_losses(read_metrics(run.metrics), run.losses_plot)

The loss and discriminator-output curves of a run, from its metrics.jsonl.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Records of a metrics.jsonl; a torn last line (a killed write) is ignored."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def plot_losses(records: list[dict[str, Any]], out: Path) -> None:
    """Two panels against G steps: both losses, and D(x) with D(G(z))."""
    steps = [r for r in records if r.get("kind") == "step"]
    if not steps:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["step"] for r in steps]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    top.plot(x, [r["loss_d"] for r in steps], label="loss D")
    top.plot(x, [r["loss_g"] for r in steps], label="loss G")
    top.set_ylabel("loss")
    top.legend(loc="upper right")
    bottom.plot(x, [r["d_real"] for r in steps], label="D(x)")
    bottom.plot(x, [r["d_fake"] for r in steps], label="D(G(z))")
    bottom.set_ylabel("discriminator output")
    bottom.set_xlabel("generator step")
    bottom.legend(loc="upper right")
    for epoch in (r for r in records if r.get("kind") == "epoch"):
        for ax in (top, bottom):
            ax.axvline(epoch["step"], color="0.85", linewidth=0.8, zorder=0)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
