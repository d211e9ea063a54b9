"""The benchmark's reference rows, as models: real dances on the wrong song, and a still pose."""

from __future__ import annotations

import zlib

import numpy as np

from ..motion import Motion
from .base import DanceModel, Music, register_model


class _FromTrainingDances(DanceModel):
    def __init__(self, train_motions: list[Motion], **_):
        if not train_motions:
            raise ValueError(f"{self.name} needs training motions")
        self.motions = train_motions


def song_rng(music: Music, seed: int) -> np.random.Generator:
    """The random draws of `seed` on this song, the song told by its music features: each song of a
    benchmark gets its own training dance (one seed alone would give every song the same one)."""
    song = 0
    for name in sorted(music.features):
        song = zlib.crc32(np.ascontiguousarray(music.features[name]), zlib.crc32(name.encode(), song))
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, song])


@register_model("random_real")
class RandomReal(_FromTrainingDances):
    """A real training dance played on another song: a random span of a random training sequence,
    looped when shorter than asked, drawn anew for each song and seed (`song_rng`). Measures what real
    dance scores with no link to the music."""

    def generate(self, music: Music, *, seed_motion=None, length=None, seed=0, **controls) -> Motion:
        rng = song_rng(music, seed)
        length = length or music.num_frames
        motion = self.motions[rng.integers(len(self.motions))].resample(music.fps)
        start = int(rng.integers(max(1, motion.num_frames - length + 1)))
        frames = (start + np.arange(length)) % motion.num_frames
        root = motion.root_translation[frames]
        # when looping, keep the root continuous instead of jumping back
        laps = (start + np.arange(length)) // motion.num_frames
        root = root + laps[:, None] * (motion.root_translation[-1] - motion.root_translation[0]) * [1, 0, 1]
        return Motion(music.fps, motion.skeleton, root, motion.rotations[frames])


@register_model("still_pose")
class StillPose(_FromTrainingDances):
    """The first pose of a random training dance (drawn for each song and seed), held for the whole song."""

    def generate(self, music: Music, *, seed_motion=None, length=None, seed=0, **controls) -> Motion:
        rng = song_rng(music, seed)
        length = length or music.num_frames
        motion = self.motions[rng.integers(len(self.motions))]
        return Motion(music.fps, motion.skeleton, np.repeat(motion.root_translation[:1], length, 0),
                      np.repeat(motion.rotations[:1], length, 0))
