"""A trained model's benchmark rows under other sampling settings, chosen on a split (by default
the validation split, so that the test split is not what picks them).

Each SETTING is a JSON object of `generate` controls (e.g. {"style_prior": 0.5}, {"top_k": 20},
{"min_p": 0.05}, {"temperature": 0.9}) or of config values read at sampling time (CONFIG_VALUES:
smooth_sigma, ground_sigma, beat_shift, unknown_style, ...); {} is the model as saved. Besides the
benchmark's table it prints FID_k and Div_k over the songs whose style some training song has (Dance
with Melody's test tango has none). `--as-unknown` asks for a style no training dance had on every
song (its label replaced by "unknown"): how a model dances a style it does not know, measured on a
split whose real dances are known (for `unknown_style`; docs/benchmark.md).

    .venv/bin/python benchmarks/sampling_settings.py [--model default] [--split val] [--seeds 3,4,5] [--as-unknown]
        SETTING ...
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

from dancegen.audio.cache import default_cache_dir
from dancegen.metrics.benchmark import PROTOCOLS, kinetic_fid_of_songs, run_benchmark
from dancegen.metrics.evaluate import parse_dataset, prepared_for
from dancegen.metrics.report import markdown_table
from dancegen.metrics.style import MotionStyleClassifier
from dancegen.models import DanceModel, load_model

CONFIG_VALUES = ("smooth_sigma", "height_sigma", "ground_sigma", "style_skeleton", "beat_shift", "beat_stretch",
                 "unknown_style", "max_repeat", "floor_radius")


class Sampled(DanceModel):
    """A model whose `generate` always gets `setting`'s controls."""

    def __init__(self, model, setting: dict, as_unknown: bool = False):
        self.model, self.fps, self.controls, self.as_unknown = model, model.fps, dict(setting), as_unknown
        for key in CONFIG_VALUES:
            if key in self.controls:
                setattr(model, key, self.controls.pop(key))

    def generate(self, music, **kwargs):
        return self.model.generate(replace(music, style="unknown") if self.as_unknown else music,
                                   **kwargs, **self.controls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("settings", nargs="+", type=json.loads, help="JSON objects, e.g. '{}' '{\"top_k\": 20}'")
    parser.add_argument("--model", default="default")
    parser.add_argument("--split", default="val", choices=("val", "test", "train"))
    parser.add_argument("--dataset", default="dance-with-melody:../shared/data/dance_with_melody")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds per song")
    parser.add_argument("--as-unknown", action="store_true",
                        help='ask for a style no training dance had ("unknown") on every song')
    args = parser.parse_args()
    protocol = replace(PROTOCOLS["default"], seeds=tuple(int(s) for s in args.seeds.split(",")))
    kind, path = parse_dataset(args.dataset)
    data = prepared_for(kind, path, default_cache_dir(), False)
    models = {json.dumps(s): (lambda train, s=s: Sampled(load_model(args.model), s, args.as_unknown))
              for s in args.settings}
    classifier = MotionStyleClassifier.bundled("dance_with_melody")
    result = run_benchmark(data, models, split=args.split, protocol=protocol, style_of=classifier.predict,
                           known_styles=tuple(classifier.styles), progress=False)
    print(f"model {args.model}, {args.split} split, seeds {args.seeds}\n\n" + markdown_table(result.results))
    trained = {data.sequences[n]["style"] for n in data.split("train")}
    seen = kinetic_fid_of_songs(result, lambda song: data.sequences[song.name]["style"] in trained)
    print("\n| row | fid_k, styles with training songs | div_k |\n|---|---|---|")
    for row, (f, d) in seen.items():
        print(f"| {row} | {f:.1f} | {d:.2f} |")


if __name__ == "__main__":
    main()
