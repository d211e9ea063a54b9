"""dancegen: music-driven 3D dance generation — data, features, models, metrics and tools."""

__version__ = "0.1.0"


def generate(song=None, **options):
    """Generate a dance for `song` (the bundled demo song when None); returns the `Motion`.

    Options as for `dancegen generate`: model, seed, style, start, duration, seed_motion.
    """
    from .generation import generate_dance

    return generate_dance(song, **options).motion


def generate_many(songs, out, **options):
    """Dance to several songs (files, or folders of them) into the folder `out` with a pool of worker
    processes; songs whose outputs are already there are skipped, so a rerun resumes. Returns one
    result per song (song, status "done"/"skipped"/"failed", message, written paths).

    Options: jobs, formats, overwrite, report (called with each song's progress line), and those of
    `generate` (model, seed, style, start, duration, seed_motion, temperature).
    """
    from .generation import generate_many

    return generate_many(songs, out, **options)
