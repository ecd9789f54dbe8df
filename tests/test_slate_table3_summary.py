"""Table 3's summary: mean ± std over seeds, and the ordering paired by seed."""

from __future__ import annotations

import math

import pytest

from benchmarks.slate_table3 import summarise


def _seed(seed: int, rewards: dict[str, float], k: int = 3) -> dict:
    rows = [
        {"policy": name, "k": k, "seed": seed, "reward": reward, "ctr": 1.0, "train_s": 2.0}
        for name, reward in rewards.items()
    ]
    return {"seed": seed, "rows": rows}


def test_paired_difference_removes_the_level_of_each_seed():
    # Seed 1's simulator pays 5 more to everyone: CDQN is 1 and 2 above greedy.
    per_seed = [
        _seed(0, {"CDQN": 11.0, "Greedy": 10.0, "Random": 9.0}),
        _seed(1, {"CDQN": 17.0, "Greedy": 15.0, "Random": 15.5}),
    ]
    table = {row["policy"]: row for row in summarise(per_seed)}
    assert list(table) == ["CDQN", "Greedy", "Random"]  # POLICIES order
    cdqn = table["CDQN"]
    assert cdqn["reward_mean"] == pytest.approx(14.0)
    assert cdqn["reward_std"] == pytest.approx(math.sqrt(18.0))  # (11, 17): stdev 4.243
    assert cdqn["vs_greedy_mean"] == pytest.approx(1.5)
    assert cdqn["vs_greedy_std"] == pytest.approx(math.sqrt(0.5))  # (1, 2)
    assert cdqn["above_greedy"] == 2
    assert table["Greedy"]["vs_greedy_mean"] == 0.0 and table["Greedy"]["above_greedy"] == 0
    assert table["Random"]["vs_greedy_mean"] == pytest.approx(-0.25)  # (-1, +0.5)
    assert table["Random"]["above_greedy"] == 1


def test_each_slate_size_is_paired_with_its_own_greedy():
    per_seed = [
        {"seed": 0, "rows": _seed(0, {"CDQN": 12.0, "Greedy": 11.0})["rows"]
         + _seed(0, {"CDQN": 10.0, "Greedy": 11.5}, k=5)["rows"]},
    ]  # fmt: skip
    rows = {(row["k"], row["policy"]): row for row in summarise(per_seed)}
    assert rows[3, "CDQN"]["vs_greedy_mean"] == pytest.approx(1.0)
    assert rows[5, "CDQN"]["vs_greedy_mean"] == pytest.approx(-1.5)
    assert rows[5, "CDQN"]["above_greedy"] == 0
    assert rows[5, "CDQN"]["reward_std"] == 0.0  # one seed


def test_a_seed_without_greedy_is_left_out_of_the_pairing():
    per_seed = [_seed(0, {"CDQN": 11.0, "Greedy": 10.0}), _seed(1, {"CDQN": 30.0})]
    cdqn = summarise(per_seed)[0]
    assert cdqn["seeds"] == 2 and cdqn["reward_mean"] == pytest.approx(20.5)
    assert cdqn["vs_greedy_mean"] == pytest.approx(1.0) and cdqn["above_greedy"] == 1
    assert cdqn["paired_seeds"] == 1
