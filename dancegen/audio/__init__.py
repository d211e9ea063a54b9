"""Audio: decoding any song file, the field's feature recipes at any fps, beat tracking.

    y = load("song.mp3", 22050)                                   # mono float32
    x = features("song.mp3", "fact35", fps=25, start=12.0, num_frames=500)   # (500, 35), cached
    both = features_many("song.mp3", ["fact35", "bailando438"], fps=25)
    times, bpm = beats(y, 22050)
"""

from .beats import DEFAULT_TRACKER, TRACKERS, BeatTrack, beats, song_beats
from .cache import compute_features, context_frames, default_cache_dir, features, features_many, file_hash
from .decode import MAX_DURATION, AudioInfo, duration, load, probe
from .recipes import HOP_LENGTH, RECIPES, Analysis, Recipe, get_recipe, sample_rate_for

__all__ = [
    "AudioInfo",
    "Analysis",
    "BeatTrack",
    "DEFAULT_TRACKER",
    "HOP_LENGTH",
    "MAX_DURATION",
    "RECIPES",
    "Recipe",
    "TRACKERS",
    "beats",
    "compute_features",
    "context_frames",
    "default_cache_dir",
    "duration",
    "features",
    "features_many",
    "file_hash",
    "get_recipe",
    "load",
    "probe",
    "sample_rate_for",
    "song_beats",
]
