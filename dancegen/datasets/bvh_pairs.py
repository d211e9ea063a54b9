"""BVH + audio pairs (the Transflower layout): a folder of `NAME.bvh` beside `NAME.wav`.

Each motion `NAME.bvh` has one song of the same base name, with any audio extension dancegen
decodes (.wav .mp3 .ogg .flac .m4a); the song starts with the motion (offset 0). The folder is
flat (sub-folders are not searched); hidden files (".name") are ignored. A BVH with no audio
partner, audio with no BVH, or a BVH with two audio files is a `UserError` naming the file.
BVH files are read with `dancegen.motion.read_bvh`, in centimetres unless `scale` says otherwise
(file units per metre), on their own skeleton.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..motion.bvh import CENTIMETRES, read_bvh
from .base import Dataset, Sequence, register

KIND = "bvh-wav"
AUDIO_EXTENSIONS = (".wav", ".mp3", ".ogg", ".flac", ".m4a")


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))


def detect(root: Path) -> bool:
    """A folder holding at least one .bvh file."""
    root = Path(root)
    return root.is_dir() and any(p.suffix.lower() == ".bvh" for p in _files(root))


@register(KIND, detect)
def open(root: Path, *, scale: float = CENTIMETRES) -> Dataset:  # noqa: A001 (the loaders' common name)
    """List the BVH/audio pairs in `root`; each `Sequence` reads its BVH when loaded."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(root, "no such dataset folder")
    files = _files(root)
    motions = {p.stem: p for p in files if p.suffix.lower() == ".bvh"}
    songs: dict[str, list[Path]] = {}
    for p in files:
        if p.suffix.lower() in AUDIO_EXTENSIONS:
            songs.setdefault(p.stem, []).append(p)
    if not motions:
        raise UserError(root, "no .bvh files in this folder (expected NAME.bvh beside NAME.wav)")
    for name, bvh in motions.items():
        if name not in songs:
            raise UserError(bvh, f"no audio partner: expected {name}.wav (or {', '.join(AUDIO_EXTENSIONS[1:])})")
        if len(songs[name]) > 1:
            raise UserError(bvh, f"more than one audio partner: {', '.join(p.name for p in songs[name])}")
    for name, paths in songs.items():
        if name not in motions:
            raise UserError(paths[0], f"no motion partner: expected {name}.bvh")

    names = sorted(motions)

    def load(name: str) -> Sequence:
        if name not in motions:
            raise KeyError(name)
        return Sequence(name, read_bvh(motions[name], scale=scale), song=songs[name][0], offset=0.0, style=None)

    return Dataset(KIND, root, names, load, styles={n: None for n in names})
