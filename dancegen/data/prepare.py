"""`dancegen prepare`: a dataset folder to the prepared layout (see `prepared.py`).

Each sequence becomes its motion representation, its canonical Motion, one array per audio
recipe (frame-aligned with the motion at the motion's fps) and any modality the dataset ships.
Work is staged in a hidden folder and moved in only when everything succeeded, so a failed run
leaves the output as it was. A sequence whose source files, recipes and dancegen version are
unchanged since the last run is not redone (audio features are also cached by content).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import __version__
from ..audio import RECIPES
from ..datasets import open_dataset
from ..errors import UserError
from ..io import atomic_path, file_digest, save_npy, write_text
from . import prepared as layout
from .representation import MOTION_REPRESENTATION, motion_to_rot6d
from .splits import split_by_group

DEFAULT_RECIPES = ("fact35", "bailando438")


def _sequence_key(sources: list[Path], recipes: tuple[str, ...]) -> str | None:
    h = hashlib.sha1(f"{layout.FORMAT_VERSION}|{__version__}|{MOTION_REPRESENTATION}".encode())
    for r in recipes:
        h.update(f"|{r}:{RECIPES[r].version}".encode())
    for path in sorted(sources):
        h.update(f"|{path.name}:{file_digest(path)}".encode())
    return h.hexdigest()


def _prepare_sequence(kind: str, src: str, name: str, stage: str, recipes: tuple[str, ...],
                      cache_dir: str | None) -> dict:
    """Worker: load one sequence and write its arrays into the staging folder; returns its metadata."""
    from ..audio import features_many

    seq = open_dataset(kind, src).load(name)
    stage_dir = Path(stage)
    motion = seq.motion
    arrays = {MOTION_REPRESENTATION: motion_to_rot6d(motion)}
    if seq.song is not None and recipes:
        arrays.update(features_many(seq.song, list(recipes), motion.fps, start=seq.offset,
                                    num_frames=motion.num_frames, cache_dir=cache_dir))
    arrays.update(seq.features)
    for feature, array in arrays.items():
        if len(array) != motion.num_frames:
            raise UserError(seq.song or src, f"{name}: {feature} has {len(array)} frames, motion {motion.num_frames}")
        save_npy(layout.feature_path(stage_dir, name, feature), np.asarray(array, dtype=np.float32))
    motion.save(layout.motion_path(stage_dir, name))
    group = seq.group or (f"song:{file_digest(seq.song)}" if seq.song else f"sequence:{name}")
    return {
        "frames": motion.num_frames, "fps": motion.fps, "style": seq.style, "group": group,
        "song": str(seq.song) if seq.song else None, "offset": seq.offset,
        "features": {f: int(a.shape[1]) for f, a in arrays.items()},
        "skeleton_joints": motion.skeleton.num_joints,
    }


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def prepare(kind: str, src: str | os.PathLike, out: str | os.PathLike, *,
            recipes: tuple[str, ...] = DEFAULT_RECIPES, jobs: int | None = None,
            cache_dir: str | os.PathLike | None = None, seed: int = 0, progress: bool = True) -> dict:
    """Prepare dataset `src` of `kind` into `out`; returns the manifest."""
    for r in recipes:
        if r not in RECIPES:
            raise UserError(None, f"unknown audio recipe {r!r}; known: {', '.join(sorted(RECIPES))}")
    src, out = Path(src), Path(out)
    dataset = open_dataset(kind, src)
    if not dataset.names:
        raise UserError(src, f"no {kind} sequences found")
    old = _old_manifest(out)
    keys = {n: _sequence_key(dataset.sources(n), recipes) if dataset.sources else None for n in dataset.names}
    reuse = {n for n in dataset.names
             if keys[n] and old.get("sequences", {}).get(n, {}).get("key") == keys[n]
             and all(layout.feature_path(out, n, f).exists() for f in old["sequences"][n]["features"])}
    todo = [n for n in dataset.names if n not in reuse]

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".prepare-", dir=out))
    try:
        meta = {n: old["sequences"][n] for n in reuse}
        jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo) or 1))
        args = [(kind, str(src), n, str(stage), tuple(recipes), None if cache_dir is None else str(cache_dir))
                for n in todo]
        bar = tqdm(total=len(todo), desc=f"prepare {kind}", unit="seq", disable=not progress or not todo)
        if jobs == 1:
            for a in args:
                meta[a[2]] = _prepare_sequence(*a)
                bar.update()
        else:
            from ..audio.cache import warm_up

            if recipes:
                warm_up(recipes)  # the workers must not compile librosa's kernels side by side (see warm_up)
            with ProcessPoolExecutor(jobs, initializer=_init_worker) as pool:
                futures = {pool.submit(_prepare_sequence, *a): a[2] for a in args}
                for fut in as_completed(futures):
                    meta[futures[fut]] = fut.result()
                    bar.update()
        bar.close()
        for n in todo:
            meta[n]["key"] = keys[n]
        manifest = _finish(dataset, src, out, stage, meta, recipes, seed, len(todo))
    except BaseException:
        shutil.rmtree(out if created else stage, ignore_errors=True)
        raise
    shutil.rmtree(stage, ignore_errors=True)
    return manifest


def _old_manifest(out: Path) -> dict:
    try:
        return json.loads(layout.manifest_path(out).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _finish(dataset, src: Path, out: Path, stage: Path, meta: dict, recipes, seed: int, done: int) -> dict:
    """Splits and train-only normalisation, then move staged files in and write the manifest last."""
    names = dataset.names
    feature_sets = {tuple(sorted(meta[n]["features"])) for n in names}
    if len(feature_sets) != 1:
        raise UserError(src, "sequences differ in which modalities they have (some lack audio?)")
    fps_set = {meta[n]["fps"] for n in names}
    if len(fps_set) != 1:
        raise UserError(src, f"sequences differ in frame rate: {sorted(fps_set)}")
    dims = meta[names[0]]["features"]
    splits = dataset.splits or split_by_group(
        {n: meta[n]["style"] for n in names}, {n: meta[n]["group"] for n in names},
        seed=seed, test_every_style=dataset.test_every_style)

    for path in stage.glob("*.np[yz]"):
        os.replace(path, out / path.name)
    for feature in dims:
        _write_stats(out, splits["train"] or names, feature)
    for split, members in splits.items():
        write_text(layout.split_path(out, split), "".join(f"{n}\n" for n in members))
    manifest = {
        "format": layout.FORMAT, "format_version": layout.FORMAT_VERSION, "dancegen_version": __version__,
        "kind": dataset.kind, "source": str(src.resolve()), "fps": fps_set.pop(),
        "motion_representation": MOTION_REPRESENTATION,
        "features": {f: _feature_entry(f, d, dataset) for f, d in dims.items()},
        "splits": {k: len(v) for k, v in splits.items()},
        "prepared_now": done,
        "sequences": {n: meta[n] for n in sorted(names)},
    }
    write_text(layout.manifest_path(out), json.dumps(manifest, indent=1))
    return manifest


def _feature_entry(feature: str, dim: int, dataset) -> dict:
    if feature in RECIPES:
        return {"dim": dim, "modality": "music", "recipe_version": RECIPES[feature].version}
    if feature == MOTION_REPRESENTATION:
        return {"dim": dim, "modality": "motion"}
    return {"dim": dim, "modality": dataset.feature_modalities.get(feature, "other")}


def _write_stats(out: Path, names: list[str], feature: str) -> None:
    total, total_sq, count = 0.0, 0.0, 0
    for n in names:
        x = np.load(layout.feature_path(out, n, feature)).astype(np.float64)
        total = total + x.sum(0)
        total_sq = total_sq + (x * x).sum(0)
        count += len(x)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
    std = np.where(std < 1e-6, 1.0, std)  # constant columns (e.g. a one-hot that never fires) pass through
    path = layout.stats_path(out, feature)
    path.parent.mkdir(exist_ok=True)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, mean=mean.astype(np.float32), std=std.astype(np.float32), frames=np.int64(count))
