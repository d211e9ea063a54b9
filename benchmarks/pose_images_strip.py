"""The figure docs/images/pose_images.png: a strip of frames from `dancegen render --pose-images`.

    .venv/bin/dancegen generate -o out/pose-demo --formats npz,bvh
    .venv/bin/dancegen render out/pose-demo/demo_song.npz --pose-images out/pose-demo/pose
    .venv/bin/python benchmarks/pose_images_strip.py out/pose-demo/pose docs/images/pose_images.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def strip(folder: Path, frames: int, gap: int = 4) -> Image.Image:
    """`frames` images evenly spaced through the folder's, side by side, each labelled with its number."""
    paths = sorted(folder.glob("[0-9]*.png"))
    picked = [paths[i] for i in np.linspace(len(paths) // (2 * frames), len(paths) - 1, frames).astype(int)]
    images = [Image.open(p).convert("RGB") for p in picked]
    w, h = images[0].size
    out = Image.new("RGB", (frames * w + (frames - 1) * gap, h), (90, 90, 90))
    pen = ImageDraw.Draw(out)
    for i, (path, image) in enumerate(zip(picked, images)):
        out.paste(image, (i * (w + gap), 0))
        pen.text((i * (w + gap) + 8, 8), f"frame {int(path.stem)}", fill=(200, 200, 200))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a --pose-images folder")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--frames", type=int, default=4, help="how many frames (default 4)")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    strip(args.folder, args.frames).save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
