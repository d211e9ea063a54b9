"""The fuzzing run of issue 10: tests/test_fuzz.py's targets at scale, and the count of cases per target.

    nice -n 10 .venv/bin/python benchmarks/fuzz.py [--examples 3000] [--seed 0] [--out out/fuzz.json]

Runs the property-based tests of tests/test_fuzz.py under hypothesis profile "fuzz" (random, not
derandomized; `--seed` makes a run repeatable) with `--examples` cases per target, then prints a
table: per target the cases tried, how many read cleanly, how many gave a one-line UserError, and
the commonest errors. Any other exception, hang or stray file fails the run (pytest's report shows
the smallest input that does it). docs/reliability.md records a run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=3000, help="cases per target (default 3000)")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0)")
    parser.add_argument("--out", default=str(ROOT / "out" / "fuzz.json"), help="counts as JSON")
    parser.add_argument("-k", default=None, help="only the tests matching this pytest -k expression")
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DANCEGEN_FUZZ_PROFILE": "fuzz", "DANCEGEN_FUZZ_EXAMPLES": str(args.examples),
           "DANCEGEN_FUZZ_REPORT": str(out)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_fuzz.py"),
           f"--hypothesis-seed={args.seed}", *(["-k", args.k] if args.k else [])]
    started = time.time()
    result = subprocess.run(cmd, cwd=ROOT, env=env)
    minutes = (time.time() - started) / 60
    report = json.loads(out.read_text()) if out.exists() else {"cases": {}, "outcomes": {}}
    print(f"\n{args.examples} cases per target asked, seed {args.seed}, {minutes:.1f} min; pytest exit code "
          f"{result.returncode}\n")
    print("| target | cases | read | one-line UserError | commonest errors |")
    print("|---|---|---|---|---|")
    for target, cases in report["cases"].items():
        if target == "self-test":
            continue
        outcomes = Counter({k.split(": ", 1)[1]: n for k, n in report["outcomes"].items() if k.startswith(target + ": ")})
        read = outcomes.pop("read", 0)
        common = "; ".join(f"{k}… ({n})" for k, n in outcomes.most_common(3))
        print(f"| {target} | {cases} | {read} | {sum(outcomes.values())} | {common} |")
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
