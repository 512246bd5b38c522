"""PNG plots of a training run: per-muscle R², predicted vs simulated traces, learning curve."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

R2_GOAL = 0.98
TRACE_MUSCLES = 6  # the muscles with the largest forces in each trace


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and in CI
    import matplotlib.pyplot as plt

    return plt


def plot_r2(path: Path, series: dict[str, dict[str, float]], goal: float = R2_GOAL) -> None:
    """Grouped bars of per-muscle R², one group per muscle, one colour per evaluated set."""
    plt = _pyplot()
    muscles = list(next(iter(series.values())))
    fig, ax = plt.subplots(figsize=(18, 5.5))
    width = 0.8 / len(series)
    x = np.arange(len(muscles))
    for k, (label, r2) in enumerate(series.items()):
        values = [r2[m] for m in muscles]
        ax.bar(x + k * width, values, width, label=f"{label} (min {min(values):.4f})")
    ax.axhline(goal, color="black", linestyle="--", linewidth=1, label=f"goal {goal}")
    low = min(min(r.values()) for r in series.values())
    ax.set_ylim(max(0.0, min(low, goal) - 0.02), 1.0)
    ax.set_xticks(x + 0.4 - width / 2, muscles, rotation=90, fontsize=6)
    ax.set_ylabel("R²")
    ax.set_title("Per-muscle R² of predicted forces")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_traces(path: Path, traces: Sequence[dict[str, Any]], muscles: Sequence[str]) -> None:
    """Simulated (solid) vs predicted (dashed) forces over time for the most loaded muscles."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(traces), 1, figsize=(12, 3.6 * len(traces)), squeeze=False)
    for ax, trace in zip(axes[:, 0], traces, strict=True):
        top = np.argsort(trace["simulated_n"].max(axis=0))[::-1][:TRACE_MUSCLES]
        for j in top:
            (line,) = ax.plot(
                trace["t_s"], trace["simulated_n"][:, j], linewidth=1.4, label=muscles[j]
            )
            ax.plot(
                trace["t_s"],
                trace["predicted_n"][:, j],
                "--",
                color=line.get_color(),
                linewidth=1.2,
            )
        ax.set_title(f"{trace['title']}: simulated (solid) vs predicted (dashed)")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("force (N)")
        ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_learning_curve(path: Path, history: Sequence[dict[str, Any]]) -> None:
    """Losses per epoch; the quantisation-aware epochs (int8 simulated) follow the float ones."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(1, len(history) + 1)
    ax.semilogy(x, [h["train_loss"] for h in history], label="training")
    ax.semilogy(x, [h["val_loss"] for h in history], label="validation")
    n_float = sum(1 for h in history if h.get("phase", "float") == "float")
    if n_float < len(history):
        ax.axvspan(n_float + 0.5, len(history) + 0.5, color="grey", alpha=0.15,
                   label="int8 fine-tuning")  # fmt: skip
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE of standardised sqrt(force)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_run(
    run_dir: Path,
    metrics: dict[str, Any],
    history: Sequence[dict[str, Any]],
    traces: Sequence[dict[str, Any]],
) -> None:
    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    family = metrics["heldout_motion"]["family"]
    plot_r2(
        plots / "r2_per_muscle.png",
        {
            "held-out subjects": metrics["r2_per_muscle"],
            f"held-out subjects, held-out motion ({family})": metrics[
                "r2_per_muscle_heldout_motion"
            ],
        },
    )
    if traces:
        plot_traces(plots / "traces.png", traces, list(metrics["r2_per_muscle"]))
    plot_learning_curve(plots / "learning_curve.png", history)
