"""The adversarial music-to-pose model of the generative-art project (issue 8), on pose sequences of
the canonical skeleton rather than on images.

Frames are bailando's heading-free features (148 per frame: `rot6d_to_local`, normalised with training
statistics); the path is integrated back with its floor steering (`integrate`), as transflower does.

Generator: the next pose from the previous `context` poses, a window of music features around it
(`music_window` = [frames, offset of its first frame from the predicted one]) and noise; one frame a
step, autoregressive, so a song of any length takes a working set of one window. The noise is a smooth
Gaussian process, z_t = ρ z_{t-1} + √(1-ρ²) ε_t with ρ = `noise_smoothing`: a seed changes the dance
without making it shake. Before the song starts nothing is known: those context frames are flagged
(training flags them in a share `p_start` of the windows, so a dance can begin from nothing) and
their music is silence.

Discriminator: `scales` 1-D convolutional discriminators (pix2pixHD's multi-scale discriminator, on
time instead of space), the s-th judging the sequence averaged down 2^s times in time, with the music
of the same frames beside the poses; each gives scores along time and its hidden features. It judges
`judge_context` real frames followed by `rollout` frames: the real ones, or the generator's own
free-running rollout from the same real past, so it sees the seam and the motion the generator makes
when it feeds on its own output, as it does when generating.

Losses (pix2pixHD's, plus a penalty):
  - adversarial: least squares (LSGAN): the discriminator takes real to 1 and generated to 0, the
    generator takes generated to 1;
  - feature matching: L1 between the discriminator's hidden features of the rollout and of the real
    frames (`fm_weight`);
  - L1 to the real next poses, teacher forced: each step from the real past (`l1_weight`); it is
    also the validation loss that picks the best model;
  - R1 gradient penalty (Mescheder et al. 2018) on real sequences: γ/2 · E‖∇ D(real)‖² (`r1_gamma`).

Training is one backward pass: `loss` is the discriminator's loss (on detached rollouts) plus the
generator's (through the discriminator with its parameters frozen), so each network gets only its
own loss's gradients. `optimiser_groups` gives `dancegen train` a parameter group per network with
its own Adam settings: two Adam optimisers in one (Adam's state is per parameter), stepped together
once a batch, as pix2pixHD updates both from the same forward pass.

Written by hand: no maintained library implements this model; the layers are torch's.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from tqdm import tqdm

from ..data.representation import motion_to_rot6d
from ..motion import Motion
from .bailando import FEATURE_DIM, continuation_start, features_to_motion, rot6d_to_local
from .base import Music, SavedModel, one_thread, register_model


def smooth_noise(shape: tuple[int, ...], rho: float, generator: torch.Generator | None = None,
                 start: torch.Tensor | None = None) -> torch.Tensor:
    """(..., T, D) standard Gaussian noise correlated along T: z_t = ρ z_{t-1} + √(1-ρ²) ε_t, from `start`
    (..., D) when given (then z_0 follows it), else z_0 ~ N(0, 1)."""
    eps = torch.randn(shape, generator=generator)
    z, scale = [], math.sqrt(1 - rho ** 2)
    previous = start
    for t in range(shape[-2]):
        previous = eps[..., t, :] if previous is None else rho * previous + scale * eps[..., t, :]
        z.append(previous)
    return torch.stack(z, dim=-2)


class Generator(nn.Module):
    """(past poses (..., P, 148), which of them are known (..., P) bool, music (..., L, M), noise (..., Z))
    -> the next pose (..., 148): an MLP over the flattened past, an embedding of each music frame and the noise."""

    def __init__(self, context: int, music_frames: int, music_dim: int, noise_dim: int, hidden: int, layers: int,
                 music_embed: int = 32):
        super().__init__()
        self.music = nn.Linear(music_dim, music_embed)
        width = context * (FEATURE_DIM + 1) + music_frames * music_embed + noise_dim
        blocks = [nn.Linear(width if i == 0 else hidden, hidden) for i in range(layers)]
        self.body = nn.Sequential(*(m for block in blocks for m in (block, nn.LeakyReLU(0.2))))
        self.out = nn.Linear(hidden, FEATURE_DIM)

    def forward(self, past: torch.Tensor, known: torch.Tensor, music: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        flags = known[..., None].to(past)
        x = torch.cat([(past * flags).flatten(-2), flags.flatten(-2), self.music(music).flatten(-2), noise], dim=-1)
        return self.out(self.body(x))


class Discriminator(nn.Module):
    """`scales` 1-D convolutional discriminators over (poses (B, T, 148), music of the same frames (B, T, M)):
    a list per scale of (scores (B, T_s), hidden features [(B, C, T_s')]); scale s sees T / 2^s frames."""

    def __init__(self, music_dim: int, channels: int, scales: int):
        super().__init__()

        def judge() -> nn.ModuleList:
            c = channels
            return nn.ModuleList([
                nn.Sequential(nn.Conv1d(FEATURE_DIM + music_dim, c, 3, padding=1), nn.LeakyReLU(0.2)),
                nn.Sequential(nn.Conv1d(c, 2 * c, 4, stride=2, padding=1), nn.LeakyReLU(0.2)),
                nn.Sequential(nn.Conv1d(2 * c, 2 * c, 3, padding=1), nn.LeakyReLU(0.2)),
                nn.Conv1d(2 * c, 1, 3, padding=1)])

        self.judges = nn.ModuleList(judge() for _ in range(scales))

    def forward(self, poses: torch.Tensor, music: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        x = rearrange(torch.cat([poses, music], dim=-1), "b t c -> b c t")
        out = []
        for s, judge in enumerate(self.judges):
            if s:
                x = F.avg_pool1d(x, 3, stride=2, padding=1, count_include_pad=False)
            features, h = [], x
            for layer in judge[:-1]:
                h = layer(h)
                features.append(h)
            out.append((judge[-1](h)[:, 0], features))
        return out


def r1_penalty(discriminator: Discriminator, poses: torch.Tensor, music: torch.Tensor, gamma: float) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): γ/2 · mean over the batch of ‖∂D(x)/∂x‖² at real poses x (B, T, 148),
    D(x) the sum over scales of each scale's mean score. Non-negative; zero where D is flat around the data."""
    poses = poses.detach().requires_grad_(True)
    value = sum(scores.mean(dim=1) for scores, _ in discriminator(poses, music)).sum()
    grad, = torch.autograd.grad(value, poses, create_graph=True)
    return 0.5 * gamma * grad.pow(2).sum(dim=(1, 2)).mean()


@contextmanager
def frozen(module: nn.Module):
    """`module`'s parameters require no gradient inside: what flows through it trains only what lies before it."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


@register_model("gan")
class GANModel(nn.Module, SavedModel):
    """The adversarial music-to-pose model; see the module docstring. Keywords are its config."""

    training_features = staticmethod(rot6d_to_local)
    min_motion_std = 1e-3

    def __init__(self, *, fps: float = 25.0, music_features: tuple[str, ...] = ("fact35",),
                 music_dims: tuple[int, ...] = (35,), context: int = 10, music_window: tuple[int, int] = (16, -10),
                 noise_dim: int = 16, noise_smoothing: float = 0.9, hidden: int = 512, layers: int = 3,
                 rollout: int = 24, judge_context: int = 8, disc_channels: int = 64, scales: int = 3,
                 adversarial_weight: float = 1.0, fm_weight: float = 5.0, l1_weight: float = 5.0,
                 r1_gamma: float = 1.0, betas: tuple = (0.5, 0.999), disc_lr_scale: float = 1.0,
                 p_start: float = 0.1, motion_noise: float = 0.05,
                 floor_radius: float | None = 4.0, skeleton_offsets: list | None = None):
        super().__init__()
        self.keep_config(locals())
        frames, offset = (int(v) for v in music_window)
        if frames <= 0 or context <= 0 or rollout <= 0 or not 0 <= judge_context <= context or scales <= 0:
            raise ValueError("music_window frames, context, rollout and scales must be positive, "
                             "0 <= judge_context <= context")
        self.fps, self.context, self.rollout, self.judge_context = float(fps), context, rollout, judge_context
        self.music_features, self.music_dims = tuple(music_features), tuple(music_dims)
        self.music_frames, self.music_offset = frames, offset
        self.noise_dim, self.noise_smoothing = noise_dim, noise_smoothing
        self.adversarial_weight, self.fm_weight, self.l1_weight = adversarial_weight, fm_weight, l1_weight
        self.r1_gamma = r1_gamma
        self.betas, self.disc_lr_scale = tuple(betas), disc_lr_scale
        self.p_start, self.motion_noise, self.floor_radius = p_start, motion_noise, floor_radius
        self.generator = Generator(context, frames, sum(music_dims), noise_dim, hidden, layers)
        self.discriminator = Discriminator(sum(music_dims), disc_channels, scales)
        self.register_normalisation(FEATURE_DIM, sum(music_dims))  # filled from training data by `for_data`

    # ---- training ---------------------------------------------------------------------------------

    def _music_span(self) -> tuple[int, int]:
        """(first frame, frames) of the music a training window needs, from the first generated frame: the
        generator's windows over the rollout and the frames the discriminator judges."""
        first = min(self.music_offset, -self.judge_context)
        end = max(self.rollout - 1 + self.music_offset + self.music_frames, self.rollout)
        return first, end - first

    def windows(self) -> tuple[dict, dict]:
        """Training windows in `WindowDataset` terms, offsets from the first generated frame: the music
        span, and rot6d from a frame before the context (for its first step and turn) to the rollout's end."""
        first, frames = self._music_span()
        return ({f: (frames, first) for f in self.music_features},
                {"rot6d": (1 + self.context + self.rollout, -self.context - 1)})

    def optimiser_groups(self) -> list[dict]:
        """For `dancegen train`: the generator's and the discriminator's parameters, each with its own Adam
        settings (`betas`; the discriminator's learning rate is `disc_lr_scale` times the training `lr`)."""
        return [{"name": "generator", "params": list(self.generator.parameters()), "betas": self.betas},
                {"name": "discriminator", "params": list(self.discriminator.parameters()), "betas": self.betas,
                 "lr_scale": self.disc_lr_scale}]

    def normalise(self, rot6d: torch.Tensor) -> torch.Tensor:
        return (rot6d_to_local(rot6d) - self.motion_mean) / self.motion_std

    def normalise_music(self, batch_inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Each music feature of a batch (B, T, D_f), concatenated (B, T, M) and normalised."""
        music = torch.cat([batch_inputs[f] for f in self.music_features], dim=-1)
        return (music - self.music_mean) / self.music_std

    def loss(self, batch: dict, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """Training (train mode): the discriminator's and the generator's losses, summed (see the module
        docstring). Validation (eval mode): the teacher-forced L1, with D's scores as diagnostics."""
        for_discriminator, for_generator, terms = self.losses(batch, generator)
        if not self.training:
            return terms["l1"], terms
        return for_discriminator + for_generator, terms

    def losses(self, batch: dict, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """The discriminator's loss (LSGAN + R1), which reaches only its parameters, the generator's (weighted
        adversarial, feature matching and L1), which reaches only the generator's, and every term detached.
        In eval mode only the L1 and the discriminator's scores (no penalty, no generator terms: zeros)."""
        x = self.normalise(batch["outputs"]["rot6d"])  # (B, P + R, 148): the context, then the real next poses
        b, p, r, k = len(x), self.context, self.rollout, self.judge_context
        first, _ = self._music_span()
        music = self.normalise_music(batch["inputs"])  # (B, music span, M)

        def rand(*shape):
            return torch.rand(*shape, generator=generator).to(x.device)

        # a share p_start of the windows begins in the context: frames before `begin` unknown, their music silent
        begin = torch.where(rand(b) < self.p_start, 1 + (rand(b) * p).long() - p, -(1 << 30))[:, None]
        known = torch.arange(-p, r, device=x.device) >= begin  # (B, P + R)
        music = music.masked_fill((torch.arange(first, first + music.shape[1], device=x.device) < begin)[..., None], 0.0)
        noisy = x + self.motion_noise * torch.randn(x.shape, generator=generator).to(x) if self.training else x
        noise = smooth_noise((b, r, self.noise_dim), self.noise_smoothing, generator).to(x)
        step_music = rearrange(music.unfold(1, self.music_frames, 1), "b t m l -> b t l m")
        step_music = step_music[:, self.music_offset - first:self.music_offset - first + r]  # (B, R, L, M)

        # L1 to the real next poses, each step from the real past
        past = rearrange(noisy.unfold(1, p, 1)[:, :r], "b t d l -> b t l d")
        predicted = self.generator(past, known.unfold(1, p, 1)[:, :r], step_music, noise)
        l1 = (predicted - x[:, p:]).abs().mean()

        # the free-running rollout from the same past
        window, window_known, steps = noisy[:, :p], known[:, :p], []
        for t in range(r):
            steps.append(self.generator(window, window_known, step_music[:, t], noise[:, t]))
            window = torch.cat([window[:, 1:], steps[-1][:, None]], dim=1)
            window_known = torch.cat([window_known[:, 1:], window_known.new_ones(b, 1)], dim=1)
        real = x[:, p - k:]
        fake = torch.cat([x[:, p - k:p], torch.stack(steps, dim=1)], dim=1)
        judged_music = music[:, -k - first:-k - first + k + r]

        on_real = self.discriminator(real, judged_music)
        on_fake = self.discriminator(fake.detach(), judged_music)
        loss_d = sum(((sr - 1) ** 2).mean() + (sf ** 2).mean() for (sr, _), (sf, _) in zip(on_real, on_fake)) / len(on_real)
        terms = {"l1": l1, "loss_d": loss_d,
                 "d_real": sum(s.mean() for s, _ in on_real) / len(on_real),
                 "d_fake": sum(s.mean() for s, _ in on_fake) / len(on_fake)}
        if not self.training:
            return loss_d, x.new_zeros(()), {k: v.detach() for k, v in terms.items()}

        r1 = r1_penalty(self.discriminator, real, judged_music, self.r1_gamma) if self.r1_gamma else x.new_zeros(())
        with frozen(self.discriminator):
            judged = self.discriminator(fake, judged_music)
        adversarial = sum(((s - 1) ** 2).mean() for s, _ in judged) / len(judged)
        pairs = [(f, g.detach()) for (_, fake_f), (_, real_f) in zip(judged, on_real) for f, g in zip(fake_f, real_f)]
        feature_matching = sum((f - g).abs().mean() for f, g in pairs) / len(pairs)
        terms.update(r1=r1, loss_g=adversarial, feature_matching=feature_matching)
        for_generator = self.adversarial_weight * adversarial + self.fm_weight * feature_matching + self.l1_weight * l1
        return loss_d + r1, for_generator, {k: v.detach() for k, v in terms.items()}

    # ---- generation -------------------------------------------------------------------------------

    @torch.inference_mode()
    def sample(self, music: torch.Tensor, frames: int, *, history: torch.Tensor | None = None,
               generator: torch.Generator | None = None, temperature: float = 1.0,
               progress: bool = False) -> torch.Tensor:
        """`frames` normalised poses (frames, 148) for normalised music (T, M) at the model's fps, continuing
        the normalised poses `history` (H, 148) when given, the noise `temperature` times the trained one's
        size. Each step sees the last `context` poses only."""
        p, length, offset = self.context, self.music_frames, self.music_offset
        out = torch.zeros(p + frames, FEATURE_DIM)  # the dance itself: written once, never resized
        known = torch.zeros(p + frames, dtype=torch.bool)
        if history is not None and len(history):
            history = history[-p:]
            out[p - len(history):p], known[p - len(history):p] = history, True
        before, after = max(0, -offset), max(0, frames - 1 + offset + length - len(music))
        music = F.pad(music, (0, 0, before, after))  # silence before and after the song
        noise = None
        for t in tqdm(range(frames), desc="dancing", unit="frame", disable=not progress, leave=False):
            noise = smooth_noise((1, self.noise_dim), self.noise_smoothing, generator, start=noise)[0]
            window = music[t + before + offset:t + before + offset + length]
            out[p + t] = self.generator(out[t:t + p], known[t:t + p], window, temperature * noise)
            known[p + t] = True
        return out[p:]

    def generate(self, music: Music, *, seed_motion: Motion | None = None, length: int | None = None,
                 seed: int = 0, temperature: float | None = None, progress: bool = False, **controls: Any) -> Motion:
        """A dance for `music`, continuing `seed_motion` when given; the same seed gives the same dance.
        `temperature` (default 1) scales the generator's noise: 0 is one dance whatever the seed. The model
        follows the music alone: a `style` control is accepted and has no effect."""
        length, frames, feats = self.music_input(music, length)
        normalised = (torch.from_numpy(feats[:frames]) - self.music_mean) / self.music_std
        history, start = None, ((0.0, 0.0), 0.0)
        if seed_motion is not None and seed_motion.num_frames >= 2:
            rot6d = torch.from_numpy(motion_to_rot6d(seed_motion.resample(self.fps)))
            history = self.normalise(rot6d[-(self.context + 1):])
            start = continuation_start(rot6d)
        was_training = self.training
        self.eval()
        try:
            with one_thread():
                x = self.sample(normalised, frames, history=history,
                                generator=torch.Generator().manual_seed(int(seed)),
                                temperature=1.0 if temperature is None else temperature, progress=progress)
        finally:
            self.train(was_training)
        motion = features_to_motion(x * self.motion_std + self.motion_mean, self.skeleton, self.fps, start=start,
                                    floor_radius=self.floor_radius)
        return self.at_music_rate(motion, music, length)
