"""Train/val/test splits by song, stratified so that the test split covers every style."""

from __future__ import annotations

import random
from collections import defaultdict


def split_by_group(
    styles: dict[str, str | None],
    groups: dict[str, str],
    *,
    test_fraction: float = 0.15,
    val_fraction: float = 0.1,
    seed: int = 0,
    test_every_style: bool = True,
) -> dict[str, list[str]]:
    """Assign whole groups (songs) to splits; every style with a group gets at least one test group.

    A group's style is its first sequence's style. A style with a single group puts it in test
    when `test_every_style` (covering the style matters more than training on it), else in
    train; styles with 4 or more groups also give one or more to val. Deterministic per seed.
    """
    members: dict[str, list[str]] = defaultdict(list)
    for name in sorted(groups):
        members[groups[name]].append(name)
    by_style: dict[str, list[str]] = defaultdict(list)
    for group, names in sorted(members.items()):
        by_style[str(styles.get(names[0]))].append(group)

    rng = random.Random(seed)
    out: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for style in sorted(by_style):
        gs = by_style[style]
        rng.shuffle(gs)
        n = len(gs)
        n_test = max(1, round(test_fraction * n)) if n > 1 or test_every_style else 0
        n_val = max(1, round(val_fraction * n)) if n >= 4 else 0
        for i, g in enumerate(gs):
            split = "test" if i < n_test else "val" if i < n_test + n_val else "train"
            out[split].extend(members[g])
    return {k: sorted(v) for k, v in out.items()}
