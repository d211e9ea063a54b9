"""Drawing a dance's video frames on the CPU, fast: PIL polygons in Y'CbCr.

Hand-written because no maintained library draws a 3-D figure this fast on a CPU (matplotlib's 3-D
axes manage about 20 frames/s; this draws several hundred). The scene: a camera at a fixed height
and angle whose target follows the dancer's low-pass filtered ground position; a checkerboard floor
in perspective that fades into haze (so travel shows); a soft shadow; the figure as outlined
tapered capsules drawn far to near, the body's left in blue, its right in orange, nearer parts
brighter, the trunk as one piece and a head disc.

The figure is anti-aliased: its box is drawn at SUPERSAMPLE times the size and shrunk back. The
floor is not: its checks differ by a few grey levels, so their stair-steps are faint, and smoothing
them (drawing the floor's band at twice the size) costs ~1.5 ms a frame that the 200 frames/s bar
on two cores cannot spare. Frames are drawn in Y'CbCr (BT.601, video range) rather than RGB:
averaging Y'CbCr pixels is the same as averaging RGB ones (the conversion is linear), and the
yuv420p frames that come out go to the encoder with nothing left to convert. The canvas persists
between frames; only what a frame drew on is restored and copied out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .figure import SIDE_COLOURS, Figure

SUPERSAMPLE = 2  # the figure is drawn at twice the size and shrunk back: anti-aliased edges
TILE = 0.5  # floor checker size, metres
FLOOR_FADE, FLOOR_RADIUS = 3.5, 7.0  # checks fade out between these distances (m) from the camera's target
FLOOR_DRAWN = 0.85  # checks faded further than this are not drawn: a few grey levels, a fifth of the polygons
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

    def ground_distance(self, v: np.ndarray) -> np.ndarray:
        """Horizontal distance from the eye to where image row `v` (centre column) meets the floor; inf above it."""
        rays = np.stack([np.zeros_like(v), (self.centre[1] - v) / self.focal, np.ones_like(v)], axis=-1) @ self.axes
        t = (self.offset[1] + LOOK_HEIGHT) / -np.minimum(rays[..., 1], -1e-9)
        return np.where(rays[..., 1] < 0, t * np.hypot(rays[..., 0], rays[..., 2]), np.inf)


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
    """Screen geometry for a window of frames [start, start + n): the figure, its shadow, the floor."""

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
    checks: list  # per frame: (flat polygon lists, Y'CbCr colour tuples, highest row) of the floor's dark checks


class FrameDrawer:
    """Draws frame i of a dance as yuv420p: `FrameDrawer(positions, figure, fps, size).draw(i)`."""

    def __init__(self, positions: np.ndarray, figure: Figure, fps: float, size: tuple[int, int],
                 highlight: np.ndarray | None = None):
        """`highlight`: (frames,) bool, frames whose figure gets a thick yellow outline (keyframes)."""
        self.positions, self.figure, self.size = positions, figure, size
        self.highlight = np.zeros(len(positions), bool) if highlight is None else np.asarray(highlight, bool)
        self.camera = cam = FollowCamera.following(positions[:, 0], fps, size)
        self.outline_width = 1.2  # pixels
        self.outline_colour, self.highlight_colour = _ink(OUTLINE), _ink(HIGHLIGHT)
        self.black = _ink([0, 0, 0])
        # Draw items, far to near each frame: every bone alone, the trunk's bones as one piece, the head.
        self.items = [[k] for k in np.flatnonzero(~figure.trunk).tolist()]
        if figure.trunk.any():
            self.items.append(np.flatnonzero(figure.trunk).tolist())
        if figure.head is not None:
            self.items.append([])
        self._poses: _Poses | None = None

        self.background = _background(cam, size)
        y, cb, cr = self.background.split()
        self.background_yuv = np.concatenate(
            [np.asarray(y).ravel(), np.asarray(cb.reduce(2)).ravel(), np.asarray(cr.reduce(2)).ravel()])
        # The band of rows that the floor's checks reach: restored and copied out whole every frame.
        far = np.hypot(cam.offset[0], cam.offset[2]) + FLOOR_FADE + FLOOR_DRAWN * (FLOOR_RADIUS - FLOOR_FADE) + TILE
        rows = np.flatnonzero(cam.ground_distance(np.arange(size[1]) + 0.5) <= far)
        self.band_top = max(0, (int(rows[0]) - 2) // 2 * 2) if len(rows) else size[1] - 2
        self.floor_band = self.background.crop((0, self.band_top, *size))
        self.canvas = self.background.copy()
        self.pen = ImageDraw.Draw(self.canvas)
        self.dirty: list[tuple[int, int, int, int]] = []  # drawn on above the band last frame

    def __len__(self) -> int:
        return len(self.positions)

    def draw(self, frame: int) -> np.ndarray:
        """Frame `frame` as flat yuv420p (Y' plane, then Cb and Cr at half size), uint8.

        The canvas persists between frames: only what the last frame drew on is restored from the
        background, and only what this frame drew on is copied out; the rest is the background's.
        """
        poses = self._window(frame)
        i = frame - poses.start
        canvas, (w, h) = self.canvas, self.size
        for box in self.dirty:
            canvas.paste(self.background.crop(box), box[:2])
        above = [(0, self._floor(poses.checks[i]), w, self.band_top)]
        if poses.visible[i]:
            for box in (self._shadow(poses.shadow[i]), self._figure(poses, i)):
                if box is not None:
                    above.append((box[0], box[1], box[2], min(box[3], self.band_top)))
        self.dirty = [box for box in map(self._aligned, above) if box is not None]
        out = self.background_yuv.copy()
        for box in [(0, self.band_top, w, h)] + self.dirty:
            self._copy_into(out, box)
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
                      (joints[..., 2] > 0.1).all(axis=1), self._checks(start, stop))

    def _checks(self, start: int, stop: int) -> list:
        """The floor's dark checks around each frame's camera target that show, with their colours."""
        cam = self.camera
        targets = cam.targets[start:stop]
        eyes = targets + cam.offset
        n = int(np.ceil(FLOOR_RADIUS / TILE))
        steps = np.arange(2 * n + 1)
        i0 = np.floor(targets[:, 0] / TILE).astype(int) - n  # (F,) the grid's first column and row
        k0 = np.floor(targets[:, 2] / TILE).astype(int) - n
        xs, zs = (i0[:, None] + steps) * TILE, (k0[:, None] + steps) * TILE  # (F, N+1)
        corners = np.stack(np.broadcast_arrays(xs[:, :, None], 0.0, zs[:, None, :]), axis=-1)  # (F, N+1, N+1, 3)
        c = cam.to_camera(corners, eyes[:, None, None, :])
        uv = cam.to_pixels(c)
        quads = np.stack([uv[:, :-1, :-1], uv[:, 1:, :-1], uv[:, 1:, 1:], uv[:, :-1, 1:]], axis=3)  # (F, N, N, 4, 2)
        z = np.minimum.reduce([c[:, :-1, :-1, 2], c[:, 1:, :-1, 2], c[:, 1:, 1:, 2], c[:, :-1, 1:, 2]])
        centre_x = (i0[:, None] + steps[:-1] + 0.5) * TILE  # (F, N)
        centre_z = (k0[:, None] + steps[:-1] + 0.5) * TILE
        from_target = np.hypot(centre_x[:, :, None] - targets[:, None, None, 0],
                               centre_z[:, None, :] - targets[:, None, None, 2])  # (F, N, N)
        from_eye = np.hypot(centre_x[:, :, None] - eyes[:, None, None, 0], centre_z[:, None, :] - eyes[:, None, None, 2])
        fade = np.clip((from_target - FLOOR_FADE) / (FLOOR_RADIUS - FLOOR_FADE), 0, 1)
        dark = ((i0[:, None, None] + steps[:-1, None] + k0[:, None, None] + steps[None, :-1]) % 2) == 1
        w, h = self.size
        u, v = quads[..., 0], quads[..., 1]
        keep = (dark & (z > 0.2) & (fade < FLOOR_DRAWN) & (u.max(-1) > 0) & (u.min(-1) < w)
                & (v.max(-1) > 0) & (v.min(-1) < h))
        colours = ycbcr(_floor_colour(FLOOR_DARK, from_eye) * (1 - fade[..., None])
                        + _floor_colour(FLOOR_LIGHT, from_eye) * fade[..., None])
        out = []
        for f in range(len(targets)):
            q = quads[f][keep[f]]
            top = int(np.floor(q[..., 1].min())) - 1 if len(q) else h
            out.append((q.reshape(len(q), -1).tolist(), [tuple(x) for x in colours[f][keep[f]].tolist()], top))
        return out

    def _floor(self, checks) -> int:
        """Restore the floor's band and draw the dark checks; return the highest row drawn on."""
        self.canvas.paste(self.floor_band, (0, self.band_top))
        polygon = self.pen.polygon
        for quad, colour in zip(checks[0], checks[1]):
            polygon(quad, fill=colour)
        return checks[2]

    def _shadow(self, polys: np.ndarray) -> tuple[int, int, int, int] | None:
        """Darken the floor under the figure (a blurred mask); return the box darkened, None if off screen."""
        lo, hi = np.floor(polys.reshape(-1, 2).min(0)), np.ceil(polys.reshape(-1, 2).max(0))
        pad = int(3 * SHADOW_BLUR) + 2
        x0, y0, x1, y1 = int(lo[0]) - pad, int(lo[1]) - pad, int(hi[0]) + pad, int(hi[1]) + pad
        w, h = self.size
        if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h or (x1 - x0) * (y1 - y0) > w * h:
            return None
        mask = Image.new("L", (x1 - x0, y1 - y0))
        pen = ImageDraw.Draw(mask)
        for poly in (polys - [x0, y0]).reshape(len(polys), -1).tolist():
            pen.polygon(poly, fill=SHADOW_ALPHA)
        mask = mask.filter(ImageFilter.BoxBlur(SHADOW_BLUR))
        # Pasting a black image through the mask is twice as fast as pasting a colour.
        self.canvas.paste(Image.new("YCbCr", mask.size, self.black), (x0, y0, x1, y1), mask)
        return x0, y0, x1, y1

    def _figure(self, poses: _Poses, i: int) -> tuple[int, int, int, int] | None:
        """Draw the figure, anti-aliased: its box is blown up SUPERSAMPLE times (nearest neighbour,
        so the floor underneath comes back unchanged), drawn on and shrunk back. Returns the box."""
        (x0, y0), (x1, y1) = poses.box[i]
        w, h = self.size
        x0, y0, x1, y1 = max(0, int(x0)), max(0, int(y0)), min(w, int(x1)), min(h, int(y1))
        if x1 <= x0 or y1 <= y0:
            return None
        s = SUPERSAMPLE
        patch = self.canvas.crop((x0, y0, x1, y1)).resize(((x1 - x0) * s, (y1 - y0) * s), Image.NEAREST)
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
                pen.polygon(limbs[k].ravel().tolist(), fill=tuple(colours[k].tolist()))
        self.canvas.paste(patch.reduce(s), (x0, y0))
        return x0, y0, x1, y1

    def _aligned(self, box) -> tuple[int, int, int, int] | None:
        """`box` grown to even coordinates (chroma rows align) and clipped; None if empty."""
        w, h = self.size
        x0, y0 = max(0, int(np.floor(box[0])) // 2 * 2), max(0, int(np.floor(box[1])) // 2 * 2)
        x1, y1 = min(w, -(-int(np.ceil(box[2])) // 2) * 2), min(h, -(-int(np.ceil(box[3])) // 2) * 2)
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None

    def _copy_into(self, out: np.ndarray, box: tuple[int, int, int, int]) -> None:
        """Copy `box` of the canvas into the yuv420p frame `out`, chroma averaged over 2x2 pixels."""
        x0, y0, x1, y1 = box
        y, cb, cr = self.canvas.crop(box).split()
        planes = _planes(out, *self.size)
        planes[0][y0:y1, x0:x1] = np.asarray(y)
        planes[1][y0 // 2:y1 // 2, x0 // 2:x1 // 2] = np.asarray(cb.reduce(2))
        planes[2][y0 // 2:y1 // 2, x0 // 2:x1 // 2] = np.asarray(cr.reduce(2))


def _planes(frame: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of a flat yuv420p frame's Y' (h, w), Cb and Cr (h/2, w/2) planes."""
    n, q = w * h, w * h // 4
    return frame[:n].reshape(h, w), frame[n:n + q].reshape(h // 2, w // 2), frame[n + q:].reshape(h // 2, w // 2)
