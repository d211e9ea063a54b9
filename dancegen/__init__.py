"""dancegen: music-driven 3D dance generation — data, features, models, metrics and tools."""

__version__ = "0.1.0"
