"""Pose to video: the real diffusers pipeline end to end on CPU with tiny random models the test builds
and saves (nothing is downloaded), the stitching of overlapping windows, and the missing-weights message."""

from __future__ import annotations

import json
import re
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import synthetic_motion

from dancegen.cli import main
from dancegen.render.pose_video import frame_noise, stitch, window_starts

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def test_window_starts_cover_every_frame_with_overlap():
    assert window_starts(10, 16, 4) == [0]
    assert window_starts(28, 16, 4) == [0, 12]
    assert window_starts(30, 16, 4) == [0, 12, 14]  # the last window ends on the last frame
    for n, window, overlap in ((100, 16, 4), (77, 24, 8), (33, 32, 0)):
        starts = window_starts(n, window, overlap)
        assert starts[0] == 0 and starts[-1] + window == n
        assert all(window - (b - a) >= overlap for a, b in zip(starts, starts[1:]))


def test_stitch_cross_fades_the_shared_frames():
    a = np.zeros((16, 2, 2, 3))  # frames 0-15, black
    b = np.full((16, 2, 2, 3), 200.0)  # frames 12-27, grey
    frames = np.stack(list(stitch([(0, a), (12, b)])))
    assert frames.shape == (28, 2, 2, 3) and frames.dtype == np.uint8
    assert (frames[:12] == 0).all() and (frames[16:] == 200).all()
    np.testing.assert_array_equal(frames[12:16, 0, 0, 0], [40, 80, 120, 160])  # 1/5 … 4/5 of the way


def test_frame_noise_depends_on_the_frame_not_the_window():
    shape = (4, 3, 3)
    first, second = frame_noise(7, range(0, 16), shape), frame_noise(7, range(12, 28), shape)
    np.testing.assert_array_equal(first[:, 12:], second[:, :4])
    assert not np.allclose(first[:, 0], frame_noise(8, range(0, 1), shape)[:, 0])


def _tiny_weights(root):
    """SD1.5-layout base model, ControlNet and motion adapter folders of tiny random models."""
    diffusers = pytest.importorskip("diffusers", reason="the video extra (diffusers) is not installed")
    transformers = pytest.importorskip("transformers", reason="the video extra (transformers) is not installed")
    torch.manual_seed(0)
    blocks = dict(block_out_channels=(16, 32), layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                  cross_attention_dim=16, norm_num_groups=8, attention_head_dim=4, in_channels=4)
    unet = diffusers.UNet2DConditionModel(**blocks, out_channels=4, sample_size=16,
                                          up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    controlnet = diffusers.ControlNetModel(**blocks, conditioning_embedding_out_channels=(8, 16))
    adapter = diffusers.MotionAdapter(block_out_channels=(16, 32), motion_layers_per_block=1, motion_norm_num_groups=8,
                                      motion_num_attention_heads=2, motion_max_seq_length=32)
    vae = diffusers.AutoencoderKL(block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4,
                                  norm_num_groups=8, down_block_types=("DownEncoderBlock2D",) * 2,
                                  up_block_types=("UpDecoderBlock2D",) * 2)
    vocab = ["l", "o", "w", "e", "r", "s", "t", "i", "d", "n", "a", "c", "lo", "l</w>", "w</w>", "r</w>", "t</w>",
             "e</w>", "low</w>", "er</w>", "<unk>", "<|startoftext|>", "<|endoftext|>"]
    (root / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (root / "merges.txt").write_text("#version: 0.2\nl o\nlo w</w>\ne r</w>\n")
    tokenizer = transformers.CLIPTokenizer(str(root / "vocab.json"), str(root / "merges.txt"), model_max_length=16)
    text_encoder = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=16, bos_token_id=vocab.index("<|startoftext|>"), eos_token_id=vocab.index("<|endoftext|>"),
        pad_token_id=vocab.index("<|endoftext|>")))
    scheduler = diffusers.DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False,
                                    steps_offset=1)
    diffusers.StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                      scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                      requires_safety_checker=False).save_pretrained(root / "sd15")
    controlnet.save_pretrained(root / "controlnet")
    adapter.save_pretrained(root / "adapter")
    return root / "sd15", root / "controlnet", root / "adapter"


def _probe(path):
    """(frames, width, height, has audio) of an MP4, by decoding it."""
    info = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    w, h = map(int, re.search(r"Video: .*?(\d{2,5})x(\d{2,5})", info).groups())
    raw = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
                         capture_output=True, check=True).stdout
    return len(raw) // (w * h * 3), w, h, "Audio:" in info


def test_video_end_to_end_with_tiny_models(tmp_path, capsys, one_torch_thread):
    base, controlnet, adapter = _tiny_weights(tmp_path)
    motion = synthetic_motion(2, 105)  # 3.5 s at 30 fps: 28 frames at 8 fps, two windows of 16 sharing 4
    motion.save(tmp_path / "dance.npz")
    sr = 22050
    sf.write(tmp_path / "song.wav", (0.2 * np.sin(np.arange(5 * sr) * 2 * np.pi * 220 / sr)).astype(np.float32), sr)
    out = tmp_path / "video.mp4"
    code = main(["video", str(tmp_path / "dance.npz"), "--prompt", "a dancer", "--base-model", str(base),
                 "--controlnet", str(controlnet), "--motion-adapter", str(adapter), "-o", str(out),
                 "--size", "64x64", "--fps", "8", "--window", "16", "--overlap", "4", "--steps", "2",
                 "--guidance", "2", "--song", str(tmp_path / "song.wav"), "--start", "0.5", "--device", "cpu", "-q"])
    assert code == 0, capsys.readouterr().err
    frames, w, h, audio = _probe(out)
    assert (frames, w, h, audio) == (28, 64, 64, True)
    assert "28 frames" in capsys.readouterr().out
    assert not list(tmp_path.glob(".video.mp4*")), "no temporary file is left"


def test_missing_weights_name_what_is_needed(tmp_path, capsys):
    pytest.importorskip("diffusers", reason="the video extra (diffusers) is not installed")
    synthetic_motion(0, 30).save(tmp_path / "dance.npz")
    (tmp_path / "cn").mkdir()
    (tmp_path / "cn" / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    code = main(["video", str(tmp_path / "dance.npz"), "--prompt", "a dancer", "--base-model", str(tmp_path / "nowhere"),
                 "--controlnet", str(tmp_path / "cn"), "-o", str(tmp_path / "v.mp4")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "--base-model" in err and "no such folder" in err and "Stable Diffusion 1.5" in err
    assert "--controlnet" in err and "not a ControlNetModel" in err and "sd-controlnet-openpose" in err
    assert "--motion-adapter" in err and "not given" in err and "animatediff-motion-adapter" in err
    assert not (tmp_path / "v.mp4").exists()


def _fake_weights(root, max_frames=32):
    """Folders in the layout the command checks, with empty weight files: enough to fail before loading."""
    for part, config in {"unet": "config.json", "vae": "config.json", "text_encoder": "config.json",
                         "tokenizer": "vocab.json", "scheduler": "scheduler_config.json"}.items():
        (root / "sd15" / part).mkdir(parents=True)
        (root / "sd15" / part / config).write_text("{}")
    (root / "sd15" / "model_index.json").write_text("{}")
    (root / "sd15" / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    for name, kind, extra in (("cn", "ControlNetModel", {}), ("adapter", "MotionAdapter", {"motion_max_seq_length": max_frames})):
        (root / name).mkdir()
        (root / name / "config.json").write_text(json.dumps({"_class_name": kind, **extra}))
        (root / name / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    return ["--base-model", str(root / "sd15"), "--controlnet", str(root / "cn"), "--motion-adapter", str(root / "adapter")]


@pytest.mark.parametrize("options, problem", [
    (["--window", "40"], "takes at most 32 frames at once; --window 40"),
    (["--window", "16", "--overlap", "16"], "--overlap from 0 to window - 1"),
    (["--size", "100x64"], "multiples of 8"),
    (["--song", "nowhere.wav"], "nowhere.wav"),
])
def test_bad_options_fail_before_loading_the_weights(tmp_path, capsys, options, problem):
    pytest.importorskip("diffusers", reason="the video extra (diffusers) is not installed")
    synthetic_motion(0, 30).save(tmp_path / "dance.npz")
    code = main(["video", str(tmp_path / "dance.npz"), "--prompt", "a dancer", *_fake_weights(tmp_path), *options,
                 "-o", str(tmp_path / "v.mp4")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and problem in err, err


def test_without_diffusers_says_to_install_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "diffusers", None)  # as if not installed
    synthetic_motion(0, 30).save(tmp_path / "dance.npz")
    code = main(["video", str(tmp_path / "dance.npz"), "--prompt", "a dancer", "-o", str(tmp_path / "v.mp4")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "pip install 'dancegen[video]'" in err
