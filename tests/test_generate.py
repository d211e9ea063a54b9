"""`dancegen generate` end to end, with a small model registered by the test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import dancegen
from dancegen.cli import main
from dancegen.models import DanceModel, Music, register_model
from dancegen.motion import Motion, read_bvh, smpl_skeleton

SEEN: dict = {}


@register_model("test_sway")
class Sway(DanceModel):
    """Sways to the onset envelope: deterministic per seed, and it records what it was given."""

    fps = 30.0
    music_features = ("fact35",)

    def __init__(self, **_):
        pass

    def generate(self, music: Music, *, seed_motion=None, length=None, seed=0, **controls) -> Motion:
        SEEN.update(music=music, seed_motion=seed_motion, controls=controls)
        t = np.arange(length) / self.fps
        phase = np.random.default_rng(seed).uniform(0, 6, (1, 24, 3))
        rot = 0.2 * np.sin(2 * np.pi * t[:, None, None] + phase) * (1 + music.features["fact35"][:length, :1, None])
        return Motion(self.fps, smpl_skeleton(), np.c_[0.1 * t, np.full(length, 0.9), 0 * t], rot)


@pytest.fixture()
def song(tmp_path: Path) -> Path:
    sr = 22050
    t = np.arange(int(4.0 * sr)) / sr
    y = 0.3 * np.sin(2 * np.pi * 220 * t) * (np.mod(t, 0.5) < 0.1)
    path = tmp_path / "my song.wav"
    sf.write(path, y.astype(np.float32), sr)
    return path


def test_generate_writes_the_four_files(song: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    code = main(["generate", str(song), "-o", str(out), "--model", "test_sway", "--start", "0.5", "--seed", "3", "-q"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["my song.bvh", "my song.html", "my song.mp4", "my song.npz"]
    z = np.load(out / "my song.npz")
    assert z["positions"].shape == (105, 24, 3) and float(z["music_offset"]) == 0.5 and float(z["fps"]) == 30
    assert list(z["joint_names"]) == list(smpl_skeleton().names) and list(z["parents"]) == list(smpl_skeleton().parents)
    assert np.abs(read_bvh(out / "my song.bvh").positions() - z["positions"]).max() < 1e-4
    assert SEEN["music"].start == 0.5 and SEEN["music"].features["fact35"].shape == (105, 35)
    # the npz is a seed motion for a continuation
    code = main(["generate", str(song), "-o", str(tmp_path / "more"), "--model", "test_sway", "-q",
                 "--seed-motion", str(out / "my song.npz"), "--formats", "npz"])
    assert code == 0 and SEEN["seed_motion"].num_frames == 105 and "temperature" not in SEEN["controls"]
    code = main(["generate", str(song), "-o", str(tmp_path / "hot"), "--model", "test_sway", "-q",
                 "--temperature", "1.5", "--formats", "npz"])
    assert code == 0 and SEEN["controls"]["temperature"] == 1.5
    assert [p.name for p in (tmp_path / "more").iterdir()] == ["my song.npz"]


def test_same_seed_same_dance(song: Path):
    a = dancegen.generate(song, model="test_sway", seed=1)
    b = dancegen.generate(song, model="test_sway", seed=1)
    c = dancegen.generate(song, model="test_sway", seed=2)
    assert np.array_equal(a.rotations, b.rotations) and not np.allclose(a.rotations, c.rotations)


@pytest.mark.parametrize("case", ["short", "silent", "odd format", "missing", "bad format list"])
def test_bad_songs_and_options(tmp_path: Path, capsys, case):
    sr = 22050
    path = tmp_path / "song.wav"
    argv = []
    if case == "short":
        sf.write(path, np.sin(np.arange(sr // 2) * 0.1).astype(np.float32), sr)
    elif case == "silent":
        sf.write(path, np.zeros(sr * 3, dtype=np.float32), sr)
    elif case == "odd format":
        path = tmp_path / "song.xyz"
        path.write_bytes(b"\x00\x01 definitely not audio" * 100)
    elif case == "bad format list":
        sf.write(path, np.sin(np.arange(sr * 2) * 0.1).astype(np.float32), sr)
        argv = ["--formats", "bvh,gif"]
    out = tmp_path / "out"
    code = main(["generate", str(path), "-o", str(out), "--model", "test_sway", "-q", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and err.startswith("dancegen: error:"), err
    assert case == "bad format list" or str(path) in err
    assert not out.exists() or not any(out.iterdir())


def test_the_bundled_default_model(tmp_path: Path, monkeypatch):
    """The README's first command in small: no song, no model, a few seconds of the demo song."""
    from dancegen.models import DEFAULT_MODEL, load_model

    files = {p.name: p.stat().st_size for p in DEFAULT_MODEL.iterdir()}
    assert set(files) == {"model.safetensors", "config.json", "MODEL_CARD.md"}
    assert sum(files.values()) <= 30 * 2 ** 20
    card = (DEFAULT_MODEL / "MODEL_CARD.md").read_text()
    assert "research use only" in card and "dancegen train configs/" in card and "fid_k" in card
    model = load_model("default")
    assert model.name == "bailando" and not model.training
    monkeypatch.setenv("DANCEGEN_CACHE", str(tmp_path / "cache"))
    assert main(["generate", "--duration", "4", "--formats", "bvh,npz", "-o", str(tmp_path / "out"), "-q"]) == 0
    with np.load(tmp_path / "out" / "demo_song.npz") as z:
        assert z["positions"].shape == (100, 24, 3) and float(z["fps"]) == 25.0
        speed = np.linalg.norm(np.diff(z["positions"], axis=0), axis=-1).mean() * 25
    assert 0.1 < speed < 3.0  # it dances: neither still nor flailing (m/s, mean over joints)
    assert read_bvh(tmp_path / "out" / "demo_song.bvh").num_frames == 100


def test_a_fresh_command_computes_the_features_while_torch_loads(tmp_path: Path):
    """In a fresh process (torch not loaded yet) the model's features come from a forked process,
    the same numbers as computed in place; the cache of that process is the user's."""
    import subprocess
    import sys

    script = """
import sys, numpy as np
import dancegen.generation as G
future = G._features_while_loading(G.DEMO_SONG, "default", 1.0, 4.0)
assert future is not None and "torch" not in sys.modules
import torch  # what the command does meanwhile
got = future.result()
from dancegen.audio import features_many
want = features_many(G.DEMO_SONG, ["fact35"], 25.0, start=1.0, num_frames=100, cache=False)
assert list(got) == ["fact35"] and np.array_equal(got["fact35"], want["fact35"]), "features differ"
print("same features")
"""
    env = {**__import__("os").environ, "DANCEGEN_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and "same features" in r.stdout, r.stderr[-2000:]
    assert list((tmp_path / "cache").rglob("*.npy")), "the forked process fills the feature cache"
