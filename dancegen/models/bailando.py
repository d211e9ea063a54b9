"""Bailando (Li et al., CVPR 2022) sized for a small dataset and a CPU: a choreographic memory of
dance units and a cross-conditional GPT that composes them to the music.

Representation, per frame (148 values, normalised with training statistics): root height, the root's
displacement in the dancer's own heading frame (x, z), the heading's change (yaw rate), the pelvis
rotation without its heading (6-D) and the 23 other joints' local rotations (6-D). Nothing in it
depends on where the dancer stands or faces, so a dance unit means the same anywhere on the floor;
the path is integrated back when decoding (`integrate`), bent back towards the middle of the floor
when it wanders too far.

Choreographic memory: two VQ-VAEs, one for the lower body (root and legs) and one for the upper
body, each a 1-D convolutional encoder that downsamples time by `down`, a codebook of `codes`
entries (updated by exponential moving averages, dead entries restarted from the batch: VQ-VAE-2,
Razavi et al. 2019) and a mirrored decoder.

Motion GPT: a causal transformer over code steps. Each step adds the previous upper and lower codes,
the music of the step's frames (a small convolutional encoder over the music features that sees
a third of a second ahead), a position and the style. Two heads predict the step's upper code and
then, given the upper code, its lower code: Bailando's cross-conditional prediction. Sampling is
autoregressive with a key/value cache over a sliding context, so memory is flat in the song's length.

Training has two stages, `vqvae` then `gpt` (the VQ-VAEs frozen); `dancegen train
configs/bailando.yaml` runs both. With `actor_critic: true` a third stage, `ac`, fine-tunes the GPT
as Bailando's actor-critic does: the GPT samples each training window's codes itself, the decoded
dance earns a beat reward per code step (`beat_reward`), a critic head learns the discounted return,
and the GPT follows the advantage (REINFORCE with a learnt baseline), while a cross-entropy term on
the real codes keeps it near the dances it learnt (`ac_supervised`). The music is the training
split's only (Bailando fine-tuned on the test music; we do not).

With `time_stretch` (say 0.1) the training windows are read at a random tempo, up to that much
faster or slower (log-uniform), music and motion together (`stretch_windows`): the dance's steps
speed up with the music's beats, the way one couple dances a quicker song of the same style.

Dances without music (a training config's `data.extra`, e.g. Dance with Melody's motion-only
sequences) join the `vqvae` stage's windows and the style prior's code counts; the GPT stages,
which need the music, train on the paired split alone.

Written by hand: no maintained library implements this model; the transformer, convolution and
rotation pieces are torch's and roma's.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from tqdm import tqdm

from ..data.representation import mirror_rot6d, motion_to_rot6d
from ..motion import Motion, forward_kinematics
from ..motion.filters import gaussian_smooth, grounded, on_beats
from ..motion.rotations import matrix_to_6d, matrix_to_axis_angle, sixd_to_matrix
from .base import FACT35_BEAT, STYLES, Music, SavedModel, heard_style, one_thread, register_model, style_id

LOWER_JOINTS = (1, 2, 4, 5, 7, 8, 10, 11)  # hips, knees, ankles, feet (the pelvis goes with the root)
UPPER_JOINTS = (3, 6, 9, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23)
FEATURE_DIM = 10 + 6 * 23


def _columns(joints: tuple[int, ...]) -> list[int]:
    return [c for j in joints for c in range(10 + 6 * (j - 1), 10 + 6 * j)]


LOWER = list(range(10)) + _columns(LOWER_JOINTS)
UPPER = _columns(UPPER_JOINTS)


def _yaw_matrix(angle: torch.Tensor) -> torch.Tensor:
    c, s, z, o = angle.cos(), angle.sin(), torch.zeros_like(angle), torch.ones_like(angle)
    return torch.stack([c, z, s, z, o, z, -s, z, c], dim=-1).unflatten(-1, (3, 3))


def _wrap(angle: torch.Tensor) -> torch.Tensor:
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def heading(pelvis: torch.Tensor) -> torch.Tensor:
    """Yaw (radians about +Y) of the pelvis's forward axis (+Z at rest); rotation matrices (..., 3, 3)."""
    return torch.atan2(pelvis[..., 0, 2], pelvis[..., 2, 2])


def rot6d_to_local(rot6d: torch.Tensor) -> torch.Tensor:
    """(..., L+1, 3+6·24) rot6d frames -> (..., L, 148) heading-free features of the last L frames."""
    root, pelvis = rot6d[..., :3], sixd_to_matrix(rot6d[..., 3:9])
    yaw = heading(pelvis)
    step = root[..., 1:, :] - root[..., :-1, :]
    c, s = yaw[..., 1:].cos(), yaw[..., 1:].sin()
    local_x = c * step[..., 0] - s * step[..., 2]
    local_z = s * step[..., 0] + c * step[..., 2]
    tilt = matrix_to_6d(_yaw_matrix(-yaw[..., 1:]) @ pelvis[..., 1:, :, :])
    return torch.cat([root[..., 1:, 1:2], local_x[..., None], local_z[..., None],
                      _wrap(yaw[..., 1:] - yaw[..., :-1])[..., None], tilt, rot6d[..., 1:, 9:]], dim=-1)


def integrate(features: torch.Tensor, *, start_xz=(0.0, 0.0), start_heading: float = 0.0,
              floor_radius: float | None = None, fps: float = 25.0, turn_rate: float = 0.8):
    """(T, 148) features -> root translation (T, 3) and local rotation matrices (T, 24, 3, 3).

    With `floor_radius`, past 60% of it and while moving outwards, the heading turns (at most
    `turn_rate` rad/s at the radius, up to three times that beyond it) towards the start, the way ballroom dancers follow the
    floor: poses are unchanged, only the path bends, so a song of any length stays on the floor."""
    x = features.double().numpy()
    yaw, (px, pz) = float(start_heading), (float(start_xz[0]), float(start_xz[1]))
    inner = None if floor_radius is None else 0.6 * floor_radius
    yaws, xz = np.zeros(len(x)), np.zeros((len(x), 2))
    for t, (lx, lz, rate) in enumerate(x[:, 1:4]):
        yaw += rate
        c, s = math.cos(yaw), math.sin(yaw)
        dx, dz = c * lx + s * lz, -s * lx + c * lz
        px, pz = px + dx, pz + dz
        if inner is not None:
            r = math.hypot(px, pz)
            if r > inner and dx * px + dz * pz > 0:
                strength = min(3.0, (r - inner) / (floor_radius - inner))  # harder past the radius
                yaw += math.copysign(turn_rate * strength / fps, dx * pz - dz * px)
        yaws[t], xz[t] = yaw, (px, pz)
    root = torch.from_numpy(np.stack([xz[:, 0], x[:, 0], xz[:, 1]], axis=1)).to(features.dtype)
    pelvis = _yaw_matrix(torch.from_numpy(yaws).to(features.dtype)) @ sixd_to_matrix(features[:, 4:10])
    joints = sixd_to_matrix(features[:, 10:].unflatten(-1, (23, 6)))
    return root, torch.cat([pelvis[:, None], joints], dim=1)


def stretch_windows(x: torch.Tensor, start: torch.Tensor, factor: torch.Tensor, length: int,
                    events: tuple[int, ...] = ()) -> torch.Tensor:
    """Windows (B, L, D) read again at another tempo: `length` frames from frame `start` (B,) on, `factor`
    (B,) source frames per new frame, linearly interpolated; an `events` column (a one-hot of onsets or
    beats) keeps its events whole instead, each moved to the new frame nearest its time. Needs
    start + (length − 1) · factor ≤ L − 1."""
    b, frames = x.shape[:2]
    new, old = (torch.arange(n, dtype=x.dtype, device=x.device) for n in (length, frames))
    position = start[:, None] + new * factor[:, None]  # (B, length): where each new frame reads
    below = position.floor().long().clamp(0, frames - 2)
    weight = (position - below)[..., None]
    pick = lambda i: x.gather(1, i[..., None].expand(-1, -1, x.shape[2]))  # noqa: E731
    out = torch.lerp(pick(below), pick(below + 1), weight)
    if events:
        columns = list(events)
        target = ((old - start[:, None]) / factor[:, None]).round().long()  # (B, L): where each old frame lands
        target = torch.where((target >= 0) & (target < length), target, length)  # outside: a spare frame
        moved = torch.zeros(b, length + 1, len(columns), dtype=x.dtype, device=x.device)
        moved.scatter_reduce_(1, target[..., None].expand(-1, -1, len(columns)), x[..., columns], "amax",
                               include_self=False)
        out[..., columns] = moved[:, :length]
    return out


def continuation_start(rot6d: torch.Tensor) -> tuple[tuple[float, float], float]:
    """The root's x/z and heading at the last of rot6d frames (T, 3 + 6J): where a dance that goes on
    from them starts (`features_to_motion`'s `start`)."""
    return tuple(rot6d[-1, [0, 2]].tolist()), float(heading(sixd_to_matrix(rot6d[-1, 3:9])))


def features_to_motion(features: torch.Tensor, skeleton, fps: float, *,
                       start: tuple[tuple[float, float], float] = ((0.0, 0.0), 0.0),
                       floor_radius: float | None = None) -> Motion:
    """(T, 148) un-normalised features as a Motion, the path integrated (`integrate`) from `start`
    (root x/z, heading), steered to stay within `floor_radius`."""
    root, rotations = integrate(features, start_xz=start[0], start_heading=start[1], floor_radius=floor_radius,
                                fps=fps)
    return Motion(fps, skeleton, root.numpy(), matrix_to_axis_angle(rotations).numpy())


def step_rewards(speed: np.ndarray, music_beats: np.ndarray, fps: float, down: int, *, off_beat: float = 0.3,
                 still: float = 1.0, still_speed: float = 0.0) -> np.ndarray:
    """The actor-critic's reward (B, n) per code step of `down` frames, from the mean joint speed (B, T − 1)
    (index i: frame i to i + 1) and music beats (B, T) as booleans, at `fps`.

    Written after Bailando's beat reward: every kinetic beat (a local minimum of the speed, smoothed by a
    Gaussian of 0.08 s, as the Bailando BAS smooths with 5 frames at 60 fps) earns exp(−d² / 2σ²) −
    `off_beat` in the step where it falls, d the distance to the nearest music beat and σ = 0.05 s (the
    BAS's 3 frames at 60 fps); a step whose mean speed is below `still_speed` costs `still`, so that
    standing still is no way to avoid off-beat beats."""
    n = music_beats.shape[1] // down
    reward = np.zeros((len(speed), n), dtype=np.float32)
    sigma = 0.05 * fps
    from scipy.ndimage import gaussian_filter1d  # here: scipy.signal alone takes 1 s to import
    from scipy.signal import argrelextrema

    for b, (s, m) in enumerate(zip(speed, music_beats)):
        kinetic = argrelextrema(gaussian_filter1d(s, 0.08 * fps), np.less)[0]
        music = np.flatnonzero(m)
        if len(kinetic) and len(music):
            d = np.abs(kinetic[:, None] + 0.5 - music[None, :]).min(1)
            np.add.at(reward[b], np.minimum(kinetic // down, n - 1), np.exp(-d ** 2 / (2 * sigma ** 2)) - off_beat)
        step_speed = np.pad(s, (0, n * down - len(s)), mode="edge")[:n * down].reshape(n, down).mean(1)
        reward[b] -= still * (step_speed < still_speed)
    return reward


# ---- choreographic memory -----------------------------------------------------------------------


class ResBlock(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.net = nn.Sequential(nn.GELU(), nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation),
                                 nn.GELU(), nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class Quantizer(nn.Module):
    """A codebook updated by exponential moving averages, dead entries restarted from the batch."""

    def __init__(self, codes: int, dim: int, decay: float = 0.99):
        super().__init__()
        self.decay = decay
        self.register_buffer("embedding", torch.randn(codes, dim) * 0.1)
        self.register_buffer("cluster_size", torch.zeros(codes))
        self.register_buffer("embedding_sum", self.embedding.clone())
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """(N, dim) -> (N,) nearest codebook entries."""
        return torch.cdist(z, self.embedding).argmin(dim=1)

    def forward(self, z: torch.Tensor, generator: torch.Generator | None = None):
        """(N, dim) -> quantised (N, dim) with straight-through gradients, indices, commitment loss."""
        if self.training and not self.initialised:
            self._restart(z, torch.ones(len(self.embedding), dtype=torch.bool), generator)
            self.cluster_size.fill_(1.0)
            self.initialised.fill_(True)
        idx = self.indices(z.detach())
        q = self.embedding[idx]
        if self.training:
            with torch.no_grad():
                onehot = F.one_hot(idx, len(self.embedding)).type(z.dtype)
                self.cluster_size.lerp_(onehot.sum(0), 1 - self.decay)
                self.embedding_sum.lerp_(onehot.T @ z.detach(), 1 - self.decay)
                n = self.cluster_size.sum()
                size = (self.cluster_size + 1e-5) / (n + len(self.embedding) * 1e-5) * n
                self.embedding.copy_(self.embedding_sum / size[:, None])
                self._restart(z, self.cluster_size < 0.03, generator)
        commitment = F.mse_loss(z, q.detach())
        return z + (q - z).detach(), idx, commitment

    @torch.no_grad()
    def _restart(self, z: torch.Tensor, dead: torch.Tensor, generator: torch.Generator | None) -> None:
        count = int(dead.sum())
        if count == 0:
            return
        pick = torch.randint(len(z), (count,), generator=generator).to(z.device)
        fresh = z.detach()[pick] + 0.01 * torch.randn(count, z.shape[1], generator=generator).to(z)
        self.embedding[dead] = fresh
        self.embedding_sum[dead] = fresh
        self.cluster_size[dead] = 1.0


class VQVAE(nn.Module):
    """Motion (B, T, D) <-> codes (B, T/down): a body part's choreographic memory."""

    def __init__(self, dim: int, channels: int, code_dim: int, codes: int, down: int, upsample: str = "nearest"):
        super().__init__()
        steps = int(math.log2(down))
        if 2 ** steps != down:
            raise ValueError("down must be a power of 2")
        enc = [nn.Conv1d(dim, channels, 3, padding=1)]
        for _ in range(steps):
            enc += [ResBlock(channels, 1), ResBlock(channels, 3), nn.Conv1d(channels, channels, 4, 2, 1)]
        self.encoder = nn.Sequential(*enc, ResBlock(channels, 1), nn.GELU(), nn.Conv1d(channels, code_dim, 1))
        dec = [nn.Conv1d(code_dim, channels, 3, padding=1), ResBlock(channels, 1)]
        for _ in range(steps):
            dec += [nn.Upsample(scale_factor=2, mode=upsample), nn.Conv1d(channels, channels, 3, padding=1),
                    ResBlock(channels, 3), ResBlock(channels, 1)]
        self.decoder = nn.Sequential(*dec, nn.GELU(), nn.Conv1d(channels, dim, 3, padding=1))
        self.quantizer = Quantizer(codes, code_dim)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(self.encoder(x.transpose(1, 2)), "b c n -> b n c")

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encode(x)
        return self.quantizer.indices(z.flatten(0, 1)).view(z.shape[:2])

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.quantizer.embedding[codes].transpose(1, 2)).transpose(1, 2)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        z = self.encode(x)
        q, idx, commitment = self.quantizer(z.flatten(0, 1), generator)
        out = self.decoder(q.view(z.shape).transpose(1, 2)).transpose(1, 2)
        return out, idx.view(z.shape[:2]), commitment


# ---- motion GPT ---------------------------------------------------------------------------------


class CausalBlock(nn.Module):
    """Pre-norm causal self-attention block; `cache` (k, v) makes one step cost one token."""

    def __init__(self, d_model: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv, self.proj = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff), nn.GELU(), nn.Linear(ff, d_model), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, cache: tuple | None = None) -> tuple[torch.Tensor, tuple]:
        # functional calls rather than submodule calls: sampling runs this once per code step, where
        # the per-call overhead of modules and einops was a fifth of the time
        b, n, d = x.shape
        h = F.layer_norm(x, (d,), self.norm1.weight, self.norm1.bias, self.norm1.eps)
        q, k, v = F.linear(h, self.qkv.weight, self.qkv.bias).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
            a = F.scaled_dot_product_attention(q, k, v)  # the new tokens come last and see everything before
        else:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                               dropout_p=self.dropout if self.training else 0.0)
        a = F.linear(a.transpose(1, 2).reshape(b, n, d), self.proj.weight, self.proj.bias)
        x = x + F.dropout(a, self.dropout, self.training)
        h = F.layer_norm(x, (d,), self.norm2.weight, self.norm2.bias, self.norm2.eps)
        h = F.linear(F.gelu(F.linear(h, self.ff[0].weight, self.ff[0].bias)), self.ff[2].weight, self.ff[2].bias)
        return x + F.dropout(h, self.dropout, self.training), (k, v)


class MotionGPT(nn.Module):
    def __init__(self, codes: int, music_dim: int, down: int, context: int, d_model: int, layers: int,
                 heads: int, ff: int, dropout: float, num_styles: int, music_channels: int):
        super().__init__()
        self.down, self.context = down, context
        self.up_in, self.down_in = nn.Embedding(codes + 1, d_model), nn.Embedding(codes + 1, d_model)  # +1: start
        self.music_in = nn.Linear(music_dim, music_channels)
        self.music_conv = nn.Sequential(nn.Conv1d(music_channels, music_channels, 9, padding=4), nn.GELU(),
                                        nn.Conv1d(music_channels, music_channels, 9, padding=4), nn.GELU())
        self.music_pool = nn.Linear(down * music_channels, d_model)
        self.position = nn.Parameter(torch.zeros(context, d_model))
        nn.init.normal_(self.position, std=0.02)
        self.style = nn.Embedding(num_styles + 1, d_model)
        nn.init.zeros_(self.style.weight)
        self.blocks = nn.ModuleList(CausalBlock(d_model, heads, ff, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.up_head = nn.Linear(d_model, codes)
        self.up_given = nn.Embedding(codes, d_model)
        self.down_head = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, codes))

    def encode_music(self, music: torch.Tensor) -> torch.Tensor:
        """(B, T, music_dim) normalised frames, T a multiple of `down` -> (B, T/down, d) step features."""
        h = self.music_conv(self.music_in(music).transpose(1, 2)).transpose(1, 2)
        return self.music_pool(rearrange(h, "b (n p) d -> b n (p d)", p=self.down))

    def embed(self, prev_up, prev_down, music_steps, styles, first: int = 0) -> torch.Tensor:
        n = prev_up.shape[1]
        return (self.up_in(prev_up) + self.down_in(prev_down) + music_steps
                + self.position[first:first + n] + self.style(styles)[:, None])

    def forward(self, h: torch.Tensor, caches: list | None = None) -> tuple[torch.Tensor, list]:
        new = []
        for i, block in enumerate(self.blocks):
            h, kv = block(h, None if caches is None else caches[i])
            new.append(kv)
        return self.norm(h), new

    def logits(self, h: torch.Tensor, up: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.up_head(h), self.down_head(h + self.up_given(up))


def _affine(packed: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """x @ W^T + b for (b, W^T) from `GPTStepper`."""
    return torch.addmm(packed[0], x, packed[1])


class GPTStepper:
    """The GPT one token at a time, for sampling: each linear layer's weight transposed once, so a step
    is `addmm` calls (on a CPU, `F.linear` on one token took twice as long), and keys/values written
    into a preallocated context-long cache rather than concatenated. Same numbers as `MotionGPT`."""

    def __init__(self, gpt: MotionGPT, batch: int):
        def packed(linear: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
            return linear.bias, linear.weight.t().contiguous()

        self.gpt, self.length = gpt, 0
        self.blocks = [(b.heads, b.norm1, packed(b.qkv), packed(b.proj), b.norm2, packed(b.ff[0]), packed(b.ff[2]))
                       for b in gpt.blocks]
        self.up_head, self.down_1, self.down_2 = packed(gpt.up_head), packed(gpt.down_head[0]), packed(gpt.down_head[2])
        d = gpt.position.shape[1]
        self.cache = torch.zeros(len(self.blocks), 2, batch, gpt.blocks[0].heads, gpt.context,
                                 d // gpt.blocks[0].heads)

    def fill(self, caches: list) -> None:
        """Start from the (k, v) caches of a `MotionGPT` forward pass over the context so far."""
        self.length = caches[0][0].shape[2]
        for i, (k, v) in enumerate(caches):
            self.cache[i, 0, :, :, :self.length], self.cache[i, 1, :, :, :self.length] = k, v

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """One embedded token (B, d) -> the final-normed hidden state (B, d); the token joins the cache."""
        b, d = x.shape
        n = self.length
        for i, (heads, norm1, qkv, proj, norm2, ff1, ff2) in enumerate(self.blocks):
            h = F.layer_norm(x, (d,), norm1.weight, norm1.bias, norm1.eps)
            q, k, v = _affine(qkv, h).view(b, 3, heads, 1, -1).unbind(1)
            self.cache[i, 0, :, :, n:n + 1], self.cache[i, 1, :, :, n:n + 1] = k, v
            a = F.scaled_dot_product_attention(q, self.cache[i, 0, :, :, :n + 1], self.cache[i, 1, :, :, :n + 1])
            x = x + _affine(proj, a.reshape(b, d))
            h = F.layer_norm(x, (d,), norm2.weight, norm2.bias, norm2.eps)
            x = x + _affine(ff2, F.gelu(_affine(ff1, h)))
        self.length = n + 1
        return self.gpt.norm(x)

    def up_logits(self, h: torch.Tensor) -> torch.Tensor:
        return _affine(self.up_head, h)

    def down_logits(self, h: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        return _affine(self.down_2, F.gelu(_affine(self.down_1, h + self.gpt.up_given(up))))


@register_model("bailando")
class BailandoModel(nn.Module, SavedModel):
    """Bailando's choreographic memory and cross-conditional GPT; see the module docstring."""

    training_features = staticmethod(rot6d_to_local)
    min_motion_std = 1e-3

    def __init__(self, *, fps: float = 25.0, music_features: tuple[str, ...] = ("fact35",),
                 music_dims: tuple[int, ...] = (35,), down: int = 4, codes: int = 512, code_dim: int = 64,
                 channels: int = 128, context: int = 64, d_model: int = 192, layers: int = 3, heads: int = 4,
                 ff: int = 768, music_channels: int = 64, dropout: float = 0.1, p_no_style: float = 0.2, p_start: float = 0.1,
                 p_corrupt: float = 0.0, mirror: bool = False, music_columns: list[int] | None = None,
                 use_style: bool = True, commitment: float = 0.1, vq_window: int = 64, velocity_weight: float = 1.0,
                 root_weight: float = 1.0,
                 acceleration_weight: float = 0.0, upsample: str = "nearest",
                 temperature: float = 1.0, top_k: int | None = None, min_p: float = 0.0, guidance: float = 1.0,
                 max_repeat: int | None = 8,
                 style_prior: float | None = None, actor_critic: bool = False, ac_gamma: float = 0.9,
                 ac_supervised: float = 1.0, ac_off_beat: float = 0.3, ac_still: float = 1.0,
                 smooth_sigma: float = 0.0, height_sigma: float = 0.0, ground_sigma: float | None = None,
                 style_skeleton: bool = False, beat_shift: float | None = None, beat_stretch: float = 1.5,
                 unknown_style: str | None = None,
                 floor_radius: float | None = 4.0,
                 motion_only_uses: tuple[str, ...] = ("vqvae", "style_prior"),
                 time_stretch: float = 0.0, stretch_stages: tuple[str, ...] = ("gpt", "ac"),
                 skeleton_offsets: list | None = None, **unused: Any):
        super().__init__()
        self.keep_config(locals())
        self.fps, self.down, self.codes, self.context = float(fps), down, codes, context
        self.music_features, self.music_dims = tuple(music_features), tuple(music_dims)
        self.p_no_style, self.p_start, self.p_corrupt, self.use_style = p_no_style, p_start, p_corrupt, use_style
        self.mirror, self.smooth_sigma, self.height_sigma = mirror, smooth_sigma, height_sigma
        self.ground_sigma, self.style_skeleton = ground_sigma, style_skeleton
        self.beat_shift, self.beat_stretch, self.unknown_style = beat_shift, beat_stretch, unknown_style
        self.music_columns = None if music_columns is None else list(music_columns)
        self.commitment, self.velocity_weight, self.vq_window = commitment, velocity_weight, vq_window
        self.root_weight = root_weight
        self.acceleration_weight = acceleration_weight
        self.temperature, self.top_k, self.guidance, self.floor_radius = temperature, top_k, guidance, floor_radius
        self.min_p = min_p
        if not set(motion_only_uses) <= {"vqvae", "style_prior"}:
            raise ValueError(f"motion_only_uses takes vqvae and style_prior, not {list(motion_only_uses)}")
        self.motion_only_uses = tuple(motion_only_uses)
        if time_stretch < 0 or not set(stretch_stages) <= {"vqvae", "gpt", "ac"}:
            raise ValueError(f"time_stretch must be ≥ 0 and stretch_stages among vqvae, gpt and ac, not "
                             f"{time_stretch} and {list(stretch_stages)}")
        self.time_stretch, self.stretch_stages = float(time_stretch), tuple(stretch_stages)
        self.extra_data: list[Path] = []  # motion-only datasets counted in the style prior (`with_extra_data`)
        self.max_repeat, self.style_prior = max_repeat, style_prior
        if style_prior is not None:  # how often each style's training dances use each code (`count_style_codes`)
            self.register_buffer("style_codes", torch.zeros(len(STYLES) + 1, 2, codes))
        self.actor_critic, self.ac_gamma, self.ac_supervised = actor_critic, ac_gamma, ac_supervised
        self.ac_off_beat, self.ac_still = ac_off_beat, ac_still
        self.stages = ("vqvae", "gpt", "ac") if actor_critic else ("vqvae", "gpt")
        if actor_critic:
            if "fact35" not in self.music_features:
                raise ValueError("actor_critic needs fact35 among music_features (its beats make the reward)")
            self.beat_column = sum(music_dims[:self.music_features.index("fact35")]) + FACT35_BEAT
            self.critic = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, 1))
            self.register_buffer("still_speed", torch.zeros(()))  # m/s below which a step is standing still
        music_dim = sum(music_dims)
        self.lower = VQVAE(len(LOWER), channels, code_dim, codes, down, upsample)
        self.upper = VQVAE(len(UPPER), channels, code_dim, codes, down, upsample)
        gpt_music_dim = music_dim if music_columns is None else len(music_columns)
        self.gpt = MotionGPT(codes, gpt_music_dim, down, context, d_model, layers, heads, ff, dropout, len(STYLES),
                             music_channels)
        self.register_normalisation(FEATURE_DIM, music_dim)  # filled from training data by `for_data`
        self.stage = "gpt"

    # ---- construction, saving, loading -------------------------------------------------------

    def windows(self) -> tuple[dict, dict]:
        """Training windows in `WindowDataset` terms: context + 1 code steps of music and motion, read long
        enough for the slowest `time_stretch` (`stretched_batch` cuts them back to `window_frames()`)."""
        frames = self.window_frames()
        if self.time_stretch:
            frames = math.ceil((frames - 1) * (1 + self.time_stretch)) + 2
        return ({f: (frames, 0) for f in self.music_features}, {"rot6d": (frames + 1, -1)})

    def window_frames(self) -> int:
        """Music frames of a training window as the model sees it: context + 1 code steps."""
        return (self.context + 1) * self.down

    def stretched_batch(self, batch: dict, generator: torch.Generator | None = None) -> dict:
        """A batch of `windows()` cut to `window_frames()`: while training a stage of `stretch_stages`, each
        window at a random tempo within `time_stretch` (log-uniform), music and motion alike; otherwise,
        and in evaluation, as recorded, from its first frame."""
        if not self.time_stretch:
            return batch
        from ..audio.recipes import RECIPES

        frames, rot6d = self.window_frames(), batch["outputs"]["rot6d"]
        b, available = len(rot6d), len(rot6d[0]) - 1  # music frames read
        factor, start = torch.ones(b), torch.zeros(b)
        if self.training and self.stage in self.stretch_stages:
            span = math.log1p(self.time_stretch)
            factor = torch.exp((2 * torch.rand(b, generator=generator) - 1) * span)
            low = (factor - 1).clamp(min=0)  # the motion window starts factor − 1 frames before `start`
            high = available - 1 - (frames - 1) * factor
            start = low + torch.rand(b, generator=generator) * (high - low)
        inputs = {}
        for feature, x in batch["inputs"].items():
            names = RECIPES[feature].columns if feature in RECIPES else ()
            events = tuple(i for i, name in enumerate(names) if name in ("onset_peak", "beat"))
            inputs[feature] = stretch_windows(x, start.to(x), factor.to(x), frames, events)
        # motion row r is music frame r − 1: from start + 1 − factor, one row more
        motion = stretch_windows(rot6d, (start + 1 - factor).to(rot6d), factor.to(rot6d), frames + 1)
        return {**batch, "inputs": inputs, "outputs": {**batch["outputs"], "rot6d": motion}}

    def set_stage(self, stage: str) -> None:
        """Which parts train: "vqvae" (the two VQ-VAEs) or "gpt" (the GPT, the VQ-VAEs frozen)."""
        if stage not in self.stages:
            raise ValueError(f"stage must be one of {self.stages}, not {stage!r}")
        self.stage = stage
        for part, trains in ((self.lower, stage == "vqvae"), (self.upper, stage == "vqvae"),
                             (self.gpt, stage in ("gpt", "ac"))):
            part.requires_grad_(trains)
        if self.actor_critic:
            self.critic.requires_grad_(stage == "ac")
        if stage == "ac":  # the sampled codes' log-probabilities must be the policy that sampled them
            for block in self.gpt.blocks:
                block.dropout = 0.0

    def with_extra_data(self, datamodule, extra: list) -> Any:
        """`dancegen train`'s data module with the windows of `extra` prepared datasets (motion only, all
        their splits) added to the `vqvae` stage's training set; their dances also count in
        `count_style_codes`. `motion_only_uses` says which of the two they join."""
        from torch.utils.data import ConcatDataset

        from ..training.lightning import motion_only_windows

        self.extra_data = [Path(d.root) for d in extra] if "style_prior" in self.motion_only_uses else []
        setup, (inputs, outputs) = datamodule.setup, self.windows()
        music = {f: (inputs[f][0], d) for f, d in zip(self.music_features, self.music_dims)}  # zeros of these shapes

        def setup_with_extra(stage: str | None = None) -> None:
            setup(stage)
            if self.stage == "vqvae" and "vqvae" in self.motion_only_uses:
                datamodule.train_set = ConcatDataset(
                    [datamodule.train_set, *motion_only_windows(extra, music, outputs, datamodule.train_stride)])

        datamodule.setup = setup_with_extra
        return datamodule

    def after_stage(self, stage: str, data) -> None:
        """Called by `dancegen train` after each stage: once the codebooks are learnt, count the codes."""
        if stage == "vqvae" and self.style_prior is not None:
            self.count_style_codes(data)

    def before_stage(self, stage: str, data) -> None:
        """Called by `dancegen train` before each stage: the actor-critic reward needs `still_speed`."""
        if stage == "ac" and not float(self.still_speed):
            self.measure_still_speed(data)

    @torch.inference_mode()
    def measure_still_speed(self, data) -> None:
        """`still_speed`: 10 % of the median 2-s mean joint speed of the training dances (the benchmark's
        freeze threshold); a code step slower than this costs `ac_still` in the reward."""
        speeds = []
        for name in data.split("train"):
            p = data.motion(name).resample(self.fps).positions()
            speed = np.linalg.norm(np.diff(p, axis=0), axis=-1).mean(-1) * self.fps
            w = int(2 * self.fps)
            speeds += [speed[i:i + w].mean() for i in range(0, len(speed) - w + 1, w)]
        self.still_speed.fill_(0.1 * float(np.median(speeds)))

    @torch.inference_mode()
    def count_style_codes(self, data) -> None:
        """`style_codes`: how often the training split's dances (and every dance of `extra_data`, the
        motion-only datasets `with_extra_data` was given) of each style use each upper and lower code."""
        from ..data import PreparedDataset
        from ..data.prepared import SPLITS

        self.style_codes.zero_()
        extra = [PreparedDataset(root) for root in self.extra_data]
        dances = [(data, n) for n in data.split("train")] + [(d, n) for d in extra for split in SPLITS
                                                              for n in d.split(split)]
        for source, name in dances:
            up, low, _ = self.tokenize(source.motion(name))
            s = style_id(source.sequences[name].get("style"))
            self.style_codes[s, 0] += torch.bincount(up, minlength=self.codes).to(self.style_codes)
            self.style_codes[s, 1] += torch.bincount(low, minlength=self.codes).to(self.style_codes)

    def style_bias(self, style: int, weight: float) -> torch.Tensor | None:
        """Logit bias (2, codes) towards a style's codes: `weight` × the pointwise mutual information of
        code and style in the training dances, log p(code | style) − log p(code) (add-one smoothed).
        None without counts, for no style, or for a style no training dance has."""
        if not weight or not style or self.style_prior is None or self.style_codes[style].sum() == 0:
            return None
        counts = self.style_codes[1:] + 1
        given = (self.style_codes[style] + 1) / (self.style_codes[style] + 1).sum(-1, keepdim=True)
        overall = counts.sum(0) / counts.sum((0, 2))[:, None]
        return weight * (given.log() - overall.log())

    # ---- training ------------------------------------------------------------------------------

    def normalise(self, rot6d: torch.Tensor) -> torch.Tensor:
        return (rot6d_to_local(rot6d) - self.motion_mean) / self.motion_std

    def normalise_music(self, music: torch.Tensor) -> torch.Tensor:
        """(..., sum(music_dims)) -> normalised, keeping `music_columns` only (e.g. fact35's rhythm: 0, 33, 34)."""
        music = (music - self.music_mean) / self.music_std
        return music if self.music_columns is None else music[..., self.music_columns]

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[..., LOWER], x[..., UPPER]

    def join(self, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        out = torch.empty(*lower.shape[:-1], FEATURE_DIM, dtype=lower.dtype, device=lower.device)
        out[..., LOWER], out[..., UPPER] = lower, upper
        return out

    def loss(self, batch: dict, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        batch = self.stretched_batch(batch, generator)
        rot6d = batch["outputs"]["rot6d"]
        if self.mirror and self.training:  # half the windows danced mirrored, left for right
            flip = torch.rand(len(rot6d), generator=generator).to(rot6d.device) < 0.5
            rot6d = torch.where(flip[:, None, None], mirror_rot6d(rot6d, self.skeleton), rot6d)
        x = self.normalise(rot6d)
        lower, upper = self.split(x)
        if self.stage == "vqvae":  # on a random crop of `vq_window` frames: convolutions need no more
            first = int(torch.randint(0, len(x[0]) - self.vq_window + 1, (1,), generator=generator))
            lower, upper = lower[:, first:first + self.vq_window], upper[:, first:first + self.vq_window]
            terms = {}
            # the root's height, steps and turn (the lower body's first 4 columns) weigh `root_weight`
            # each: with equal weights the decoder shortens the steps, and dancers travel less
            lower_weights = torch.ones(len(LOWER), device=x.device)
            lower_weights[:4] = self.root_weight
            for name, part, target, w in (("lower", self.lower, lower, lower_weights), ("upper", self.upper, upper, 1.0)):
                out, _, commitment = part(target, generator)
                terms[f"{name}_reconstruction"] = ((out - target) ** 2 * w).mean()
                terms[f"{name}_velocity"] = ((out.diff(dim=1) - target.diff(dim=1)) ** 2 * w).mean()
                terms[f"{name}_acceleration"] = ((out.diff(2, dim=1) - target.diff(2, dim=1)) ** 2 * w).mean()
                terms[f"{name}_commitment"] = commitment
            weights = {"reconstruction": 1.0, "velocity": self.velocity_weight,
                       "acceleration": self.acceleration_weight, "commitment": self.commitment}
            loss = sum(v * weights[k.split("_")[1]] for k, v in terms.items())
            return loss, {k: v.detach() for k, v in terms.items()}

        with torch.no_grad():
            up, low = self.upper.codes(upper), self.lower.codes(lower)  # (B, context + 1)
        if self.stage == "ac":
            return self._actor_critic_loss(batch, up, low, generator)
        return self._gpt_loss(batch, up, low, generator)

    def _music_and_styles(self, batch: dict, generator: torch.Generator | None, p_no_style: float):
        """The GPT's music steps (B, n, d) for a batch's windows and their style ids, each dropped to 0
        (no style) with probability `p_no_style`."""
        music = torch.cat([batch["inputs"][f] for f in self.music_features], dim=-1)
        steps = self.gpt.encode_music(self.normalise_music(music[:, self.down:]))
        b = len(steps)
        styles = torch.tensor([style_id(s) for s in batch.get("style", [None] * b)], device=steps.device)
        drop = torch.rand(b, generator=generator).to(steps.device) < p_no_style
        styles = torch.where(drop, 0, styles) if self.use_style else torch.zeros_like(styles)
        return music, steps, styles

    def _gpt_loss(self, batch: dict, up: torch.Tensor, low: torch.Tensor, generator: torch.Generator | None,
                  p_no_style: float | None = None) -> tuple[torch.Tensor, dict]:
        """Cross-entropy of the GPT's next upper and lower codes on a batch's real codes (B, context + 1)."""
        b = len(up)
        rand = torch.rand(b, generator=generator).to(up.device)
        start = torch.full_like(up[:, :1], self.codes)
        prev_up = torch.where(rand[:, None] < self.p_start, start, up[:, :1])
        prev_low = torch.where(rand[:, None] < self.p_start, start, low[:, :1])
        prev_up, prev_low = torch.cat([prev_up, up[:, 1:-1]], 1), torch.cat([prev_low, low[:, 1:-1]], 1)
        if self.p_corrupt and self.training:  # random input codes: the GPT learns to recover from its own slips
            for prev in (prev_up, prev_low):
                swap = torch.rand(prev.shape, generator=generator).to(up.device) < self.p_corrupt
                prev[swap] = torch.randint(0, self.codes, (int(swap.sum()),), generator=generator).to(up.device)
        _, steps, styles = self._music_and_styles(batch, generator,
                                                  self.p_no_style if p_no_style is None else p_no_style)
        h, _ = self.gpt(self.gpt.embed(prev_up, prev_low, steps, styles))
        up_logits, low_logits = self.gpt.logits(h, up[:, 1:])
        terms = {"upper_ce": F.cross_entropy(up_logits.flatten(0, 1), up[:, 1:].flatten()),
                 "lower_ce": F.cross_entropy(low_logits.flatten(0, 1), low[:, 1:].flatten())}
        with torch.no_grad():
            terms["upper_accuracy"] = (up_logits.argmax(-1) == up[:, 1:]).float().mean()
            terms["lower_accuracy"] = (low_logits.argmax(-1) == low[:, 1:]).float().mean()
        return terms["upper_ce"] + terms["lower_ce"], {k: v.detach() for k, v in terms.items()}

    # ---- actor-critic fine-tuning ----------------------------------------------------------------

    def _style_biases(self, styles: torch.Tensor) -> torch.Tensor:
        """(B, 2, codes) `style_bias` of each window's style (zeros where there is none)."""
        out = torch.zeros(len(styles), 2, self.codes)
        for i, s in enumerate(styles.tolist()):
            bias = self.style_bias(s, self.style_prior or 0.0)
            if bias is not None:
                out[i] = bias
        return out.to(styles.device)

    @torch.no_grad()
    def _rollout(self, steps: torch.Tensor, styles: torch.Tensor, first: tuple[torch.Tensor, torch.Tensor],
                 bias: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The GPT's own upper and lower codes (B, n) for music steps (B, n, d), after the codes `first` (B,)."""
        gpt, (up, low), caches, ups, lows = self.gpt, first, None, [], []
        for i in range(steps.shape[1]):
            h, caches = gpt(gpt.embed(up[:, None], low[:, None], steps[:, i:i + 1], styles, i), caches)
            up = self._sample(gpt.up_head(h[:, 0]) + bias[:, 0], generator, 1.0, None)
            low = self._sample(gpt.down_head(h[:, 0] + gpt.up_given(up)) + bias[:, 1], generator, 1.0, None)
            ups.append(up)
            lows.append(low)
        return torch.stack(ups, 1), torch.stack(lows, 1)

    @torch.no_grad()
    def beat_reward(self, up: torch.Tensor, low: torch.Tensor, music_beats: torch.Tensor) -> torch.Tensor:
        """Reward (B, n) of each code step of codes (B, n), decoded; music beat one-hots (B, n·down) at the
        model's fps (`step_rewards`)."""
        x = self.join(self.lower.decode(low), self.upper.decode(up)) * self.motion_std + self.motion_mean
        roots, rotations = zip(*(integrate(seq, fps=self.fps) for seq in x))
        positions = forward_kinematics(torch.stack(rotations).to(x), torch.stack(roots).to(x),
                                       torch.as_tensor(self.skeleton.offsets), self.skeleton.parents)[0]
        speed = positions.diff(dim=1).norm(dim=-1).mean(-1) * self.fps  # (B, n·down − 1), m/s
        return torch.from_numpy(step_rewards(speed.cpu().numpy(), music_beats.cpu().numpy() > 0.5, self.fps,
                                             self.down, off_beat=self.ac_off_beat, still=self.ac_still,
                                             still_speed=float(self.still_speed))).to(up.device)

    def _actor_critic_loss(self, batch: dict, up: torch.Tensor, low: torch.Tensor,
                           generator: torch.Generator | None) -> tuple[torch.Tensor, dict]:
        """Policy-gradient loss on the GPT's own dances of the batch's music (see the module docstring).
        In evaluation mode (validation) the loss is `ac_supervised` × cross-entropy − mean reward."""
        supervised, terms = self._gpt_loss(batch, up, low, generator, p_no_style=0.0)
        music, steps, styles = self._music_and_styles(batch, generator, 0.0)
        bias = self._style_biases(styles)
        first = (up[:, 0], low[:, 0])
        sampled_up, sampled_low = self._rollout(steps.detach(), styles, first, bias, generator)
        reward = self.beat_reward(sampled_up, sampled_low, music[:, self.down:, self.beat_column])
        terms["reward"] = reward.sum(1).mean()
        if not self.training:
            return self.ac_supervised * supervised - reward.mean(), terms
        prev_up = torch.cat([first[0][:, None], sampled_up[:, :-1]], 1)
        prev_low = torch.cat([first[1][:, None], sampled_low[:, :-1]], 1)
        h, _ = self.gpt(self.gpt.embed(prev_up, prev_low, steps, styles))
        up_logits, low_logits = self.gpt.logits(h, sampled_up)
        log_prob = ((up_logits + bias[:, None, 0]).log_softmax(-1).gather(-1, sampled_up[..., None])[..., 0]
                    + (low_logits + bias[:, None, 1]).log_softmax(-1).gather(-1, sampled_low[..., None])[..., 0])
        returns = torch.zeros_like(reward)
        running = torch.zeros_like(reward[:, 0])
        for t in range(reward.shape[1] - 1, -1, -1):
            running = reward[:, t] + self.ac_gamma * running
            returns[:, t] = running
        value = self.critic(h.detach())[..., 0]
        advantage = (returns - value).detach()
        advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-6)
        terms["policy"] = -(advantage * log_prob).mean()
        terms["value"] = F.mse_loss(value, returns)
        loss = terms["policy"] + 0.5 * terms["value"] + self.ac_supervised * supervised
        return loss, {k: v.detach() for k, v in terms.items()}

    # ---- generation ----------------------------------------------------------------------------

    @staticmethod
    def _sample(logits: torch.Tensor, generator: torch.Generator, temperature: float,
                top_k: int | None, min_p: float = 0.0) -> torch.Tensor:
        if min_p:  # codes less likely than min_p × the likeliest one's probability are out (before the temperature)
            p = logits.softmax(-1)
            logits = logits.masked_fill(p < min_p * p.amax(-1, keepdim=True), -math.inf)
        logits = logits / max(temperature, 1e-4)
        if top_k:
            kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, -math.inf)
        return torch.multinomial(logits.softmax(-1), 1, generator=generator)[..., 0]

    @staticmethod
    def _no_long_run(logits: torch.Tensor, run: tuple[int, int], max_repeat: int | None) -> torch.Tensor:
        """Forbid the code of `run` (code, steps in a row) once it has run `max_repeat` steps: a long run
        of one code is a dancer standing still (in the training data 99% of runs are at most 4 steps,
        the longest 16)."""
        code, length = run
        return logits.index_fill(-1, torch.tensor([code]), -math.inf) if max_repeat and length >= max_repeat \
            else logits

    @torch.inference_mode()
    def sample_codes(self, music_steps: torch.Tensor, style: int, generator: torch.Generator, *,
                     prefix: tuple[torch.Tensor, torch.Tensor] | None = None, temperature: float = 1.0,
                     top_k: int | None = None, min_p: float = 0.0, guidance: float = 1.0, max_repeat: int | None = None,
                     bias: torch.Tensor | None = None, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Upper and lower codes (n,) for music steps (n, d), after the codes `prefix` when given.

        With `guidance` ≠ 1 and a style, the logits are classifier-free guided towards the style:
        unconditional + guidance × (styled − unconditional), the two run as a batch of 2. `bias` (2, codes)
        is added to the upper and lower logits (`style_bias`). No code runs
        longer than `max_repeat` steps (`_no_long_run`). The context
        slides: when it is full, the key/value cache is rebuilt from its last half."""
        gpt, n = self.gpt, len(music_steps)
        styles = torch.tensor([style, 0] if guidance != 1.0 and style else [style])
        b = len(styles)
        if prefix is None or len(prefix[0]) == 0:
            up_in, low_in = [torch.full((b,), self.codes)], [torch.full((b,), self.codes)]  # the start code
        else:  # the prefix's codes are the first inputs; all but the newest only fill the cache
            up_in = [c.expand(b) for c in prefix[0][-self.context // 2:]]
            low_in = [c.expand(b) for c in prefix[1][-self.context // 2:]]
        history = len(up_in) - 1
        steps = torch.cat([torch.zeros(history, music_steps.shape[1]), music_steps])[None].expand(b, -1, -1)

        def guided(logits: torch.Tensor) -> torch.Tensor:
            return logits[:1] if b == 1 else logits[1:] + guidance * (logits[:1] - logits[1:])

        up_out, low_out, first, stepper = [], [], 0, GPTStepper(gpt, b)
        up_run = low_run = (-1, 0)  # (code, steps in a row) of the newest sampled codes
        for i in tqdm(range(history + n), desc="dancing", unit="step", disable=not progress, leave=False):
            if i - first == self.context:  # full: keep the last half, rebuild the cache from it
                first = i - self.context // 2
                stepper.fill(gpt(gpt.embed(torch.stack(up_in[first:i], 1), torch.stack(low_in[first:i], 1),
                                           steps[:, first:i], styles))[1])
            h = stepper.step(gpt.embed(up_in[i][:, None], low_in[i][:, None], steps[:, i:i + 1], styles,
                                       i - first)[:, 0])
            if i < history:
                continue
            up_logits = guided(stepper.up_logits(h))
            if bias is not None:
                up_logits = up_logits + bias[0]
            up = self._sample(self._no_long_run(up_logits, up_run, max_repeat), generator, temperature, top_k,
                              min_p).expand(b)
            low_logits = guided(stepper.down_logits(h, up))
            if bias is not None:
                low_logits = low_logits + bias[1]
            low = self._sample(self._no_long_run(low_logits, low_run, max_repeat), generator, temperature,
                               top_k, min_p).expand(b)
            up_run = (int(up[0]), up_run[1] + 1 if int(up[0]) == up_run[0] else 1)
            low_run = (int(low[0]), low_run[1] + 1 if int(low[0]) == low_run[0] else 1)
            up_out.append(up[:1])
            low_out.append(low[:1])
            up_in.append(up)
            low_in.append(low)
        return torch.cat(up_out), torch.cat(low_out)

    @torch.inference_mode()
    def tokenize(self, motion: Motion) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A dance as upper and lower codes (n,), plus its rot6d frames at the model's fps; the last
        code step is padded with the last frame when the frames do not fill it."""
        rot6d = torch.from_numpy(motion_to_rot6d(motion.resample(self.fps)))
        x = self.normalise(rot6d)
        x = torch.cat([x, x[-1:].expand((-len(x)) % self.down, -1)])
        lower, upper = self.split(x[None])
        return self.upper.codes(upper)[0], self.lower.codes(lower)[0], rot6d

    @torch.inference_mode()
    def reconstruct(self, motion: Motion) -> Motion:
        """`motion` through the choreographic memory (codes, then decoded), at its own fps and length:
        what the GPT could at best reproduce of it."""
        up, low, rot6d = self.tokenize(motion)
        x = self.decoded(up, low, len(rot6d) - 1)
        root, rotations = integrate(x, start_xz=tuple(rot6d[0, [0, 2]].tolist()),
                                    start_heading=float(heading(sixd_to_matrix(rot6d[0, 3:9]))), fps=self.fps)
        root = torch.cat([rot6d[:1, :3], root])  # the features describe frames 1…; frame 0 is the start
        rotations = torch.cat([sixd_to_matrix(rot6d[:1, 3:].unflatten(-1, (24, 6))), rotations])
        out = self.on_floor(Motion(self.fps, self.body(None, motion), root.numpy(),
                                   matrix_to_axis_angle(rotations).numpy()))
        return out.resample(motion.fps)[:motion.num_frames]

    def known_style(self, style: str | None, music: Music) -> str | None:
        """The style to dance: `style` when the training dances had it; otherwise (an unknown style such
        as Dance with Melody's test-only tango, "auto" or none), with `unknown_style` naming a bundled
        music style classifier, the style it hears in the music if the training dances had that one
        (off in the default; docs/benchmark.md, "A style without training dances"); else `style`,
        which `style_index` turns into none: the GPT follows the music alone."""
        if self.trained_styles is None or style in self.trained_styles or not self.unknown_style:
            return style
        heard = heard_style(music, self.unknown_style)
        return heard if heard in self.trained_styles else style

    def body(self, style: str | None, seed_motion: Motion | None = None):
        """The skeleton a dance is decoded onto: with `style_skeleton`, the seed motion's own (SMPL's
        joints) or else the body `style`'s training dances were danced on (`skeleton_of`), whose legs
        fit the root heights and strides the codes learned from them; otherwise the train split's
        median skeleton (docs/benchmark.md, "The dancer's body per style, and the feet on the floor")."""
        if not self.style_skeleton:
            return self.skeleton
        if seed_motion is not None and seed_motion.skeleton.names == self.skeleton.names:
            return seed_motion.skeleton
        return self.skeleton_of(style)

    def on_beat(self, motion: Motion, music: Music) -> Motion:
        """`motion` re-timed so that its kinematic beats fall on the music's beats (`on_beats`: each one
        within `beat_shift` s, no stretch played more than `beat_stretch` times faster or slower) when
        `beat_shift` is set and the music has fact35's beat column (docs/benchmark.md, "On the beat")."""
        if self.beat_shift is None or "fact35" not in music.features:
            return motion
        beats = np.flatnonzero(np.asarray(music.features["fact35"])[:, FACT35_BEAT] > 0.5) / music.fps
        return on_beats(motion, beats, max_shift=self.beat_shift, max_stretch=self.beat_stretch)

    def on_floor(self, motion: Motion) -> Motion:
        """`motion` with its lowest foot on the floor (`grounded`, smoothed over `ground_sigma` seconds)
        when `ground_sigma` is set: the decoder gives the root height and the legs apart, and on a body
        other than the one the codes learnt them on the feet float (docs/benchmark.md, "The dancer's body
        per style, and the feet on the floor")."""
        return motion if self.ground_sigma is None else grounded(motion, self.ground_sigma)

    def decoded(self, up: torch.Tensor, low: torch.Tensor, frames: int) -> torch.Tensor:
        """Codes (n,) -> the first `frames` un-normalised features (frames, 148), smoothed as configured:
        `smooth_sigma` (frames) on every column, `height_sigma` on the root height alone: the decoder
        leaves a ripple in the root height, above 2 Hz several times the real dances', which every
        joint inherits as vertical motion (docs/benchmark.md, "Root height smoothing")."""
        x = self.decode(up, low)[:frames] * self.motion_std + self.motion_mean
        if self.smooth_sigma:
            x = gaussian_smooth(x, self.smooth_sigma)
        if self.height_sigma:
            x[:, :1] = gaussian_smooth(x[:, :1], self.height_sigma)
        return x

    @torch.inference_mode()
    def decode(self, up: torch.Tensor, low: torch.Tensor, chunk: int = 256, margin: int = 8) -> torch.Tensor:
        """Codes (n,) -> normalised features (n·down, 148), decoded in overlapping chunks (flat memory)."""
        out = []
        for s in range(0, len(up), chunk):
            a, b = max(0, s - margin), min(len(up), s + chunk + margin)
            x = self.join(self.lower.decode(low[None, a:b])[0], self.upper.decode(up[None, a:b])[0])
            out.append(x[(s - a) * self.down:(s - a + min(chunk, len(up) - s)) * self.down])
        return torch.cat(out)

    def generate(self, music: Music, *, seed_motion: Motion | None = None, length: int | None = None,
                 seed: int = 0, style: str | None = None, temperature: float | None = None,
                 top_k: int | None = None, min_p: float | None = None, guidance: float | None = None,
                 style_prior: float | None = None, progress: bool = False, **controls: Any) -> Motion:
        """A dance for `music`. `style`: one of STYLES (by default `music.style`); any other value lets
        the GPT follow the music alone. `temperature`, `top_k` and `min_p` (defaults from the config)
        trade fidelity for variety (`min_p`: no code less likely than that share of the likeliest one's
        probability, before the temperature); `guidance` (> 1) pushes the dance towards the style
        through the GPT's style input, `style_prior` (> 0) through the codes that style's training
        dances use (`style_bias`)."""
        length, out_frames, feats = self.music_input(music, length)
        n = -(-out_frames // self.down)  # code steps
        feats = self.normalise_music(torch.from_numpy(feats[:n * self.down]))
        feats = F.pad(feats, (0, 0, 0, n * self.down - len(feats)))
        chosen = self.known_style(music.style if style is None else style, music)
        was_training = self.training
        self.eval()
        with torch.inference_mode():
            steps = self.gpt.encode_music(feats[None])[0]
            prefix, start = None, ((0.0, 0.0), 0.0)
            if seed_motion is not None:
                rot6d = torch.from_numpy(motion_to_rot6d(seed_motion.resample(self.fps)))
                usable = (len(rot6d) - 1) // self.down * self.down  # whole code steps at the seed's end
                if usable:
                    x = self.normalise(rot6d)[-usable:]
                    lower, upper = self.split(x[None])
                    prefix = (self.upper.codes(upper)[0], self.lower.codes(lower)[0])
                start = continuation_start(rot6d)
            sid = self.style_index(chosen) if self.use_style else 0
            with one_thread():
                up, low = self.sample_codes(steps, sid,
                                            torch.Generator().manual_seed(int(seed)), prefix=prefix,
                                            temperature=self.temperature if temperature is None else temperature,
                                            top_k=self.top_k if top_k is None else top_k,
                                            min_p=self.min_p if min_p is None else min_p,
                                            guidance=self.guidance if guidance is None else guidance,
                                            max_repeat=self.max_repeat, progress=progress,
                                            bias=self.style_bias(sid, (self.style_prior or 0.0)
                                                                 if style_prior is None else style_prior))
            x = self.decoded(up, low, out_frames)
            motion = self.on_floor(features_to_motion(x, self.body(chosen, seed_motion), self.fps, start=start,
                                                      floor_radius=self.floor_radius))
            motion = self.on_beat(motion, music)
        self.train(was_training)
        return self.at_music_rate(motion, music, length)
