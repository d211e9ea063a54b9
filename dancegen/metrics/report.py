"""Benchmark outputs: results.json, a markdown table and plots (matplotlib, Agg backend)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..io import atomic_path, write_text
from .beats import motion_beats
from .benchmark import EVAL_FPS, METRICS, BenchmarkResult

# Which way is better, for the table's header.
BETTER = {"fid_k": "↓", "fid_g": "↓", "fid_k_train": "↓", "fid_g_train": "↓", "div_k": "→GT", "div_g": "→GT",
          "bas_bailando": "↑", "bas_fact": "↑", "pfc": "↓", "style_accuracy": "↑", "foot_skating": "→GT",
          "freeze_rate": "↓"}


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    if abs(v) < 5e-6:  # e.g. a set's FID against itself: zero up to sqrtm's rounding
        return "0"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def markdown_table(results: dict[str, dict]) -> str:
    head = "| row | " + " | ".join(f"{m} {BETTER[m]}" for m in METRICS) + " |"
    rule = "|---|" + "---|" * len(METRICS)
    lines = [head, rule] + [f"| {row} | " + " | ".join(_fmt(r.get(m)) for m in METRICS) + " |"
                            for row, r in results.items()]
    return "\n".join(lines) + "\n"


def write_report(result: BenchmarkResult, out: str | Path, header: str = "") -> str:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "results.json", json.dumps(result.results, indent=1))
    table = markdown_table(result.results)
    write_text(out / "results.md", (header + "\n\n" if header else "") + table)
    _plots(result, out / "plots")
    return table


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    plt.close(fig)


def _plots(result: BenchmarkResult, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(result.scores)
    song = result.songs[0]
    seconds = 20.0
    frames = int(seconds * EVAL_FPS)

    fig, ax = plt.subplots(figsize=(10, 0.6 * len(rows) + 1.2))
    music = song.beats[song.beats < seconds]
    ax.vlines(music, -0.5, len(rows) - 0.5, color="0.8", linewidth=1, label="music beats")
    for i, row in enumerate(rows):
        pos = result.scores[row][0].positions[:frames]
        mb = motion_beats(pos, "bailando") / EVAL_FPS
        ax.plot(mb, np.full(len(mb), i), "|", markersize=14, markeredgewidth=2, label=None)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(f"seconds into the danced span of {song.name}")
    ax.set_title("music beats (grey) and motion beats (kinematic minima, Bailando's rule)")
    _save(fig, folder / "beats.png")

    fig, ax = plt.subplots(figsize=(10, 3.5))
    for row in rows:
        pos = result.scores[row][0].positions[:frames]
        speed = np.linalg.norm(np.diff(pos, axis=0), axis=-1) * EVAL_FPS
        ax.plot(np.arange(len(speed)) / EVAL_FPS, 0.5 * (speed ** 2).mean(axis=1), label=row, linewidth=1)
    ax.set_xlabel(f"seconds into the danced span of {song.name}")
    ax.set_ylabel("kinetic energy per unit mass (J/kg)")
    ax.legend(fontsize=8)
    _save(fig, folder / "kinetic_energy.png")

    cols = 4
    fig, axes = plt.subplots(int(np.ceil(len(METRICS) / cols)), cols, figsize=(14, 8))
    for ax, metric in zip(axes.flat, METRICS):
        values = [result.results[r].get(metric) for r in rows]
        values = [np.nan if v is None else v for v in values]
        ax.bar(range(len(rows)), values, color=[f"C{i}" for i in range(len(rows))])
        ax.set_xticks(range(len(rows)), rows, rotation=30, ha="right", fontsize=7)
        ax.set_title(f"{metric} {BETTER[metric]}", fontsize=9)
    for ax in list(axes.flat)[len(METRICS):]:
        ax.axis("off")
    fig.tight_layout()
    _save(fig, folder / "metrics.png")
