"""Rendering a Motion: an MP4 with its music, a self-contained HTML page that plays it in 3D."""

from .html import write_html
from .video import render_video

__all__ = ["render_video", "write_html"]
