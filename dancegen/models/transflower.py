"""Transflower (Valle-Pérez et al., SIGGRAPH Asia 2021) and its two baselines, sized for a small dataset
and a CPU: `transformer` (the FACT-style multimodal transformer), `transflower` (the same encoder
conditioning a normalizing flow) and `moglow` (MoGlow, Henter et al. 2020: a flow conditioned by an LSTM).

All three predict the next `output_frames` (N) frames from a window of past motion and windows of
music, then slide on by N frames: autoregressive generation for a song of any length, the working
set flat in its length. Frames are bailando's heading-free features (148 per frame, normalised with
training statistics; `rot6d_to_local`), and the path is integrated back with its floor steering
(`integrate`).

Modalities: the config's `windows` maps "motion" and each music feature to [frames, offset], the
offset of the window's first frame from the first predicted frame (motion must end before it:
offset + frames <= 0). So {motion: [40, -40], fact35: [50, -40]} sees 1.6 s of past motion and of
music and 0.4 s of music ahead. Frames before the song starts are unknown: the motion window
marks them, their music is silence (zeros once normalised). Training makes a share `p_start` of
the windows start somewhere in the motion window, so that a dance can begin from nothing.

`transformer`: each modality has its own encoder (a linear embedding, learned positions,
`modality_layers` transformer layers); a cross-modal transformer (`layers`) fuses all tokens
after N learned output tokens, and the first N outputs, one per future frame, are read out
linearly. Deterministic; trained by MSE on the normalised frames (plus their velocity).

`transflower`: the same encoder; its N output tokens condition a Glow-style flow over the next
N frames, each step an actnorm (initialised from the first training batch), an invertible 1×1
mixing of the 148 channels (LU-parametrised) and an affine coupling whose network (convolutions
over the N frames) sees the conditioning. Trained by exact negative log-likelihood (reported per
dimension); sampled with `temperature` times the base Gaussian's standard deviation. A little
Gaussian noise (`target_noise`) is added to the flow's targets: 42 of the 148 features never
move in this data and 6-D rotations lie on a 3-D surface, where a density would collapse.
(Transflower's Flow++ couplings, logistic mixtures with attention, are not here: plain affine ones.)

`moglow`: the same flow, its coupling networks conditioned by an LSTM that steps once per N
frames over the flattened past-motion and music windows; its state is carried through the
song while sampling. It trains on `train_chunks` consecutive chunks per window. (MoGlow has an
LSTM in every coupling and steps every frame; one shared LSTM and N-frame steps keep it fast.)

Training adds noise (`motion_noise`) to the past motion, so that a model survives its own errors,
and drops the style label (`p_no_style`) so that "no style" follows the music alone.

Written by hand: no maintained flow library is installed; the transformer and LSTM are torch's.
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
from ..motion import Motion
from .bailando import FEATURE_DIM, continuation_start, features_to_motion, rot6d_to_local
from .base import STYLES, Music, SavedModel, one_thread, register_model, style_id


# ---- the flow -----------------------------------------------------------------------------------
# Every layer maps (B, N, C) frames to (B, N, C) and the log-determinant of its Jacobian (B,), given
# a conditioning (B, N, cond_dim) that only the couplings read; `inverse` undoes it.


class ActNorm(nn.Module):
    """Per-channel shift and scale, set by the first training batch to give it zero mean and unit variance."""

    def __init__(self, channels: int):
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and not self.initialised:
            with torch.no_grad():
                flat = x.flatten(0, -2)
                self.shift.copy_(-flat.mean(0))
                self.log_scale.copy_(-flat.std(0).clamp(min=1e-3).log())
                self.initialised.fill_(True)
        return (x + self.shift) * self.log_scale.exp(), (self.log_scale.sum() * x.shape[1]).expand(len(x))

    def inverse(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return z * (-self.log_scale).exp() - self.shift


class InvertibleMix(nn.Module):
    """Glow's invertible 1×1 convolution over channels, W = P L (U + diag(sign · exp(log_s))): the
    log-determinant is sum(log_s), the inverse two triangular solves."""

    def __init__(self, channels: int):
        super().__init__()
        p, lower, upper = torch.linalg.lu(torch.linalg.qr(torch.randn(channels, channels))[0])
        self.register_buffer("permutation", p)
        self.register_buffer("sign", upper.diagonal().sign())
        self.lower = nn.Parameter(lower.tril(-1))
        self.upper = nn.Parameter(upper.triu(1))
        self.log_s = nn.Parameter(upper.diagonal().abs().log())

    def _factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        eye = torch.eye(len(self.log_s), dtype=self.log_s.dtype, device=self.log_s.device)
        return self.lower.tril(-1) + eye, self.upper.triu(1) + torch.diag(self.sign * self.log_s.exp())

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        lower, upper = self._factors()
        return x @ (self.permutation @ lower @ upper).T, (self.log_s.sum() * x.shape[1]).expand(len(x))

    def inverse(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        lower, upper = self._factors()
        columns = (z @ self.permutation).flatten(0, -2).T  # P⁻¹ z, one column per frame
        y = torch.linalg.solve_triangular(lower, columns, upper=False, unitriangular=True)
        return torch.linalg.solve_triangular(upper, y, upper=True).T.reshape(z.shape)


class FrameConv(nn.Linear):
    """A convolution over the frames of (B, N, C) written as a linear layer on each frame and its
    `kernel` - 1 neighbours: for the few frames of one sampling step it is several times faster on a
    CPU than nn.Conv1d, whose per-call overhead dominates there."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3):
        super().__init__(kernel * in_channels, out_channels)
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x, (0, 0, self.kernel // 2, (self.kernel - 1) // 2))
        return super().forward(torch.cat([padded[:, i:i + x.shape[1]] for i in range(self.kernel)], dim=-1))


class AffineCoupling(nn.Module):
    """The second half of the channels scaled and shifted by a network of the first half and the
    conditioning (convolutions over the frames). The log-scale is soft-clamped to ±`clamp`; the last
    layer starts at zero, so the coupling starts as the identity."""

    def __init__(self, channels: int, cond_dim: int, hidden: int, clamp: float = 2.0):
        super().__init__()
        self.half, self.clamp = channels // 2, clamp
        self.net = nn.Sequential(FrameConv(self.half + cond_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                                 nn.GELU(), FrameConv(hidden, 2 * (channels - self.half)))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _shift_log_scale(self, first: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift, raw = self.net(torch.cat([first, cond], dim=-1)).chunk(2, dim=-1)
        return shift, self.clamp * torch.tanh(raw / self.clamp)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first, second = x[..., :self.half], x[..., self.half:]
        shift, log_scale = self._shift_log_scale(first, cond)
        return torch.cat([first, second * log_scale.exp() + shift], dim=-1), log_scale.sum(dim=(1, 2))

    def inverse(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        first, second = z[..., :self.half], z[..., self.half:]
        shift, log_scale = self._shift_log_scale(first, cond)
        return torch.cat([first, (second - shift) * (-log_scale).exp()], dim=-1)


class Flow(nn.Module):
    """`steps` Glow steps (actnorm, invertible mixing, affine coupling) over (B, N, C) frames."""

    def __init__(self, channels: int, cond_dim: int, hidden: int, steps: int, clamp: float = 2.0):
        super().__init__()
        self.channels = channels
        self.layers = nn.ModuleList(layer for _ in range(steps) for layer in (
            ActNorm(channels), InvertibleMix(channels), AffineCoupling(channels, cond_dim, hidden, clamp)))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames -> base-space z and log|det ∂z/∂x| (B,)."""
        logdet = torch.zeros(len(x), dtype=x.dtype, device=x.device)
        for layer in self.layers:
            x, ld = layer(x, cond)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            z = layer.inverse(z, cond)
        return z

    def nll_per_dim(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Exact negative log-likelihood of each sample (B,) under a standard Gaussian base, in nats per value."""
        z, logdet = self(x, cond)
        log_p = -0.5 * (z ** 2 + math.log(2 * math.pi)).sum(dim=(1, 2)) + logdet
        return -log_p / x[0].numel()

    def sample(self, cond: torch.Tensor, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """Frames (..., N, C) for a conditioning (..., N, cond_dim): base noise of std `temperature`, inverted."""
        z = torch.randn(*cond.shape[:-1], self.channels, generator=generator).to(cond) * temperature
        return self.inverse(z.flatten(0, -3), cond.flatten(0, -3)).view(z.shape)


# ---- conditioners -------------------------------------------------------------------------------


def _transformer(d_model: int, heads: int, ff: int, dropout: float, layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout, activation="gelu", batch_first=True,
                                       norm_first=True)
    return nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)


class MultimodalEncoder(nn.Module):
    """Windows of each modality {name: (B, L, D)} -> N output tokens (B, N, d): an encoder per modality,
    then a cross-modal transformer over N learned output tokens followed by every modality's tokens.
    The "motion" modality's unknown frames (B, L) bool are a learned token instead."""

    def __init__(self, dims: dict[str, int], lengths: dict[str, int], outputs: int, d_model: int,
                 modality_layers: int, layers: int, heads: int, ff: int, dropout: float, num_styles: int):
        super().__init__()
        self.embed = nn.ModuleDict({m: nn.Linear(d, d_model) for m, d in dims.items()})
        self.positions = nn.ParameterDict({m: nn.Parameter(torch.randn(n, d_model) * 0.02) for m, n in lengths.items()})
        self.modality = nn.ModuleDict({m: _transformer(d_model, heads, ff, dropout, modality_layers)
                                       for m in dims}) if modality_layers else None
        self.output_tokens = nn.Parameter(torch.randn(outputs, d_model) * 0.02)
        self.unknown = nn.Parameter(torch.zeros(d_model))
        self.style = nn.Embedding(num_styles + 1, d_model)
        nn.init.zeros_(self.style.weight)
        self.fusion = _transformer(d_model, heads, ff, dropout, layers)

    def forward(self, inputs: dict[str, torch.Tensor], unknown: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        tokens = [self.output_tokens.expand(len(styles), -1, -1)]
        for m, embed in self.embed.items():
            h = embed(inputs[m])
            if m == "motion":
                h = torch.where(unknown[..., None], self.unknown, h)
            h = h + self.positions[m]
            tokens.append(self.modality[m](h) if self.modality is not None else h)
        h = torch.cat(tokens, dim=1) + self.style(styles)[:, None]
        return self.fusion(h)[:, :len(self.output_tokens)]


class LSTMConditioner(nn.Module):
    """MoGlow's conditioner: one LSTM step per chunk over the chunk's flattened windows (unknown motion
    frames zero and flagged) -> a conditioning vector per output frame (B, S, N, cond_dim), and its state."""

    def __init__(self, dims: dict[str, int], lengths: dict[str, int], outputs: int, hidden: int, layers: int,
                 cond_dim: int, dropout: float, num_styles: int):
        super().__init__()
        self.outputs, self.modalities = outputs, tuple(lengths)
        width = sum(n * (dims[m] + (m == "motion")) for m, n in lengths.items())
        self.embed = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout))
        self.style = nn.Embedding(num_styles + 1, hidden)
        nn.init.zeros_(self.style.weight)
        self.lstm = nn.LSTM(hidden, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.out = nn.Linear(hidden, outputs * cond_dim)

    def forward(self, windows: dict[str, torch.Tensor], styles: torch.Tensor, state: tuple | None = None):
        unknown = windows["unknown"][..., None]
        parts = [torch.cat([windows["motion"].masked_fill(unknown, 0.0), unknown.to(windows["motion"])], -1)]
        parts += [windows[m] for m in self.modalities if m != "motion"]
        h = self.embed(torch.cat([p.flatten(2) for p in parts], dim=-1)) + self.style(styles)[:, None]
        h, state = self.lstm(h, state)
        return self.out(h).unflatten(-1, (self.outputs, -1)), state


# ---- the shared model: windows, training windows, autoregressive sampling ------------------------


class _NextFrames(nn.Module, SavedModel):
    """What the three families share. A subclass builds its networks and implements `step`: the next
    N frames (B, S, N, 148) for S chunks of windows, and a state carried from chunk to chunk."""

    training_features = staticmethod(rot6d_to_local)
    min_motion_std = 1e-3
    chunks = 1  # consecutive N-frame chunks per training window
    temperature = 1.0

    def __init__(self, *, fps: float = 25.0, music_features: tuple[str, ...] = ("fact35",),
                 music_dims: tuple[int, ...] = (35,), windows: dict[str, list[int]] | None = None,
                 output_frames: int = 10, use_style: bool = True, p_no_style: float = 0.2, p_start: float = 0.1,
                 motion_noise: float = 0.05, floor_radius: float | None = 4.0, skeleton_offsets: list | None = None,
                 **family: Any):
        super().__init__()
        windows = windows or {"motion": [40, -40], **{f: [50, -40] for f in music_features}}
        self.keep_config({**locals(), **family})
        self.config["windows"] = {m: [int(n), int(o)] for m, (n, o) in windows.items()}
        self.spans = {m: tuple(w) for m, w in self.config["windows"].items()}  # modality -> (frames, offset)
        if set(self.spans) != {"motion", *music_features} or any(n <= 0 for n, _ in self.spans.values()):
            raise ValueError(f"windows needs motion and {', '.join(music_features)}, each [frames > 0, offset]")
        if sum(self.spans["motion"]) > 0:
            raise ValueError("the motion window must end before the predicted frames (offset + frames <= 0)")
        self.fps, self.output_frames = float(fps), output_frames
        self.music_features, self.music_dims = tuple(music_features), tuple(music_dims)
        self.dims = {"motion": FEATURE_DIM, **dict(zip(self.music_features, self.music_dims))}
        self.use_style, self.p_no_style, self.p_start = use_style, p_no_style, p_start
        self.motion_noise, self.floor_radius = motion_noise, floor_radius
        self.register_normalisation(FEATURE_DIM, sum(music_dims))  # filled from training data by `for_data`

    def windows(self) -> tuple[dict, dict]:
        """Training windows in `WindowDataset` terms, offsets from the first chunk's first predicted frame:
        music as the config says, stretched over `chunks` chunks, and rot6d from a frame before the
        motion window (for the first frame's step and turn) to the last predicted frame."""
        stretch = (self.chunks - 1) * self.output_frames
        motion_start = self.spans["motion"][1]
        return ({f: (self.spans[f][0] + stretch, self.spans[f][1]) for f in self.music_features},
                {"rot6d": (self.chunks * self.output_frames - motion_start + 1, motion_start - 1)})

    def normalise(self, rot6d: torch.Tensor) -> torch.Tensor:
        return (rot6d_to_local(rot6d) - self.motion_mean) / self.motion_std

    def normalise_music(self, music: torch.Tensor, feature: str) -> torch.Tensor:
        first = sum(self.music_dims[:self.music_features.index(feature)])
        columns = slice(first, first + self.dims[feature])
        return (music - self.music_mean[columns]) / self.music_std[columns]

    def training_windows(self, batch: dict, generator: torch.Generator | None = None):
        """A batch of `windows()` -> the S chunks' windows {modality: (B, S, L, D), "unknown": (B, S, L_motion)},
        their targets (B, S, N, 148), the frame before each chunk (B, S, 148) and style ids (B,)."""
        x = self.normalise(batch["outputs"]["rot6d"])  # frames from the motion window's first to the last predicted
        b, s, n = len(x), self.chunks, self.output_frames
        length, offset = self.spans["motion"]

        def rand(*shape):
            return torch.rand(*shape, generator=generator).to(x.device)

        def chunked(frames: torch.Tensor, length: int) -> torch.Tensor:  # (B, T, D) -> (B, S, length, D)
            return rearrange(frames.unfold(1, length, n)[:, :s], "b s d l -> b s l d")

        noisy = x + self.motion_noise * torch.randn(x.shape, generator=generator).to(x) if self.training else x
        starts = torch.arange(s, device=x.device)[:, None] * n  # each chunk's first predicted frame
        # in a share p_start of the windows the song begins somewhere in the first motion window
        begin = torch.where(rand(b) < self.p_start, offset + 1 + (rand(b) * -offset).long(), -(1 << 30))[:, None, None]
        windows = {"motion": chunked(noisy, length),
                   "unknown": starts + offset + torch.arange(length, device=x.device) < begin}
        for f in self.music_features:
            length_f, offset_f = self.spans[f]
            silent = starts + offset_f + torch.arange(length_f, device=x.device) < begin
            music = chunked(self.normalise_music(batch["inputs"][f], f), length_f)
            windows[f] = music.masked_fill(silent[..., None], 0.0)
        targets = x[:, -s * n:].unflatten(1, (s, n))
        before = x[:, starts[:, 0] - 1 - offset]
        styles = torch.tensor([style_id(v) for v in batch.get("style", [None] * b)], device=x.device)
        styles = torch.where(rand(b) < self.p_no_style, 0, styles) if self.use_style else torch.zeros_like(styles)
        return windows, targets, before, styles

    def step(self, windows: dict, styles: torch.Tensor, state: Any, generator: torch.Generator | None,
             temperature: float) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    @torch.inference_mode()
    def sample(self, music: dict[str, torch.Tensor], steps: int, *, history: torch.Tensor | None = None,
               style: int = 0, generator: torch.Generator | None = None, temperature: float = 1.0,
               progress: bool = False) -> torch.Tensor:
        """`steps`·N normalised frames (steps·N, 148) for normalised music {feature: (T, D)}, continuing the
        normalised frames `history` (H, 148) when given. Each step sees the last motion window only."""
        n, (length, offset) = self.output_frames, self.spans["motion"]
        past = -offset  # frames kept before the step's first predicted frame
        out = torch.zeros(past + steps * n, FEATURE_DIM)  # the dance itself: written once, never resized
        known = torch.zeros(past + steps * n, dtype=torch.bool)
        if history is not None and len(history):
            history = history[-past:]
            out[past - len(history):past], known[past - len(history):past] = history, True
        padded = {}  # music with silence before and after the song
        for f in self.music_features:
            length_f, offset_f = self.spans[f]
            before, after = max(0, -offset_f), max(0, (steps - 1) * n + offset_f + length_f - len(music[f]))
            padded[f] = (F.pad(music[f], (0, 0, before, after)), before + offset_f)
        styles, state = torch.tensor([style if self.use_style else 0]), None
        for i in tqdm(range(steps), desc="dancing", unit="step", disable=not progress, leave=False):
            t = i * n  # the step's first predicted frame; out[t + past]
            windows = {"motion": out[None, None, t:t + length], "unknown": ~known[None, None, t:t + length]}
            for f, (frames, shift) in padded.items():
                windows[f] = frames[None, None, t + shift:t + shift + self.spans[f][0]]
            frames, state = self.step(windows, styles, state, generator, temperature)
            out[past + t:past + t + n], known[past + t:past + t + n] = frames[0, 0], True
        return out[past:]

    def generate(self, music: Music, *, seed_motion: Motion | None = None, length: int | None = None,
                 seed: int = 0, style: str | None = None, temperature: float | None = None,
                 progress: bool = False, **controls: Any) -> Motion:
        """A dance for `music`, continuing `seed_motion` when given. `style`: one of STYLES (by default
        `music.style`); any other value lets the model follow the music alone. `temperature` (flows only;
        default from the config) scales the sampling noise: lower is calmer and less varied."""
        length, out_frames, feats = self.music_input(music, length)
        columns = np.cumsum((0,) + self.music_dims)
        normalised = {f: self.normalise_music(torch.from_numpy(feats[:out_frames, a:b]), f)
                      for f, a, b in zip(self.music_features, columns, columns[1:])}
        history, start = None, ((0.0, 0.0), 0.0)
        if seed_motion is not None:
            rot6d = torch.from_numpy(motion_to_rot6d(seed_motion.resample(self.fps)))
            history = self.normalise(rot6d[-(1 - self.spans["motion"][1]):])
            start = continuation_start(rot6d)
        chosen = music.style if style is None else style
        was_training = self.training
        self.eval()
        try:
            with one_thread():
                x = self.sample(normalised, -(-out_frames // self.output_frames), history=history,
                                style=self.style_index(chosen), generator=torch.Generator().manual_seed(int(seed)),
                                temperature=self.temperature if temperature is None else temperature,
                                progress=progress)
        finally:
            self.train(was_training)
        x = x[:out_frames] * self.motion_std + self.motion_mean
        motion = features_to_motion(x, self.skeleton, self.fps, start=start, floor_radius=self.floor_radius)
        return self.at_music_rate(motion, music, length)


def _own(scope: dict) -> dict:
    """A constructor's own keyword arguments, from its `locals()`."""
    return {k: v for k, v in scope.items() if k not in ("self", "config", "__class__")}


@register_model("transformer")
class TransformerModel(_NextFrames):
    """FACT-style deterministic multimodal transformer; see the module docstring. Keywords are its config."""

    def __init__(self, *, d_model: int = 128, heads: int = 4, ff: int = 512, modality_layers: int = 1,
                 layers: int = 2, dropout: float = 0.1, velocity_weight: float = 1.0, **config: Any):
        super().__init__(**_own(locals()), **config)
        self.velocity_weight = velocity_weight
        self.encoder = MultimodalEncoder(self.dims, {m: n for m, (n, _) in self.spans.items()}, self.output_frames,
                                         d_model, modality_layers, layers, heads, ff, dropout, len(STYLES))
        self.head = nn.Linear(d_model, FEATURE_DIM)

    def encode(self, windows: dict, styles: torch.Tensor) -> torch.Tensor:
        """Windows of S chunks -> output tokens (B, S, N, d)."""
        b, s = windows["unknown"].shape[:2]
        h = self.encoder({m: windows[m].flatten(0, 1) for m in self.spans}, windows["unknown"].flatten(0, 1),
                         styles.repeat_interleave(s))
        return h.unflatten(0, (b, s))

    def step(self, windows, styles, state, generator, temperature):
        return self.head(self.encode(windows, styles)), state

    def loss(self, batch: dict, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        windows, targets, before, styles = self.training_windows(batch, generator)
        pred = self.head(self.encode(windows, styles))
        step, true_step = (torch.cat([before[:, :, None], y], dim=2).diff(dim=2) for y in (pred, targets))
        terms = {"mse": F.mse_loss(pred, targets), "velocity": F.mse_loss(step, true_step)}
        return terms["mse"] + self.velocity_weight * terms["velocity"], {k: v.detach() for k, v in terms.items()}


@register_model("transflower")
class TransflowerModel(TransformerModel):
    """The multimodal transformer conditioning a normalizing flow; see the module docstring."""

    def __init__(self, *, flow_steps: int = 8, flow_hidden: int = 256, scale_clamp: float = 2.0,
                 target_noise: float = 0.03, temperature: float = 1.0, **config: Any):
        super().__init__(**_own(locals()), **config)
        self.target_noise, self.temperature = target_noise, temperature
        # in place of the transformer's linear head
        self.head = Flow(FEATURE_DIM, self.config["d_model"], flow_hidden, flow_steps, scale_clamp)

    def step(self, windows, styles, state, generator, temperature):
        return self.head.sample(self.encode(windows, styles), generator, temperature), state

    def loss(self, batch: dict, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        windows, targets, _, styles = self.training_windows(batch, generator)
        return _flow_loss(self.head, self.encode(windows, styles), targets, self.target_noise, generator)


def _flow_loss(flow: Flow, cond: torch.Tensor, targets: torch.Tensor, noise: float,
               generator: torch.Generator | None) -> tuple[torch.Tensor, dict]:
    """The flow's mean NLL per value of targets (B, S, N, 148) plus Gaussian `noise`, given cond (B, S, N, d)."""
    noisy = targets + noise * torch.randn(targets.shape, generator=generator).to(targets)
    nll = flow.nll_per_dim(noisy.flatten(0, 1), cond.flatten(0, 1)).mean()
    return nll, {"nll_per_dim": nll.detach()}


@register_model("moglow")
class MoGlowModel(_NextFrames):
    """MoGlow: the flow with an LSTM conditioner whose state runs through the song; see the module docstring."""

    def __init__(self, *, windows: dict[str, list[int]] | None = None, output_frames: int = 5, hidden: int = 256,
                 lstm_layers: int = 2, cond_dim: int = 64, dropout: float = 0.1, train_chunks: int = 8,
                 flow_steps: int = 8, flow_hidden: int = 256, scale_clamp: float = 2.0, target_noise: float = 0.03,
                 temperature: float = 1.0, **config: Any):
        windows = windows or {"motion": [10, -10], **{f: [20, -10] for f in config.get("music_features", ["fact35"])}}
        super().__init__(**_own(locals()), **config)
        self.chunks, self.target_noise, self.temperature = train_chunks, target_noise, temperature
        self.conditioner = LSTMConditioner(self.dims, {m: n for m, (n, _) in self.spans.items()}, self.output_frames,
                                           hidden, lstm_layers, cond_dim, dropout, len(STYLES))
        self.head = Flow(FEATURE_DIM, cond_dim, flow_hidden, flow_steps, scale_clamp)

    def step(self, windows, styles, state, generator, temperature):
        cond, state = self.conditioner(windows, styles, state)
        return self.head.sample(cond, generator, temperature), state

    def loss(self, batch: dict, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        windows, targets, _, styles = self.training_windows(batch, generator)
        cond, _ = self.conditioner(windows, styles)
        return _flow_loss(self.head, cond, targets, self.target_noise, generator)
