"""`dancegen evaluate`: prepare a raw dataset on the fly (cached), run the benchmark, write the report."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from ..audio import default_cache_dir
from ..data import PreparedDataset
from ..data.prepare import prepare
from ..errors import UserError
from .benchmark import BASELINES, PROTOCOLS, run_benchmark
from .report import write_report


# The bundled motion style classifier (dancegen/assets/style/NAME_motion) that judges each dataset kind.
STYLE_CLASSIFIERS = {"dance-with-melody": "dance_with_melody", "motorica": "motorica"}


def parse_dataset(spec: str) -> tuple[str, Path]:
    kind, sep, path = spec.partition(":")
    if not sep or not kind or not path:
        raise UserError(None, f"--dataset takes KIND:PATH (e.g. dance-with-melody:../shared/data/dance_with_melody), got {spec!r}")
    return kind, Path(path)


def prepared_for(kind: str, path: Path, cache_dir: Path, progress: bool) -> PreparedDataset:
    """The dataset prepared into the cache (reused when its sources did not change)."""
    key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    out = cache_dir / "prepared" / f"{kind}-{key}"
    prepare(kind, path, out, cache_dir=cache_dir, progress=progress)
    return PreparedDataset(out)


def row_names(models: list[str]) -> list[str]:
    """The report's row of each `--model`: a folder's name (a registered model's own name), or, where two
    folders share a name (out/a/best and out/b/best), the folder's path as given."""
    names = [Path(m).name if Path(m).is_dir() else m for m in models]
    return [str(m) if Path(m).is_dir() and names.count(n) > 1 else n for m, n in zip(models, names)]


def evaluate(models: list[str], dataset: str, out: str | os.PathLike, *, split: str = "test",
             protocol: str | None = None, seeds: tuple[int, ...] | None = None,
             cache_dir: str | os.PathLike | None = None, progress: bool = True) -> str:
    from ..models import check_model, load_model
    from .style import ASSETS, MotionStyleClassifier

    started = time.time()
    kind, path = parse_dataset(dataset)
    models = [m for m in models if m not in BASELINES]  # the baselines are always rows
    for name in models:
        check_model(name)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    data = prepared_for(kind, path, cache, progress)
    chosen = PROTOCOLS[protocol or ("aist" if kind == "aist" else "default")]
    if seeds is not None:
        from dataclasses import replace

        chosen = replace(chosen, seeds=tuple(seeds))
    factories = {row: (lambda train, name=name: load_model(name, train_motions=train))
                 for row, name in zip(row_names(models), models)}
    bundled = STYLE_CLASSIFIERS.get(kind)  # no classifier for the dataset's styles: style_accuracy is n/a
    classifier = MotionStyleClassifier.bundled(bundled) if bundled and (ASSETS / f"{bundled}_motion").is_dir() else None
    result = run_benchmark(data, factories, split=split, protocol=chosen,
                           style_of=classifier.predict if classifier else None,
                           known_styles=tuple(classifier.styles) if classifier else None, cache_dir=cache,
                           progress=progress)
    header = (f"dancegen evaluate: {kind} `{split}` split, {len(result.songs)} songs, protocol `{chosen.name}` "
              f"(windows {chosen.window_seconds or 'whole'} s at 60 fps, seeds {list(chosen.seeds)}), "
              f"{time.time() - started:.0f} s")
    return header + "\n\n" + write_report(result, out, header)
