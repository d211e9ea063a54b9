"""Where the bundled files live (importing this loads nothing heavy)."""

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_SONG = ASSETS / "demo_song.ogg"
DEFAULT_MODEL = ASSETS / "default"
STYLE_CLASSIFIERS = ASSETS / "style"
