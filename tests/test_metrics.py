"""dancegen.metrics against the reference code's outputs (../shared/metrics_reference) and properties."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dancegen.metrics import (
    beat_align_score,
    diversity,
    fid,
    geometric_features,
    kinetic_features,
    motion_beats,
    physical_foot_contact,
)

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "metrics_reference"
RTOL = 1e-6


@pytest.fixture(scope="module")
def ref() -> dict:
    if not (REFERENCE / "reference.json").exists():
        pytest.skip(f"metric reference values not available: {REFERENCE} is absent (it exists only beside dev/CI checkouts)")
    values = json.loads((REFERENCE / "reference.json").read_text())
    values["motion_a"] = np.load(REFERENCE / "motion_a.npy")
    values["music_beats_a"] = np.load(REFERENCE / "music_beats_a.npy")
    values["feats_gt"] = np.load(REFERENCE / "feats_gt.npy")
    values["feats_pred"] = np.load(REFERENCE / "feats_pred.npy")
    return values


def y_to_z_up(p: np.ndarray) -> np.ndarray:
    """(x, y, z) -> (x, -z, y): a Y-up clip turned Z-up (rotation of +90 degrees about X)."""
    return np.stack([p[..., 0], -p[..., 2], p[..., 1]], axis=-1)


def dancing_clip(n: int = 240, seed: int = 0) -> np.ndarray:
    """A smooth synthetic (n, 24, 3) clip: a standing skeleton with wandering, swaying joints."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None, None] / 60.0
    rest = rng.normal(0, 0.3, (1, 24, 3)) + np.array([0.0, 1.0, 0.0])
    phase, freq = rng.uniform(0, 6, (2, 1, 24, 3))
    return rest + 0.2 * np.sin(2 * np.pi * (0.5 + freq) * t + phase) + np.array([0.3, 0.0, 0.1]) * t


# --- against the reference code ----------------------------------------------------------------


def test_kinetic_features_match_reference(ref):
    got = kinetic_features(ref["motion_a"], fps=60)
    assert got.shape == (72,) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref["kinetic_a"], rtol=RTOL)


def test_geometric_features_match_reference_exactly(ref):
    got = geometric_features(ref["motion_a"], fps=60)
    assert got.shape == (32,)
    np.testing.assert_array_equal(got, np.asarray(ref["manual_a"], dtype=np.float32))


@pytest.mark.parametrize("variant, key", [("bailando", "bas_bailando_a"), ("fact", "bas_fact_a")])
def test_beat_align_score_matches_reference(ref, variant, key):
    got = beat_align_score(ref["motion_a"], ref["music_beats_a"], fps=60, variant=variant)
    assert got == pytest.approx(ref[key], rel=RTOL)


def test_pfc_matches_reference(ref):
    # The reference took every second frame of the 60 fps clip and turned it Z-up.
    assert physical_foot_contact(ref["motion_a"][::2], fps=30) == pytest.approx(ref["pfc_a_30fps"], rel=RTOL)
    assert physical_foot_contact(ref["motion_a"], fps=60) == pytest.approx(ref["pfc_a_30fps"], rel=RTOL)
    z_up = y_to_z_up(ref["motion_a"][::2])
    assert physical_foot_contact(z_up, fps=30, up="z") == pytest.approx(ref["pfc_a_30fps"], rel=RTOL)


def test_fid_and_diversity_match_reference(ref):
    gt, pred = ref["feats_gt"], ref["feats_pred"]
    assert fid(pred, gt) == pytest.approx(ref["fid_pred_vs_gt"], rel=RTOL)
    assert diversity(pred, gt) == pytest.approx(ref["div_pred"], rel=RTOL)
    assert diversity(gt, gt) == pytest.approx(ref["div_gt"], rel=RTOL)


# --- properties ----------------------------------------------------------------------------------


def test_still_pose_has_no_kinetic_energy_but_keeps_the_acceleration_quirk():
    pose = dancing_clip(1)[0]
    features = kinetic_features(np.repeat(pose[None], 50, axis=0), fps=60).reshape(24, 3)
    np.testing.assert_array_equal(features[:, :2], 0.0)
    # The reference's "acceleration" of a still joint at p is p·(fps - 1)·fps, not 0 (see docstring).
    expected = np.linalg.norm(pose, axis=-1) * 59 * 60
    np.testing.assert_allclose(features[:, 2], expected, rtol=1e-5)
    still_at_origin = kinetic_features(np.zeros((50, 24, 3)), fps=60)
    np.testing.assert_array_equal(still_at_origin, 0.0)


def test_pfc_is_zero_on_a_static_clip():
    clip = np.repeat(dancing_clip(1), 40, axis=0)
    assert physical_foot_contact(clip, fps=30) == 0.0
    assert physical_foot_contact(dancing_clip(120), fps=30) > 0.0


def test_pfc_clamps_only_upward_root_acceleration():
    clip = np.repeat(dancing_clip(1), 40, axis=0)
    clip[:, :, 0] += np.linspace(0, 0.4, 40)[:, None] ** 2  # root accelerates sideways ...
    clip[:, [7, 10, 8, 11], 2] += np.arange(40)[:, None] * 0.01  # ... while both feet slide
    assert physical_foot_contact(clip) > 0.0
    clip = np.repeat(dancing_clip(1), 40, axis=0)
    clip[:, :, 1] -= np.linspace(0, 0.4, 40)[:, None] ** 2  # root accelerates downwards only
    clip[:, [7, 10, 8, 11], 2] += np.arange(40)[:, None] * 0.01
    assert physical_foot_contact(clip) == 0.0


def test_z_up_input_gives_the_same_numbers():
    clip = dancing_clip()
    z_up = y_to_z_up(clip)
    np.testing.assert_array_equal(kinetic_features(z_up, up="z"), kinetic_features(clip, up="y"))
    np.testing.assert_array_equal(geometric_features(z_up, up="z"), geometric_features(clip, up="y"))
    beats = [10, 70, 130, 190]
    for variant in ("bailando", "fact"):
        assert beat_align_score(z_up, beats, variant=variant, up="z") == beat_align_score(clip, beats, variant=variant)
    assert physical_foot_contact(z_up, up="z") == physical_foot_contact(clip)
    # Reading a Y-up clip as Z-up is a different pose: the height-based features notice.
    assert not np.array_equal(geometric_features(clip, up="z"), geometric_features(clip, up="y"))


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="up"):
        kinetic_features(dancing_clip(), up="x")
    with pytest.raises(ValueError, match="shape"):
        geometric_features(np.zeros((10, 22, 3)))
    with pytest.raises(ValueError, match="variant"):
        beat_align_score(dancing_clip(), [1, 2], variant="edge")


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_a_shift():
    feats = np.random.default_rng(1).normal(size=(200, 8))
    assert abs(fid(feats, feats)) < 1e-8
    assert fid(feats + 1.0, feats) == pytest.approx(8.0, rel=0.05)  # mean shift of one std per dim


def test_fid_falls_back_to_offset_covariances_when_sqrtm_fails(monkeypatch):
    from dancegen.metrics import distribution

    rng = np.random.default_rng(3)
    gt, pred = rng.normal(size=(60, 5)), rng.normal(0.5, 1.0, size=(30, 5))
    expected = fid(pred, gt)
    real_sqrtm, calls = distribution.linalg.sqrtm, []

    def failing_once(a):
        calls.append(a)
        return np.full_like(a, np.nan) if len(calls) == 1 else real_sqrtm(a)

    monkeypatch.setattr(distribution.linalg, "sqrtm", failing_once)
    assert fid(pred, gt) == pytest.approx(expected, rel=1e-3)
    assert len(calls) == 2
    # the second product carries the 1e-5 offsets on both covariance diagonals
    assert not np.allclose(calls[0], calls[1], rtol=0, atol=1e-12)


def test_normalisation_uses_the_reference_statistics():
    rng = np.random.default_rng(2)
    gt, pred = rng.normal(size=(60, 5)), rng.normal(1.0, 2.0, size=(30, 5))
    scale, shift = rng.uniform(0.1, 10, 5), rng.normal(size=5)
    assert diversity(pred * scale + shift, gt * scale + shift) == pytest.approx(diversity(pred, gt), rel=1e-9)
    assert fid(pred * scale + shift, gt * scale + shift) == pytest.approx(fid(pred, gt), rel=1e-9)
    # Diversity of a set is not its own normalised spread when judged against another reference.
    assert diversity(pred, gt) != pytest.approx(diversity(pred, pred))


def swaying_clip(n: int = 280, period: int = 62) -> np.ndarray:
    """All joints sway along X with a period of 62 frames: the step speed |x[i+1] - x[i]| is
    smallest at i = 15, 46, 77, ... (steps centred on the turning points at 15.5 + 31k), up to 263."""
    x = 0.3 * np.sin(2 * np.pi * np.arange(n) / period)
    clip = np.repeat(dancing_clip(1), n, axis=0)
    clip[:, :, 0] += x[:, None]
    return clip


def test_beats_that_coincide_score_one():
    clip = swaying_clip()
    bailando_beats = np.arange(15, 279, 31)  # step indices, as Bailando counts
    fact_beats = bailando_beats + 1  # FACT counts the frame the step ends on
    np.testing.assert_array_equal(motion_beats(clip, "bailando"), bailando_beats)
    np.testing.assert_array_equal(motion_beats(clip, "fact"), fact_beats)
    assert beat_align_score(clip, bailando_beats, variant="bailando") == pytest.approx(1.0)
    assert beat_align_score(clip, fact_beats, variant="fact") == pytest.approx(1.0)
    # three frames off: exp(-9 / 18)
    assert beat_align_score(clip, bailando_beats + 3, variant="bailando") == pytest.approx(np.exp(-0.5))


def test_bailando_ignores_music_beats_past_the_motion_and_fact_scores_motion_beats():
    clip = swaying_clip()
    beats = np.arange(15, 279, 31)
    assert beat_align_score(clip, np.append(beats, [279, 400]), variant="bailando") == pytest.approx(1.0)
    # FACT averages over motion beats: extra music beats far from any motion beat change nothing.
    assert beat_align_score(clip, np.append(beats + 1, [30, 61]), variant="fact") == pytest.approx(1.0)
    # ... but Bailando averages over music beats, so they lower its score.
    assert beat_align_score(clip, np.append(beats, [30, 61]), variant="bailando") < 0.9


def test_still_pose_has_no_motion_beats():
    clip = np.repeat(dancing_clip(1), 120, axis=0)
    assert beat_align_score(clip, [10, 40, 70], variant="bailando") == 0.0
    assert beat_align_score(clip, [10, 40, 70], variant="fact") == 0.0


def test_kinetic_fid_of_songs_scores_only_the_kept_songs():
    from dancegen.metrics.benchmark import BenchmarkResult, DanceScores, Song, kinetic_fid_of_songs

    rng = np.random.default_rng(0)
    songs = [Song("a", "waltz", np.zeros(0)), Song("b", "tango", np.zeros(0))]

    def dance(kinetic):
        return DanceScores(kinetic, np.zeros((len(kinetic), 32)), [], [], [], 0.0, np.zeros(0))

    truth = [dance(rng.normal(size=(40, 72))), dance(rng.normal(5.0, 1.0, size=(40, 72)))]
    copy_of_a = dance(truth[0].kinetic.copy())
    # a row of two seeds per song: song a danced exactly as the truth, song b far off
    scores = {"ground_truth": truth, "row": [copy_of_a, copy_of_a, dance(np.zeros((40, 72))), dance(np.zeros((40, 72)))]}
    result = BenchmarkResult({}, None, songs, scores)
    only_a = kinetic_fid_of_songs(result, lambda song: song.style == "waltz")
    both = kinetic_fid_of_songs(result, lambda song: True)
    assert abs(only_a["row"][0]) < 0.05 and abs(only_a["ground_truth"][0]) < 0.05  # sqrtm rounding
    assert both["row"][0] > 10 and abs(both["ground_truth"][0]) < 0.05
