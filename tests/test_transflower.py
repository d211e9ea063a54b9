"""The Transflower family (dancegen/models/transflower.py): the flow's algebra, the training windows,
sampling and saving for `transformer`, `transflower` and `moglow` on tiny models, and a few steps on real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import REPO, continuation_gap, fixed_loss, normalise_like, random_music as music, synthetic_motion, train_steps
from dancegen.data.representation import motion_to_rot6d
from dancegen.models import Music, load_model
from dancegen.models.base import _MODELS
from dancegen.models.transflower import ActNorm, Flow, MoGlowModel, TransflowerModel, TransformerModel
from dancegen.motion import SMPL_JOINT_NAMES

SHARED = dict(fps=25.0, music_features=["fact35"], music_dims=[35], output_frames=4,
              windows={"motion": [8, -8], "fact35": [12, -6]}, dropout=0.0)
ENCODER = dict(d_model=32, heads=2, ff=64, modality_layers=1, layers=1)
FLOW = dict(flow_steps=2, flow_hidden=32)
FAMILIES = {"transformer": (TransformerModel, ENCODER),
            "transflower": (TransflowerModel, {**ENCODER, **FLOW}),
            "moglow": (MoGlowModel, {**FLOW, "hidden": 32, "lstm_layers": 1, "cond_dim": 16, "train_chunks": 3})}
FLOWS = ("transflower", "moglow")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(family: str, **kw):
    cls, sizes = FAMILIES[family]
    torch.manual_seed(0)
    return cls(**{**SHARED, **sizes, **kw}).eval()


def batch_from(model, rot6d: np.ndarray, fact35: np.ndarray, starts, style: str = "waltz") -> dict:
    """`WindowDataset`-style samples of one sequence: each window at its offset from a start frame."""
    inputs, outputs = model.windows()
    (length, offset), = outputs.values()
    (length_f, offset_f), = inputs.values()
    music = np.stack([fact35[s + offset_f:s + offset_f + length_f] for s in starts])
    return {"inputs": {"fact35": torch.from_numpy(music)},
            "outputs": {"rot6d": torch.from_numpy(np.stack([rot6d[s + offset:s + offset + length] for s in starts]))},
            "style": [style] * len(starts)}


def synthetic_batch(model, n: int = 8) -> dict:
    rot6d = motion_to_rot6d(synthetic_motion(0, 120))
    fact35 = np.random.default_rng(0).normal(size=(120, 35)).astype(np.float32)
    return batch_from(model, rot6d, fact35, range(40, 40 + 5 * n, 5))


def random_flow(channels: int, cond_dim: int, dtype=torch.float32, scale: float = 0.1) -> Flow:
    """A small flow away from the identity: actnorm initialised from data, every weight perturbed (the
    mixing's triangular factors only for a few channels: random triangular matrices are ill-conditioned)."""
    torch.manual_seed(0)
    flow = Flow(channels, cond_dim, hidden=16, steps=3).to(dtype).train()
    flow(torch.randn(16, 5, channels, dtype=dtype) * 2 + 1, torch.randn(16, 5, cond_dim, dtype=dtype))
    with torch.no_grad():
        for name, p in flow.named_parameters():
            if channels <= 8 or not name.endswith(("lower", "upper")):
                p.add_(scale * torch.randn_like(p))
    return flow.eval()


# ---- the flow -----------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [6, 148])
def test_flow_inverse_gives_back_the_input(channels: int):
    flow = random_flow(channels, cond_dim=5)
    x, cond = torch.randn(4, 7, channels), torch.randn(4, 7, 5)
    with torch.no_grad():
        z, logdet = flow(x, cond)
        back = flow.inverse(z, cond)
    assert not torch.allclose(z, x, atol=0.1) and logdet.abs().min() > 0.01  # not the identity
    assert (back - x).abs().max() < 1e-4
    with torch.no_grad():  # the conditioning matters: another one gives another z
        assert not torch.allclose(flow(x, cond + 1)[0], z, atol=1e-3)


def test_log_determinant_matches_a_brute_force_jacobian():
    flow = random_flow(6, cond_dim=3, dtype=torch.float64)
    x, cond = torch.randn(1, 4, 6, dtype=torch.float64), torch.randn(1, 4, 3, dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda v: flow(v.view(1, 4, 6), cond)[0].flatten(), x.flatten())
    sign, logabsdet = torch.linalg.slogdet(jacobian)  # (24, 24): frames mix through the couplings' convolutions
    assert sign != 0
    assert torch.allclose(flow(x, cond)[1][0], logabsdet, atol=1e-8)


def test_actnorm_initialises_from_the_first_training_batch_only():
    norm = ActNorm(3)
    x = torch.randn(10, 6, 3) * torch.tensor([0.1, 1.0, 5.0]) + torch.tensor([2.0, -1.0, 0.0])
    norm.eval()(x)
    assert not norm.initialised  # evaluation never initialises
    y, _ = norm.train()(x)
    assert torch.allclose(y.mean(dim=(0, 1)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.std(dim=(0, 1)), torch.ones(3), atol=1e-4)
    shift = norm.shift.clone()
    norm(x * 3)  # later batches leave it to the optimiser
    assert torch.equal(norm.shift, shift)


def test_flow_nll_is_the_exact_density_of_a_standard_gaussian_at_the_identity():
    flow = Flow(4, 2, hidden=8, steps=2).eval()  # actnorm and couplings start as the identity
    for layer in flow.layers[1::3]:  # mixing as a permutation: |det| = 1
        with torch.no_grad():
            layer.lower.zero_(), layer.upper.zero_(), layer.log_s.zero_()
    x = torch.randn(3, 5, 4)
    expected = -torch.distributions.Normal(0.0, 1.0).log_prob(x).mean(dim=(1, 2))
    assert torch.allclose(flow.nll_per_dim(x, torch.zeros(3, 5, 2)), expected, atol=1e-5)


# ---- training windows ---------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["transformer", "moglow"])
def test_training_windows_line_up_with_the_sequence(family: str):
    """Chunk s's motion window, music window and targets are the frames the config's offsets name."""
    model = tiny(family, p_start=0.0)
    rot6d = motion_to_rot6d(synthetic_motion(0, 120))
    time = np.repeat(np.arange(120, dtype=np.float32)[:, None], 35, axis=1)  # music that says its frame
    start, n = 50, model.output_frames
    windows, targets, before, _ = model.training_windows(batch_from(model, rot6d, time, [start]))
    local = model.normalise(torch.from_numpy(rot6d))  # local[k] is frame k + 1
    (length, offset), (length_f, offset_f) = model.spans["motion"], model.spans["fact35"]
    assert windows["motion"].shape[1] == model.chunks == targets.shape[1]
    for s in range(model.chunks):
        t = start + s * n  # the chunk's first predicted frame
        assert torch.allclose(targets[0, s], local[t - 1:t - 1 + n], atol=1e-5)
        assert torch.allclose(before[0, s], local[t - 2], atol=1e-5)
        assert torch.allclose(windows["motion"][0, s], local[t + offset - 1:t + offset - 1 + length], atol=1e-5)
        assert torch.equal(windows["fact35"][0, s, :, 0], torch.arange(t + offset_f, t + offset_f + length_f).float())
        assert not windows["unknown"][0, s].any()


def test_song_starts_mark_earlier_motion_unknown_and_their_music_silent():
    model = tiny("moglow", p_start=1.0)
    rot6d = motion_to_rot6d(synthetic_motion(0, 120))
    time = np.ones((120, 35), np.float32)
    windows, *_ = model.training_windows(batch_from(model, rot6d, time, range(40, 80, 2)),
                                         torch.Generator().manual_seed(0))
    unknown, silent = windows["unknown"], windows["fact35"][..., 0] == 0
    length, offset = model.spans["motion"]
    count = unknown[:, 0].sum(dim=1)
    assert (count >= 1).all() and (count <= length).all()  # every window's song begins in its first motion window
    begin = (offset + count)[:, None]  # the song's first frame, from the first predicted frame
    for s in range(model.chunks):  # before it: motion unknown, music silent, in every chunk
        first = s * model.output_frames
        assert torch.equal(unknown[:, s], first + offset + torch.arange(length) < begin)
        length_f, offset_f = model.spans["fact35"]
        assert torch.equal(silent[:, s], first + offset_f + torch.arange(length_f) < begin)


# ---- each family --------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_length_fps_skeleton_and_long_songs(family: str):
    model = tiny(family)
    # less than one step; not a multiple of it; many motion windows; music at another frame rate
    for frames, fps in ((3, 25.0), (77, 25.0), (400, 25.0), (90, 30.0)):
        motion = model.generate(music(frames, fps=fps), length=frames, seed=0)
        assert (motion.num_frames, motion.fps, motion.skeleton.names) == (frames, fps, SMPL_JOINT_NAMES)
        assert np.isfinite(motion.rotations).all() and np.isfinite(motion.root_translation).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_each_step_sees_windows_of_one_size_however_long_the_song(family: str, monkeypatch):
    model = tiny(family)
    shapes, states = [], []
    step = model.step

    def recording(windows, styles, state, generator, temperature):
        shapes.append({k: tuple(v.shape) for k, v in windows.items()})
        states.append(state)
        return step(windows, styles, state, generator, temperature)

    monkeypatch.setattr(model, "step", recording)
    model.generate(music(401), seed=0)
    assert len(shapes) == -(-401 // model.output_frames)
    assert all(s == shapes[0] for s in shapes)
    assert shapes[0]["motion"] == (1, 1, model.spans["motion"][0], 148)
    if family == "moglow":  # the LSTM's state runs through the song
        assert states[0] is None and all(s is not None for s in states[1:])


@pytest.mark.parametrize("family", FAMILIES)
def test_seed_decides_the_dance(family: str):
    model = tiny(family)
    train_steps(model, synthetic_batch(model), 2, 1e-3)  # flows: actnorm initialised, couplings not the identity
    a, b, c = (model.generate(music(77), seed=s) for s in (0, 0, 1))
    assert np.array_equal(a.rotations, b.rotations) and np.array_equal(a.root_translation, b.root_translation)
    if family in FLOWS:
        assert not np.allclose(a.rotations, c.rotations)
    else:  # deterministic
        assert np.array_equal(a.rotations, c.rotations)


@pytest.mark.parametrize("family", FLOWS)
def test_temperature_sets_the_variety(family: str):
    model = tiny(family)
    train_steps(model, synthetic_batch(model), 2, 1e-3)
    warm, cool = (model.generate(music(77), seed=0, temperature=t) for t in (1.0, 0.5))
    assert not np.allclose(warm.rotations, cool.rotations)
    cold = [model.generate(music(77), seed=s, temperature=0.0) for s in (0, 1)]
    assert np.allclose(cold[0].rotations, cold[1].rotations)  # no noise: the seed no longer matters
    model.temperature = 0.0  # the config's temperature is the default
    assert np.allclose(model.generate(music(77), seed=1).rotations, cold[0].rotations)


@pytest.mark.parametrize("family", FAMILIES)
def test_save_load_round_trip(family: str, tmp_path: Path):
    model = tiny(family)
    train_steps(model, synthetic_batch(model), 2, 1e-3)
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.config == model.config
    a, b = model.generate(music(77), seed=3), loaded.generate(music(77), seed=3)
    assert np.array_equal(a.rotations, b.rotations) and np.array_equal(a.root_translation, b.root_translation)


@pytest.mark.parametrize("family", FAMILIES)
def test_seed_motion_is_continued(family: str):
    model = tiny(family)
    model.motion_std[1:4] = 0.01  # root steps of about a centimetre and small turns, as in real data
    seed_motion = synthetic_motion(0, 40)
    seed_motion.root_translation[:] += [3.0, 0.0, -2.0]
    motion, gap = continuation_gap(model, seed_motion)
    assert gap < 0.5  # starts where the seed ends, not at the origin
    other = model.generate(music(60), seed_motion=synthetic_motion(5, 40), seed=0)
    assert not np.allclose(motion.rotations, other.rotations)  # the seed's poses are the first motion window


@pytest.mark.parametrize("name", ["transformer", "transflower", "moglow"])
def test_default_configs_build(name: str):
    config = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())["model"]
    model = _MODELS[config.pop("family")](**config)
    assert model.name == name and 0.3e6 < model.num_parameters < 10e6
    inputs, outputs = model.windows()
    assert set(inputs) == set(model.music_features) and set(outputs) == {"rot6d"}


# ---- on real data -------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_a_few_steps_on_real_windows_lower_the_loss(family: str, real_dance):
    rot6d, fact35, style = real_dance
    model = tiny(family)
    normalise_like(model, rot6d, fact35)
    batch = batch_from(model, rot6d, fact35, range(30, 1000 - 60, 20), style)
    before = fixed_loss(model, batch) / 4
    train_steps(model, batch, 30, 3e-3)
    after = fixed_loss(model, batch) / 4
    # the MSE falls by a third; the NLL (nats per value, which can be negative) by a nat
    assert after < (0.67 * before if family == "transformer" else before - 1.0), (before, after)
    if family in FLOWS:  # the trained flow still inverts real frames
        windows, targets, _, styles = model.training_windows(batch)
        cond = model.encode(windows, styles) if family == "transflower" else model.conditioner(windows, styles)[0]
        x, cond = targets.flatten(0, 1), cond.flatten(0, 1)
        with torch.no_grad():
            assert (model.head.inverse(model.head(x, cond)[0], cond) - x).abs().max() < 1e-4


def test_train_command_writes_a_loadable_transflower(synthetic: Path, tmp_path: Path, monkeypatch):
    from dancegen.cli import main

    monkeypatch.setenv("DANCEGEN_CACHE", str(tmp_path / "cache"))
    config = {"data": {"path": str(tmp_path / "prepared"), "source": f"synthetic:{synthetic}"},
              "model": {"family": "transflower", **{k: v for k, v in SHARED.items() if k != "fps"}, **ENCODER, **FLOW},
              "training": {"batch_size": 4, "train_stride": 8, "val_stride": 8, "warmup_steps": 2, "val_every": 3}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", str(tmp_path / "c.yaml"), "-o", str(tmp_path / "run"), "--max-steps", "5", "-q"]) == 0
    assert list((tmp_path / "run" / "logs").rglob("events.out.tfevents.*"))
    model = load_model(tmp_path / "run" / "last")
    assert isinstance(model, TransflowerModel) and model.fps == 30.0
    assert all(bool(layer.initialised) for layer in model.head.layers[::3])  # actnorm set by the first batch
    motion = model.generate(Music({"fact35": np.zeros((40, 35), np.float32)}, model.fps), seed=0)
    assert motion.num_frames == 40 and np.isfinite(motion.rotations).all()
