"""Music-conditioned motion diffusion in the manner of EDGE (Tuli, Cao, Kanazawa; CVPR 2023), sized
for a small dataset and a CPU.

Representation, per frame: root height, root x/z displacement since the previous frame, and the 24
joint rotations in 6-D (147 values), normalised with training statistics. Without absolute x/z a
window means the same wherever the dancer is, so overlapping windows can be averaged and a dance of
any length is the running sum of its displacements.

Denoiser: a transformer over patches of `patch` frames. Each token adds the noisy motion patch, the
music of the same frames (encoded once per window by a small transformer; it does not change with
the diffusion step) and a learned position. FiLM (DiT's adaptive layer norm, as EDGE) on the
diffusion time, the style and the window's pooled music modulates every block. It predicts the
clean motion x0.

Training loss (EDGE's): x0 and its velocity in feature space, joint positions and velocities by
forward kinematics on a fixed default skeleton (the training set's median bone offsets), and foot
contact: feet that are still in the data stay still (`aux_weighting: signal` weights these
auxiliary terms per window by its signal share ᾱ_t: uniformly weighted, they reward a smooth
average at high noise, and a 45-min CPU run learnt to ignore its noisy input altogether — its x0
loss stayed at the variance, 1.0). Cosine noise schedule; music and style are
dropped at random so that sampling can use classifier-free guidance.

Sampling: DDIM (eta = 0, so the seed's noise fixes the dance) with a few steps. A song is covered by
windows overlapping by `overlap` frames, denoised together in chunks of `chunk` windows; after every
step their clean estimates are averaged where they overlap with weights that fade at window edges
(MultiDiffusion, Bar-Tal et al. 2023; EDGE in-paints each window's first half from its predecessor
instead), so the dance is continuous and memory is flat in the song's length. Or, `stitch:
bidirectional`, after BADM (Zhang et al., CVPR 2024): every other window is danced alone first, then
each window between them with its previous and its next slice's overlapping frames known, so each
seam belongs to one dance instead of an average of two. Known values replace the estimate after every
step, EDGE's in-painting; with `context_input` the denoiser also reads them as input (zero-initialised,
so a trained model can be fine-tuned to it), trained on windows that show it nothing, the previous
slice's last `overlap` frames, the next slice's first, both, or key frames. That serves three tasks:

- continuation: the last frames of a seed motion (`generate(seed_motion=…)`);
- in-painting (`fill`): key frames (`dancegen inbetween --model FOLDER`) or some joints at every frame,
  e.g. keep the upper body and generate the legs (`dancegen inbetween --keep-joints upper`). The
  root's path is generated as steps, so afterwards it is bent, linearly between the frames whose root
  is known, to pass exactly through them;
- beat-aware key poses, after Beat-It (Huang et al. 2024): `generate(key_poses=MOTION)` places the
  given poses on every `key_beats`-th music beat, in turn, and generates the dance around them.

Written by hand: no maintained library implements this model; the rotations, kinematics and
transformer pieces are roma's and torch's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from tqdm import tqdm

from ..data.representation import motion_to_rot6d
from ..motion import Motion, forward_kinematics
from ..motion.rotations import matrix_to_6d, matrix_to_axis_angle, sixd_to_matrix
from .base import FACT35_BEAT, STYLES, Music, SavedModel, register_model, style_id

FOOT_JOINTS = (7, 8, 10, 11)  # ankles and toes
STITCHES = ("average", "bidirectional")
# what a `context_input` model is shown in training, per window: nothing, the previous slice's last
# `overlap` frames, the next slice's first, both (BADM), or key frames every 5-40 frames
CONTEXT_KINDS = {"none": 0.3, "previous": 0.2, "next": 0.1, "both": 0.25, "keys": 0.15}


def cosine_alphas_cumprod(steps: int, s: float = 0.008) -> torch.Tensor:
    """ᾱ_t of Nichol & Dhariwal's cosine schedule, t = 1..steps (betas clipped at 0.999)."""
    t = torch.linspace(0, steps, steps + 1, dtype=torch.float64) / steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, 0).float()


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


class Block(nn.Module):
    """Pre-norm transformer block whose norms are modulated by the condition (FiLM / adaLN-zero)."""

    def __init__(self, d_model: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1 = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        self.ff = nn.Sequential(nn.Linear(d_model, ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff, d_model))
        self.film = nn.Linear(d_model, 6 * d_model)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.film(cond)[:, None].chunk(6, dim=-1)
        h = self.norm1(x) * (1 + scale1) + shift1
        q, k, v = rearrange(self.qkv(h), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        x = x + (1 + gate1) * self.proj(rearrange(a, "b h n d -> b n (h d)"))
        h = self.norm2(x) * (1 + scale2) + shift2
        return x + (1 + gate2) * self.ff(h)


class Denoiser(nn.Module):
    """x_t (B, W, D), t (B,), encoded music (B, W/patch, d), style ids (B,) -> x0 estimate (B, W, D).
    With `context`, it also reads known values (B, W, 2D): [values × mask, mask] (`context_input`)."""

    def __init__(self, motion_dim: int, music_dim: int, window: int, patch: int, d_model: int, layers: int,
                 music_layers: int, heads: int, ff: int, dropout: float, num_styles: int, context: bool = False):
        super().__init__()
        self.patch, self.d_model = patch, d_model
        tokens = window // patch
        self.motion_in = nn.Linear(patch * motion_dim, d_model)
        self.music_in = nn.Linear(patch * music_dim, d_model)
        self.position = nn.Parameter(torch.randn(1, tokens, d_model) * 0.02)
        self.music_position = nn.Parameter(torch.randn(1, tokens, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.music_encoder = nn.TransformerEncoder(layer, music_layers, enable_nested_tensor=False)
        self.null_music = nn.Parameter(torch.zeros(1, tokens, d_model))  # "no music", for guidance
        self.style = nn.Embedding(num_styles + 1, d_model)
        self.time = nn.Sequential(nn.Linear(d_model, d_model), nn.SiLU(), nn.Linear(d_model, d_model))
        self.music_pool = nn.Linear(d_model, d_model)
        self.blocks = nn.ModuleList(Block(d_model, heads, ff, dropout) for _ in range(layers))
        self.norm_out = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        self.film_out = nn.Linear(d_model, 2 * d_model)
        nn.init.zeros_(self.film_out.weight)
        nn.init.zeros_(self.film_out.bias)
        self.out = nn.Linear(d_model, patch * motion_dim)
        if context:  # zero-initialised: a trained model fine-tuned with it starts as it was
            self.context_in = nn.Linear(patch * 2 * motion_dim, d_model)
            nn.init.zeros_(self.context_in.weight)
            nn.init.zeros_(self.context_in.bias)

    def encode_music(self, music: torch.Tensor) -> torch.Tensor:
        tokens = self.music_in(rearrange(music, "b (n p) m -> b n (p m)", p=self.patch))
        return self.music_encoder(tokens + self.music_position)

    def forward(self, x: torch.Tensor, t: torch.Tensor, music: torch.Tensor, style: torch.Tensor,
                context: torch.Tensor | None = None) -> torch.Tensor:
        cond = self.time(timestep_embedding(t, self.d_model)) + self.style(style) + self.music_pool(music.mean(1))
        h = self.motion_in(rearrange(x, "b (n p) d -> b n (p d)", p=self.patch)) + music + self.position
        if context is not None and hasattr(self, "context_in"):
            h = h + self.context_in(rearrange(context, "b (n p) d -> b n (p d)", p=self.patch))
        for block in self.blocks:
            h = block(h, cond)
        shift, scale = self.film_out(cond)[:, None].chunk(2, dim=-1)
        out = self.out(self.norm_out(h) * (1 + scale) + shift)
        return rearrange(out, "b n (p d) -> b (n p) d", p=self.patch)


def rot6d_to_features(rot6d: torch.Tensor) -> torch.Tensor:
    """(..., L+1, 3+6J) dataset rot6d frames -> (..., L, 3+6J) [root y, root dx, root dz, rotations]."""
    root = rot6d[..., :3]
    step = root[..., 1:, :] - root[..., :-1, :]
    return torch.cat([root[..., 1:, 1:2], step[..., 0:1], step[..., 2:3], rot6d[..., 1:, 3:]], dim=-1)


def coarse_features(rot6d: torch.Tensor, stride: int) -> torch.Tensor:
    """`rot6d_to_features` of every `stride`-th frame: the global stage's frames (Lodge), each step the
    root's displacement over `stride` frames."""
    return rot6d_to_features(rot6d[..., ::stride, :])


def features_to_pose(features: torch.Tensor, start: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., L, 3+6J) -> root translation (..., L, 3) and local rotation matrices (..., L, J, 3, 3).
    The root's x/z is the running sum of the displacements, from `start` (..., 2) or the origin."""
    xz = torch.cumsum(features[..., 1:3], dim=-2)
    if start is not None:
        xz = xz + start[..., None, :]
    root = torch.stack([xz[..., 0], features[..., 0], xz[..., 1]], dim=-1)
    rotations = sixd_to_matrix(features[..., 3:].unflatten(-1, (-1, 6)))
    return root, rotations


@register_model("diffusion")
class DiffusionModel(nn.Module, SavedModel):
    """An EDGE-style dance diffusion model; see the module docstring. Keyword arguments are its config."""

    training_features = staticmethod(rot6d_to_features)
    fills_joints = True  # `fill` takes a (frames, joints) mask: `dancegen inbetween --keep-joints`

    def __init__(self, *, fps: float = 25.0, music_features: tuple[str, ...] = ("fact35",),
                 music_dims: tuple[int, ...] = (35,), window: int = 150, overlap: int = 30, patch: int = 2,
                 d_model: int = 256, layers: int = 4, music_layers: int = 1, heads: int = 4, ff: int = 1024,
                 dropout: float = 0.1, diffusion_steps: int = 1000, sample_steps: int = 10,
                 guidance: float = 1.0, p_no_music: float = 0.1, p_no_style: float = 0.3,
                 use_style: bool = True, augment_yaw: bool = True, foot_speed: float = 0.01,
                 loss_weights: dict[str, float] | None = None, chunk: int = 32, floor_radius: float | None = 4.0,
                 global_stride: int = 0, global_window: int = 64, global_overlap: int = 16, global_layers: int = 4,
                 aux_weighting: str = "uniform", context_input: bool = False, stitch: str = "average",
                 skeleton_offsets: list | None = None, **unused: Any):
        super().__init__()
        if window % patch or not 0 <= overlap < window:
            raise ValueError("window must be a multiple of patch, and 0 <= overlap < window")
        self.keep_config(locals())
        self.fps, self.window, self.overlap, self.patch = float(fps), window, overlap, patch
        self.music_features, self.music_dims = tuple(music_features), tuple(music_dims)
        self.sample_steps, self.guidance, self.chunk, self.floor_radius = sample_steps, guidance, chunk, floor_radius
        self.p_no_music, self.p_no_style = p_no_music, p_no_style
        self.use_style, self.augment_yaw, self.foot_speed = use_style, augment_yaw, foot_speed
        if aux_weighting not in ("uniform", "signal"):
            raise ValueError(f"aux_weighting is uniform or signal, not {aux_weighting!r}")
        self.aux_weighting = aux_weighting
        if stitch not in STITCHES:
            raise ValueError(f"stitch is {' or '.join(STITCHES)}, not {stitch!r}")
        self.context_input, self.stitch = context_input, stitch
        self.loss_weights = {"x0": 1.0, "velocity": 1.0, "positions": 1.0, "joint_velocity": 1.0, "foot": 1.0,
                             **(loss_weights or {})}
        self.motion_dim = 3 + 6 * self.skeleton.num_joints
        music_dim = sum(music_dims)
        self.net = Denoiser(self.motion_dim, music_dim, window, patch, d_model, layers, music_layers, heads, ff,
                            dropout, len(STYLES), context=context_input)
        self.register_buffer("alphas_cumprod", cosine_alphas_cumprod(diffusion_steps))
        self.register_buffer("offsets", torch.from_numpy(self.skeleton.offsets))
        self.register_normalisation(self.motion_dim, music_dim)  # filled from training data by `for_data`
        self.global_stride, self.global_window, self.global_overlap = global_stride, global_window, global_overlap
        self.stage = "local"
        if global_stride:  # Lodge's global stage: key poses every `global_stride` frames over a long window
            if not 0 <= global_overlap < global_window:
                raise ValueError("0 <= global_overlap < global_window")
            self.stages = ("local", "global")
            self.global_net = Denoiser(self.motion_dim, music_dim, global_window, 1, d_model, global_layers,
                                       music_layers, heads, ff, dropout, len(STYLES))
            self.register_buffer("global_motion_mean", torch.zeros(self.motion_dim))
            self.register_buffer("global_motion_std", torch.ones(self.motion_dim))

    # ---- construction, saving, loading -------------------------------------------------------

    @classmethod
    def for_data(cls, data, **config: Any):
        """`SavedModel.for_data`, plus the normalisation of the global stage's coarse features."""
        model = super().for_data(data, **config)
        if model.global_stride:
            coarse = torch.cat([coarse_features(torch.from_numpy(np.array(data.array(n, "rot6d"))), model.global_stride)
                                for n in data.split("train")])
            model.global_motion_mean.copy_(coarse.mean(0))
            model.global_motion_std.copy_(coarse.std(0).clamp(min=cls.min_motion_std))
        return model

    def set_stage(self, stage: str) -> None:
        """`local` trains the window denoiser, `global` (Lodge) the coarse one; the other stays frozen."""
        self.stage = stage
        self.net.requires_grad_(stage == "local")
        self.global_net.requires_grad_(stage == "global")

    def windows(self) -> tuple[dict, dict]:
        """What it trains on, as `WindowDataset` inputs and outputs (un-normalised): `window` frames, or
        with a global stage the longer of that and a global window (each stage crops what it needs)."""
        frames = max(self.window, self.global_window * self.global_stride)
        return ({f: (frames, 0) for f in self.music_features}, {"rot6d": (frames + 1, -1)})

    # ---- training ------------------------------------------------------------------------------

    def normalise_music(self, music: torch.Tensor) -> torch.Tensor:
        return (music - self.music_mean) / self.music_std

    def _pose(self, features: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint positions relative to the root (B, L, J, 3) and the root's displacement per frame (B, L-1, 3)
        of features normalised by `mean` and `std`."""
        x = features * std + mean
        _, rotations = features_to_pose(x)
        local = forward_kinematics(rotations, torch.zeros_like(x[..., :3]), self.offsets, self.skeleton.parents)[0]
        step = torch.stack([x[..., 1:, 1], x[..., 0].diff(dim=-1), x[..., 1:, 2]], dim=-1)
        return local, step

    def loss(self, batch: dict, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """EDGE's training loss on a batch of `WindowDataset` samples (see `windows`)."""
        rot6d = batch["outputs"]["rot6d"]
        if self.augment_yaw and self.training:
            rot6d = _rotate_yaw(rot6d, torch.rand(len(rot6d), generator=generator) * 2 * math.pi)
        music = self.normalise_music(torch.cat([batch["inputs"][f] for f in self.music_features], dim=-1))
        frames = self.global_window * self.global_stride if self.stage == "global" else self.window
        if music.shape[1] > frames:  # a random crop of the stage's length (music frame j goes with motion frame j+1)
            start = int(torch.randint(music.shape[1] - frames + 1, (1,), generator=generator))
            rot6d, music = rot6d[:, start:start + frames + 1], music[:, start:start + frames]
        styles = torch.tensor([style_id(s) for s in batch.get("style", [None] * len(rot6d))], device=rot6d.device)
        if self.stage == "global":  # coarse frames; per-frame velocities and foot contact mean little there
            x0 = (coarse_features(rot6d, self.global_stride) - self.global_motion_mean) / self.global_motion_std
            music = rearrange(music, "b (n s) m -> b n s m", s=self.global_stride).mean(2)
            weights = {**self.loss_weights, "joint_velocity": 0.0, "foot": 0.0}
            return self._loss(self.global_net, x0, music, styles, weights, generator,
                              (self.global_motion_mean, self.global_motion_std))
        x0 = (rot6d_to_features(rot6d) - self.motion_mean) / self.motion_std
        return self._loss(self.net, x0, music, styles, self.loss_weights, generator, (self.motion_mean, self.motion_std))

    def _loss(self, net: Denoiser, x0: torch.Tensor, music: torch.Tensor, styles: torch.Tensor, w: dict,
              generator: torch.Generator | None, stats: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        b = len(x0)

        def rand(*shape):
            return torch.rand(*shape, generator=generator).to(x0.device)

        t = (rand(b) * len(self.alphas_cumprod)).long().clamp(max=len(self.alphas_cumprod) - 1)
        noise = torch.randn(x0.shape, generator=generator).to(x0)
        ab = self.alphas_cumprod[t][:, None, None]
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        tokens = net.encode_music(music)
        tokens = torch.where(rand(b, 1, 1) < self.p_no_music, net.null_music.expand_as(tokens), tokens)
        styles = torch.where(rand(b) < self.p_no_style, 0, styles) if self.use_style else torch.zeros_like(styles)
        context = None
        if hasattr(net, "context_in"):  # known frames, as in-painting and BADM's neighbouring slices give them
            frames = self._training_context(b, x0.shape[1], rand).to(x0.device)
            mask = known_columns(frames[..., None].expand(-1, -1, self.skeleton.num_joints)).to(x0)
            context = torch.cat([x0 * mask, mask], dim=-1)
        pred = net(xt, t, tokens, styles, context)

        # the auxiliary terms per window, weighted by the window's signal share ᾱ_t when `aux_weighting` is
        # "signal": at high noise the best x0 guess is a smooth average, which they would otherwise reward
        signal = ab.flatten() / ab.mean() if self.aux_weighting == "signal" else torch.ones(b, device=x0.device)

        def weighted(error: torch.Tensor) -> torch.Tensor:  # (B, ...) squared errors -> weighted mean
            return (error.flatten(1).mean(1) * signal).mean()

        terms = {"x0": F.mse_loss(pred, x0), "velocity": weighted((pred.diff(dim=1) - x0.diff(dim=1)) ** 2)}
        if w["positions"] or w["joint_velocity"] or w["foot"]:
            pos, root_step = self._pose(pred, *stats)
            with torch.no_grad():
                pos_true, root_step_true = self._pose(x0, *stats)
            terms["positions"] = weighted(((pos - pos_true) / 0.1) ** 2)  # decimetres, relative to the root
            vel = pos.diff(dim=1) + root_step[..., None, :]  # world joint velocities, metres per frame
            vel_true = pos_true.diff(dim=1) + root_step_true[..., None, :]
            terms["joint_velocity"] = weighted(((vel - vel_true) / 0.01) ** 2)  # cm per frame
            feet, feet_true = vel[..., FOOT_JOINTS, :], vel_true[..., FOOT_JOINTS, :]
            still = (feet_true.norm(dim=-1, keepdim=True) < self.foot_speed).float()
            terms["foot"] = weighted((feet / 0.01) ** 2 * still)
        loss = sum(w[k] * v for k, v in terms.items() if w[k])
        return loss, {k: v.detach() for k, v in terms.items() if w[k]}

    def _training_context(self, b: int, frames: int, rand) -> torch.Tensor:
        """(B, W) bool known frames per window, of a kind drawn from CONTEXT_KINDS."""
        edge, t = self.overlap, torch.arange(frames)
        kind = torch.bucketize(rand(b).cpu(), torch.tensor(list(CONTEXT_KINDS.values())).cumsum(0)[:-1], right=True)
        names = list(CONTEXT_KINDS)
        previous, following = (t < edge)[None], (t >= frames - edge)[None]
        gap = (5 + rand(b).cpu() * 36).long()[:, None]
        keys = (t[None] - (rand(b).cpu()[:, None] * gap.clamp(max=frames)).long()) % gap == 0
        k = kind[:, None]
        return ((k == names.index("previous")) | (k == names.index("both"))) & previous \
            | ((k == names.index("next")) | (k == names.index("both"))) & following \
            | (k == names.index("keys")) & keys

    # ---- sampling ------------------------------------------------------------------------------

    @staticmethod
    def _denoise(net: Denoiser, x: torch.Tensor, t: int, tokens: torch.Tensor, styles: torch.Tensor,
                 guidance: float, context: torch.Tensor | None = None) -> torch.Tensor:
        ts = torch.full((len(x),), t, dtype=torch.long)
        if guidance == 1.0:
            return net(x, ts, tokens, styles, context)
        both = net(torch.cat([x, x]), torch.cat([ts, ts]), torch.cat([tokens, net.null_music.expand_as(tokens)]),
                   torch.cat([styles, torch.zeros_like(styles)]), None if context is None else torch.cat([context, context]))
        cond, uncond = both.chunk(2)
        return uncond + guidance * (cond - uncond)

    @torch.inference_mode()
    def sample(self, music: torch.Tensor, *, style: int = 0, generator: torch.Generator | None = None,
               known: torch.Tensor | None = None, mask: torch.Tensor | None = None, steps: int | None = None,
               guidance: float | None = None, progress: bool = False, coarse: bool = False,
               stitch: str | None = None) -> torch.Tensor:
        """Normalised features (T, D) for normalised music (T, M) of any length T.

        `known` (K, D) with `mask` (K, D) bool fixes the masked values of the first K frames (in-painting;
        K may be the whole length). Music all NaN: no music (the null music token everywhere). `coarse`:
        the global stage's denoiser and windows (music and features are then coarse frames). `stitch`
        (default: the model's) joins the windows of a long song: `average` denoises them all together
        and averages their clean estimates where they overlap; `bidirectional` (BADM) denoises every
        other window first, each alone, then the windows between them, each with its previous and its
        next slice's overlapping frames known.
        """
        steps, guidance = steps or self.sample_steps, self.guidance if guidance is None else guidance
        net, w, o = (self.global_net, self.global_window, self.global_overlap) if coarse \
            else (self.net, self.window, self.overlap)
        stitch = "average" if coarse else stitch or self.stitch
        if stitch not in STITCHES:
            raise ValueError(f"stitch is {' or '.join(STITCHES)}, not {stitch!r}")
        silent = music.isnan().all()
        music = torch.nan_to_num(music)
        frames = len(music)
        stride = w - o
        n = max(1, math.ceil((frames - o) / stride))
        total = o + n * stride
        music = F.pad(music, (0, 0, 0, total - frames))  # silence (the mean) past the end
        full_known = torch.zeros(total, self.motion_dim)
        full_mask = torch.zeros(total, self.motion_dim, dtype=torch.bool)
        if known is not None:
            full_known[: len(known)], full_mask[: len(known)] = known, mask
        starts = torch.arange(n) * stride
        styles = torch.full((n,), style, dtype=torch.long) if self.use_style else torch.zeros(n, dtype=torch.long)

        def run(chosen: slice, known: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self._sample_windows(net, o, music, starts[chosen], styles[chosen], silent, known, mask,
                                        generator, steps, guidance, progress)

        if stitch == "average" or n == 1:
            return run(slice(None), full_known, full_mask)[0][:frames]
        first, covered = run(slice(0, None, 2), full_known, full_mask)
        known = torch.where(full_mask, full_known, first)
        between, filled = run(slice(1, None, 2), known, full_mask | covered[:, None])
        return torch.where(filled[:, None], between, first)[:frames]

    def _sample_windows(self, net: Denoiser, o: int, music: torch.Tensor, starts: torch.Tensor, styles: torch.Tensor,
                        silent: bool, known: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None,
                        steps: int, guidance: float, progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """DDIM over the windows starting at `starts` of (total, M) normalised music, their clean estimates
        averaged where they overlap (`o` frames: MultiDiffusion), the `mask`ed values of `known` (total, D)
        kept. Returns the features (total, D; zero where no window is) and which frames a window covers."""
        w, n, total = net.position.shape[1] * net.patch, len(starts), len(music)
        index = (starts[:, None] + torch.arange(w)[None]).reshape(-1)
        ramp = torch.minimum(torch.arange(1, w + 1), torch.arange(w, 0, -1)).float().clamp(max=o + 1) / (o + 1)
        weight = torch.zeros(total).index_add_(0, index, ramp.repeat(n))
        covered = weight > 0
        weight = weight.clamp(min=1e-6)[:, None]
        chunks = [slice(i, min(i + self.chunk, n)) for i in range(0, n, self.chunk)]
        windows = music[index].reshape(n, w, -1)
        tokens = [net.null_music.expand(len(windows[c]), -1, -1) if silent else net.encode_music(windows[c])
                  for c in chunks]
        context = torch.cat([known * mask, mask.float()], dim=1)[index].reshape(n, w, -1) \
            if hasattr(net, "context_in") else None

        ab = self.alphas_cumprod
        times = torch.linspace(len(ab) - 1, 0, steps).round().long().tolist()
        x = torch.randn(total, self.motion_dim, generator=generator)
        for i, t in enumerate(tqdm(times, desc="dancing", unit="step", disable=not progress, leave=False)):
            xw = x[index].reshape(n, w, -1)
            x0w = torch.cat([self._denoise(net, xw[c], t, tok, styles[c], guidance, None if context is None else context[c])
                             for c, tok in zip(chunks, tokens)])
            x0 = torch.zeros_like(x).index_add_(0, index, (x0w * ramp[None, :, None]).reshape(n * w, -1)) / weight
            x0 = torch.where(mask, known, x0)
            if i == len(times) - 1:
                x = x0
                break
            a, a_next = ab[t], ab[times[i + 1]]
            eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
            x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
        return torch.where(covered[:, None], x, torch.zeros_like(x)), covered

    def fill(self, rot6d: np.ndarray, known: np.ndarray, music: np.ndarray | None = None,
             style: str | None = None, *, seed: int = 0, steps: int | None = None) -> np.ndarray:
        """rot6d frames (T, 3 + 6J) at the model's fps with what `known` marks kept and the rest generated:
        `known` (T,) bool marks whole frames (key frames), (T, J) single joints at single frames (e.g. the
        upper body at every frame). `music`: the model's un-normalised music features (T, M), or None
        (none; rows of NaN: none there). Known rotations and known root positions come back exactly
        (the generated root path is bent linearly between the frames whose root is known)."""
        rot6d = torch.as_tensor(np.asarray(rot6d, dtype=np.float32))
        frames = len(rot6d)
        known = torch.as_tensor(np.asarray(known, dtype=bool))
        columns = known_columns(known[:, None].expand(-1, self.skeleton.num_joints) if known.ndim == 1 else known)
        x = (rot6d_to_features(torch.cat([rot6d[:1], rot6d])) - self.motion_mean) / self.motion_std
        music = torch.full((frames, sum(self.music_dims)), float("nan")) if music is None \
            else torch.as_tensor(np.asarray(music, dtype=np.float32))[:frames]
        music = F.pad(self.normalise_music(music), (0, 0, 0, frames - len(music)), value=float("nan"))
        was_training = self.training
        self.eval()
        out = self.sample(music, style=self.style_index(style) if self.use_style else 0, known=x, mask=columns,
                          generator=torch.Generator().manual_seed(int(seed)), steps=steps)
        self.train(was_training)
        root, rotations = features_to_pose(out * self.motion_std + self.motion_mean, rot6d[0, [0, 2]])
        root_known = columns[:, 0].numpy()
        root[:, [0, 2]] += torch.from_numpy(bend(rot6d[:, [0, 2]].numpy() - root[:, [0, 2]].numpy(), root_known))
        result = torch.cat([root, matrix_to_6d(rotations).flatten(1)], dim=1)
        keep = torch.cat([columns[:, :1].expand(-1, 3), columns[:, 3:]], dim=1)
        return torch.where(keep, rot6d, result).numpy()

    def _key_pose_frames(self, music: Music, feats: np.ndarray, frames: int, key_beats: int) -> np.ndarray:
        """Frames (model fps) of every `key_beats`-th music beat: `music.beats`, else fact35's beat column."""
        if music.beats is not None:
            beats = np.round(np.asarray(music.beats) * self.fps).astype(int)
        elif "fact35" in self.music_features:
            column = sum(self.music_dims[:self.music_features.index("fact35")]) + FACT35_BEAT
            beats = np.flatnonzero(feats[:, column] > 0.5)
        else:
            raise ValueError("key poses land on beats: give music.beats or use fact35")
        beats = beats[(beats > 0) & (beats < frames)]
        return beats[::max(1, int(key_beats))]

    def _global_keys(self, feats: torch.Tensor, style: int, generator: torch.Generator, steps: int | None,
                     guidance: float | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Lodge's global stage for normalised music (T, M): the whole song danced in coarse frames (one
        per `global_stride` frames, the music averaged over them), kept to the floor. Returns the local
        stage's known values and mask (T, D) — root height and rotations at every coarse frame's fine
        frame — and the coarse path's root x/z (T, 2) there (zero elsewhere), for `bend`."""
        s, frames = self.global_stride, len(feats)
        n = -(-frames // s)
        music = rearrange(F.pad(feats, (0, 0, 0, n * s - frames)), "(n s) m -> n s m", s=s).mean(1)
        coarse = self.sample(music, style=style, generator=generator, steps=steps, guidance=guidance, coarse=True)
        coarse = coarse * self.global_motion_std + self.global_motion_mean
        if self.floor_radius:
            coarse = keep_on_floor(coarse, self.floor_radius, self.fps / s)
        root, _ = features_to_pose(coarse)
        at = torch.arange(1, n + 1) * s - 1  # coarse frame i is fine frame (i + 1)·s − 1 (both count steps)
        inside = at < frames
        at, coarse, root = at[inside], coarse[inside], root[inside]
        known = torch.zeros(frames, self.motion_dim)
        mask = torch.zeros(frames, self.motion_dim, dtype=torch.bool)
        known[at, 0], known[at, 3:] = coarse[:, 0], coarse[:, 3:]
        known = (known - self.motion_mean) / self.motion_std
        mask[at, 0], mask[at, 3:] = True, True  # the root's height and every rotation; its path is bent to
        path = torch.zeros(frames, 2)
        path[at] = root[:, [0, 2]]
        return known, mask, path

    def generate(self, music: Music, *, seed_motion: Motion | None = None, length: int | None = None,
                 seed: int = 0, style: str | None = None, steps: int | None = None, guidance: float | None = None,
                 key_poses: Motion | None = None, key_beats: int = 4, coarse_to_fine: bool | None = None,
                 stitch: str | None = None, progress: bool = False, **controls: Any) -> Motion:
        """A dance for `music`; `style` ("auto", or one of STYLES) defaults to `music.style`. `key_poses`:
        poses (the frames of a Motion on this skeleton) the dance strikes in turn on every `key_beats`-th
        beat (Beat-It's beat-aware key frames: pose, not place, so the root's x/z stays free).
        `coarse_to_fine` (by default on for a model with a global stage, when there are no key poses and
        no seed motion): Lodge — the global stage dances the whole song in coarse frames first, then the
        windows fill in between its poses, and the path is bent through its root positions. `stitch`
        (default: the model's config): how the windows of a long song join, `average` or `bidirectional`
        (BADM; see `sample`)."""
        if coarse_to_fine and not self.global_stride:
            raise ValueError("coarse_to_fine needs a model with a global stage (global_stride > 0)")
        coarse_to_fine = bool(self.global_stride) and seed_motion is None and key_poses is None \
            if coarse_to_fine is None else coarse_to_fine
        length, out_frames, feats = self.music_input(music, length)
        raw = feats[:out_frames]
        feats = torch.from_numpy(raw)
        feats = F.pad(self.normalise_music(feats), (0, 0, 0, out_frames - len(feats)))
        known = mask = start = None
        if key_poses is not None:
            at = self._key_pose_frames(music, raw, out_frames, key_beats)
            poses = torch.from_numpy(motion_to_rot6d(key_poses))  # its frames are poses; its fps does not matter
            known = torch.zeros(out_frames, self.motion_dim)
            mask = torch.zeros(out_frames, self.motion_dim, dtype=torch.bool)
            chosen_poses = poses[np.arange(len(at)) % len(poses)]
            features = rot6d_to_features(torch.cat([chosen_poses[:, None], chosen_poses[:, None]], dim=1))[:, 0]
            known[at] = (features - self.motion_mean) / self.motion_std
            mask[at, 0] = True  # the root's height and every joint's rotation; not the step
            mask[at, 3:] = True
        if seed_motion is not None:
            seed_feats = torch.from_numpy(motion_to_rot6d(seed_motion.resample(self.fps))[-(self.overlap + 1):])
            seed_known = (rot6d_to_features(seed_feats) - self.motion_mean) / self.motion_std
            seed_mask = torch.ones_like(seed_known, dtype=torch.bool)
            if known is not None:
                seed_known, seed_mask = torch.cat([seed_known, known]), torch.cat([seed_mask, mask])
            known, mask = seed_known, seed_mask
            feats = torch.cat([torch.zeros(len(seed_feats) - 1, feats.shape[1]), feats])
            start = seed_feats[-1, [0, 2]]
        sid = self.style_index(music.style if style is None else style)
        generator = torch.Generator().manual_seed(int(seed))
        was_training = self.training
        self.eval()
        if coarse_to_fine:
            if known is not None:
                raise ValueError("coarse_to_fine does not combine with key poses or a seed motion")
            known, mask, path = self._global_keys(feats, sid, generator, steps, guidance)
        x = self.sample(feats, style=sid, generator=generator, known=known, mask=mask, steps=steps,
                        guidance=guidance, progress=progress, stitch=stitch)
        self.train(was_training)
        if seed_motion is not None:
            x = x[len(x) - out_frames:]
        x = x * self.motion_std + self.motion_mean
        if self.floor_radius and not coarse_to_fine:  # coarse to fine: the global stage kept to the floor
            x = keep_on_floor(x, self.floor_radius, self.fps)
        root, rotations = features_to_pose(x, start)
        if coarse_to_fine:
            at = mask[:, 0].numpy()
            root[:, [0, 2]] += torch.from_numpy(bend(path.numpy() - root[:, [0, 2]].numpy(), at))
        motion = Motion(self.fps, self.skeleton, root.numpy(), matrix_to_axis_angle(rotations).numpy())
        return self.at_music_rate(motion, music, length)


def known_columns(joints: torch.Tensor) -> torch.Tensor:
    """(..., T, J) bool known joints -> (..., T, 3 + 6J) known feature columns. A frame's root height is
    known with joint 0; its step (dx, dz) only when the previous frame's root is known too."""
    root = joints[..., 0]
    step = root & torch.cat([torch.zeros_like(root[..., :1]), root[..., :-1]], dim=-1)
    return torch.cat([root[..., None], step[..., None], step[..., None], joints.repeat_interleave(6, dim=-1)], dim=-1)


def bend(error: np.ndarray, known: np.ndarray) -> np.ndarray:
    """A correction (T, C) that is `error` (T, C) at the `known` (T,) frames, linear between them and
    constant before the first and after the last (zero when none is known): added to a generated root
    path, the path passes through the known positions and stays smooth between them."""
    frames = np.flatnonzero(known)
    if len(frames) == 0:
        return np.zeros_like(error)
    t = np.arange(len(error))
    return np.stack([np.interp(t, frames, error[frames, c]) for c in range(error.shape[1])], axis=1).astype(error.dtype)


def keep_on_floor(features: torch.Tensor, radius: float, fps: float, turn_rate: float = 0.8) -> torch.Tensor:
    """Steer a long dance so that it stays within about `radius` metres of where it starts.

    Past 60% of the radius, while the dancer moves outwards, the rest of the dance turns about the
    vertical axis (at most `turn_rate` rad/s, more the further out), bending the path back the way
    ballroom dancers follow the floor. Poses are unchanged; only heading and path turn. (T, D) features.
    """
    step = features[:, 1:3].double().numpy()
    inner, yaw, px, pz = 0.6 * radius, 0.0, 0.0, 0.0
    yaws = np.zeros(len(step))
    for t, (dx, dz) in enumerate(step):
        c, s = math.cos(yaw), math.sin(yaw)
        vx, vz = c * dx + s * dz, -s * dx + c * dz
        px, pz = px + vx, pz + vz
        r = math.hypot(px, pz)
        if r > inner and vx * px + vz * pz > 0:  # outside and moving outwards: turn towards the start
            strength = min(1.0, (r - inner) / (radius - inner))
            yaw += math.copysign(turn_rate * strength / fps, vz * -px - vx * -pz)
        yaws[t] = yaw
    if not yaws.any():
        return features
    angles = torch.from_numpy(yaws).to(features)
    c, s = angles.cos(), angles.sin()
    out = features.clone()
    out[:, 1], out[:, 2] = c * features[:, 1] + s * features[:, 2], -s * features[:, 1] + c * features[:, 2]
    yaw_matrix = torch.stack([c, 0 * c, s, 0 * c, 0 * c + 1, 0 * c, -s, 0 * c, c], dim=-1).reshape(-1, 3, 3)
    out[:, 3:9] = matrix_to_6d(yaw_matrix @ sixd_to_matrix(features[:, 3:9]))
    return out


def _rotate_yaw(rot6d: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Turn (B, L, 3+6J) rot6d windows about the vertical axis by `angles` (B,) radians."""
    c, s, z, o = angles.cos(), angles.sin(), torch.zeros_like(angles), torch.ones_like(angles)
    yaw = torch.stack([c, z, s, z, o, z, -s, z, c], dim=-1).reshape(-1, 1, 3, 3).to(rot6d)
    root = (yaw @ rot6d[..., :3, None])[..., 0]
    orient = matrix_to_6d(yaw @ sixd_to_matrix(rot6d[..., 3:9]))
    return torch.cat([root, orient, rot6d[..., 9:]], dim=-1)
