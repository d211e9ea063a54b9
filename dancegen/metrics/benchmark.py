"""The benchmark behind `dancegen evaluate`: every model scored the same way on a dataset split.

Protocol (docs/benchmark.md): each dance (generated for the danced span of every song of the
split, one per seed; the ground truth once) is resampled to 60 fps and cut into fixed-length
windows. Per window: kinetic and geometric features (positions relative to the window's first
root position, Bailando's "zero start"), both beat-align scores against the song's beats from
dancegen's beat tracker, and PFC. Per dance: foot skating, 2-s window speeds, recognised style.
FID and diversity compare a row's windows with the split's ground-truth windows (fid_*) and with
the training split's (fid_*_train), normalised by the reference set as Bailando does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from tqdm import tqdm

from ..audio import song_beats
from ..data import PreparedDataset
from ..errors import UserError
from ..motion import SMPL_JOINT_NAMES, Motion
from . import (beat_align_score, diversity, fid, geometric_features, kinetic_features,
               physical_foot_contact)
from .motion_quality import foot_skating, window_speeds

METRICS = ("fid_k", "fid_g", "fid_k_train", "fid_g_train", "div_k", "div_g", "bas_bailando", "bas_fact",
           "pfc", "style_accuracy", "foot_skating", "freeze_rate")
BASELINES = ("ground_truth", "random_real", "still_pose")
EVAL_FPS = 60.0


@dataclass(frozen=True)
class Protocol:
    name: str
    window_seconds: float | None = 5.0  # None: each dance is one window
    max_seconds: float | None = None  # score only the first seconds of each dance
    seeds: tuple[int, ...] = (0, 1, 2)
    reference: str = "split"  # ground truth for fid_*: "split" windows, or "all" sequences whole
    freeze_seconds: float = 2.0
    freeze_fraction: float = 0.1


PROTOCOLS = {
    "default": Protocol("default"),
    # Bailando's AIST++ protocol: 20-s dances at 60 fps on the crossmodal test split,
    # ground-truth features over all sequences.
    "aist": Protocol("aist", window_seconds=None, max_seconds=20.0, reference="all"),
}


@dataclass
class Song:
    name: str
    style: str | None
    beats: np.ndarray  # seconds from the start of the danced span


@dataclass
class DanceScores:
    kinetic: np.ndarray  # (W, 72)
    geometric: np.ndarray  # (W, 32)
    bas_bailando: list[float]
    bas_fact: list[float]
    pfc: list[float]
    foot_skating: float
    speeds: np.ndarray  # mean joint speed of each 2-s window
    style: str | None = None
    positions: np.ndarray | None = field(default=None, repr=False)  # 60-fps positions, kept for plots


def score_dance(motion: Motion, song: Song, protocol: Protocol,
                style_of: Callable[[Motion], str] | None = None, keep_positions: bool = False) -> DanceScores:
    m = motion.resample(EVAL_FPS)
    if protocol.max_seconds:
        m = m[: int(round(protocol.max_seconds * EVAL_FPS))]
    pos = m.positions()
    size = len(pos) if protocol.window_seconds is None else int(round(protocol.window_seconds * EVAL_FPS))
    starts = range(0, len(pos) - size + 1, size)
    beat_frames = np.round(song.beats * EVAL_FPS).astype(int)
    kin, geo, bas_b, bas_f, pfc = [], [], [], [], []
    for s in starts:
        w = pos[s:s + size]
        zeroed = w - w[:1, :1]
        kin.append(kinetic_features(zeroed, EVAL_FPS))
        geo.append(geometric_features(zeroed, EVAL_FPS))
        beats = beat_frames[(beat_frames >= s) & (beat_frames < s + size)] - s
        bas_b.append(beat_align_score(w, beats, EVAL_FPS, "bailando") if len(beats) else np.nan)
        bas_f.append(beat_align_score(w, beats, EVAL_FPS, "fact") if len(beats) else np.nan)
        pfc.append(physical_foot_contact(w, EVAL_FPS))
    return DanceScores(
        np.array(kin).reshape(-1, 72), np.array(geo).reshape(-1, 32), bas_b, bas_f, pfc,
        foot_skating(pos, EVAL_FPS), window_speeds(pos, EVAL_FPS, protocol.freeze_seconds),
        style_of(motion) if style_of else None, pos if keep_positions else None,
    )


def summarise(scores: list[DanceScores], styles: list[str | None], reference: tuple[np.ndarray, np.ndarray],
              train: tuple[np.ndarray, np.ndarray], freeze_threshold: float,
              known_styles: tuple[str, ...] | None = None) -> dict[str, float | None]:
    kin = np.concatenate([s.kinetic for s in scores])
    geo = np.concatenate([s.geometric for s in scores])
    speeds = np.concatenate([s.speeds for s in scores])
    # a song whose style the classifier was never taught (Dance with Melody's one tango) cannot be judged
    judged = [(s.style, want) for s, want in zip(scores, styles) if s.style is not None and want is not None
              and (known_styles is None or want in known_styles)]
    return {
        "fid_k": fid(kin, reference[0]), "fid_g": fid(geo, reference[1]),
        "fid_k_train": fid(kin, train[0]), "fid_g_train": fid(geo, train[1]),
        "div_k": diversity(kin, reference[0]), "div_g": diversity(geo, reference[1]),
        "bas_bailando": float(np.nanmean([b for s in scores for b in s.bas_bailando])),
        "bas_fact": float(np.nanmean([b for s in scores for b in s.bas_fact])),
        "pfc": float(np.mean([p for s in scores for p in s.pfc])),
        "style_accuracy": float(np.mean([got == want for got, want in judged])) if judged else None,
        "foot_skating": float(np.mean([s.foot_skating for s in scores])),
        "freeze_rate": float(np.mean(speeds < freeze_threshold)) if len(speeds) else None,
    }


@dataclass
class BenchmarkResult:
    results: dict[str, dict[str, float | None]]
    protocol: Protocol
    songs: list[Song]
    scores: dict[str, list[DanceScores]]  # row -> dances (the first dance of each row is song 0, seed 0)


def kinetic_fid_of_songs(result: BenchmarkResult, keep: Callable[[Song], bool]) -> dict[str, tuple[float, float]]:
    """{row: (fid_k, div_k)} over the songs `keep` accepts only, against those songs' ground truth:
    e.g. without the songs of a style no training dance had."""
    kept = [keep(s) for s in result.songs]
    reference = np.concatenate([s.kinetic for s, k in zip(result.scores["ground_truth"], kept) if k])
    out = {}
    for row, scores in result.scores.items():
        per = len(scores) // len(kept)
        kin = np.concatenate([s.kinetic for i, s in enumerate(scores) if kept[i // per]])
        out[row] = (fid(kin, reference), diversity(kin, reference))
    return out


def run_benchmark(data: PreparedDataset, models: dict[str, Callable], *, split: str = "test",
                  protocol: Protocol = PROTOCOLS["default"], style_of: Callable[[Motion], str] | None = None,
                  known_styles: tuple[str, ...] | None = None,
                  cache_dir: str | os.PathLike | None = None, progress: bool = True) -> BenchmarkResult:
    """Score the baselines and `models` ({row name: factory(train_motions) -> DanceModel})."""
    from ..models import Music, load_model

    names = sorted(data.sequences) if split == "all" else data.split(split)
    train_names = data.split("train")
    if not names or not train_names:
        raise ValueError(f"the {split} split or the train split is empty")
    audio_features = data.features_of("music")
    songs = []
    for n in tqdm(names, desc="beats", unit="song", disable=not progress):
        meta = data.sequences[n]
        beats = song_beats(meta["song"], start=meta["offset"], duration=meta["frames"] / meta["fps"],
                           cache_dir=cache_dir) if meta.get("song") else np.zeros(0)
        songs.append(Song(n, meta["style"], beats))
    train_motions = [data.motion(n) for n in train_names]
    if train_motions[0].skeleton.names != SMPL_JOINT_NAMES:
        raise UserError(data.root, f"the benchmark's metrics need SMPL's 24 joints; this dataset's skeleton has "
                                   f"{train_motions[0].skeleton.num_joints} joints ({data.manifest['kind']})")
    rows: dict[str, list[tuple[Motion, Song]]] = {"ground_truth": [(data.motion(s.name), s) for s in songs]}
    factories = {"random_real": lambda: load_model("random_real", train_motions=train_motions),
                 "still_pose": lambda: load_model("still_pose", train_motions=train_motions), **models}
    for row, factory in factories.items():
        if row == "ground_truth":
            continue
        model = factory() if row in BASELINES else factory(train_motions)
        dances = []
        for s in tqdm(songs, desc=row, unit="song", disable=not progress):
            music = Music({f: np.asarray(data.array(s.name, f)) for f in audio_features}, data.fps,
                          start=data.sequences[s.name]["offset"], style=s.style, beats=s.beats)
            dances += [(model.generate(music, length=data.sequences[s.name]["frames"], seed=seed), s)
                       for seed in protocol.seeds]
        rows[row] = dances

    scores = {row: [score_dance(m, s, protocol, style_of, keep_positions=i < 1) for i, (m, s) in enumerate(dances)]
              for row, dances in tqdm(rows.items(), desc="scoring", unit="row", disable=not progress)}
    gt = scores["ground_truth"]
    if protocol.reference == "all":
        ref_scores = [score_dance(data.motion(n), Song(n, None, np.zeros(0)),
                                  Protocol("whole", window_seconds=None)) for n in sorted(data.sequences)]
    else:
        ref_scores = gt
    reference = (np.concatenate([s.kinetic for s in ref_scores]), np.concatenate([s.geometric for s in ref_scores]))
    train_scores = [score_dance(m, Song("", None, np.zeros(0)), protocol) for m in train_motions]
    train = (np.concatenate([s.kinetic for s in train_scores]), np.concatenate([s.geometric for s in train_scores]))
    threshold = protocol.freeze_fraction * float(np.median(np.concatenate([s.speeds for s in gt])))
    results = {row: summarise(sc, [s.style for _, s in rows[row]], reference, train, threshold, known_styles)
               for row, sc in scores.items()}
    return BenchmarkResult(results, protocol, songs, scores)
