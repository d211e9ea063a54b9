"""The Bailando family (dancegen/models/bailando.py) on a tiny model, and a few steps on real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import (continuation_gap, fixed_loss, normalise_like, random_music as music, synthetic_motion,
                      train_steps, window_batch)
from dancegen.data.representation import motion_to_rot6d
from dancegen.models import load_model
from dancegen.models.base import style_id
from dancegen.models.bailando import BailandoModel, GPTStepper, heading, integrate, rot6d_to_local
from dancegen.motion import SMPL_JOINT_NAMES
from dancegen.motion.rotations import axis_angle_to_matrix, sixd_to_matrix

TINY = dict(fps=25.0, music_features=["fact35"], music_dims=[35], down=4, codes=16, code_dim=8, channels=16,
            context=8, d_model=32, layers=1, heads=2, ff=64, music_channels=8, vq_window=16, dropout=0.0)


def tiny(**kw) -> BailandoModel:
    torch.manual_seed(0)
    return BailandoModel(**{**TINY, **kw}).eval()


def test_heading_free_features_integrate_back_to_the_motion():
    motion = synthetic_motion(3, 60)
    motion.rotations[:, 0, 1] += np.linspace(0, 4, 60)  # the dancer turns about +Y as it goes
    rot6d = torch.from_numpy(motion_to_rot6d(motion)).double()
    local = rot6d_to_local(rot6d)
    assert local.shape == (59, 148)
    first = sixd_to_matrix(rot6d[0, 3:9])
    root, rotations = integrate(local, start_xz=rot6d[0, [0, 2]].tolist(), start_heading=float(heading(first)))
    assert np.allclose(root.numpy(), motion.root_translation[1:], atol=1e-4)
    assert np.allclose(rotations.numpy(), axis_angle_to_matrix(torch.from_numpy(motion.rotations[1:])).numpy(),
                       atol=1e-4)
    # nothing in the features depends on where the dancer stands or faces
    turned = motion_to_rot6d(synthetic_motion(3, 60))
    moved = turned.copy()
    moved[:, [0, 2]] += [5.0, -3.0]
    assert torch.allclose(rot6d_to_local(torch.from_numpy(turned)), rot6d_to_local(torch.from_numpy(moved)), atol=1e-5)


def test_floor_radius_keeps_a_long_straight_walk_on_the_floor():
    local = torch.zeros(3000, 148)
    local[:, 0], local[:, 2] = 0.9, 0.02  # walking forwards at 0.5 m/s for two minutes
    local[:, 4], local[:, 8] = 1.0, 1.0  # identity rotations in 6-D
    root, _ = integrate(local, floor_radius=4.0, fps=25.0)
    assert np.hypot(root[:, 0], root[:, 2]).max() < 4.5
    free, _ = integrate(local)
    assert np.hypot(free[-1, 0], free[-1, 2]) == pytest.approx(60.0, rel=1e-3)


def test_each_stage_lowers_its_loss_and_trains_only_its_parts():
    model = tiny()
    batch = window_batch(model)
    for stage, frozen, factor in (("vqvae", model.gpt, 0.6), ("gpt", model.upper, 0.7)):
        model.set_stage(stage)
        kept = [p.clone() for p in frozen.parameters()]
        before = fixed_loss(model, batch)
        train_steps(model, batch, 30, 3e-3)
        assert fixed_loss(model, batch) < factor * before, stage
        assert all(torch.equal(a, b) for a, b in zip(kept, frozen.parameters())), stage


def test_no_code_runs_longer_than_max_repeat():
    model = tiny()
    with torch.no_grad():  # a GPT that always wants codes 3 (upper) and 5 (lower)
        model.gpt.up_head.bias[3] = model.gpt.down_head[2].bias[5] = 50.0
    steps = model.gpt.encode_music(torch.randn(1, 4 * 30, 35))[0]
    for max_repeat, longest in ((None, 30), (4, 4)):
        up, low = model.sample_codes(steps, 0, torch.Generator().manual_seed(0), max_repeat=max_repeat)
        for codes in (up.tolist(), low.tolist()):
            runs = [1]
            for a, b in zip(codes, codes[1:]):
                runs.append(runs[-1] + 1 if a == b else 1)
            assert max(runs) == longest


def test_dead_codebook_entries_restart_from_the_batch():
    from dancegen.models.bailando import Quantizer

    q = Quantizer(codes=8, dim=4).train()
    z = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    q(z)  # the first batch initialises every entry from the batch
    assert torch.cdist(q.embedding, z).min(dim=1).values.max() < 0.1
    q.embedding.fill_(100.0)  # all far away: entry 0 takes everything, the rest die
    q.cluster_size.zero_()
    q.cluster_size[0] = 100.0
    q(z)
    assert torch.cdist(q.embedding[1:], z).min(dim=1).values.max() < 0.1


def test_generate_length_fps_skeleton_and_long_songs():
    model = tiny()
    for frames in (4, 77, 400):  # one code step; not a multiple of it; many times the GPT's context
        motion = model.generate(music(frames), length=frames, seed=0)
        assert motion.num_frames == frames and motion.fps == 25.0
        assert motion.skeleton.names == SMPL_JOINT_NAMES
        assert np.isfinite(motion.rotations).all() and np.isfinite(motion.root_translation).all()
    at_30 = model.generate(music(90, fps=30.0), length=90, seed=0)
    assert at_30.num_frames == 90 and at_30.fps == 30.0


def test_sliding_context_matches_a_full_recomputation():
    """The key/value cache gives the same next-code distribution as running the GPT on the whole context."""
    model = tiny()
    gpt = model.gpt
    steps = gpt.encode_music(torch.randn(1, 4 * 6, 35))
    up, low, style = torch.randint(0, 16, (1, 6)), torch.randint(0, 16, (1, 6)), torch.tensor([2])
    with torch.no_grad():
        full, _ = gpt(gpt.embed(up, low, steps, style))
        _, cache = gpt(gpt.embed(up[:, :5], low[:, :5], steps[:, :5], style))
        last, _ = gpt(gpt.embed(up[:, 5:], low[:, 5:], steps[:, 5:], style, 5), cache)
    assert torch.allclose(full[:, 5], last[:, 0], atol=1e-5)



def test_the_sampling_stepper_matches_the_gpt_modules():
    """GPTStepper (transposed weights, preallocated cache) gives the GPT's hidden states and both heads' logits."""
    model = tiny(layers=2)
    gpt = model.gpt
    steps = gpt.encode_music(torch.randn(2, 4 * 6, 35))
    up, low, style = torch.randint(0, 16, (2, 6)), torch.randint(0, 16, (2, 6)), torch.tensor([2, 0])
    with torch.no_grad():
        full, _ = gpt(gpt.embed(up, low, steps, style))
        stepper = GPTStepper(gpt, 2)
        stepper.fill(gpt(gpt.embed(up[:, :3], low[:, :3], steps[:, :3], style))[1])
        for i in range(3, 6):
            h = stepper.step(gpt.embed(up[:, i:i + 1], low[:, i:i + 1], steps[:, i:i + 1], style, i)[:, 0])
            assert torch.allclose(h, full[:, i], atol=1e-5)
        up_logits, down_logits = gpt.logits(full[:, 5], up[:, 5])
        assert torch.allclose(stepper.up_logits(h), up_logits, atol=1e-5)
        assert torch.allclose(stepper.down_logits(h, up[:, 5]), down_logits, atol=1e-5)
    assert stepper.length == 6

def test_seed_decides_the_dance_and_temperature_the_variety():
    model = tiny()
    a, b, c = (model.generate(music(77), seed=s) for s in (0, 0, 1))
    assert np.array_equal(a.rotations, b.rotations) and np.array_equal(a.root_translation, b.root_translation)
    assert not np.allclose(a.rotations, c.rotations)
    cold = [model.generate(music(77), seed=s, temperature=1e-3) for s in (0, 1)]
    assert np.allclose(cold[0].rotations, cold[1].rotations)  # near zero temperature: the most likely codes


def test_save_load_round_trip(tmp_path: Path):
    model = tiny()
    model.set_stage("vqvae")
    train_steps(model, window_batch(model), 2, 1e-3)
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, BailandoModel) and loaded.config == model.config
    a, b = model.generate(music(77), seed=3), loaded.generate(music(77), seed=3)
    assert np.array_equal(a.rotations, b.rotations) and np.array_equal(a.root_translation, b.root_translation)
    assert not list(tmp_path.glob("m/*.tmp*"))


def test_seed_motion_is_continued():
    _, gap = continuation_gap(tiny(), synthetic_motion(0, 40))
    assert gap < 0.5  # starts where the seed ends, not at the origin


def test_a_few_steps_on_real_windows_lower_the_loss(real_dance):
    rot6d, fact35, style = real_dance
    frames = len(rot6d)
    model = tiny(codes=32, channels=32)
    normalise_like(model, rot6d, fact35)
    span = model.windows()[0]["fact35"][0]
    starts = range(0, frames - span - 1, 20)
    batch = {"inputs": {"fact35": torch.from_numpy(np.stack([fact35[s + 1:s + 1 + span] for s in starts]))},
             "outputs": {"rot6d": torch.from_numpy(np.stack([rot6d[s:s + span + 1] for s in starts]))},
             "style": [style] * len(starts)}
    model.set_stage("vqvae")
    before = fixed_loss(model, batch)
    train_steps(model, batch, 40, 3e-3)
    assert fixed_loss(model, batch) < 0.8 * before


def test_mirroring_swaps_left_and_right_and_negates_x():
    from dancegen.data.representation import mirror_rot6d, rot6d_to_motion
    from dancegen.motion import Motion, smpl_skeleton

    names = list(SMPL_JOINT_NAMES)
    order = [names.index("r" + n[1:]) if n[0] == "l" and "r" + n[1:] in names else
             names.index("l" + n[1:]) if n[0] == "r" and "l" + n[1:] in names else i for i, n in enumerate(names)]
    offsets = smpl_skeleton().offsets
    skeleton = smpl_skeleton((offsets + offsets[order] * [-1, 1, 1]) / 2)  # exactly symmetric
    motion = synthetic_motion(0, 20)
    motion = Motion(motion.fps, skeleton, motion.root_translation, motion.rotations)
    mirrored = rot6d_to_motion(mirror_rot6d(torch.from_numpy(motion_to_rot6d(motion)), skeleton), skeleton, motion.fps)
    assert np.allclose(mirrored.positions(), motion.positions()[:, order] * [-1, 1, 1], atol=1e-5)
    twice = mirror_rot6d(mirror_rot6d(torch.from_numpy(motion_to_rot6d(motion)), skeleton), skeleton)
    assert torch.allclose(twice, torch.from_numpy(motion_to_rot6d(motion)), atol=1e-6)


def _facing_frame(positions: np.ndarray) -> np.ndarray:
    """Joint positions relative to the root, turned so that the hips face the same way every frame."""
    p = positions - positions[:, :1]
    side = p[:, 1] - p[:, 2]  # left hip minus right hip
    yaw = np.arctan2(side[:, 2], side[:, 0])[:, None]
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([c * p[..., 0] + s * p[..., 2], p[..., 1], -s * p[..., 0] + c * p[..., 2]], axis=-1)


def test_reconstruct_keeps_length_and_rate():
    model = tiny()
    motion = synthetic_motion(0, 43).resample(30.0)  # not a whole number of code steps, another fps
    out = model.reconstruct(motion)
    assert out.num_frames == motion.num_frames and out.fps == motion.fps
    assert np.allclose(out.root_translation[0], motion.root_translation[0], atol=1e-5)


def test_height_sigma_smooths_the_root_height_alone():
    """`height_sigma` low-passes the decoded root height (column 0), in the dances it generates and in its
    reconstructions; the path and the rotations are the decoder's own."""
    from scipy.ndimage import gaussian_filter1d

    model = tiny()
    up, low = torch.randint(0, 16, (30,)), torch.randint(0, 16, (30,))
    raw = model.decoded(up, low, 117)
    model.height_sigma = 1.5
    smoothed = model.decoded(up, low, 117)
    assert smoothed.shape == (117, raw.shape[1]) and torch.equal(smoothed[:, 1:], raw[:, 1:])
    assert np.allclose(smoothed[:, 0], gaussian_filter1d(raw[:, 0].numpy(), 1.5, mode="nearest"), atol=1e-6)
    assert np.diff(smoothed[:, 0].numpy(), 2).std() < 0.5 * np.diff(raw[:, 0].numpy(), 2).std()
    a, b = tiny().generate(music(60), seed=3), model.generate(music(60), seed=3)
    assert np.allclose(a.root_translation[:, [0, 2]], b.root_translation[:, [0, 2]], atol=1e-5)
    assert np.allclose(a.rotations, b.rotations, atol=1e-5)
    assert not np.allclose(a.root_translation[:, 1], b.root_translation[:, 1], atol=1e-4)


def test_style_skeleton_dances_each_style_on_its_training_dancers_body_and_ground_sigma_lands_the_feet():
    """With `style_skeleton` a rumba is decoded onto the rumbas' recorded body (`style_skeletons`), a style
    without one onto the model's skeleton, a continuation onto its seed's body; the rotations and the path
    are the same codes' either way. `ground_sigma` then puts the lowest foot on the floor."""
    from dataclasses import replace

    longer = tiny().skeleton.offsets * np.array([1.0, 1.15, 1.0], np.float32)
    model = tiny(style_skeleton=True)
    model.style_skeletons = {"rumba": longer}
    rumba = replace(music(60), style="rumba")
    plain, body = tiny().generate(rumba, seed=2), model.generate(rumba, seed=2)
    assert np.allclose(plain.skeleton.offsets, tiny().skeleton.offsets)
    assert np.allclose(body.skeleton.offsets, longer) and np.allclose(body.rotations, plain.rotations, atol=1e-5)
    assert np.allclose(body.root_translation, plain.root_translation, atol=1e-5)
    assert np.allclose(model.generate(music(60), seed=2).skeleton.offsets, model.skeleton.offsets)  # the waltz
    seed = synthetic_motion(1, 30)
    seed.skeleton = replace(seed.skeleton, offsets=seed.skeleton.offsets * 1.1)
    assert np.allclose(model.generate(rumba, seed=2, seed_motion=seed).skeleton.offsets, seed.skeleton.offsets)
    assert np.allclose(model.reconstruct(seed).skeleton.offsets, seed.skeleton.offsets)  # a dance on its own body
    assert np.allclose(tiny().reconstruct(seed).skeleton.offsets, tiny().skeleton.offsets)

    feet = [SMPL_JOINT_NAMES.index(n) for n in ("lankle", "rankle", "ltoes", "rtoes")]
    model.ground_sigma = 0.0
    grounded = model.generate(rumba, seed=2)
    assert np.abs(grounded.positions()[:, feet, 1].min(1)).max() < 1e-5
    assert np.allclose(grounded.root_translation[:, [0, 2]], body.root_translation[:, [0, 2]], atol=1e-5)
    assert not np.allclose(grounded.root_translation[:, 1], body.root_translation[:, 1], atol=1e-3)


def test_unknown_style_dances_the_style_the_music_classifier_hears(monkeypatch):
    """With `unknown_style`, a style no training dance had (or "auto") is danced as the style the music
    style classifier hears, if the training dances had that one; without it, with no style."""
    from dataclasses import replace

    import dancegen.models.bailando as bailando
    from dancegen.models.base import heard_style

    heard = []
    monkeypatch.setattr(bailando, "heard_style", lambda music, dataset: heard.append(dataset) or "rumba")
    longer = tiny().skeleton.offsets * np.array([1.0, 1.15, 1.0], np.float32)
    model = tiny(style_skeleton=True, unknown_style="dance_with_melody")
    model.trained_styles, model.style_skeletons = ("rumba", "waltz"), {"rumba": longer}
    tango = replace(music(40), style="tango")
    assert model.known_style("tango", tango) == "rumba" and model.known_style("auto", tango) == "rumba"
    assert model.known_style("waltz", tango) == "waltz" and heard == ["dance_with_melody"] * 2
    assert np.allclose(model.generate(tango, seed=0).skeleton.offsets, longer)  # danced as a rumba
    model.unknown_style = None
    assert model.known_style("tango", tango) == "tango" and model.style_index("tango") == 0
    assert np.allclose(model.generate(tango, seed=0).skeleton.offsets, model.skeleton.offsets)
    model.unknown_style = "dance_with_melody"
    monkeypatch.setattr(bailando, "heard_style", lambda music, dataset: "cha-cha")  # heard, but never trained
    assert model.known_style("tango", tango) == "tango"
    assert heard_style(music(80), "dance_with_melody") in ("cha-cha", "rumba", "waltz")  # the bundled classifier
    assert heard_style(replace(music(80), features={}), "dance_with_melody") is None


def test_beat_shift_retimes_the_dance_onto_the_beats_of_fact35():
    """`beat_shift` re-times the decoded dance (`on_beats`) onto the beats of fact35's beat column."""
    from dancegen.models.base import FACT35_BEAT
    from dancegen.motion.filters import on_beats

    song = music(150)
    song.features["fact35"][:, FACT35_BEAT] = np.arange(150) % 13 == 5  # a beat every 0.52 s from 0.2 s
    plain = tiny().generate(song, seed=1)
    out = tiny(beat_shift=0.3, beat_stretch=1.25).generate(song, seed=1)
    expected = on_beats(plain, (5 + 13 * np.arange(12)) / 25.0, max_shift=0.3, max_stretch=1.25)
    assert out.num_frames == plain.num_frames == 150
    assert np.allclose(out.rotations, expected.rotations, atol=1e-5) and not np.allclose(out.rotations, plain.rotations)
    assert np.allclose(out.root_translation, expected.root_translation, atol=1e-5)


def test_the_default_codebooks_reconstruct_a_training_dance(shared_data: Path):
    """The bundled model's choreographic memory round trip: a real training dance (DANCE_C_2, the
    first 40 s) through its codes comes back within 6 cm mean joint error in the dancer's own frame
    (2.2 cm over the whole train split, 3.6 cm over test: benchmarks/tokenizer_ceiling.py's notes)."""
    from dancegen.datasets import open_dataset

    motion = open_dataset("dance-with-melody", shared_data / "dance_with_melody").load("DANCE_C_2").motion[:1000]
    out = load_model("default").reconstruct(motion)
    error = np.linalg.norm(_facing_frame(out.positions()) - _facing_frame(motion.positions()), axis=-1).mean()
    assert error < 0.06, f"{100 * error:.1f} cm"


def test_style_prior_biases_sampling_towards_the_codes_of_the_style():
    model = tiny(style_prior=1.0)
    waltz, rumba = style_id("waltz"), style_id("rumba")
    model.style_codes[waltz, :, 1:3] = 50.0  # the waltzes use codes 1 and 2 only
    model.style_codes[rumba, :, 5] = 50.0
    bias = model.style_bias(waltz, 1.0)
    assert bias.shape == (2, 16) and (bias[:, 1:3] > 0).all() and (bias[:, 5] < 0).all()
    assert model.style_bias(0, 1.0) is None and model.style_bias(style_id("tango"), 1.0) is None  # no tango danced
    assert model.style_bias(waltz, 0.0) is None and tiny().style_bias(waltz, 1.0) is None  # off; no counts kept
    steps = model.gpt.encode_music(torch.randn(1, 40, 35))[0]
    up, low = model.sample_codes(steps, waltz, torch.Generator().manual_seed(0), bias=model.style_bias(waltz, 20.0),
                                 max_repeat=None)
    assert set(up.tolist()) | set(low.tolist()) <= {1, 2}
    up, _ = model.sample_codes(steps, waltz, torch.Generator().manual_seed(0), max_repeat=None)
    assert not set(up.tolist()) <= {1, 2}  # unbiased, the untrained GPT picks anything


def test_a_style_no_training_dance_had_dances_to_the_music_alone():
    """Tango is test-only in Dance with Melody: its style embedding never trained (it is still its zero
    initialisation, unlike the trained "no style" one), so a tango song is danced with no style."""
    model = tiny(style_prior=0.0)
    with torch.no_grad():  # as training leaves them: "none" and waltz learnt, tango untouched
        model.gpt.style.weight[[0, style_id("waltz")]] = torch.randn(2, model.gpt.style.weight.shape[1])
    model.trained_styles = ("waltz",)  # as `dancegen train` records them (SavedModel.style_index)
    tango_dance = model.generate(music(77), seed=0, style="tango")
    none_dance = model.generate(music(77), seed=0, style="none")
    waltz_dance = model.generate(music(77), seed=0, style="waltz")
    assert np.array_equal(tango_dance.rotations, none_dance.rotations)
    assert not np.allclose(tango_dance.rotations, waltz_dance.rotations)


def test_step_rewards_pay_kinetic_beats_on_music_beats_and_charge_stillness():
    from dancegen.models.bailando import step_rewards

    fps, down, frames = 25.0, 4, 200
    t = np.arange(frames - 1)
    beats = np.zeros((1, frames), bool)
    beats[0, 12::25] = True  # a beat a second
    on = 1.0 + 0.8 * np.cos(2 * np.pi * (t + 0.5 - 12) / 25 + np.pi)  # slowest exactly on the beats
    off = 1.0 + 0.8 * np.cos(2 * np.pi * (t + 0.5 - 24.5) / 25 + np.pi)  # slowest half-way between
    r_on = step_rewards(on[None], beats, fps, down)
    r_off = step_rewards(off[None], beats, fps, down)
    assert r_on.shape == (1, frames // down)
    assert r_on.sum() > 3 and r_off.sum() < 0  # +0.6 per on-beat minimum (half a frame off), −0.3 per off-beat one
    still = step_rewards(np.full((1, frames - 1), 0.01), beats, fps, down, still_speed=0.05)
    assert (still == -1).all()


def test_actor_critic_stage_learns_what_the_reward_pays_and_trains_only_the_gpt_and_critic():
    model = tiny(actor_critic=True, ac_supervised=0.0)
    assert model.stages == ("vqvae", "gpt", "ac")
    batch = window_batch(model)
    model.set_stage("ac")
    model.beat_reward = lambda up, low, beats: (up == 3).float()  # pays upper code 3, wherever it is
    kept = [p.clone() for p in model.upper.parameters()] + [p.clone() for p in model.lower.parameters()]

    def reward() -> float:
        model.eval()
        with torch.no_grad():
            return float(np.mean([model.loss(batch, torch.Generator().manual_seed(i))[1]["reward"] for i in range(4)]))

    before = reward()  # about 8 steps × 1/16
    train_steps(model, batch, 30, 1e-2)
    assert reward() > before + 2
    assert all(torch.equal(a, b) for a, b in zip(kept, [*model.upper.parameters(), *model.lower.parameters()]))
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.critic.parameters())


def test_the_beat_reward_of_decoded_codes():
    model = tiny(actor_critic=True)
    up = low = torch.randint(0, 16, (2, 8))
    beats = torch.zeros(2, 32)
    beats[:, ::8] = 1
    reward = model.beat_reward(up, low, beats)
    assert reward.shape == (2, 8) and torch.isfinite(reward).all()


def test_motion_only_data_joins_the_vqvae_stage_and_the_style_counts(tmp_path: Path, synthetic):
    """`data.extra` (dances without music): the VQ-VAE stage trains on their windows too, the GPT stages
    on the paired windows alone (they need the music), and the style prior counts their codes."""
    from dancegen.data import PreparedDataset, WindowDataset
    from dancegen.data.prepare import prepare
    from dancegen.training.lightning import WindowDataModule

    prepare("synthetic", synthetic, tmp_path / "paired", recipes=("fact35",), jobs=1, progress=False)
    prepare("synthetic", synthetic, tmp_path / "motion", recipes=(), jobs=1, progress=False)
    paired, extra = PreparedDataset(tmp_path / "paired"), PreparedDataset(tmp_path / "motion")
    model = BailandoModel.for_data(paired, **{**TINY, "context": 4, "style_prior": 1.0})
    inputs, outputs = model.windows()
    datamodule = model.with_extra_data(WindowDataModule(paired.root, inputs, outputs, batch_size=2, train_stride=4),
                                       [extra])
    sizes = {}
    for stage in ("vqvae", "gpt"):
        model.set_stage(stage)
        datamodule.setup("fit")
        sizes[stage] = len(datamodule.train_set)
        sample = datamodule.train_set[sizes[stage] - 1]  # the last window: motion-only in the vqvae stage
        assert sample["outputs"]["rot6d"].shape == (4 * (4 + 1) + 1, 147)
        assert sample["inputs"]["fact35"].shape == (4 * (4 + 1), 35)
    extra_windows = sum(len(WindowDataset(extra.root, s, {}, outputs, stride=4)) for s in ("train", "val", "test"))
    assert sizes["gpt"] > 0 and extra_windows > sizes["gpt"] and sizes["vqvae"] == sizes["gpt"] + extra_windows
    model.set_stage("vqvae")
    datamodule.setup("fit")
    assert not datamodule.train_set[len(datamodule.train_set) - 1]["inputs"]["fact35"].any()  # no music: zeros

    model.count_style_codes(paired)
    steps = sum(len(model.tokenize(d.motion(n))[0]) for d, names in ((paired, paired.split("train")),
                                                                  (extra, extra.split("train") + extra.split("val")
                                                                   + extra.split("test"))) for n in names)
    assert model.style_codes[:, 0].sum() == steps == model.style_codes[:, 1].sum()
    model.extra_data = []
    model.count_style_codes(paired)
    assert model.style_codes[:, 0].sum() < steps

    prior_only = BailandoModel.for_data(paired, **{**TINY, "context": 4, "style_prior": 1.0,
                                                   "motion_only_uses": ["style_prior"]})
    datamodule = prior_only.with_extra_data(WindowDataModule(paired.root, inputs, outputs, batch_size=2,
                                                             train_stride=4), [extra])
    prior_only.set_stage("vqvae")
    datamodule.setup("fit")
    assert len(datamodule.train_set) == sizes["gpt"]  # the VQ-VAE stage keeps the paired windows
    prior_only.count_style_codes(paired)
    assert prior_only.style_codes[:, 0].sum() == steps  # ... and the prior counts the extra dances
    with pytest.raises(ValueError, match="motion_only_uses"):
        tiny(motion_only_uses=["gpt"])


def test_min_p_leaves_out_the_codes_far_less_likely_than_the_likeliest():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log().expand(4000, -1)
    g = torch.Generator().manual_seed(0)
    kept = set(BailandoModel._sample(logits, g, 1.0, None, min_p=0.5).tolist())  # p ≥ 0.25 only
    assert kept == {0, 1}
    assert set(BailandoModel._sample(logits, g, 1.0, None).tolist()) == {0, 1, 2, 3}
    hot = BailandoModel._sample(logits, g, 3.0, None, min_p=0.5)  # the temperature comes after the cut
    assert set(hot.tolist()) == {0, 1} and (hot == 1).float().mean() > 0.4


def test_stretch_windows_reads_at_another_tempo_and_keeps_every_event():
    from dancegen.models.bailando import stretch_windows

    ramp = torch.arange(40, dtype=torch.float64)[None, :, None].repeat(2, 1, 2)
    ramp[..., 1] = 0.0
    ramp[:, [10, 20, 31], 1] = 1.0  # an event column: beats at frames 10, 20 and 31
    out = stretch_windows(ramp, torch.tensor([0.0, 3.5]), torch.tensor([2.0, 0.5]), 16, events=(1,))
    assert torch.allclose(out[0, :, 0], torch.arange(16.0, dtype=torch.float64) * 2)
    assert torch.allclose(out[1, :, 0], 3.5 + torch.arange(16.0, dtype=torch.float64) * 0.5)
    assert out[0, :, 1].nonzero().flatten().tolist() == [5, 10]  # 31 / 2 = 15.5 rounds to 16: outside
    assert out[1, :, 1].nonzero().flatten().tolist() == [13]  # (10 − 3.5) / 0.5
    assert set(out[..., 1].unique().tolist()) == {0.0, 1.0}  # events stay one-hot, not smeared


def test_time_stretch_reads_music_and_motion_at_one_tempo_and_only_while_training():
    model = tiny(time_stretch=0.1)
    plain = tiny()
    span = model.windows()[0]["fact35"][0]
    assert span > plain.windows()[0]["fact35"][0] * 1.1  # the loader reads enough for the slowest tempo
    batch = window_batch(model)
    # a clock in both: music column 0 is the music frame, the root's x of motion row r is r − 1
    batch["inputs"]["fact35"][..., 0] = torch.arange(span, dtype=torch.float32)
    batch["outputs"]["rot6d"][..., 0] = torch.arange(span + 1, dtype=torch.float64) - 1
    frames = plain.windows()[0]["fact35"][0]
    for stage in ("vqvae", "gpt"):
        model.set_stage(stage)
        model.eval()
        cut = model.stretched_batch(batch, torch.Generator().manual_seed(0))
        assert torch.equal(cut["inputs"]["fact35"], batch["inputs"]["fact35"][:, :frames])
        assert torch.equal(cut["outputs"]["rot6d"], batch["outputs"]["rot6d"][:, :frames + 1])
        model.train()
        out = model.stretched_batch(batch, torch.Generator().manual_seed(0))
        music, motion = out["inputs"]["fact35"], out["outputs"]["rot6d"]
        assert music.shape == (8, frames, 35) and motion.shape == (8, frames + 1, batch["outputs"]["rot6d"].shape[2])
        tempo = music[:, 1:, 0].diff(dim=1).mean(1)
        if stage == "vqvae":  # not in stretch_stages: cut as recorded
            assert torch.allclose(tempo, torch.ones(8))
            continue
        assert tempo.min() >= 1 / 1.1 - 1e-4 and tempo.max() <= 1.1 + 1e-4 and tempo.std() > 0.01
        assert torch.allclose(motion[:, 1:, 0].float(), music[..., 0], atol=1e-4)  # still in step
        assert (music[..., 0] >= 0).all() and (music[..., 0] <= span - 1).all()
    loss, _ = model.loss(batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="time_stretch"):
        tiny(time_stretch=-0.1)
