"""Style classifiers on real data, held out by song; prints the markdown tables of docs/style_classifiers.md.

    dancegen prepare dance-with-melody ../shared/data/dance_with_melody -o /tmp/dwm
    dancegen prepare motorica ../shared/data/motorica_lda -o /tmp/mot
    .venv/bin/python benchmarks/style_classifiers.py --dance-with-melody /tmp/dwm --motorica /tmp/mot -o /tmp/style

For each classifier (music on each audio feature, motion) and network size:
- Dance with Melody, test split: trained on the train and val songs, scored on the test songs;
- Dance with Melody, k-fold cross-validation by song (stratified by style): every song is scored
  once, by the classifier that did not see it;
- Motorica (one song per style, so no song can be held out): trained on the first 70% of every
  capture, scored on the last 30%;
each beside the majority-class baseline. OUT gets results.json, tables.md and the test-split classifiers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from dancegen.data.prepared import PreparedDataset
from dancegen.metrics import style

SIZES = ("small", "large")


def held_out_figures(result: dict, baseline: dict, seconds: float) -> dict:
    keep = ("songs", "song_accuracy", "balanced_accuracy", "window_accuracy", "styles", "confusion", "per_song")
    return {**{k: result[k] for k in keep}, "seconds": seconds,
            "majority_baseline": {k: baseline[k] for k in keep if k != "per_song"}}


def dance_with_melody(root: Path, out: Path, *, music: list[str], folds: int, loso: list[str], epochs: int,
                      seed: int) -> dict:
    data = PreparedDataset(root)
    everything = sorted(data.sequences)
    train_names = data.split("train") + data.split("val")
    styles = sorted({m["style"] for m in data.sequences.values()})
    results = {}
    for modality, variant in [("music", m) for m in music] + [("motion", style.MOTION_FEATURE)]:
        feature, _, columns = variant.partition("/")
        config = style.input_config(data, modality, feature, everything, columns or None)
        examples = {e.name: e for e in style.prepared_examples(data, everything, config)}
        for size in SIZES:
            key = f"{modality}:{variant}:{size}"
            print(f"== {key}", flush=True)
            train = [examples[n] for n in train_names]
            test = [examples[n] for n in data.split("test")]
            clf = style.fit(train, input_config=config, size=size, epochs=epochs, seed=seed)
            clf.config["training"]["splits"] = ["train", "val"]
            clf.save(out / "classifiers" / f"dance_with_melody_{modality}_{variant.replace('/', '_')}_{size}")
            base = style.majority_baseline(train, test, clf.window, clf.hop, styles)
            test_result = held_out_figures(style.evaluate(clf, test, styles), base, clf.config["training"]["seconds"])
            cv = style.cross_validate(list(examples.values()), folds, input_config=config, size=size, epochs=epochs,
                                      seed=seed, styles=styles, log=print)
            results[key] = {"test": test_result, "cross_validation": cv,
                            "parameters": sum(p.numel() for p in clf.net.parameters())}
            if key in loso:
                results[key]["leave_one_out"] = style.cross_validate(
                    list(examples.values()), len(examples), input_config=config, size=size, epochs=epochs, seed=seed,
                    styles=styles, log=print)
            print(f"   test {test_result['song_accuracy']:.3f}  cv {cv['song_accuracy']:.3f} "
                  f"(balanced {cv['balanced_accuracy']:.3f})", flush=True)
    return results


def motorica(root: Path, *, epochs: int, seed: int, train_fraction: float = 0.7) -> dict:
    data = PreparedDataset(root)
    names = sorted(data.sequences)
    results = {}
    for modality, feature in (("music", "motorica_audio29"), ("motion", None)):
        config = style.input_config(data, modality, feature, names)
        whole = style.prepared_examples(data, names, config)
        cut = [int(train_fraction * len(e.features)) for e in whole]
        train = [style.Example(e.name, e.style, e.features[:c]) for e, c in zip(whole, cut)]
        test = [style.Example(e.name, e.style, e.features[c:]) for e, c in zip(whole, cut)]
        styles = sorted({e.style for e in whole})
        for size in SIZES:
            key = f"{modality}:{config['feature']}:{size}"
            print(f"== motorica {key}", flush=True)
            clf = style.fit(train, input_config=config, size=size, epochs=epochs, seed=seed)
            base = style.majority_baseline(train, test, clf.window, clf.hop, styles)
            results[key] = held_out_figures(style.evaluate(clf, test, styles), base, clf.config["training"]["seconds"])
    return results


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def tables(dwm: dict, mot: dict | None, folds: int) -> str:
    lines = ["### Dance with Melody: songs never seen in training", "",
             f"Test split: 7 songs (1 cha-cha, 1 rumba, 1 tango, 4 waltz), trained on the other 31. "
             f"Cross-validation: {folds} folds by song, all 38 songs. Accuracy per song (the mean of its windows' "
             "probabilities), balanced accuracy (mean recall over the styles present), per window (6-s windows, "
             "hop 3 s). Music `fact35/rhythm`: only fact35's onset envelope and onset and beat one-hots "
             "(columns 0, 33, 34). Tango has one song: it is never in training when it is scored.", "",
             "| classifier | size | parameters | test: songs | test: balanced | test: windows | CV: songs "
             "| CV: balanced | CV: windows | training (s) |", "|---" * 10 + "|"]
    first = next(iter(dwm.values()))
    for label, get in (("majority baseline (always waltz)", lambda r: r["majority_baseline"]),):
        t, c = get(first["test"]), get(first["cross_validation"])
        lines.append(f"| {label} | | | {pct(t['song_accuracy'])} | {pct(t['balanced_accuracy'])} | "
                     f"{pct(t['window_accuracy'])} | {pct(c['song_accuracy'])} | {pct(c['balanced_accuracy'])} | "
                     f"{pct(c['window_accuracy'])} | |")
    for key, r in dwm.items():
        modality, feature, size = key.split(":")
        t, c = r["test"], r["cross_validation"]
        lines.append(f"| {modality} ({feature}) | {size} | {r['parameters']:,} | {pct(t['song_accuracy'])} | "
                     f"{pct(t['balanced_accuracy'])} | {pct(t['window_accuracy'])} | {pct(c['song_accuracy'])} | "
                     f"{pct(c['balanced_accuracy'])} | {pct(c['window_accuracy'])} | {t['seconds']:.0f} |")
    loo = {k: r["leave_one_out"] for k, r in dwm.items() if "leave_one_out" in r}
    if loo:
        lines += ["", "Leave one song out (38 classifiers, each scored on the one song it did not see):", "",
                  "| classifier | songs | balanced | windows | majority: songs | majority: balanced |",
                  "|---" * 6 + "|"]
        for k, r in loo.items():
            base = r["majority_baseline"]
            lines.append(f"| `{k}` | {pct(r['song_accuracy'])} | {pct(r['balanced_accuracy'])} | "
                         f"{pct(r['window_accuracy'])} | {pct(base['song_accuracy'])} | "
                         f"{pct(base['balanced_accuracy'])} |")
    lines += ["", "Confusion matrices of the cross-validation (rows: true style, columns: predicted; songs):", ""]
    for key, r in dwm.items():
        lines += [f"`{key}`, {folds} folds", "", style.confusion_markdown(r["cross_validation"]), ""]
        if key in loo:
            lines += [f"`{key}`, leave one song out", "", style.confusion_markdown(loo[key]), ""]
    if mot:
        lines += ["### Motorica: last 30% of each capture, trained on the first 70%", "",
                  "Every Motorica style has one song (popping: two captures of it), so no song can be held out: "
                  "this measures held-out time of the same performances, an easier task.", "",
                  "| classifier | size | segments | balanced | windows | majority: windows | training (s) |",
                  "|---" * 7 + "|"]
        for key, r in mot.items():
            modality, feature, size = key.split(":")
            lines.append(f"| {modality} ({feature}) | {size} | {pct(r['song_accuracy'])} | "
                         f"{pct(r['balanced_accuracy'])} | {pct(r['window_accuracy'])} | "
                         f"{pct(r['majority_baseline']['window_accuracy'])} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dance-with-melody", type=Path, required=True, help="prepared Dance with Melody folder")
    parser.add_argument("--motorica", type=Path, help="prepared Motorica folder")
    parser.add_argument("--music", default="fact35,fact35/rhythm",
                        help="music classifier inputs: FEATURE or FEATURE/COLUMNS (e.g. bailando438, fact35/rhythm)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds by song")
    parser.add_argument("--loso", default="music:fact35/rhythm:large,motion:facing_positions:small",
                        help="classifiers (MODALITY:INPUT:SIZE) also scored leaving one song out")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest on a shared machine)")
    parser.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    dwm = dance_with_melody(args.dance_with_melody, args.out, music=args.music.split(","), folds=args.folds,
                            loso=args.loso.split(","), epochs=args.epochs, seed=args.seed)
    mot = motorica(args.motorica, epochs=args.epochs, seed=args.seed) if args.motorica else None
    args.out.mkdir(parents=True, exist_ok=True)
    as_json = lambda x: x.tolist() if isinstance(x, np.ndarray) else float(x)  # numpy scalars and arrays
    (args.out / "results.json").write_text(json.dumps({"dance_with_melody": dwm, "motorica": mot}, indent=1,
                                                      default=as_json))
    text = tables(dwm, mot, args.folds)
    (args.out / "tables.md").write_text(text)
    print(text)
    print(f"{time.time() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
