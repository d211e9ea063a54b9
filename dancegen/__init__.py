"""dancegen: music-driven 3D dance generation — data, features, models, metrics and tools."""

__version__ = "0.1.0"


def generate(song=None, **options):
    """Generate a dance for `song` (the bundled demo song when None); returns the `Motion`.

    Options as for `dancegen generate`: model, seed, style, start, duration, seed_motion.
    """
    from .generation import generate_dance

    return generate_dance(song, **options).motion
