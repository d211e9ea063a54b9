"""AIST++ (Li et al. 2021, "AI Choreographer"): SMPL motion with the AIST Dance DB music.

Layout (the published annotation folder plus the music):

    ROOT/motions/<sequence>.pkl   e.g. gBR_sBM_cAll_d04_mBR0_ch01.pkl
    ROOT/wav/<music id>.wav       e.g. mBR0.wav (also accepted: wavs/ or music/, and a wav
                                  named after the sequence itself, as EDGE's copies are)
    ROOT/ignore_list.txt          optional: sequences AIST++ marks as bad (also splits/ignore_list.txt)
    ROOT/splits/crossmodal_{train,val,test}.txt   optional: the standard split, see `read_splits`

Each motion pickle is a dict: ``smpl_poses`` (T, 72) axis-angle for SMPL's 24 joints,
``smpl_trans`` (T, 3) and ``smpl_scaling`` (1,), at 60 fps; ``smpl_loss`` is ignored. The pickles
are read with `safe_pickle.load_array_pickle`, which refuses anything but plain data and numpy
arrays, so a crafted file cannot run code.

Conversion to the canonical `Motion`:

- rotations: ``smpl_poses`` reshaped to (T, 24, 3). AIST++ joint order is the canonical order,
  and SMPL's local axis-angle per joint is exactly `Motion.rotations`; joint 0 is global.
- root translation: ``smpl_trans / smpl_scaling``, metres. The AIST++ SMPL layer (the smplx
  fork the AIST++ API uses) places joints at ``scaling * J(pose) + transl``, so dividing by the
  scale gives the SMPL model origin in metres at SMPL's own body size. Like EDGE
  (``data/slice.py`` divides ``pos`` by ``scale``; ``vis.SMPLSkeleton.forward`` takes it as the
  root joint's position), we use that as the root joint's world position. An exact SMPL
  evaluation puts the pelvis at that point plus the template's pelvis rest position J0, about
  (-0.002, -0.223, 0.028) m for the neutral body, so our root, like EDGE's, sits a constant J0
  away from SMPL's pelvis (0.22 m higher). Nothing is lost by it: AIST++ has no consistent floor
  height anyway (it differs from take to take), and positions, hence metrics, match EDGE's.
- skeleton: `smpl_skeleton()` (SMPL neutral offsets; AIST++ fits no shape parameters, only the
  scale that we divide out).
- style: the genre code at the start of the name (see `GENRES`); song: the wav of the music id
  in the name, offset 0 (AIST++ motion starts with its music).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import UserError, require_file
from ..motion import Motion, smpl_skeleton
from .base import Dataset, Sequence, register
from .safe_pickle import load_array_pickle

AIST_FPS = 60.0

# Genre codes of the AIST Dance DB.
GENRES: dict[str, str] = {
    "gBR": "break",
    "gPO": "pop",
    "gLO": "lock",
    "gMH": "middle hip-hop",
    "gLH": "LA hip-hop",
    "gHO": "house",
    "gWA": "waack",
    "gKR": "krump",
    "gJS": "street jazz",
    "gJB": "ballet jazz",
}

_NAME = re.compile(r"^(?P<genre>g[A-Z]{2})_s[A-Z]{2}_c\w+?_d\d+_(?P<music>m[A-Z]{2}\d+)_ch\d+$")
MUSIC_DIRS = ("wav", "wavs", "music")
SPLITS = ("train", "val", "test")


def parse_name(name: str) -> tuple[str | None, str | None]:
    """(genre code, music id) of an AIST++ sequence name, or (None, None) if it is not one."""
    m = _NAME.match(name)
    return (m["genre"], m["music"]) if m else (None, None)


def style_of(name: str) -> str | None:
    return GENRES.get(parse_name(name)[0] or "")


def load_motion(path: str | Path) -> Motion:
    """An AIST++ motion pickle as a canonical `Motion` (60 fps, SMPL skeleton, metres)."""
    path = Path(path)
    require_file(path)
    data = load_array_pickle(path)
    if not isinstance(data, dict):
        raise UserError(path, f"not an AIST++ motion: holds a {type(data).__name__}, expected a dict")
    missing = [k for k in ("smpl_poses", "smpl_trans", "smpl_scaling") if k not in data]
    if missing:
        raise UserError(path, f"not an AIST++ motion: missing {', '.join(missing)}")
    poses = _numeric(path, "smpl_poses", data["smpl_poses"])
    trans = _numeric(path, "smpl_trans", data["smpl_trans"])
    scaling = _numeric(path, "smpl_scaling", data["smpl_scaling"])
    t = len(poses) if poses.ndim else 0
    if t == 0 or poses.shape not in ((t, 72), (t, 24, 3)):
        raise UserError(path, f"smpl_poses has shape {poses.shape}, expected (frames, 72) with frames > 0")
    if trans.shape != (t, 3):
        raise UserError(path, f"smpl_trans has shape {trans.shape}, expected ({t}, 3) to match smpl_poses")
    if scaling.size != 1:
        raise UserError(path, f"smpl_scaling has shape {scaling.shape}, expected one value")
    for key, arr in (("smpl_poses", poses), ("smpl_trans", trans), ("smpl_scaling", scaling)):
        if not np.isfinite(arr).all():
            raise UserError(path, f"{key} holds NaN or infinite values")
    scale = float(scaling.reshape(()))
    if scale <= 0:
        raise UserError(path, f"smpl_scaling is {scale}, expected a positive scale")
    return Motion(AIST_FPS, smpl_skeleton(), trans / scale, poses.reshape(t, 24, 3))


def _numeric(path: Path, key: str, value) -> np.ndarray:
    # float64 would drop an imaginary part with only a warning
    if isinstance(value, (np.ndarray, np.generic, complex)) and np.iscomplexobj(value):
        raise UserError(path, f"{key} holds complex numbers, not real ones")
    try:
        arr = np.array(value, dtype=np.float64)  # a copy: pickled buffers may be read-only
    except (TypeError, ValueError):
        raise UserError(path, f"{key} is not numeric") from None
    return arr


def _read_list(path: Path) -> list[str]:
    return [s for s in (line.strip() for line in path.read_text().splitlines()) if s and not s.startswith("#")]


def ignored(root: str | Path) -> set[str]:
    """Sequence names listed in ignore_list.txt (at the root or under splits/)."""
    root = Path(root)
    names: set[str] = set()
    for p in (root / "ignore_list.txt", root / "splits" / "ignore_list.txt"):
        if p.is_file():
            names.update(_read_list(p))
    return names


def read_splits(root: str | Path) -> dict[str, list[str]]:
    """The standard crossmodal split, from splits/crossmodal_{train,val,test}.txt where present.

    Ignored sequences are left out. Returns only the splits whose file exists ({} if none).
    """
    root = Path(root)
    skip = ignored(root)
    out: dict[str, list[str]] = {}
    for split in SPLITS:
        p = root / "splits" / f"crossmodal_{split}.txt"
        if p.is_file():
            out[split] = [n for n in _read_list(p) if n not in skip]
    return out


def _music_dir(root: Path) -> Path:
    for d in MUSIC_DIRS:
        if (root / d).is_dir():
            return root / d
    raise UserError(root / MUSIC_DIRS[0], "no such folder: AIST++ needs the music as wav/<music id>.wav")


def song_path(root: str | Path, name: str) -> Path:
    """The wav an AIST++ sequence was danced to; UserError naming the file when it is missing."""
    root = Path(root)
    music = _music_dir(root)
    own = music / f"{name}.wav"
    if own.is_file():
        return own
    music_id = parse_name(name)[1]
    if music_id is None:
        raise UserError(own, f"no such file, and {name!r} is not an AIST++ name that gives a music id")
    song = music / f"{music_id}.wav"
    if not song.is_file():
        raise UserError(song, f"no such file: the music of motion {name}")
    return song


def detect(root: Path) -> bool:
    return root.is_dir() and (root / "motions").is_dir() and any((root / "motions").glob("*.pkl"))


@register("aist", detect)
def open_aist(root: Path) -> Dataset:
    root = Path(root)
    motions = root / "motions"
    if not motions.is_dir():
        raise UserError(motions, "no such folder: an AIST++ folder holds motions/*.pkl")
    skip = ignored(root)
    names = sorted(p.stem for p in motions.glob("*.pkl") if p.stem not in skip)
    if not names:
        raise UserError(motions, "no motion files (*.pkl)")
    songs = {n: song_path(root, n) for n in names}  # a missing wav is reported now, not mid-training

    def load(name: str) -> Sequence:
        if name not in songs:
            raise UserError(motions / f"{name}.pkl", "not a sequence of this dataset")
        return Sequence(
            name=name,
            motion=load_motion(motions / f"{name}.pkl"),
            song=songs[name],
            offset=0.0,
            style=style_of(name),
        )

    official = read_splits(root)
    return Dataset("aist", root, names, load, {n: style_of(n) for n in names},
                   sources=lambda name: [motions / f"{name}.pkl", songs[name]],
                   splits=_complete_split(official, names) if official else None)


def _complete_split(official: dict[str, list[str]], names: list[str]) -> dict[str, list[str]]:
    """The official split restricted to the sequences present; sequences it does not name go to train."""
    present = set(names)
    out = {split: [n for n in official.get(split, []) if n in present] for split in SPLITS}
    listed = {n for members in out.values() for n in members}
    out["train"] += [n for n in names if n not in listed]
    return out
