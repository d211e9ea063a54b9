"""Dancing to Music (Lee et al., NeurIPS 2019), decomposition to composition, sized for a CPU.

Representation: bailando's heading-free frame features (`rot6d_to_local`, 148 values normalised with
the training split's statistics: root height, the root's step in the dancer's own heading frame, the
yaw rate, the pelvis tilt and the 23 other joints' local rotations), integrated back to a path and
rotations by bailando's `integrate`, so a dance unit means the same anywhere on the floor.

Decomposition. A dance is cut into **dance units** of `unit` frames (32 at 25 fps: 1.28 s, two beats
of a 94-bpm song). The paper cuts units at beats; here they are fixed-length, because Dance with
Melody's tempi (waltz at about 85 bpm in 3/4, cha-cha at about 120) would make beat-long units of
varying length, and fixed-length units batch and chain without time warping. The **unit VAE**
encodes a unit as two latents, as in the paper: an *initial pose* (`pose_latent` values, from the
unit's first frame alone) and a *movement* (`movement_latent` values, from the whole unit), each a
Gaussian with a KL term towards N(0, I); its decoder turns (initial pose, movement) back into the
unit's frames.

Composition. A recurrent network (`rnn: gru` or `lstm`) steps once per unit. Its input is the unit's
music (a small convolution over `music_features`, pooled 4 frames at a time) and the **style**; its
output is a Gaussian over the unit's movement latent, from which the movement is drawn (music calls
for many dances: a single predicted latent would be their average, a dancer barely moving). The style
is what the project's music style extractor (`dancegen.metrics.style`, the bundled Dance with Melody
music classifier, frozen and kept inside this model) makes of the window's music: the mean of its
GRU's hidden states, the layer its prediction is read from. Each unit is decoded from its movement
and the initial pose of the previous unit's last frame (the first unit's initial pose is sampled:
from the prior, or from the training units' initial poses), so the units chain into a dance; what the
pose latent loses of that frame is made up over the unit's first `blend` frames (the difference to
the last frame, faded out linearly).

Losses of the `compose` stage (the VAE frozen; the paper's, simplified):
- `reconstruction`: the units decoded from movements drawn from the composer's Gaussians (and the
  real units' initial poses) against the real frames;
- `alignment`: KL divergence from the VAE's movement posterior of each real unit to the composer's
  Gaussian for it (`align_weight`): the composed latents are pulled to the real units' latents;
- `motion_adversarial`: a small convolutional discriminator of unit sequences judges the composed
  dance against the real one (`adversarial_weight`);
- `style_adversarial`: a projection discriminator judges a dance together with the music's style
  embedding, the real pair against the composed dance with the same embedding (`style_weight`).
A term whose weight is 0 is not computed at all (the ablations). The generator and the discriminators
share one loss and one optimiser step: the discriminators' losses see the composed dance detached, and
the generator's adversarial terms see the discriminators through detached weights (`torch.func`), so
each side's gradient reaches only its own parameters (simultaneous gradient descent). Each side is its
own parameter group (`optimiser_groups`: its own gradient clipping; the critics at `critic_lr_scale` ×
the learning rate). The validation loss is reconstruction + `align_weight` × alignment, the part that
does not drift with the discriminators.

Training has two stages, `vae` (reconstruction, velocity and KL on the units of each window) then
`compose`; `dancegen train configs/d2m.yaml` runs both. With `vae_from: FOLDER` (a saved d2m model) the
compose stage starts from that model's unit VAE: the ablations train only `compose`, on one shared VAE.
Generation steps through the song `window_units` units at a time (each window's own style embedding),
the recurrent state and the last pose carried over, so memory is flat in the song's length.

Written by hand: no maintained library implements this model; the layers are torch's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.func import functional_call

from ..data.representation import motion_to_rot6d
from ..motion import Motion
from .bailando import FEATURE_DIM, continuation_start, features_to_motion, rot6d_to_local
from .base import Music, SavedModel, one_thread, register_model

POOL = 4  # music frames pooled into one composer input step; also the VAE's downsampling


# ---- decomposition: the unit VAE ---------------------------------------------------------------


def _gaussian(stats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 2k) -> mean and log-variance (..., k), the log-variance kept in a sane range."""
    mean, logvar = stats.chunk(2, dim=-1)
    return mean, logvar.clamp(-8.0, 4.0)


def _kl(mean: torch.Tensor, logvar: torch.Tensor, prior_mean: torch.Tensor | float = 0.0,
        prior_logvar: torch.Tensor | float = 0.0) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(prior_mean, exp(prior_logvar))), N(0, I) by default; summed over the
    latent, averaged over the rest."""
    return 0.5 * (prior_logvar - logvar + (torch.as_tensor(logvar).exp() + (mean - prior_mean) ** 2)
                  / torch.as_tensor(prior_logvar).exp() - 1).sum(-1).mean()


def _draw(mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None,
          scale: float = 1.0) -> torch.Tensor:
    """A draw of N(mean, exp(logvar)), its spread times `scale` (reparameterised: gradients reach both)."""
    return mean + scale * (0.5 * logvar).exp() * torch.randn(mean.shape, generator=generator).to(mean)


class UnitVAE(nn.Module):
    """Dance units (N, unit, dim) <-> an initial-pose latent and a movement latent per unit."""

    def __init__(self, dim: int, unit: int, channels: int, pose_latent: int, movement_latent: int):
        super().__init__()
        if unit % POOL:
            raise ValueError(f"unit must be a multiple of {POOL}")
        steps = unit // POOL
        self.steps, self.channels = steps, channels
        self.pose_encoder = nn.Sequential(nn.Linear(dim, channels), nn.GELU(), nn.Linear(channels, 2 * pose_latent))
        self.movement_encoder = nn.Sequential(
            nn.Conv1d(dim, channels, 3, padding=1), nn.GELU(),
            nn.Conv1d(channels, channels, 4, 2, 1), nn.GELU(),
            nn.Conv1d(channels, channels, 4, 2, 1), nn.GELU(),
            nn.Flatten(), nn.Linear(channels * steps, 2 * movement_latent))
        self.latent_in = nn.Linear(pose_latent + movement_latent, channels * steps)
        self.decoder = nn.Sequential(
            nn.GELU(), nn.Upsample(scale_factor=2), nn.Conv1d(channels, channels, 3, padding=1), nn.GELU(),
            nn.Upsample(scale_factor=2), nn.Conv1d(channels, channels, 3, padding=1), nn.GELU(),
            nn.Conv1d(channels, dim, 3, padding=1))

    def encode_pose(self, frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., dim) one frame -> the initial-pose latent's mean and log-variance."""
        return _gaussian(self.pose_encoder(frame))

    def encode_movement(self, units: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, unit, dim) -> the movement latent's mean and log-variance (N, movement_latent)."""
        return _gaussian(self.movement_encoder(units.transpose(1, 2)))

    def decode(self, pose: torch.Tensor, movement: torch.Tensor) -> torch.Tensor:
        """Latents (N, pose_latent), (N, movement_latent) -> units (N, unit, dim)."""
        h = self.latent_in(torch.cat([pose, movement], -1)).view(-1, self.channels, self.steps)
        return self.decoder(h).transpose(1, 2)


# ---- composition: music and style to movement latents -------------------------------------------


class Composer(nn.Module):
    """Music (B, n·unit, music_dim) and a style embedding (B, style_dim) -> a Gaussian over each unit's
    movement latent (mean and log-variance, (B, n, movement_latent) each), one recurrent step per unit;
    the recurrent state is returned."""

    def __init__(self, music_dim: int, unit: int, style_dim: int, movement_latent: int, rnn: str, hidden: int,
                 layers: int, music_channels: int):
        super().__init__()
        if rnn not in ("gru", "lstm"):
            raise ValueError(f"rnn must be gru or lstm, not {rnn!r}")
        self.unit = unit
        self.music_in = nn.Sequential(nn.Conv1d(music_dim, music_channels, 5, padding=2), nn.GELU(),
                                      nn.Conv1d(music_channels, music_channels, POOL, POOL), nn.GELU())
        self.music_unit = nn.Linear(music_channels * unit // POOL, hidden)
        self.style_in = nn.Linear(style_dim, hidden)
        self.rnn = (nn.GRU if rnn == "gru" else nn.LSTM)(2 * hidden, hidden, layers, batch_first=True)
        self.out = nn.Linear(hidden, 2 * movement_latent)

    def forward(self, music: torch.Tensor, style: torch.Tensor, state=None):
        h = self.music_in(music.transpose(1, 2)).transpose(1, 2)  # (B, n·unit / POOL, music_channels)
        steps = self.music_unit(rearrange(h, "b (n p) c -> b n (p c)", p=self.unit // POOL))
        style = self.style_in(style)[:, None].expand(-1, steps.shape[1], -1)
        h, state = self.rnn(torch.cat([steps, style], -1), state)
        mean, logvar = _gaussian(self.out(h))
        return mean, logvar, state


class MotionCritic(nn.Module):
    """Discriminator of unit sequences: normalised frames (B, T, dim) -> realness logits (B, T / 8)."""

    def __init__(self, dim: int, channels: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(dim, channels, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv1d(channels, channels, 4, 2, 1),
            nn.LeakyReLU(0.2), nn.Conv1d(channels, channels, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv1d(channels, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.transpose(1, 2))[:, 0]


class StyleCritic(nn.Module):
    """Projection discriminator (Miyato & Koyama 2018) of a dance with a style embedding: (B, T, dim),
    (B, style_dim) -> logits (B,): a realness score plus how well the dance's features match the style."""

    def __init__(self, dim: int, style_dim: int, channels: int):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv1d(dim, channels, 4, 2, 1), nn.LeakyReLU(0.2),
                                   nn.Conv1d(channels, channels, 4, 2, 1), nn.LeakyReLU(0.2))
        self.score = nn.Linear(channels, 1)
        self.style = nn.Linear(style_dim, channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x.transpose(1, 2)).mean(-1)
        return self.score(h)[:, 0] + (self.style(style) * h).sum(-1)


def _adversarial(critic: nn.Module, real: tuple, fake: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """(critic loss, generator loss), non-saturating. The critic's loss sees `fake` detached; the generator's
    sees the critic through detached weights: each loss's gradient reaches only its own side."""
    real_logits = critic(*real)
    fake_logits = critic(*(x.detach() for x in fake))
    critic_loss = (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                   + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
    frozen = {k: v.detach() for k, v in critic.named_parameters()}
    fooled = functional_call(critic, frozen, fake)
    return critic_loss, F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))


# ---- the model ----------------------------------------------------------------------------------


def _bundled_style_classifier(name: str) -> tuple[dict, dict]:
    """A bundled music style classifier's config (without its training record) and weights."""
    from ..metrics.style import MusicStyleClassifier

    classifier = MusicStyleClassifier.bundled(name)
    config = {k: v for k, v in classifier.config.items() if k != "training"}
    return config, classifier.net.state_dict()


@register_model("d2m")
class D2MModel(nn.Module, SavedModel):
    """Dancing to Music's unit VAE and music-to-movement composer; see the module docstring."""

    training_features = staticmethod(rot6d_to_local)
    min_motion_std = 1e-3

    def __init__(self, *, fps: float = 25.0, music_features: tuple[str, ...] = ("fact35",),
                 music_dims: tuple[int, ...] = (35,), unit: int = 32, window_units: int = 8, channels: int = 128,
                 pose_latent: int = 32, movement_latent: int = 32, rnn: str = "gru", hidden: int = 256,
                 layers: int = 2, music_channels: int = 32, critic_channels: int = 64, blend: int = 8,
                 kl_weight: float = 1e-3, velocity_weight: float = 1.0, align_weight: float = 1.0,
                 adversarial_weight: float = 0.1, style_weight: float = 0.1, critic_lr_scale: float = 0.25,
                 style_classifier: str | dict = "dance_with_melody", initial_pose: str = "data",
                 initial_pose_bank: int = 256, vae_from: str | None = None, smooth_sigma: float = 0.0,
                 floor_radius: float | None = 4.0, skeleton_offsets: list | None = None, **unused: Any):
        super().__init__()
        self.keep_config(locals())
        self.fps, self.unit, self.window_units = float(fps), unit, window_units
        self.music_features, self.music_dims = tuple(music_features), tuple(music_dims)
        self.pose_latent, self.blend = pose_latent, min(blend, unit)
        self.kl_weight, self.velocity_weight, self.align_weight = kl_weight, velocity_weight, align_weight
        self.adversarial_weight, self.style_weight = adversarial_weight, style_weight
        self.critic_lr_scale = critic_lr_scale
        if initial_pose not in ("prior", "data"):
            raise ValueError(f"initial_pose must be prior or data, not {initial_pose!r}")
        self.initial_pose, self.smooth_sigma, self.floor_radius = initial_pose, smooth_sigma, floor_radius
        self.vae_from = vae_from

        # the music style extractor: a saved classifier's config is kept in ours, its weights in ours
        from ..metrics.style import StyleNet

        weights = None
        if isinstance(style_classifier, str):
            style_classifier, weights = _bundled_style_classifier(style_classifier)
            self.config["style_classifier"] = style_classifier
        feature = style_classifier["feature"]
        if feature not in self.music_features or float(style_classifier["fps"]) != self.fps:
            raise ValueError(f"the style classifier reads {feature} at {style_classifier['fps']} fps; this model "
                             f"has {', '.join(self.music_features)} at {self.fps} fps")
        first = sum(music_dims[:self.music_features.index(feature)])
        columns = style_classifier.get("columns") or range(music_dims[self.music_features.index(feature)])
        self.style_columns = [first + c for c in columns]
        self.style_extractor = StyleNet(**style_classifier["net"]).requires_grad_(False).eval()
        if weights is not None:
            self.style_extractor.load_state_dict(weights)
        norm = style_classifier["normalisation"]
        self.register_buffer("style_mean", torch.tensor(norm["mean"], dtype=torch.float32))
        self.register_buffer("style_std", torch.tensor(norm["std"], dtype=torch.float32))
        style_dim = style_classifier["net"]["hidden"]

        self.vae = UnitVAE(FEATURE_DIM, unit, channels, pose_latent, movement_latent)
        self.composer = Composer(sum(music_dims), unit, style_dim, movement_latent, rnn, hidden, layers,
                                 music_channels)
        self.motion_critic = MotionCritic(FEATURE_DIM, critic_channels) if adversarial_weight else None
        self.style_critic = StyleCritic(FEATURE_DIM, style_dim, critic_channels) if style_weight else None
        self.register_buffer("initial_poses", torch.zeros(initial_pose_bank, pose_latent))
        self.register_buffer("initial_poses_known", torch.zeros((), dtype=torch.bool))
        self.register_normalisation(FEATURE_DIM, sum(music_dims))
        self.stages = ("vae", "compose")
        self.stage = "compose"

    # ---- training ------------------------------------------------------------------------------

    def train(self, mode: bool = True):
        super().train(mode)
        self.style_extractor.eval()  # frozen: no dropout, ever
        return self

    def windows(self) -> tuple[dict, dict]:
        """Training windows in `WindowDataset` terms: `window_units` units of music and motion (one motion
        frame more: the features of a frame are its change from the one before)."""
        frames = self.window_units * self.unit
        return ({f: (frames, 0) for f in self.music_features}, {"rot6d": (frames + 1, -1)})

    def optimiser_groups(self) -> list[dict]:
        """The trainer's parameter groups: the dancer (VAE and composer) and the critics, each clipped on its
        own norm (a critic's large gradients do not shrink the composer's step); the critics learn at
        `critic_lr_scale` × the learning rate with the usual GAN betas (0.5, 0.999)."""
        critics = [p for c in (self.motion_critic, self.style_critic) if c is not None for p in c.parameters()]
        own = {id(p) for p in critics}
        return [{"name": "dancer", "params": [p for p in self.parameters() if id(p) not in own]},
                {"name": "critics", "params": critics, "lr_scale": self.critic_lr_scale, "betas": (0.5, 0.999)}]

    def set_stage(self, stage: str) -> None:
        """Which parts train: "vae" (the unit VAE) or "compose" (composer and critics, the VAE frozen)."""
        if stage not in self.stages:
            raise ValueError(f"stage must be one of {self.stages}, not {stage!r}")
        self.stage = stage
        self.vae.requires_grad_(stage == "vae")
        for part in (self.composer, self.motion_critic, self.style_critic):
            if part is not None:
                part.requires_grad_(stage == "compose")

    def before_stage(self, stage: str, data) -> None:
        """Called by `dancegen train` before each stage: the compose stage starts from `vae_from`'s unit VAE
        when given (the ablations share one VAE), and keeps the learnt VAE's initial poses to sample."""
        if stage != "compose":
            return
        if self.vae_from:
            self.load_vae(self.vae_from)
        if not bool(self.initial_poses_known):
            self.collect_initial_poses(data)

    def load_vae(self, folder: str) -> None:
        """The unit VAE and its initial poses from a saved d2m model trained on the same data (the same
        motion normalisation), e.g. configs/d2m.yaml's: `vae_from` in the ablations' configs."""
        from pathlib import Path

        from safetensors.torch import load_file

        from ..errors import UserError
        from .base import WEIGHTS

        path = Path(folder) / WEIGHTS
        mine = {k: v for k, v in self.state_dict().items() if k.startswith(("vae.", "initial_poses"))}
        try:
            saved = load_file(str(path))
        except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
            raise UserError(path, f"cannot read the unit VAE to start from ({e})") from None
        wrong = [k for k, v in mine.items() if k not in saved or saved[k].shape != v.shape]
        if wrong:
            raise UserError(path, f"not a d2m model with this config's unit VAE ({len(wrong)} tensors missing "
                                  f"or of another shape, e.g. {wrong[0]})")
        if not torch.allclose(saved["motion_mean"], self.motion_mean) or \
                not torch.allclose(saved["motion_std"], self.motion_std):
            raise UserError(path, "its unit VAE was trained on other data (another motion normalisation)")
        self.load_state_dict({k: saved[k] for k in mine}, strict=False)

    @torch.inference_mode()
    def collect_initial_poses(self, data, seed: int = 0) -> None:
        """`initial_poses`: the initial-pose latents (means) of `initial_pose_bank` units of the training
        split, drawn evenly over its dances."""
        frames = []
        for name in data.split("train"):
            x = self.normalise(torch.from_numpy(np.array(data.array(name, "rot6d"))))
            frames.append(x[::self.unit])
        frames = torch.cat(frames)
        pick = torch.randperm(len(frames), generator=torch.Generator().manual_seed(seed))[:len(self.initial_poses)]
        pick = pick.repeat(-(-len(self.initial_poses) // len(pick)))[:len(self.initial_poses)]
        self.initial_poses.copy_(self.vae.encode_pose(frames[pick])[0])
        self.initial_poses_known.fill_(True)

    def normalise(self, rot6d: torch.Tensor) -> torch.Tensor:
        return (rot6d_to_local(rot6d) - self.motion_mean) / self.motion_std

    def style_embedding(self, music: torch.Tensor) -> torch.Tensor:
        """(B, T, sum(music_dims)) un-normalised music -> (B, hidden) the style extractor's embedding:
        the mean over time of its GRU's states, from which it predicts the style."""
        net = self.style_extractor
        x = (music[..., self.style_columns] - self.style_mean) / self.style_std
        h = F.gelu(net.conv(x.transpose(1, 2))).transpose(1, 2)
        return net.gru(h)[0].mean(1)

    def loss(self, batch: dict, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        x = self.normalise(batch["outputs"]["rot6d"])  # (B, n·unit, 148)
        units = rearrange(x, "b (n u) d -> (b n) u d", u=self.unit)
        if self.stage == "vae":
            return self._vae_loss(units, generator)
        return self._compose_loss(batch, x, units, generator)

    def _vae_loss(self, units: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, dict]:
        pose_mean, pose_logvar = self.vae.encode_pose(units[:, 0])
        move_mean, move_logvar = self.vae.encode_movement(units)
        out = self.vae.decode(_draw(pose_mean, pose_logvar, generator), _draw(move_mean, move_logvar, generator))
        terms = {"reconstruction": F.mse_loss(out, units),
                 "velocity": F.mse_loss(out.diff(dim=1), units.diff(dim=1)),
                 "kl": _kl(pose_mean, pose_logvar) + _kl(move_mean, move_logvar)}
        loss = terms["reconstruction"] + self.velocity_weight * terms["velocity"] + self.kl_weight * terms["kl"]
        return loss, {k: v.detach() for k, v in terms.items()}

    def _compose_loss(self, batch: dict, x: torch.Tensor, units: torch.Tensor,
                      generator: torch.Generator | None) -> tuple[torch.Tensor, dict]:
        b = len(x)
        music = torch.cat([batch["inputs"][f] for f in self.music_features], dim=-1)
        with torch.no_grad():
            style = self.style_embedding(music)
            pose = self.vae.encode_pose(units[:, 0])[0]
            target_mean, target_logvar = self.vae.encode_movement(units)
        mean, logvar, _ = self.composer((music - self.music_mean) / self.music_std, style)
        mean, logvar = rearrange(mean, "b n m -> (b n) m"), rearrange(logvar, "b n m -> (b n) m")
        fake = rearrange(self.vae.decode(pose, _draw(mean, logvar, generator)), "(b n) u d -> b (n u) d", b=b)
        terms = {"reconstruction": F.mse_loss(fake, x)}
        loss = terms["reconstruction"]
        if self.align_weight:
            terms["alignment"] = _kl(target_mean, target_logvar, mean, logvar)
            loss = loss + self.align_weight * terms["alignment"]
        supervised = loss
        for name, critic, weight, real, made in (
                ("motion", self.motion_critic, self.adversarial_weight, (x,), (fake,)),
                ("style", self.style_critic, self.style_weight, (x, style), (fake, style))):
            if critic is None:
                continue
            critic_loss, fooled = _adversarial(critic, real, made)
            terms[f"{name}_critic"], terms[f"{name}_adversarial"] = critic_loss, fooled
            loss = loss + critic_loss + weight * fooled
        return (loss if self.training else supervised), {k: v.detach() for k, v in terms.items()}

    # ---- generation ----------------------------------------------------------------------------

    def first_pose(self, generator: torch.Generator, initial_pose: str) -> torch.Tensor:
        """The first unit's initial-pose latent (pose_latent,): one of the training units' (`data`, when
        collected) or a draw from the prior N(0, I) (`prior`)."""
        if initial_pose == "data" and bool(self.initial_poses_known):
            return self.initial_poses[int(torch.randint(len(self.initial_poses), (1,), generator=generator))]
        return torch.randn(self.pose_latent, generator=generator)

    @torch.inference_mode()
    def compose(self, music: torch.Tensor, pose: torch.Tensor, generator: torch.Generator, state=None,
                last: torch.Tensor | None = None, temperature: float = 1.0):
        """Normalised frames (B, n·unit, 148) for un-normalised music (B, n·unit, sum(music_dims)), from
        initial-pose latents (B, pose_latent) and, when given, the frames (B, 148) the dance goes on from;
        also the composer's state, to go on from. A batch of songs (the timing benchmark) or one song's
        window. `temperature` scales the spread of the movement latents."""
        mean, logvar, state = self.composer((music - self.music_mean) / self.music_std,
                                            self.style_embedding(music), state)
        fade = torch.clamp(1 - torch.arange(self.unit) / max(self.blend, 1), min=0)[:, None] if self.blend else None
        out = []
        for k in range(mean.shape[1]):  # each unit starts from the pose where the one before ended
            unit = self.vae.decode(pose, _draw(mean[:, k], logvar[:, k], generator, temperature))
            if last is not None and fade is not None:
                unit = unit + (last - unit[:, 0])[:, None] * fade
            out.append(unit)
            last = unit[:, -1]
            pose = self.vae.encode_pose(last)[0]
        return torch.cat(out, 1), state

    def generate(self, music: Music, *, seed_motion: Motion | None = None, length: int | None = None,
                 seed: int = 0, initial_pose: str | None = None, temperature: float = 1.0,
                 **controls: Any) -> Motion:
        """A dance for `music`; the style is what the style extractor hears in it (a `style` control is
        not used). `initial_pose`: "data" or "prior" (default from the config), how the first unit's pose
        is drawn when no `seed_motion` is given (with one, the dance goes on from its last frame).
        `temperature` scales the spread of the composer's movement latents."""
        length, out_frames, feats = self.music_input(music, length)
        n = -(-out_frames // self.unit)
        feats = torch.from_numpy(feats[:n * self.unit])
        feats = torch.cat([feats, feats[-1:].expand(n * self.unit - len(feats), -1)])  # pad: the last frame held
        generator = torch.Generator().manual_seed(int(seed))
        was_training = self.training
        self.eval()
        with torch.inference_mode(), one_thread():
            start, last = ((0.0, 0.0), 0.0), None
            if seed_motion is not None and seed_motion.num_frames >= 2:
                rot6d = torch.from_numpy(motion_to_rot6d(seed_motion.resample(self.fps)))
                last = self.normalise(rot6d[-2:])[-1:]
                pose = self.vae.encode_pose(last[0])[0]
                start = continuation_start(rot6d)
            else:
                pose = self.first_pose(generator, initial_pose or self.initial_pose)
            pose, state, out = pose[None], None, []
            for first in range(0, n, self.window_units):  # one window at a time: flat memory
                window = feats[first * self.unit:(first + self.window_units) * self.unit]
                x, state = self.compose(window[None], pose, generator, state, last, temperature)
                out.append(x[0])
                last = x[:, -1]
                pose = self.vae.encode_pose(last)[0]
            x = torch.cat(out)[:out_frames] * self.motion_std + self.motion_mean
            if self.smooth_sigma:
                from scipy.ndimage import gaussian_filter1d

                x = torch.from_numpy(gaussian_filter1d(x.numpy(), self.smooth_sigma, axis=0, mode="nearest"))
            motion = features_to_motion(x, self.skeleton, self.fps, start=start, floor_radius=self.floor_radius)
        self.train(was_training)
        return self.at_music_rate(motion, music, length)
