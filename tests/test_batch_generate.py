"""Batch generation (issue 10): `dancegen generate` on several songs or a folder, with a pool of
workers; finished songs are skipped so a rerun resumes, and one bad song does not stop the others."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import dancegen
from dancegen.cli import main
from dancegen.errors import UserError
from dancegen.generation import outputs_exist, song_files
from dancegen.models.bailando import BailandoModel

TINY = dict(fps=25.0, music_features=["fact35"], music_dims=[35], down=4, codes=16, code_dim=8, channels=16,
            context=8, d_model=32, layers=1, heads=2, ff=64, music_channels=8, vq_window=16, dropout=0.0)
OPTIONS = ["--style", "waltz", "--formats", "bvh,npz", "-q"]  # a style given: no classifier to load


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A tiny saved Bailando model: a folder, so that worker processes can load it too."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model")
    BailandoModel(**TINY).save(folder)
    return folder


def write_song(path: Path, seconds: float = 2.5, pitch: float = 220.0) -> Path:
    sr = 22050
    t = np.arange(int(seconds * sr)) / sr
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(2 * np.pi * pitch * t) * (np.mod(t, 0.5) < 0.1)).astype(np.float32), sr)
    return path


@pytest.fixture()
def songs(tmp_path: Path) -> Path:
    """A folder of three short songs (one in a subfolder), a damaged one and a non-audio file."""
    root = tmp_path / "album"
    write_song(root / "one.wav")
    write_song(root / "two.flac", pitch=330)
    write_song(root / "disc 2" / "three.ogg", pitch=440)
    (root / "broken.mp3").write_bytes(b"\x00 not audio at all " * 200)
    (root / "cover.txt").write_text("liner notes")
    return root


def run(argv: list[str], capsys) -> tuple[int, list[str], str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out.strip().splitlines(), captured.err.strip()


def test_a_folder_with_a_pool_then_a_rerun_resumes(songs: Path, model: Path, tmp_path: Path, capsys):
    """The pool runs in a fresh command, as a user starts it (torch not loaded: the workers are forked
    after the warm-up); the rerun and the comparison run in this process (one job: no pool)."""
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "dancegen.cli", "generate", str(songs), "-o", str(out), "--model",
                        str(model), "--jobs", "2", *OPTIONS], capture_output=True, text=True, timeout=600)
    code, lines, err = r.returncode, r.stdout.strip().splitlines(), r.stderr.strip().splitlines()[-1]
    assert code == 2 and err.count("\n") == 0 and "1 of 4 songs failed: broken.mp3" in err, err
    progress = sorted(line.split(" ", 1)[1] for line in lines[:-1])
    assert len(lines) == 5 and [line.split(":")[0] for line in progress] == [
        "broken.mp3", "one.wav", "three.ogg", "two.flac"], lines
    assert "not an audio file" in progress[0] and "\n" not in progress[0]
    assert lines[-1].startswith("3 generated, 0 skipped, 1 failed of 4 songs"), lines[-1]
    assert sorted(p.name for p in out.iterdir()) == [
        "one.bvh", "one.npz", "three.bvh", "three.npz", "two.bvh", "two.npz"]  # nothing half-written
    with np.load(out / "one.npz") as z:
        pooled = z["positions"]
    assert pooled.shape == (62, 24, 3)

    # a rerun: what is complete is skipped; a song with an output missing is done again
    (out / "two.npz").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    code, lines, err = run(["generate", str(songs), "-o", str(out), "--model", str(model), *OPTIONS], capsys)
    assert code == 2 and lines[-1].startswith("1 generated, 2 skipped, 1 failed of 4 songs"), lines
    assert sum(": skipped: " in line for line in lines) == 2 and (out / "two.npz").exists()
    assert all((out / n).stat().st_mtime_ns == t for n, t in before.items() if not n.startswith("two."))
    # the same dance in one process as in the pool (same seed, same numbers)
    fresh = tmp_path / "fresh"
    assert run(["generate", str(songs / "one.wav"), str(songs / "two.flac"), "-o", str(fresh), "--model", str(model),
                "--jobs", "1", *OPTIONS], capsys)[0] == 0
    with np.load(fresh / "one.npz") as z:
        assert np.allclose(z["positions"], pooled, atol=1e-5)


def test_the_python_api_reports_each_song(songs: Path, model: Path, tmp_path: Path):
    lines = []
    results = dancegen.generate_many([songs / "one.wav", songs / "broken.mp3"], tmp_path / "out", model=str(model),
                                     jobs=1, style="waltz", formats=("npz",), report=lines.append)
    assert [(r.song.name, r.status) for r in results] == [("one.wav", "done"), ("broken.mp3", "failed")]
    assert lines[0].startswith("[1/2] one.wav: 2.5 s of dance") and lines[1].startswith("[2/2] broken.mp3: error:")
    assert results[0].written == [tmp_path / "out" / "one.npz"]
    again = dancegen.generate_many([songs / "one.wav"], tmp_path / "out", model=str(model), jobs=1,
                                   style="waltz", formats=("npz",), report=lines.append)
    assert again[0].status == "skipped"
    redo = dancegen.generate_many([songs / "one.wav"], tmp_path / "out", model=str(model), jobs=1, overwrite=True,
                                  style="waltz", formats=("npz",), report=lines.append)
    assert redo[0].status == "done"


def test_a_single_song_is_always_generated(songs: Path, model: Path, tmp_path: Path, capsys):
    """One song named alone keeps the plain command: no skipping (a new seed must give a new dance)."""
    out = tmp_path / "out"
    for seed in ("1", "2"):
        code, lines, _ = run(["generate", str(songs / "one.wav"), "-o", str(out), "--model", str(model),
                              "--seed", seed, *OPTIONS], capsys)
        assert code == 0 and f"seed {seed}" in lines[-1] and "skipped" not in lines[-1]


def test_song_lists(songs: Path, tmp_path: Path):
    found = song_files([songs, songs / "one.wav"])  # a song named twice counts once
    assert [p.name for p in found] == ["broken.mp3", "three.ogg", "one.wav", "two.flac"]  # by path
    write_song(tmp_path / "elsewhere" / "one.mp3")
    with pytest.raises(UserError, match="same name"):
        song_files([songs, tmp_path / "elsewhere"])
    with pytest.raises(UserError, match="no such file or folder"):
        song_files([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no songs in this folder"):
        song_files([tmp_path / "empty"])


def test_outputs_exist_needs_every_format(tmp_path: Path):
    song = Path("a.b.wav")
    (tmp_path / "a.b.bvh").write_text("x")
    (tmp_path / ".a.b.npz.x1.tmp.npz").write_text("x")  # a temporary name is not an output
    assert outputs_exist(song, tmp_path, ("bvh",)) and not outputs_exist(song, tmp_path, ("bvh", "npz"))
    (tmp_path / "a.b.smpl.pkl").write_text("x")  # a format with a double suffix
    assert outputs_exist(song, tmp_path, ("bvh", "smpl")) and not outputs_exist(Path("a.wav"), tmp_path, ("bvh",))


def test_prepare_reruns_reuse_unchanged_sequences(synthetic: Path, tmp_path: Path):
    """`dancegen prepare` on a dataset folder already resumes: a rerun redoes only what changed."""
    from dancegen.data.prepare import prepare

    out, cache = tmp_path / "prepared", tmp_path / "cache"
    first = prepare("synthetic", synthetic, out, recipes=("fact35",), jobs=1, cache_dir=cache, progress=False)
    assert first["prepared_now"] == 7
    again = prepare("synthetic", synthetic, out, recipes=("fact35",), jobs=1, cache_dir=cache, progress=False)
    assert again["prepared_now"] == 0 and again["sequences"] == first["sequences"]
    write_song(synthetic / "seq3.wav", seconds=4.0, pitch=500)  # one song changed
    third = prepare("synthetic", synthetic, out, recipes=("fact35",), jobs=1, cache_dir=cache, progress=False)
    assert third["prepared_now"] == 1


def test_ctrl_c_stops_the_pool_at_once(model: Path, tmp_path: Path):
    """Ctrl-C ends the batch within seconds: the queued songs are cancelled and the workers
    terminated (a pool's shutdown alone would let them dance through the whole queue first)."""
    import os
    import signal
    import time

    first = write_song(tmp_path / "songs" / "song00.wav")
    for i in range(1, 40):
        (tmp_path / "songs" / f"song{i:02}.wav").write_bytes(first.read_bytes())
    out = tmp_path / "out"
    child = subprocess.Popen([sys.executable, "-m", "dancegen.cli", "generate", str(tmp_path / "songs"), "-o", str(out),
                              "--model", str(model), "--jobs", "2", *OPTIONS], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             # its own process group, with Python's SIGINT handler (a background job's is ignored)
                             preexec_fn=lambda: (os.setsid(), signal.signal(signal.SIGINT, signal.SIG_DFL)))
    try:
        assert child.stdout.readline().startswith("[1/40] ")  # the pool is at work
        os.killpg(child.pid, signal.SIGINT)  # what the terminal sends on Ctrl-C
        started = time.time()
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    assert child.returncode == 130 and "interrupted" in err and time.time() - started < 20
    assert len(list(out.glob("*.npz"))) < 40
    left = subprocess.run(["ps", "-o", "pid=", "-g", str(child.pid)], capture_output=True, text=True).stdout.split()
    assert not left, f"workers left running: {left}"
