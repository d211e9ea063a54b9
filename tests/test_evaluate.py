"""The benchmark (`dancegen evaluate`) on the small synthetic dataset of conftest.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dancegen.cli import main
from dancegen.data import PreparedDataset
from dancegen.data.prepare import prepare
from dancegen.metrics.benchmark import METRICS, Protocol, run_benchmark
from dancegen.metrics.report import write_report
from dancegen.models import DanceModel, Music
from dancegen.motion import Motion


class Replay(DanceModel):
    """Plays the training dances back in turn: real motion, so its scores sit near the ground truth."""

    def __init__(self, train_motions):
        self.motions = train_motions

    def generate(self, music: Music, *, seed_motion=None, length=None, seed=0, **controls) -> Motion:
        m = self.motions[seed % len(self.motions)].resample(music.fps)
        reps = -(-length // m.num_frames)
        return Motion(music.fps, m.skeleton, np.tile(m.root_translation, (reps, 1))[:length],
                      np.tile(m.rotations, (reps, 1, 1))[:length])


@pytest.fixture()
def prepared(synthetic: Path, tmp_path: Path) -> PreparedDataset:
    out = tmp_path / "prepared"
    prepare("synthetic", synthetic, out, recipes=("fact35",), cache_dir=tmp_path / "cache", jobs=1, progress=False)
    return PreparedDataset(out)


def test_benchmark_rows_and_metrics(prepared: PreparedDataset, tmp_path: Path):
    protocol = Protocol("test", window_seconds=1.0, seeds=(0, 1))
    result = run_benchmark(prepared, {"replay": Replay}, protocol=protocol, style_of=lambda m: "waltz",
                           split="test", cache_dir=tmp_path / "cache", progress=False)
    r = result.results
    assert list(r) == ["ground_truth", "random_real", "still_pose", "replay"]
    assert all(set(row) == set(METRICS) for row in r.values())
    test_styles = [prepared.sequences[n]["style"] for n in prepared.split("test")]
    assert r["ground_truth"]["fid_k"] == pytest.approx(0, abs=1e-3)  # the split against itself
    assert r["random_real"]["fid_k"] > 0.1 and r["still_pose"]["fid_k"] > r["random_real"]["fid_k"]
    assert r["still_pose"]["freeze_rate"] == 1.0 and r["ground_truth"]["freeze_rate"] < 0.5
    still = result.scores["still_pose"][0].kinetic.reshape(-1, 24, 3)
    assert np.abs(still[..., :2]).max() < 1e-9  # no horizontal or vertical kinetic energy
    assert r["random_real"]["div_k"] > 0.1
    for row in r.values():  # the stub style judge says "waltz" for every dance
        assert row["style_accuracy"] == pytest.approx(np.mean([s == "waltz" for s in test_styles]))
        assert 0 <= row["bas_bailando"] <= 1 and 0 <= row["bas_fact"] <= 1
    assert len(result.scores["replay"]) == 2 * len(test_styles)

    table = write_report(result, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "results.json").read_text())["replay"]["fid_k"] == pytest.approx(r["replay"]["fid_k"])
    assert table.count("\n") == 2 + 4 and "| still_pose |" in table
    for plot in ("beats.png", "kinetic_energy.png", "metrics.png"):
        assert (tmp_path / "out" / "plots" / plot).stat().st_size > 5000


def test_style_accuracy_judges_only_styles_the_classifier_knows(prepared: PreparedDataset, tmp_path: Path):
    test_styles = [prepared.sequences[n]["style"] for n in prepared.split("test")]
    assert "waltz" in test_styles and set(test_styles) != {"waltz"}
    result = run_benchmark(prepared, {}, protocol=Protocol("test", window_seconds=1.0, seeds=(0,)),
                           style_of=lambda m: "waltz", known_styles=("waltz",), split="test",
                           cache_dir=tmp_path / "cache", progress=False)
    assert all(row["style_accuracy"] == 1.0 for row in result.results.values())  # the others are not judged


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "no-colon"], "KIND:PATH"),
    (["--dataset", "synthetic:/nonexistent/folder"], "/nonexistent/folder: no such dataset folder"),
    (["--dataset", "synthetic:{src}", "--model", "no_such_model"], "no_such_model: no such model"),
])
def test_evaluate_user_errors(synthetic: Path, tmp_path: Path, capsys, argv, message):
    argv = [a.format(src=synthetic) for a in argv]
    code = main(["evaluate", *argv, "-o", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c"), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err


def test_aist_protocol_on_files_in_aist_format(tmp_path: Path):
    """Bailando's protocol on a user's AIST++ folder: the crossmodal test split, 20-s dances at
    60 fps (one window each), ground-truth features over all sequences."""
    from test_aist import aist_dict, write_pickle, write_sine

    from dancegen.metrics.evaluate import evaluate

    root = tmp_path / "aist"
    names = [f"g{g}_sBM_cAll_d0{i}_m{g}{i}_ch0{i}" for i, g in enumerate(["BR", "PO", "LO", "KR", "BR"], 1)]
    t = np.arange(1380) / 60  # 23 s at 60 fps
    for i, name in enumerate(names):
        d = aist_dict(len(t), i)
        d["smpl_poses"] = (0.3 * np.sin(2 * np.pi * (1 + 0.2 * i) * t[:, None] + np.arange(72))).astype(np.float32)
        write_pickle(root / "motions" / f"{name}.pkl", d)
        write_sine(root / "wav" / f"{name.split('_')[4]}.wav", seconds=24.0)
    (root / "splits").mkdir()
    (root / "splits" / "crossmodal_train.txt").write_text("\n".join(names[:3]) + "\n")
    (root / "splits" / "crossmodal_test.txt").write_text("\n".join(names[3:]) + "\n")

    out = tmp_path / "out"
    table = evaluate([], f"aist:{root}", out, seeds=(0,), cache_dir=tmp_path / "cache", progress=False)
    assert "protocol `aist`" in table and "2 songs" in table
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["ground_truth", "random_real", "still_pose"]
    # ground truth against all sequences (test + train), so not zero as against itself
    assert results["ground_truth"]["fid_k"] > 0
    assert results["still_pose"]["freeze_rate"] == 1.0


def test_rows_of_folders_sharing_a_name_are_named_by_their_path(tmp_path: Path):
    from dancegen.metrics.evaluate import row_names

    for folder in ("a/best", "b/best", "c/last"):
        (tmp_path / folder).mkdir(parents=True)
    models = [str(tmp_path / "a/best"), str(tmp_path / "b/best"), str(tmp_path / "c/last"), "still_pose"]
    assert row_names(models) == [str(tmp_path / "a/best"), str(tmp_path / "b/best"), "last", "still_pose"]


def test_random_real_draws_a_training_dance_per_song_and_seed():
    from conftest import random_music, synthetic_motion

    from dancegen.models import load_model

    train = [synthetic_motion(seed, 40) for seed in range(8)]
    rr, still = (load_model(name, train_motions=train) for name in ("random_real", "still_pose"))
    songs = [random_music(30, seed=s) for s in range(6)]

    def played(model, music, seed):  # the training dance one of whose poses the dance starts with
        first = model.generate(music, seed=seed).rotations[0]
        return next(i for i, m in enumerate(train)
                    if np.isclose(m.resample(music.fps).rotations, first).all((1, 2)).any())

    for model in (rr, still):
        for seed in (0, 1):
            picks = [played(model, music, seed) for music in songs]
            assert len(set(picks)) > 1, "one seed gave every song the same training dance"
            assert picks == [played(model, music, seed) for music in songs]  # the same again
        assert [played(model, songs[0], seed) for seed in range(6)] != [played(model, songs[0], 0)] * 6
