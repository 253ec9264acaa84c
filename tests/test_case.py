"""``Case.group_id`` (a configuration without its seed) and ``Case.pair_id`` (also without cell/variant)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from gru_bench.case import Case

BASE = dict(backend="numpy", cell="gru", variant="reset_after", task="adding", seq_len=50, hidden=64, steps=100)
# one change per configuration key that is not the seed (each must split a seed group and a pair)
OTHER = {"backend": "torch", "device": "cuda", "task": "copy", "seq_len": 20, "hidden": 32, "num_layers": 2,
         "batch_size": 8, "dtype": "float64", "init": "keras", "optimizer": "sgd", "lr": 0.01, "clip": None,
         "steps": 0, "eval_every": 10, "eval_batches": 2, "stop_at_target": True, "denormals": "keep",
         "warmup": 1, "repetitions": 5, "threads": 2, "options": {"autocast": "bfloat16"}}


def test_every_key_but_seed_and_timeout_is_covered():
    assert set(OTHER) | {"seed", "timeout_s", "cell", "variant"} == set(Case.model_fields)


def test_group_id_pools_seeds_and_timeouts_only():
    a = Case(**BASE, seed=0)
    assert Case(**BASE, seed=7).group_id == a.group_id
    assert Case(**BASE, seed=7, timeout_s=5).group_id == a.group_id
    assert Case(**BASE, seed=7).case_id != a.case_id
    assert Case(**{**BASE, "cell": "lstm", "variant": "standard"}).group_id != a.group_id
    assert Case(**{**BASE, "variant": "reset_before"}).group_id != a.group_id


@pytest.mark.parametrize("key", sorted(OTHER))
def test_any_other_key_splits_the_group_and_the_pair(key):
    a, b = Case(**BASE), Case(**{**BASE, key: OTHER[key]})
    assert a.group_id != b.group_id
    assert a.pair_id != b.pair_id


def test_pair_id_joins_both_gru_variants_and_the_lstm_across_seeds():
    gru_a = Case(**BASE, seed=1)
    gru_b = Case(**{**BASE, "variant": "reset_before"}, seed=2)
    lstm = Case(**{**BASE, "cell": "lstm", "variant": "standard"}, seed=3)
    assert gru_a.pair_id == gru_b.pair_id == lstm.pair_id
    assert len({gru_a.group_id, gru_b.group_id, lstm.group_id}) == 3


def test_ids_follow_the_case_id_rule_for_later_fields():
    """Fields added later count only off their default (ID_OPTIONAL): the group of an old record is unchanged."""
    d = Case(**BASE).model_dump()
    d.pop("stop_at_target")
    d.pop("denormals")
    assert Case.model_validate(d).group_id == Case(**BASE, stop_at_target=False, denormals="flush").group_id


def test_baseline_groups_are_its_configurations_without_seed():
    """On the committed baseline, grouping by group_id is grouping by every Case field but seed/timeout."""
    root = Path(__file__).resolve().parents[1]
    data = json.loads((root / "results" / "baselines" / "quick.json").read_text())
    cases = [Case.model_validate(c["case"]) for c in data["cases"]]
    by_fields: dict[str, set[str]] = {}
    for c in cases:
        key = json.dumps(c.model_dump(exclude={"seed", "timeout_s"}), sort_keys=True, default=str)
        by_fields.setdefault(key, set()).add(c.group_id)
    assert all(len(ids) == 1 for ids in by_fields.values())
    assert len({c.group_id for c in cases}) == len(by_fields)


def test_group_and_pair_ids_are_prefixed_and_never_a_case_id():
    """``g``/``p`` + 11 hex: the same length as a ``case_id`` (12) and never equal to it."""
    for c in (Case(**BASE, seed=3), Case(**{**BASE, "denormals": "keep", "stop_at_target": True}, seed=1)):
        assert c.group_id.startswith("g") and c.pair_id.startswith("p")
        assert len(c.pair_id) == len(c.group_id) == len(c.case_id) == 12
        assert len({c.group_id, c.pair_id, c.case_id}) == 3


def test_group_id_is_compares_seed_group_key():
    """``g`` + 11 hex of the dump without seed and timeout (ID_OPTIONAL fields only off their default): the key
    compare's accuracy rows have always carried, so its JSON output keeps its keys. The literals are what compare's
    ``group_key`` gave before ``group_id`` existed (computed at a1beda8 and at 8244e0d^: the same)."""
    from gru_bench.compare.loading import group_key

    for c, old in ((Case(**BASE, seed=3), "g960234b89ab"),
                   (Case(**{**BASE, "denormals": "keep", "stop_at_target": True}, seed=1), "g6b602ff353f")):
        assert (c.group_id, group_key(c)) == (old, old)


def test_labels_are_distinct_where_cases_are():
    """Two cases that differ in any key but threads and timeout_s have different labels (stop_at_target included)."""
    a = Case(**BASE)
    for key, value in OTHER.items():
        if key in ("threads",):
            continue
        assert Case(**{**BASE, key: value}).label != a.label, key
