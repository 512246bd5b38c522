"""Pictures of envelopes and assessments, drawn as a clinician reads range of motion.

Each plane is a protractor fan around the head's neutral line (sagittal: flexion/extension, frontal:
lateral bending, transverse: axial rotation), with the personal range shaded; the combined panel
shows the (lateral bending, extension) boundary at each axial-rotation level. An assessment adds
the reached range per direction, deficits in red and directions without enough data hatched.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from edge_runtime.contracts.envelope import MotionEnvelope
from edge_runtime.contracts.rom_assessment import RomAssessment

# (title, negative direction, positive direction, fan angle of "positive" side)
PLANES = (
    ("Sagittal", "flexion", "extension"),
    ("Frontal", "left_bend", "right_bend"),
    ("Transverse", "right_rotation", "left_rotation"),
)
STATUS_COLOURS = {"normal": "#2b8a3e", "deficit": "#c92a2a", "insufficient_data": "#868e96"}


def _fan(ax: Axes, neg_deg: float, pos_deg: float, colour: str, alpha: float,
         label: str | None = None, hatch: str | None = None) -> None:  # fmt: skip
    """A wedge from -neg to +pos degrees around the upward neutral line."""
    angles = np.radians(np.linspace(-neg_deg, pos_deg, 100))
    xs = np.concatenate([[0.0], np.sin(angles), [0.0]])
    ys = np.concatenate([[0.0], np.cos(angles), [0.0]])
    ax.fill(xs, ys, color=colour, alpha=alpha, label=label, hatch=hatch, linewidth=0)


def _plane_axes(ax: Axes, title: str, neg: str, pos: str) -> None:
    ax.plot([0, 0], [0, 1.08], color="black", lw=0.8, ls=":")
    ax.set_title(title)
    ax.text(-1.05, -0.12, neg.replace("_", " "), ha="left", fontsize=8)
    ax.text(1.05, -0.12, pos.replace("_", " "), ha="right", fontsize=8)
    ax.set_xlim(-1.15, 1.15)
    ax.set_ylim(-0.2, 1.15)
    ax.set_aspect("equal")
    ax.axis("off")


def _combined_panel(ax: Axes, env: MotionEnvelope) -> None:
    theta = np.radians(np.linspace(0, 360, 361))
    for level in env.axial_levels_rad:
        r = env.planar_limit_rad(theta, np.full(theta.shape, level))
        ext, bend = np.degrees(r * np.cos(theta)), np.degrees(r * np.sin(theta))
        neutral = abs(level) < 1e-9
        ax.plot(bend, ext, lw=2 if neutral else 0.8, ls="-" if neutral else "--",
                label=f"rotation {math.degrees(level):+.0f}°")  # fmt: skip
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("← left bend   lateral bending (deg)   right bend →")
    ax.set_ylabel("← flexion   (deg)   extension →")
    ax.set_title("Combined boundary")
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="lower right")


def plot_envelope(env: MotionEnvelope, path: Path, title: str = "Personal motion envelope") -> Path:
    limits = env.plane_limits_deg()
    fig, axes = plt.subplots(2, 2, figsize=(10, 9))
    for ax, (name, neg, pos) in zip(axes.flat[:3], PLANES, strict=True):
        _fan(ax, limits[neg], limits[pos], "#4c6ef5", 0.35)
        _plane_axes(ax, name, neg, pos)
        ax.text(0, -0.12, f"{limits[neg]:.0f}° | {limits[pos]:.0f}°  (total "
                f"{limits[neg] + limits[pos]:.0f}°)", ha="center", fontsize=9)  # fmt: skip
    _combined_panel(axes.flat[3], env)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_assessment(
    assessment: RomAssessment, env: MotionEnvelope, path: Path, title: str = "Range of motion"
) -> Path:
    limits = env.plane_limits_deg()
    fig, axes = plt.subplots(2, 2, figsize=(10, 9))
    for ax, (name, neg, pos) in zip(axes.flat[:3], PLANES, strict=True):
        _fan(ax, limits[neg], limits[pos], "#adb5bd", 0.35, label="expected")
        for side, sign in ((neg, -1), (pos, 1)):
            s = assessment.sector(side)
            colour = STATUS_COLOURS[s.status]
            hatch = "//" if s.status == "insufficient_data" else None
            reached = s.reached_deg
            if sign < 0:
                _fan(ax, reached, 0.0, colour, 0.6, hatch=hatch)
            else:
                _fan(ax, 0.0, reached, colour, 0.6, hatch=hatch)
        _plane_axes(ax, name, neg, pos)
        a, b = assessment.sector(neg), assessment.sector(pos)
        ax.text(0, -0.12, f"{a.reached_deg:.0f}/{a.expected_deg:.0f}° | "
                f"{b.reached_deg:.0f}/{b.expected_deg:.0f}°", ha="center", fontsize=9)  # fmt: skip
    ax = axes.flat[3]
    names = [s.sector for s in assessment.sectors]
    pct = [100 * min(s.ratio, 1.2) for s in assessment.sectors]
    colours = [STATUS_COLOURS[s.status] for s in assessment.sectors]
    ax.barh(names, pct, color=colours)
    ax.axvline(100, color="black", lw=0.8)
    ax.set_xlabel("reached, % of personal envelope")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title("Per direction (red: deficit, grey: insufficient data)")
    fig.suptitle(f"{title}: {len(assessment.flagged)} direction(s) flagged")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
