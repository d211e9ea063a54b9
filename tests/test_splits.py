from dancegen.data.splits import split_by_group


def _dataset():
    styles, groups = {}, {}
    for style, n_songs in [("waltz", 27), ("rumba", 6), ("cha-cha", 4), ("tango", 1)]:
        for i in range(n_songs):
            for take in range(2 if i % 3 == 0 else 1):  # some songs danced twice
                name = f"{style}_{i}_{take}"
                styles[name], groups[name] = style, f"{style}-song{i}"
    return styles, groups


def test_split_keeps_songs_whole_and_covers_every_style_in_test():
    styles, groups = _dataset()
    splits = split_by_group(styles, groups)
    assert sorted(sum(splits.values(), [])) == sorted(styles)
    owner = {}
    for split, names in splits.items():
        for n in names:
            assert owner.setdefault(groups[n], split) == split, f"song {groups[n]} in two splits"
    assert {styles[n] for n in splits["test"]} == {"waltz", "rumba", "cha-cha", "tango"}
    assert {styles[n] for n in splits["train"]} == {"waltz", "rumba", "cha-cha"}
    assert len(splits["train"]) > len(splits["test"]) and splits["val"]


def test_split_is_deterministic_per_seed():
    styles, groups = _dataset()
    assert split_by_group(styles, groups, seed=3) == split_by_group(styles, groups, seed=3)
    assert split_by_group(styles, groups, seed=3) != split_by_group(styles, groups, seed=4)
