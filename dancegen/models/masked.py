"""A masked cross-modal motion model: BERT's masked-token pre-training applied to dance frames,
with the music as context, fine-tuned to fill in between keyframes and to continue a dance.

Representation, per frame: the root position (x and z relative to a reference frame of the window,
the first frame it is given; y absolute) and the 24 joint rotations in 6-D (147 values), normalised
with training statistics (x/z by 1 m). Absolute positions within a window, rather than steps, let
the model see where the next keyframe stands and arrive there.

Network: a motion encoder (frames -> tokens, learned positions, `motion_layers` transformer layers)
and a music encoder (the same for the music features) feed a cross-modal transformer encoder that
fuses them either along features (`fusion: features`: each frame's motion and music tokens
concatenated and projected) or along time (`fusion: sequence`: the two token sequences concatenated,
each with a modality embedding, so attention runs across both). A linear head reads every frame's
motion back. Frames without music (motion-only data, a seed motion, no song) get a learned
"no music" token instead; a style embedding is added to the fused tokens.

Training (`loss`), one task per window, drawn by the stage's task weights:
- `bert`: 15% of frames are chosen; of those 80% are zeroed and their token replaced by a learned
  mask token, 10% replaced by random frames of the batch, 10% kept (Devlin et al. 2019).
- `inbetween`: keyframes every N frames (N in `key_every`), or a context block, a gap and a target
  block (LaFAN1's transitions); everything else masked.
- `continuation`: the first k frames given (k may be 0: music only), the rest masked.
The loss is the mean squared error on the chosen (masked) frames (with `inbetween_scores: between`,
only the masked frames between an in-betweening window's first and last key). With `interpolation_hint` (the
default), a masked frame's token is the mask token plus the embedding of the linear interpolation
(in feature space) of the nearest unmasked frames, and the model's output there is a correction
added to that interpolation: with little training time it starts from the interpolation baseline.
With `correction: bridge` that correction comes from its own zero-initialised head (untrained, the
model returns exactly the hint) and is scaled by `bridge_gate`: 0 at the given frames, growing with
the distance to them like a Brownian bridge's spread up to `correction_horizon` frames (a plain
correction was about as large next to a key as far from one: at a 5-frame gap it added more error
than it removed); the loss then divides each masked frame's error by the gate's square, so the frames
of a short gap weigh as much as those of a long unknown tail (`correction_gate: linear` grows the gate
with the bridge's variance instead of its spread; `correct_root: false` keeps the root's path the
hint's, linear between the keys, and corrects the rotations only). `position_loss: w` adds w times the in-betweening
benchmark's own error (L2P, dancegen/metrics/inbetween.py) on the chosen frames: joint positions by
forward kinematics, each coordinate divided by its std over the train split's benchmark windows, the
L2 norm per frame (`feature_loss` weighs the feature error). With `canonical_heading`, each window is
also turned about the vertical so that the root faces +Z at its reference frame, as it is centred
there, in training and in filling alike. `stages`: `pretrain` (its task
weights, plus motion-only data when the training config names some in `data.extra`), then
`finetune` (paired data only, its own task weights).

Filling (`fill`): any length, window by window; each window after the first is given the last
`overlap` frames already filled, so the dance is continuous; given frames are returned unchanged.
`generate` continues a seed motion or dances from nothing, with the song. The model is deterministic
(a regression of the masked frames): the seed does not change the dance.

Written by hand: no maintained library implements this model; the transformer is torch's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from ..data.representation import motion_to_rot6d, rot6d_to_motion
from ..motion import Motion, forward_kinematics
from ..motion.rotations import sixd_to_matrix
from .bailando import heading
from .base import STYLES, Music, SavedModel, register_model, style_id
from .diffusion import _rotate_yaw

TASKS = ("bert", "inbetween", "continuation")


def encoder(d_model: int, heads: int, ff: int, layers: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout, activation="gelu", batch_first=True,
                                       norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def bert_mask(shape: tuple[int, int], ratio: float = 0.15, split: tuple[float, float, float] = (0.8, 0.1, 0.1),
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BERT's masking of (B, T) frames: round(ratio * T) frames chosen per row (at least one); of
    those, `split` is the share zeroed (mask token), replaced by a random frame and kept.
    Returns boolean (B, T) masks: chosen, zeroed, randomised (kept = chosen & ~zeroed & ~randomised)."""
    b, t = shape
    n = max(1, round(ratio * t))
    order = torch.rand(b, t, generator=generator).argsort(dim=1)
    chosen = torch.zeros(b, t, dtype=torch.bool).scatter_(1, order[:, :n], True)
    r = torch.rand(b, t, generator=generator)
    zeroed = chosen & (r < split[0])
    randomised = chosen & (r >= split[0]) & (r < split[0] + split[1])
    return chosen, zeroed, randomised


def task_mask(task: str, t: int, key_every: tuple[int, int], generator: torch.Generator | None = None) -> torch.Tensor:
    """(T,) True where a frame is masked (to be filled) for one window of fine-tuning `task`."""
    def randint(lo: int, hi: int) -> int:  # lo..hi inclusive
        return int(torch.randint(lo, hi + 1, (1,), generator=generator))

    masked = torch.ones(t, dtype=torch.bool)
    if task == "continuation":
        masked[:randint(0, t // 2)] = False
    elif randint(0, 1):  # keyframes every N frames from a random phase
        every = randint(*key_every)
        masked[randint(0, every - 1)::every] = False
    else:  # a context block, a gap, a target block (LaFAN1's transition)
        context, gap = randint(1, 20), randint(1, min(45, t - 2))
        start = randint(0, max(0, t - context - gap - 1))
        masked[start:start + context] = False
        target = start + context + gap
        masked[target:target + randint(1, context)] = False
    return masked


def interpolate_frames(x: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """(B, T, D) frames with those not `known` (B, T) linearly interpolated between the nearest known
    frames (the nearest one's copy before the first and after the last; zeros in a row with none)."""
    b, t, _ = x.shape
    index = torch.arange(t, device=x.device).expand(b, t)
    before = torch.where(known, index, -1).cummax(1).values
    after = torch.where(known, index, t).flip(1).cummin(1).values.flip(1)
    x0 = x.gather(1, repeat(before.clamp(min=0), "b t -> b t d", d=x.shape[-1]))
    x1 = x.gather(1, repeat(after.clamp(max=t - 1), "b t -> b t d", d=x.shape[-1]))
    w = (index - before).float() / (after - before).clamp(min=1).float()
    w = torch.where(before < 0, 1.0, torch.where(after >= t, 0.0, w))
    out = x0 + w[..., None] * (x1 - x0)
    return torch.where(known.any(1)[:, None, None], out, 0.0)


def bridge_gate(known: torch.Tensor, horizon: float, shape: str = "sqrt") -> torch.Tensor:
    """(B, T) scale in (0, 1] of the learned correction at each frame given the `known` (B, T) frames:
    sqrt(min(b, horizon) / horizon) with b = d1 d2 / (d1 + d2) for a frame d1 frames after the last key
    before it and d2 before the next (d1 or d2 alone past the first or last key; `horizon` with no key):
    how far a Brownian bridge pinned at the keys strays (its variance is b). 0 at the keys themselves.
    `shape` "linear": min(b, horizon) / horizon, the bridge's variance rather than its spread (smooth
    motion strays from the straight line between keys faster than a random walk: slower near a key)."""
    b, t = known.shape
    index = torch.arange(t, device=known.device).expand(b, t).float()
    before = torch.where(known, index, -math.inf).cummax(1).values
    after = torch.where(known, index, math.inf).flip(1).cummin(1).values.flip(1)
    d1, d2 = index - before, after - index  # inf where there is no key on that side
    spread = torch.where(d1.isinf(), d2, torch.where(d2.isinf(), d1, d1 * d2 / (d1 + d2).clamp(min=1)))
    gate = spread.clamp(max=horizon) / horizon
    return gate if shape == "linear" else gate.sqrt()


def reference_index(known: torch.Tensor) -> torch.Tensor:
    """(B,) the first given frame of each (B, T) row of `known` (frame 0 when none is given)."""
    return torch.where(known.any(1), known.float().argmax(1), 0)


@register_model("masked")
class MaskedMotionModel(nn.Module, SavedModel):
    """The masked cross-modal motion model; see the module docstring. Keyword arguments are its config."""

    training_features = staticmethod(lambda rot6d: rot6d)  # normalised as is; x/z fixed by `for_data`

    def __init__(self, *, fps: float = 25.0, music_features: tuple[str, ...] = ("fact35",),
                 music_dims: tuple[int, ...] = (35,), window: int = 120, overlap: int = 40,
                 fusion: str = "features", d_model: int = 256, heads: int = 4, ff: int = 1024,
                 motion_layers: int = 2, music_layers: int = 2, layers: int = 4, dropout: float = 0.1,
                 mask_ratio: float = 0.15, mask_split: tuple[float, float, float] = (0.8, 0.1, 0.1),
                 key_every: tuple[int, int] = (2, 40), stages: tuple[str, ...] = ("pretrain", "finetune"),
                 pretrain_tasks: dict[str, float] | None = None, finetune_tasks: dict[str, float] | None = None,
                 p_no_music: float = 0.1, p_no_style: float = 0.3, use_style: bool = True,
                 augment_yaw: bool = True, interpolation_hint: bool = True, inbetween_scores: str = "all",
                 correction: str = "plain", correction_horizon: float = 16.0, correction_gate: str = "sqrt",
                 correct_root: bool = True, canonical_heading: bool = False, feature_loss: float = 1.0, position_loss: float = 0.0,
                 skeleton_offsets: list | None = None, **unused: Any):
        super().__init__()
        if fusion not in ("features", "sequence"):
            raise ValueError(f"fusion must be features or sequence, got {fusion!r}")
        if not 0 <= overlap < window:
            raise ValueError("0 <= overlap < window")
        if correction not in ("plain", "bridge") or (correction == "bridge" and not interpolation_hint):
            raise ValueError(f"correction must be plain or bridge (bridge needs interpolation_hint), got {correction!r}")
        if correction_gate not in ("sqrt", "linear"):
            raise ValueError(f"correction_gate must be sqrt or linear, got {correction_gate!r}")
        self.keep_config(locals())
        self.fps, self.window, self.overlap, self.fusion = float(fps), window, overlap, fusion
        self.music_features, self.music_dims = tuple(music_features), tuple(music_dims)
        self.mask_ratio, self.mask_split, self.key_every = mask_ratio, tuple(mask_split), tuple(key_every)
        self.stages = list(stages)  # a list: train.py's run_stages check takes lists only
        self.stage_tasks = {"pretrain": pretrain_tasks or {"bert": 1.0},
                            "finetune": finetune_tasks or {"bert": 0.2, "inbetween": 0.5, "continuation": 0.3}}
        self.tasks = self.stage_tasks["finetune" if not self.stages else self.stages[0]]
        self.use_extra = bool(self.stages) and self.stages[0] == "pretrain"  # motion-only data joins pre-training
        self.p_no_music, self.p_no_style, self.use_style, self.augment_yaw = p_no_music, p_no_style, use_style, augment_yaw
        self.interpolation_hint, self.inbetween_scores = interpolation_hint, inbetween_scores
        self.correction, self.correction_horizon, self.correction_gate = correction, float(correction_horizon), correction_gate
        self.feature_loss, self.position_loss = float(feature_loss), float(position_loss)
        self.correct_root = correct_root
        self.canonical_heading = canonical_heading
        self.motion_dim = 3 + 6 * self.skeleton.num_joints
        music_dim = sum(music_dims)

        self.motion_in = nn.Linear(self.motion_dim, d_model)
        self.mask_token = nn.Parameter(torch.randn(d_model) * 0.02)
        self.motion_position = nn.Parameter(torch.randn(window, d_model) * 0.02)
        self.motion_encoder = encoder(d_model, heads, ff, motion_layers, dropout)
        self.music_in = nn.Linear(music_dim, d_model)
        self.no_music = nn.Parameter(torch.randn(d_model) * 0.02)
        self.music_position = nn.Parameter(torch.randn(window, d_model) * 0.02)
        self.music_encoder = encoder(d_model, heads, ff, music_layers, dropout)
        self.style = nn.Embedding(len(STYLES) + 1, d_model)
        if fusion == "features":
            self.fuse = nn.Linear(2 * d_model, d_model)
        else:
            self.modality = nn.Parameter(torch.randn(2, d_model) * 0.02)
        self.cross = encoder(d_model, heads, ff, layers, dropout)
        self.norm_out = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, self.motion_dim)
        with torch.no_grad():  # untrained, it returns about the interpolation hint (or the mean pose)
            self.out.weight.mul_(0.1)
            self.out.bias.zero_()
        if correction == "bridge":  # masked frames' own head, zero at first: untrained, exactly the hint
            self.correct = nn.Linear(d_model, self.motion_dim)
            nn.init.zeros_(self.correct.weight)
            nn.init.zeros_(self.correct.bias)
        self.register_normalisation(self.motion_dim, music_dim)  # filled from training data by `for_data`
        if position_loss:  # L2P's normalisation of each joint coordinate (J, 3), set by `for_data`
            self.register_buffer("position_std", torch.ones(self.skeleton.num_joints, 3))
        self.motion_mean[3:] = torch.tensor([1.0, 0, 0, 1, 0, 0]).repeat(self.skeleton.num_joints)  # until then: rest pose

    # ---- construction ----------------------------------------------------------------------------

    @classmethod
    def for_data(cls, data, **config: Any):
        model = super().for_data(data, **config)
        model.motion_mean[[0, 2]] = 0.0  # x/z are relative to the window's reference frame: metres as they are
        model.motion_std[[0, 2]] = 1.0
        if model.position_loss:
            from ..metrics.inbetween import position_stats

            std = position_stats(data.motion(n) for n in data.split("train"))[1]
            model.position_std.copy_(torch.from_numpy(std))
        return model

    def windows(self) -> tuple[dict, dict]:
        """What it trains on, as `WindowDataset` inputs and outputs (un-normalised)."""
        return ({f: (self.window, 0) for f in self.music_features}, {"rot6d": (self.window, 0)})

    def set_stage(self, stage: str) -> None:
        self.tasks = self.stage_tasks[stage]
        self.use_extra = stage == "pretrain"

    # ---- the network -----------------------------------------------------------------------------

    def forward(self, motion: torch.Tensor, mask_token: torch.Tensor, music: torch.Tensor,
                has_music: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Normalised motion (B, T, D) for normalised motion (B, T, D) whose frames at `mask_token`
        (B, T) are unknown, normalised music (B, T, M) present at `has_music` (B, T) and styles (B,)."""
        t = motion.shape[1]
        if self.interpolation_hint:  # masked frames also see, and correct, the interpolation of the others
            hint = interpolate_frames(motion, ~mask_token)
            h = torch.where(mask_token[..., None], self.mask_token + self.motion_in(hint), self.motion_in(motion))
        else:
            h = torch.where(mask_token[..., None], self.mask_token, self.motion_in(motion))
        h = self.motion_encoder(h + self.motion_position[:t])
        m = self.music_encoder(self.music_in(music) + self.music_position[:t])
        m = torch.where(has_music[..., None], m, self.no_music + self.music_position[:t])
        if self.fusion == "features":
            tokens = self.fuse(torch.cat([h, m], dim=-1))
        else:
            tokens = torch.cat([h + self.modality[0], m + self.modality[1]], dim=1)
        tokens = self.norm_out(self.cross(tokens + self.style(style)[:, None])[:, :t])
        out = self.out(tokens)
        if not self.interpolation_hint:
            return out
        if self.correction == "bridge":
            gate = bridge_gate(~mask_token, self.correction_horizon, self.correction_gate)
            correction = self.correct(tokens)
            if not self.correct_root:  # the root's path stays the hint's: linear between the keys
                correction = torch.cat([torch.zeros_like(correction[..., :3]), correction[..., 3:]], dim=-1)
            return torch.where(mask_token[..., None], hint + gate[..., None] * correction, out)
        return torch.where(mask_token[..., None], hint + out, out)

    def normalise(self, rot6d: torch.Tensor, known: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D) rot6d frames -> normalised features with x/z relative to each row's first `known`
        frame (and, with `canonical_heading`, turned about the vertical so that the root faces +Z there),
        and that reference (B, 3): its x, z and yaw (0 without `canonical_heading`)."""
        first = rot6d[torch.arange(len(rot6d)), reference_index(known)]
        yaw = torch.zeros(len(rot6d), dtype=rot6d.dtype)
        if self.canonical_heading:  # a row with no given frame is not turned
            yaw = torch.where(known.any(1), heading(sixd_to_matrix(first[..., 3:9])), yaw)
        x = rot6d.clone()
        x[..., [0, 2]] -= first[:, None, [0, 2]]
        if self.canonical_heading:
            x = _rotate_yaw(x, -yaw)
        return (x - self.motion_mean) / self.motion_std, torch.cat([first[:, [0, 2]], yaw[:, None]], dim=1)

    def denormalise(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        rot6d = x * self.motion_std + self.motion_mean
        if self.canonical_heading:
            rot6d = _rotate_yaw(rot6d, ref[:, 2])
        rot6d[..., [0, 2]] += ref[:, None, :2]
        return rot6d

    # ---- training --------------------------------------------------------------------------------

    def corrupt(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """Masks for a batch of windows (B, T, D), one task per window drawn from `self.tasks`.
        Returns (loss frames, mask-token frames, random-frame frames), each (B, T) bool."""
        b, t, _ = x.shape
        chosen, zeroed, randomised = bert_mask((b, t), self.mask_ratio, self.mask_split, generator)
        names = [n for n in TASKS if self.tasks.get(n, 0) > 0]
        weights = torch.tensor([float(self.tasks[n]) for n in names])
        drawn = torch.multinomial(weights, b, replacement=True, generator=generator)
        for i, k in enumerate(drawn.tolist()):
            if names[k] != "bert":
                masked = task_mask(names[k], t, self.key_every, generator)
                chosen[i], zeroed[i], randomised[i] = masked, masked, False
                if names[k] == "inbetween" and self.inbetween_scores == "between":
                    given = torch.nonzero(~masked)[:, 0]  # score only the frames between the first and last key
                    chosen[i, :given.min()] = chosen[i, given.max():] = False
        return chosen, zeroed, randomised

    def loss(self, batch: dict, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        rot6d = batch["outputs"]["rot6d"]
        b, t, _ = rot6d.shape
        if self.augment_yaw and self.training:
            rot6d = _rotate_yaw(rot6d, torch.rand(b, generator=generator) * 2 * math.pi)
        chosen, zeroed, randomised = self.corrupt(rot6d, generator)
        x, _ = self.normalise(rot6d, ~zeroed)
        pool = rearrange(x, "b t d -> (b t) d")
        random_frames = pool[torch.randint(len(pool), (b, t), generator=generator)]
        inputs = torch.where(randomised[..., None], random_frames, x)
        inputs = torch.where(zeroed[..., None], 0.0, inputs)
        music = (torch.cat([batch["inputs"][f] for f in self.music_features], dim=-1) - self.music_mean) / self.music_std
        has_music = batch.get("has_music", torch.ones(b, dtype=torch.bool))
        has_music = has_music & (torch.rand(b, generator=generator) >= self.p_no_music)
        styles = torch.tensor([style_id(s) for s in batch.get("style", [None] * b)])
        drop_style = torch.rand(b, generator=generator) < self.p_no_style
        styles = torch.where(drop_style | (not self.use_style), 0, styles)
        pred = self(inputs, zeroed, music, repeat(has_music, "b -> b t", t=t), styles)
        error = ((pred - x) ** 2).mean(-1)
        if self.correction == "bridge":  # whitened: each masked frame's error over its gate's square, so the
            gate = bridge_gate(~zeroed, self.correction_horizon, self.correction_gate)  # short gaps weigh as
            error = torch.where(zeroed, error / gate.clamp(min=1e-3) ** 2, error)  # much as long tails
        mean = lambda e: (e * chosen).sum() / chosen.sum().clamp(min=1)  # noqa: E731 (over the chosen frames)
        logs = {"root": mean(((pred - x)[..., :3] ** 2).mean(-1)).detach(), "masked_share": chosen.float().mean()}
        loss = self.feature_loss * mean(error)
        if self.position_loss:
            positions = mean(self.position_error(pred, x))
            loss = loss + self.position_loss * positions
            logs["positions"] = positions.detach()
        return loss, logs

    def joint_positions(self, x: torch.Tensor) -> torch.Tensor:
        """(..., J, 3) joint positions (forward kinematics, in the window's frame) of normalised frames (..., D)."""
        rot6d = x * self.motion_std + self.motion_mean
        rotations = sixd_to_matrix(rot6d[..., 3:].unflatten(-1, (self.skeleton.num_joints, 6)))
        return forward_kinematics(rotations, rot6d[..., :3], torch.from_numpy(self.skeleton.offsets),
                                  self.skeleton.parents)[0]

    def position_error(self, pred: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(B, T) L2P's error per frame between normalised frames `pred` and `x` (B, T, D): the L2 norm over
        all joints' positions, each coordinate divided by its std over the train split (`position_std`)."""
        diff = (self.joint_positions(pred) - self.joint_positions(x)) / self.position_std
        return (diff.square().sum((-2, -1)) + 1e-8).sqrt()

    # ---- filling and generating ------------------------------------------------------------------

    @torch.inference_mode()
    def fill(self, rot6d: np.ndarray, known: np.ndarray, music: np.ndarray | None = None,
             style: str | None = None) -> np.ndarray:
        """rot6d frames (T, D) at the model's fps with the `known` (T,) frames filled in, window by
        window; known frames come back unchanged. `music`: the model's un-normalised music features
        (T, M), or None (no music); rows of NaN mark frames without music."""
        was_training = self.training
        self.eval()
        frames = len(rot6d)
        out = torch.as_tensor(np.asarray(rot6d, dtype=np.float32)).clone()
        given = torch.as_tensor(np.asarray(known, dtype=bool)).clone()
        if music is None:
            music = np.full((frames, sum(self.music_dims)), np.nan, np.float32)
        music = torch.as_tensor(np.asarray(music, dtype=np.float32))
        has_music = ~music.isnan().any(-1)
        music = torch.nan_to_num((music - self.music_mean) / self.music_std)
        styles = torch.tensor([self.style_index(style) if self.use_style else 0])
        w, stride = self.window, self.window - self.overlap
        start = 0
        while True:
            span = slice(start, min(start + w, frames))
            n = span.stop - span.start
            pad = w - n  # a short last window is padded with unknown frames without music
            win_known = F.pad(given[span], (0, pad))[None]
            x, ref = self.normalise(F.pad(out[span], (0, 0, 0, pad))[None], win_known)
            x = torch.where(win_known[..., None], x, 0.0)
            pred = self(x, ~win_known, F.pad(music[span], (0, 0, 0, pad))[None],
                        F.pad(has_music[span], (0, pad))[None], styles)
            filled = self.denormalise(pred, ref)[0, :n]
            out[span] = torch.where(given[span, None], out[span], filled)
            given[span] = True
            if span.stop >= frames:
                break
            start += stride
        self.train(was_training)
        return out.numpy()

    def generate(self, music: Music, *, seed_motion: Motion | None = None, length: int | None = None,
                 seed: int = 0, style: str | None = None, **controls: Any) -> Motion:
        """A dance for `music`, continuing `seed_motion` (its last `overlap` frames) when given."""
        length, out_frames, feats = self.music_input(music, length)
        feats = np.concatenate([feats[:out_frames], np.full((out_frames - len(feats[:out_frames]), feats.shape[1]),
                                                            np.nan, np.float32)])
        rot6d = np.zeros((out_frames, self.motion_dim), np.float32)
        known = np.zeros(out_frames, bool)
        if seed_motion is not None:
            given = motion_to_rot6d(seed_motion.resample(self.fps))[-self.overlap or None:]
            rot6d, known = np.concatenate([given, rot6d]), np.concatenate([np.ones(len(given), bool), known])
            feats = np.concatenate([np.full((len(given), feats.shape[1]), np.nan, np.float32), feats])
        chosen = music.style if style in (None, "auto") else style
        filled = self.fill(rot6d, known, feats, chosen)[len(rot6d) - out_frames:]
        return self.at_music_rate(rot6d_to_motion(filled, self.skeleton, self.fps), music, length)

    # ---- training data beyond the paired set -------------------------------------------------------

    def with_extra_data(self, datamodule, extra: list) -> Any:
        """`dancegen train`'s data module with the windows of `extra` prepared datasets (all their splits,
        motion only: their music is marked absent) added to its training set in the stages that use
        them (`use_extra`: pre-training)."""
        from torch.utils.data import ConcatDataset

        from ..training.lightning import motion_only_windows

        setup = datamodule.setup
        music = {f: (self.window, d) for f, d in zip(self.music_features, self.music_dims)}

        def setup_with_extra(stage: str | None = None) -> None:
            setup(stage)
            sets = [Flagged(datamodule.train_set, True)]
            if self.use_extra:
                sets += [Flagged(w, False) for w in motion_only_windows(extra, music, {"rot6d": (self.window, 0)},
                                                                        datamodule.train_stride)]
            datamodule.train_set = ConcatDataset(sets)

        datamodule.setup = setup_with_extra
        return datamodule


class Flagged(torch.utils.data.Dataset):
    """Samples of a window dataset, marked as having music (`has_music`) or not."""

    def __init__(self, windows, has_music: bool):
        self.windows, self.has_music = windows, has_music

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict:
        return {**self.windows[i], "has_music": self.has_music}
