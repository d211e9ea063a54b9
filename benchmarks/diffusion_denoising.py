"""How a diffusion model's denoiser uses what it is given, on the test split's 6-s windows.

Per noise level t: its x0 error (mean square, normalised features; 1 is the data's variance), and how
far its estimate moves when its noisy input is replaced by zeros (a denoiser that ignores its input
barely moves). For a `context_input` model, also its error on the frames between the edges with
nothing known and with the previous and the next slice's `overlap` frames known (BADM's slices).

    .venv/bin/python benchmarks/diffusion_denoising.py out/diffusion-signal/best [FOLDER ...]
"""

from __future__ import annotations

import argparse

import torch

from dancegen.data import PreparedDataset
from dancegen.models import load_model
from dancegen.models.diffusion import known_columns, rot6d_to_features

TIMES = (0, 100, 300, 600, 900)


def test_windows(model, data: PreparedDataset, stride: int = 75) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised (x0, music) of every `stride`-th window of the test split (music frame j, motion frame j+1)."""
    w, xs, ms = model.window, [], []
    for name in data.split("test"):
        rot6d = torch.from_numpy(data.array(name, "rot6d", mmap=False))
        music = torch.cat([torch.from_numpy(data.array(name, f, mmap=False)) for f in model.music_features], dim=1)
        for s in range(1, min(len(rot6d), len(music)) - w + 1, stride):
            xs.append((rot6d_to_features(rot6d[s - 1:s + w]) - model.motion_mean) / model.motion_std)
            ms.append(model.normalise_music(music[s:s + w]))
    return torch.stack(xs).float(), torch.stack(ms).float()


@torch.no_grad()
def measure(folder: str, data: PreparedDataset) -> list[dict]:
    model = load_model(folder).eval()
    x0, music = test_windows(model, data)
    b, w, d = x0.shape
    tokens, styles = model.net.encode_music(music), torch.zeros(b, dtype=torch.long)
    edges = torch.zeros(b, w, dtype=torch.bool)
    edges[:, :model.overlap] = edges[:, w - model.overlap:] = True
    mask = known_columns(edges[..., None].expand(-1, -1, model.skeleton.num_joints)).float()
    contexts = {"none": torch.zeros(b, w, 2 * d), "both": torch.cat([x0 * mask, mask], dim=-1)}
    middle = slice(model.overlap, w - model.overlap)
    rows = []
    for t in TIMES:
        ab = model.alphas_cumprod[t]
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * torch.randn(x0.shape, generator=torch.Generator().manual_seed(t))
        ts = torch.full((b,), t)
        pred = model.net(xt, ts, tokens, styles, contexts["none"] if model.context_input else None)
        blind = model.net(torch.zeros_like(xt), ts, tokens, styles, contexts["none"] if model.context_input else None)
        row = {"model": folder, "t": t, "x0 error": ((pred - x0) ** 2).mean().item(),
               "move with zeros in": ((pred - blind) ** 2).mean().item()}
        if model.context_input:
            for kind, context in contexts.items():
                guess = model.net(xt, ts, tokens, styles, context)
                row[f"middle error, {kind} known"] = ((guess - x0)[:, middle] ** 2).mean().item()
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="saved diffusion model folders")
    parser.add_argument("--data", default="data/dwm", help="a prepared Dance with Melody")
    args = parser.parse_args()
    data = PreparedDataset(args.data)
    rows = [row for folder in args.models for row in measure(folder, data)]
    columns = list(dict.fromkeys(k for row in rows for k in row))
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(f"{row[c]:.3f}" if isinstance(row.get(c), float) else str(row.get(c, "–"))
                                for c in columns) + " |")


if __name__ == "__main__":
    main()
