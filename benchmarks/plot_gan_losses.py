"""The losses of a `gan` training over its steps, from its TensorBoard logs: a PNG and a table.

    .venv/bin/python benchmarks/plot_gan_losses.py [--logs out/gan/logs/version_0] [-o docs/images/gan_losses.png]

Three panels: the adversarial losses (the discriminator's and the generator's, least squares) with the
discriminator's mean scores on real and generated sequences (LSGAN targets: real 1, generated 0); the
generator's L1 to the real next poses (training and validation) and its feature matching; the R1
penalty. Training curves are smoothed by a running mean of `--smooth` logged points. Prints a markdown
table of each scalar's mean over each fifth of the run, to read stability from.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

PANELS = {"adversarial": ["train/loss_d", "train/loss_g", "train/d_real", "train/d_fake"],
          "reconstruction": ["train/l1", "val/l1", "train/feature_matching"],
          "gradient penalty": ["train/r1"]}


def read_scalars(logs: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar of a TensorBoard log folder: name -> (steps, values)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logs), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: (np.array([e.step for e in events.Scalars(tag)]), np.array([e.value for e in events.Scalars(tag)]))
            for tag in events.Tags()["scalars"]}


def running_mean(values: np.ndarray, n: int) -> np.ndarray:
    if n <= 1 or len(values) < n:
        return values
    return np.convolve(values, np.ones(n) / n, mode="valid")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", type=Path, default=Path("out/gan/logs/version_0"))
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/images/gan_losses.png"))
    parser.add_argument("--smooth", type=int, default=10, help="running mean over this many logged points")
    args = parser.parse_args()
    scalars = read_scalars(args.logs)
    missing = [t for tags in PANELS.values() for t in tags if t not in scalars]
    if missing:
        raise SystemExit(f"{args.logs}: no scalars {', '.join(missing)} (is it a gan training's log folder?)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 3.6))
    for ax, (title, tags) in zip(axes, PANELS.items()):
        for tag in tags:
            steps, values = scalars[tag]
            n = 1 if tag.startswith("val/") else args.smooth
            smoothed = running_mean(values, n)
            ax.plot(steps[len(steps) - len(smoothed):], smoothed, label=tag, marker="o" if n == 1 else None, ms=3)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"gan training ({args.logs})", fontsize=9)
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(args.output.stem + ".tmp" + args.output.suffix)
    fig.savefig(tmp, dpi=100)
    tmp.replace(args.output)
    print(f"wrote {args.output}\n")

    tags = [t for ts in PANELS.values() for t in ts if t.startswith("train/")]
    last = max(scalars[t][0].max() for t in tags)
    edges = np.linspace(0, last + 1, 6)
    print("| steps | " + " | ".join(t.removeprefix("train/") for t in tags) + " |")
    print("|---|" + "---|" * len(tags))
    for a, b in zip(edges, edges[1:]):
        cells = []
        for t in tags:
            steps, values = scalars[t]
            inside = values[(steps >= a) & (steps < b)]
            cells.append(f"{inside.mean():.3f}" if len(inside) else "")
        print(f"| {int(a)}–{int(b) - 1} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
