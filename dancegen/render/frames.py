"""Drawing a dance's video frames on the CPU, fast: numpy and PIL polygons, straight into yuv420p.

Hand-written because no maintained library draws a 3-D figure this fast on a CPU (matplotlib's 3-D
axes manage about 20 frames/s; this draws several hundred). The scene: a camera at a fixed height
and angle whose target follows the dancer's low-pass filtered ground position; a checkerboard floor
in perspective that fades into haze (so travel shows); a soft shadow; the figure as outlined
tapered capsules drawn far to near, the body's left in blue, its right in orange, nearer parts
brighter, the trunk as one piece and a head disc.

Frames are made in Y'CbCr (BT.601, video range) rather than RGB: averaging Y'CbCr pixels is the
same as averaging RGB ones (the conversion is linear), and the yuv420p frames go to the encoder with
nothing left to convert. Each frame starts as the sky-and-floor background, then:
- the floor: the camera only translates, so the floor point that each pixel sees is the eye's
  ground position plus a fixed offset, and so are its haze and its fade; each frame only picks, per
  pixel, the dark or the light colour by the check's parity (integer arithmetic on the offsets). Like
  a polygon fill, the checks are not anti-aliased: they differ by a few grey levels.
- the shadow: the figure's capsules squashed onto the floor, blurred, darkening what is under them;
- the figure, anti-aliased: drawn at SUPERSAMPLE times the size on a transparent patch whose fourth
  channel is the coverage, shrunk back (premultiplied colour and coverage) and laid over the frame;
  its chroma from the same patch shrunk twice as much.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .figure import SIDE_COLOURS, Figure

SUPERSAMPLE = 2  # the figure is drawn at twice the size and shrunk back: anti-aliased edges
TILE = 0.5  # floor checker size, metres
FLOOR_FADE, FLOOR_RADIUS = 3.5, 7.0  # checks fade out between these distances (m) from the camera's target
FOLLOW_SECONDS = 0.6  # the camera's target is the root's ground position, Gaussian-smoothed over this
CAMERA_DISTANCE, CAMERA_HEIGHT, LOOK_HEIGHT, CAMERA_YAW_DEG, FOV_DEG = 3.8, 1.7, 0.9, 25.0, 40.0
CAPSULE_POINTS = 7  # points on each round end of a limb's outline
WINDOW = 256  # frames whose figure geometry is computed at once (memory stays flat for long dances)

SKY_TOP, SKY_HORIZON = np.array([34, 40, 54.0]), np.array([104, 112, 128.0])
FLOOR_LIGHT, FLOOR_DARK = np.array([156, 156, 162.0]), np.array([120, 121, 130.0])
OUTLINE = np.array([24, 26, 34.0])
HIGHLIGHT, HIGHLIGHT_WIDTH = np.array([255, 214, 0.0]), 3.5  # the outline of highlighted frames (e.g. keyframes)
SHADOW_ALPHA, SHADOW_BLUR = 110, 3.0  # darkness out of 255; blur radius in output pixels

_TO_YCBCR = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]) / 255
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])


def ycbcr(rgb) -> np.ndarray:
    """(..., 3) RGB 0..255 → Y'CbCr (BT.601, video range) as uint8."""
    y = np.asarray(rgb, dtype=np.float64) @ _TO_YCBCR.T + _YCBCR_OFFSET
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


def _ink(rgb) -> tuple[int, int, int]:
    return tuple(int(v) for v in ycbcr(rgb))


@dataclass(frozen=True)
class FollowCamera:
    """A pinhole camera with a fixed orientation whose eye follows a per-frame target."""

    targets: np.ndarray  # (T, 3) look-at points
    offset: np.ndarray  # (3,) eye minus target
    axes: np.ndarray  # (3, 3) rows: the camera's right, up and forward in world coordinates
    focal: float  # pixels
    centre: tuple[float, float]  # principal point, pixels

    @classmethod
    def following(cls, root: np.ndarray, fps: float, size: tuple[int, int]) -> "FollowCamera":
        """Looking at the root's smoothed ground position from behind-right of +Z, slightly above."""
        from scipy.ndimage import gaussian_filter1d

        ground = root[:, [0, 2]].astype(np.float64)
        if len(ground) > 1:  # zero-phase: the camera neither lags nor leads the dancer
            ground = gaussian_filter1d(ground, sigma=FOLLOW_SECONDS * fps, axis=0, mode="nearest")
        targets = np.stack([ground[:, 0], np.full(len(ground), LOOK_HEIGHT), ground[:, 1]], axis=1)
        yaw = np.radians(CAMERA_YAW_DEG)
        offset = np.array([CAMERA_DISTANCE * np.sin(yaw), CAMERA_HEIGHT - LOOK_HEIGHT, CAMERA_DISTANCE * np.cos(yaw)])
        forward = -offset / np.linalg.norm(offset)
        right = np.cross(forward, [0.0, 1.0, 0.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, forward)
        w, h = size
        focal = h / 2 / np.tan(np.radians(FOV_DEG) / 2)
        return cls(targets, offset, np.stack([right, up, forward]), focal, (w / 2, h / 2))

    def to_camera(self, points: np.ndarray, eyes: np.ndarray) -> np.ndarray:
        """(..., 3) world points → camera coordinates (x right, y up, z depth); `eyes` broadcasts."""
        return (points - eyes) @ self.axes.T

    def to_pixels(self, cam: np.ndarray) -> np.ndarray:
        """(..., 3) camera coordinates → (..., 2) pixels (u right, v down)."""
        z = np.maximum(cam[..., 2], 1e-3)
        return np.stack([self.centre[0] + self.focal * cam[..., 0] / z,
                         self.centre[1] - self.focal * cam[..., 1] / z], axis=-1)

    def ground_offsets(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(..., 2) x and z from the eye to where pixel (u, v) sees the floor, and (...) whether it does
        (below the horizon); the same every frame, as the camera only translates."""
        rays = np.stack([(u - self.centre[0]) / self.focal, (self.centre[1] - v) / self.focal,
                         np.ones_like(u)], axis=-1) @ self.axes
        t = (self.offset[1] + LOOK_HEIGHT) / -np.minimum(rays[..., 1], -1e-9)
        return rays[..., [0, 2]] * t[..., None], rays[..., 1] < 0

    def ground_distance(self, v: np.ndarray) -> np.ndarray:
        """Horizontal distance from the eye to where image row `v` (centre column) meets the floor; inf above it."""
        offsets, floor = self.ground_offsets(np.full_like(v, self.centre[0]), v)
        return np.where(floor, np.hypot(offsets[..., 0], offsets[..., 1]), np.inf)


def _floor_colour(base: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """`base` hazed towards the horizon's colour with the distance from the eye (metres)."""
    w = (np.clip((distance - 5.0) / 20.0, 0.0, 1.0) ** 0.7)[..., None]
    return base * (1 - w) + SKY_HORIZON * w


def _background(camera: FollowCamera, size: tuple[int, int]) -> Image.Image:
    """Sky gradient above the horizon, the light floor colour hazing into it below; the same every frame."""
    w, h = size
    v = np.arange(h) + 0.5
    dist = camera.ground_distance(v)
    far = camera.to_camera(camera.offset * [-1e6, 0, -1e6], np.zeros(3))  # towards the floor's vanishing line
    horizon = camera.centre[1] - camera.focal * far[1] / far[2]
    t = np.clip(v / max(horizon, 1.0), 0, 1)[:, None] ** 1.5
    sky = SKY_TOP * (1 - t) + SKY_HORIZON * t
    floor = np.isfinite(dist)
    rows = np.where(floor[:, None], _floor_colour(FLOOR_LIGHT, np.where(floor, dist, 0)), sky)
    return Image.fromarray(np.repeat(ycbcr(rows)[:, None, :], w, axis=1), "YCbCr")


def _capsules(a: np.ndarray, b: np.ndarray, ra: np.ndarray, rb: np.ndarray) -> np.ndarray:
    """Outlines of tapered capsules from 2-D points a to b with end radii ra, rb: (..., 2k, 2)."""
    angle = np.arctan2(b[..., 1] - a[..., 1], b[..., 0] - a[..., 0])[..., None]
    half = np.linspace(-np.pi / 2, np.pi / 2, CAPSULE_POINTS)

    def end(centre, radius, turn):
        return centre[..., None, :] + radius[..., None, None] * np.stack(
            [np.cos(angle + turn + half), np.sin(angle + turn + half)], -1)

    return np.concatenate([end(b, rb, 0.0), end(a, ra, np.pi)], axis=-2)


@dataclass
class _Poses:
    """Screen geometry for a window of frames [start, start + n): the figure and its shadow."""

    start: int
    limbs: np.ndarray  # (n, B, P, 2) capsule outlines, pixels
    outlines: np.ndarray  # (n, B, P, 2) the same, grown by the outline's width
    colours: np.ndarray  # (n, B, 3) Y'CbCr
    head: np.ndarray | None  # (n, 3): u, v, radius
    head_colours: list  # n Y'CbCr tuples
    order: np.ndarray  # (n, I) draw items far to near
    box: np.ndarray  # (n, 2, 2) the figure's bounding box, pixels
    shadow: np.ndarray  # (n, B, P, 2) capsules on the floor
    visible: np.ndarray  # (n,) every joint in front of the camera


SHIFT = 10
FIXED = 1 << SHIFT  # floor offsets in 1/1024 of a check (0.5 mm), so that int16 holds ±32 checks


class _Floor:
    """The checkerboard of one plane of the frame (`step` 1: Y', 2: a chroma plane) within the
    rectangle of rows and columns where the checks show: per pixel, its light colour (the
    background), its dark one (faded into the light with the distance from the camera's target) and
    the fixed offset, in checks, from the eye's ground position to the floor point it sees."""

    def __init__(self, camera: FollowCamera, light: np.ndarray, dark_rgb: np.ndarray, channel: int,
                 rect: tuple[int, int, int, int], step: int):
        x0, y0, x1, y1 = (c // step for c in rect)
        u, v = np.meshgrid((np.arange(x0, x1) + 0.5) * step, (np.arange(y0, y1) + 0.5) * step)
        ground = np.clip(camera.ground_offsets(u, v)[0] / TILE, -29, 29)  # in checks; beyond, no check shows
        self.rows, self.cols = slice(y0, y1), slice(x0, x1)
        self.light = light[self.rows, self.cols].copy()
        self.flip = self.light ^ ycbcr(dark_rgb[y0:y1, x0:x1])[..., channel]  # light ^ dark
        self.offset_x, self.offset_z = np.round(np.moveaxis(ground, -1, 0) * FIXED).astype(np.int16)

    def draw(self, plane: np.ndarray, eye: np.ndarray) -> None:
        """Write the checks seen from `eye` (world position) into `plane`."""
        ex, ez = (int(np.floor((e / TILE % 2) * FIXED)) for e in (eye[0], eye[2]))  # parity repeats every 2 checks
        i = self.offset_x + np.int16(ex)
        i >>= SHIFT
        k = self.offset_z + np.int16(ez)
        k >>= SHIFT
        i ^= k
        i &= 1  # 1 on the dark checks
        dark = i.astype(np.uint8)
        np.negative(dark, out=dark)  # 0 or 255
        dark &= self.flip
        dark ^= self.light
        plane[self.rows, self.cols] = dark


class FrameDrawer:
    """Draws frame i of a dance as yuv420p: `FrameDrawer(positions, figure, fps, size).draw(i)`."""

    def __init__(self, positions: np.ndarray, figure: Figure, fps: float, size: tuple[int, int],
                 highlight: np.ndarray | None = None):
        """`highlight`: (frames,) bool, frames whose figure gets a thick yellow outline (keyframes)."""
        self.positions, self.figure, self.size = positions, figure, size
        self.highlight = np.zeros(len(positions), bool) if highlight is None else np.asarray(highlight, bool)
        self.camera = cam = FollowCamera.following(positions[:, 0], fps, size)
        self.outline_width = 1.2  # pixels
        self.outline_colour, self.highlight_colour = _ink(OUTLINE) + (255,), _ink(HIGHLIGHT) + (255,)
        self.black = ycbcr([0, 0, 0])
        # Draw items, far to near each frame: every bone alone, the trunk's bones as one piece, the head.
        self.items = [[k] for k in np.flatnonzero(~figure.trunk).tolist()]
        if figure.trunk.any():
            self.items.append(np.flatnonzero(figure.trunk).tolist())
        if figure.head is not None:
            self.items.append([])
        self._poses: _Poses | None = None

        background = _background(cam, size)
        y, cb, cr = background.split()
        self.background_yuv = np.concatenate(
            [np.asarray(y).ravel(), np.asarray(cb.reduce(2)).ravel(), np.asarray(cr.reduce(2)).ravel()])
        self.floors = self._floors(np.asarray(background))

    def _floors(self, background: np.ndarray) -> list[_Floor]:
        """The checkerboard of each plane, within the (even) rectangle where the checks show."""
        cam, (w, h) = self.camera, self.size
        u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
        ground, seen = cam.ground_offsets(u, v)
        from_target = np.hypot(*np.moveaxis(ground + cam.offset[[0, 2]], -1, 0))
        fade = np.where(seen, np.clip((from_target - FLOOR_FADE) / (FLOOR_RADIUS - FLOOR_FADE), 0, 1), 1)
        rows, cols = np.flatnonzero((fade < 1).any(axis=1)), np.flatnonzero((fade < 1).any(axis=0))
        if not len(rows):
            return []
        rect = (cols[0] // 2 * 2, rows[0] // 2 * 2, min(w, cols[-1] // 2 * 2 + 2), min(h, rows[-1] // 2 * 2 + 2))
        distance = cam.ground_distance(np.arange(h) + 0.5)[:, None]  # the background's haze, per row
        distance = np.where(np.isfinite(distance), distance, 0)
        dark = _floor_colour(FLOOR_DARK, distance) * (1 - fade[..., None]) + _floor_colour(FLOOR_LIGHT, distance) * fade[..., None]
        floors = [_Floor(cam, background[..., 0], dark, 0, rect, 1)]
        # Chroma: the colours of each 2x2 block's mean, the parity at its centre.
        half = dark.reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
        for c in (1, 2):
            plane = _planes(self.background_yuv, w, h)[c]
            floors.append(_Floor(cam, plane, half, c, rect, 2))
        return floors

    def __len__(self) -> int:
        return len(self.positions)

    def draw(self, frame: int) -> np.ndarray:
        """Frame `frame` as flat yuv420p (Y' plane, then Cb and Cr at half size), uint8."""
        poses = self._window(frame)
        i = frame - poses.start
        out = self.background_yuv.copy()
        planes = _planes(out, *self.size)
        eye = self.camera.targets[frame] + self.camera.offset
        for floor, plane in zip(self.floors, planes):
            floor.draw(plane, eye)
        if poses.visible[i]:
            self._shadow(planes, poses.shadow[i])
            self._figure(planes, poses, i)
        return out

    def rgb(self, frame: int) -> np.ndarray:
        """Frame `frame` as (H, W, 3) RGB, for looking at (chroma upsampled by repetition)."""
        w, h = self.size
        y, cb, cr = (p.astype(np.float64) for p in _planes(self.draw(frame), w, h))
        ycc = np.stack([y, cb.repeat(2, 0).repeat(2, 1), cr.repeat(2, 0).repeat(2, 1)], -1) - _YCBCR_OFFSET
        return np.clip(np.round(ycc @ np.linalg.inv(_TO_YCBCR).T), 0, 255).astype(np.uint8)

    def _window(self, frame: int) -> _Poses:
        p = self._poses
        if p is None or not p.start <= frame < p.start + len(p.visible):
            start = frame // WINDOW * WINDOW
            self._poses = p = self._compute_poses(start, min(start + WINDOW, len(self.positions)))
        return p

    def _compute_poses(self, start: int, stop: int) -> _Poses:
        cam, fig = self.camera, self.figure
        o = np.where(self.highlight[start:stop], HIGHLIGHT_WIDTH, self.outline_width)[:, None]
        positions = self.positions[start:stop]
        eyes = cam.targets[start:stop, None, :] + cam.offset  # (n, 1, 3)
        a, b = fig.bones[:, 0], fig.bones[:, 1]
        joints = cam.to_camera(positions, eyes)
        uv, z = cam.to_pixels(joints), np.maximum(joints[..., 2], 0.05)
        ra, rb = cam.focal * fig.radii / z[:, a], cam.focal * fig.radii / z[:, b]
        limbs = _capsules(uv[:, a], uv[:, b], ra, rb)
        outlines = _capsules(uv[:, a], uv[:, b], ra + o, rb + o)
        depth = (z[:, a] + z[:, b]) / 2  # (n, B)
        near = z[:, :1]  # brightness: nearer than the root is lighter, farther darker

        def shade(colour, d):
            return ycbcr(np.clip(colour * (1.12 - 0.3 * np.clip((d - near) / 0.35, -1, 1))[..., None], 0, 255))

        colours = shade(SIDE_COLOURS[fig.sides], depth)
        lo, hi = outlines.min(axis=(1, 2)), outlines.max(axis=(1, 2))
        item_depth = [depth[:, item].mean(axis=1) for item in self.items if item]
        head, head_colours = None, []
        centre = fig.head_centre(positions)
        if centre is not None:
            hc = cam.to_camera(centre, eyes[:, 0])
            r = cam.focal * fig.head_radius / np.maximum(hc[:, 2], 0.05)
            head = np.concatenate([cam.to_pixels(hc), r[:, None]], axis=1)
            head_colours = [tuple(c) for c in shade(SIDE_COLOURS[0], hc[:, 2:3])[:, 0].tolist()]
            lo, hi = np.minimum(lo, head[:, :2] - (r + o[:, 0])[:, None]), np.maximum(hi, head[:, :2] + (r + o[:, 0])[:, None])
            item_depth.append(hc[:, 2])
        # Shadow: the same capsules squashed straight down onto the floor.
        ground = cam.to_camera(positions * [1, 0, 1], eyes)
        guv, gz = cam.to_pixels(ground), np.maximum(ground[..., 2], 0.05)
        shadow = _capsules(guv[:, a], guv[:, b], cam.focal * fig.radii / gz[:, a], cam.focal * fig.radii / gz[:, b])
        return _Poses(start, limbs, outlines, colours, head, head_colours,
                      np.argsort(-np.stack(item_depth, axis=1), axis=1, kind="stable"),
                      np.stack([np.floor(lo) - 1, np.ceil(hi) + 1], axis=1), shadow,
                      (joints[..., 2] > 0.1).all(axis=1))

    def _shadow(self, planes, polys: np.ndarray) -> None:
        """Darken the floor under the figure by a blurred mask of its capsules squashed onto the floor."""
        lo, hi = np.floor(polys.reshape(-1, 2).min(0)), np.ceil(polys.reshape(-1, 2).max(0))
        pad = int(3 * SHADOW_BLUR) + 2
        lo, hi = lo - pad, hi + pad
        box = self._aligned((*lo, *hi))
        w, h = self.size
        if box is None or np.prod(hi - lo) > w * h:  # the dancer is too near the camera
            return
        x0, y0, x1, y1 = box
        mask = Image.new("L", (x1 - x0, y1 - y0))
        pen = ImageDraw.Draw(mask)
        for poly in (polys - [x0, y0]).reshape(len(polys), -1).tolist():
            pen.polygon(poly, fill=SHADOW_ALPHA)
        mask = mask.filter(ImageFilter.BoxBlur(SHADOW_BLUR))
        _blend(planes, box, mask, self.black)

    def _figure(self, planes, poses: _Poses, i: int) -> None:
        """Draw the figure, anti-aliased: on a transparent patch SUPERSAMPLE times the size of its box,
        shrunk back and laid over the frame."""
        box = self._aligned(poses.box[i].ravel())
        if box is None:
            return
        x0, y0, x1, y1 = box
        s = SUPERSAMPLE
        patch = Image.new("CMYK", ((x1 - x0) * s, (y1 - y0) * s))  # Y', Cb, Cr and coverage, all 0
        highlighted = self.highlight[poses.start + i]
        pen, origin = ImageDraw.Draw(patch), np.array([x0, y0])
        outline = self.highlight_colour if highlighted else self.outline_colour
        limbs, outlines, colours = (poses.limbs[i] - origin) * s, (poses.outlines[i] - origin) * s, poses.colours[i]
        for item in poses.order[i].tolist():
            bones = self.items[item]
            if not bones:  # the head
                u, v, r = (poses.head[i] - [x0, y0, 0]) * s
                o = (HIGHLIGHT_WIDTH if highlighted else self.outline_width) * s
                pen.ellipse((u - r - o, v - r - o, u + r + o, v + r + o), fill=outline)
                pen.ellipse((u - r, v - r, u + r, v + r), fill=poses.head_colours[i])
                continue
            for k in bones:  # outlines first, so that the trunk's pieces merge into one shape
                pen.polygon(outlines[k].ravel().tolist(), fill=outline)
            for k in bones:
                pen.polygon(limbs[k].ravel().tolist(), fill=(*colours[k].tolist(), 255))
        _blend(planes, box, patch)

    def _aligned(self, box) -> tuple[int, int, int, int] | None:
        """`box` grown to even coordinates (chroma rows align) and clipped; None if empty."""
        w, h = self.size
        x0, y0 = max(0, int(np.floor(box[0])) // 2 * 2), max(0, int(np.floor(box[1])) // 2 * 2)
        x1, y1 = min(w, -(-int(np.ceil(box[2])) // 2) * 2), min(h, -(-int(np.ceil(box[3])) // 2) * 2)
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _blend(planes, box: tuple[int, int, int, int], cover: Image.Image, colour: np.ndarray | None = None) -> None:
    """Lay a layer over `box` (even coordinates) of the yuv420p `planes`: out = layer + out * (1 - coverage),
    the chroma over 2x2 pixels. The layer is `colour` (Y'CbCr) through the mask `cover` ("L", the box's
    size), or `cover` itself as premultiplied Y'CbCr and coverage ("CMYK", a whole multiple of the box's size)."""
    x0, y0, x1, y1 = box
    scale = cover.size[0] // (x1 - x0)
    cover = cover.reduce(scale) if scale > 1 else cover
    for step, channels in ((1, (0,)), (2, (1, 2))):
        layer = np.asarray(cover if step == 1 else cover.reduce(2))
        alpha = (layer if colour is not None else layer[..., 3]).astype(np.uint16)
        keep = 255 - alpha
        for c in channels:
            region = planes[c][y0 // step:y1 // step, x0 // step:x1 // step]
            mixed = region * keep  # at most 255 * 255: uint16 holds every sum below
            mixed += alpha * np.uint16(colour[c]) if colour is not None else layer[..., c] * np.uint16(255)
            mixed += 128  # / 255, rounded (exact below 65281)
            mixed += mixed >> 8
            mixed >>= 8
            region[...] = mixed


def _planes(frame: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of a flat yuv420p frame's Y' (h, w), Cb and Cr (h/2, w/2) planes."""
    n, q = w * h, w * h // 4
    return frame[:n].reshape(h, w), frame[n:n + q].reshape(h // 2, w // 2), frame[n + q:].reshape(h // 2, w // 2)
