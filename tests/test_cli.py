"""Bad input through the `dancegen` command: one line naming the file, exit code 2, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dancegen.cli import main
from dancegen.motion import write_bvh
from test_audio import _bad_files
from test_bvh import dance_like, write_sine
from test_dance_with_melody import markers_from_motion, synthetic_motion, write_sequence


def _run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err.strip()


def test_bad_audio_files(tmp_path: Path, capsys):
    for case, path in _bad_files(tmp_path).items():
        out = tmp_path / f"out-{path.stem}"
        code, err = _run(["features", str(path), "-o", str(out), "--cache-dir", str(tmp_path / "c")], capsys)
        assert code == 2, case
        assert err.startswith("dancegen: error: ") and str(path) in err and "\n" not in err, (case, err)
        assert not out.exists(), case


def test_hour_long_song(tmp_path: Path, capsys):
    import soundfile as sf

    path = tmp_path / "hour.flac"
    with sf.SoundFile(path, "w", samplerate=1000, channels=1, format="FLAC") as f:
        for _ in range(60):
            f.write(np.full(60_000, 0.1, dtype=np.float32))
    code, err = _run(["features", str(path), "-o", str(tmp_path / "out")], capsys)
    assert code == 2 and str(path) in err and "minutes" in err and not (tmp_path / "out").exists()


def _last_values_nan(text: str) -> str:
    lines = text.rstrip("\n").split("\n")
    lines[-1] = " ".join(lines[-1].split()[:-3] + ["nan"] * 3)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("spoil, problem", [
    (lambda text: text.replace("Zrotation", "Qrotation", 1), "channel"),
    (lambda text: _last_values_nan(text), "NaN"),
])
def test_bad_bvh_in_a_dataset_leaves_no_output(tmp_path: Path, capsys, spoil, problem):
    src = tmp_path / "pairs"
    src.mkdir()
    for name in ("a", "b"):
        write_bvh(dance_like(60), src / f"{name}.bvh")
        write_sine(src / f"{name}.wav", seconds=2.5)
    bad = src / "b.bvh"
    bad.write_text(spoil(bad.read_text()))
    out = tmp_path / "prepared"
    code, err = _run(["prepare", "bvh-wav", str(src), "-o", str(out), "--jobs", "1", "-q",
                      "--cache-dir", str(tmp_path / "c")], capsys)
    assert code == 2 and str(bad) in err and problem.lower() in err.lower() and "\n" not in err, err
    assert not out.exists()


def test_dataset_folder_with_a_file_missing(tmp_path: Path, capsys):
    markers = markers_from_motion(synthetic_motion(60))
    for i in (1, 2):
        write_sequence(tmp_path / "dwm" / f"DANCE_W_{i}", markers)
    (tmp_path / "dwm" / "DANCE_W_2" / "config.json").unlink()
    for argv in (["info", str(tmp_path / "dwm")],
                 ["prepare", "dance-with-melody", str(tmp_path / "dwm"), "-o", str(tmp_path / "out")]):
        code, err = _run(argv, capsys)
        assert code == 2 and str(tmp_path / "dwm" / "DANCE_W_2" / "config.json") in err and "\n" not in err, err
    assert not (tmp_path / "out").exists()


def test_console_script_reports_without_traceback(tmp_path: Path):
    exe = Path(sys.executable).with_name("dancegen")
    proc = subprocess.run([str(exe), "info", str(tmp_path / "nothing-here")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"dancegen: error: {tmp_path / 'nothing-here'}: no such file or folder"
