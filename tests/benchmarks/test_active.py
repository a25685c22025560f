"""The active-sampling benchmark on a tiny replay: a slice of the recorded campaign."""

from __future__ import annotations

import json

import pytest

from benchmarks import active
from benchmarks.harness import machine

POOL, HELD_OUT = active.load()
SMALL_POOL = POOL[:40]
SMALL_HELD_OUT = HELD_OUT[:10]


def test_the_replay_is_the_recorded_campaign() -> None:
    assert (len(POOL), len(HELD_OUT)) == (200, 50)
    assert "AMD EPYC" in active.machine(POOL)
    assert "cores" not in active.machine(POOL)  # the records do not say how many


@pytest.mark.parametrize("sampler", active.SAMPLERS)
def test_each_sampler_makes_distinct_runs_and_pays_for_them(sampler: str) -> None:
    curve = active.simulate(
        sampler,
        0,
        SMALL_POOL,
        SMALL_HELD_OUT,
        horizon=12,
        committee=("bayes_log", "hoeffding_tree"),
        alpha=0.1,
    )
    assert [n for n, _, _ in curve] == list(range(1, 13))
    spent = [c for _, c, _ in curve]
    assert spent == sorted(spent) and spent[0] > 0
    assert all(error >= 0 for _, _, error in curve)


def test_orders_are_permutations_of_the_pool() -> None:
    for order in (active.random_order(SMALL_POOL, 1), active.lhs_order(POOL, 1)):
        size = len(SMALL_POOL) if order.__qualname__.startswith("random") else len(POOL)
        picks = [order({}) for _ in range(size)]
        assert sorted(picks) == list(range(size))


def test_reaching_a_target_and_the_median_of_seeds() -> None:
    curve = [(1, 2.0, 0.5), (2, 5.0, 0.14), (3, 9.0, 0.1)]
    assert active.reached(curve, 0.15) == (2, 5.0)
    assert active.reached(curve, 0.01) is None
    assert active.median([10, 20, None]) == 20
    assert active.median([10, None, None]) is None


def test_a_quick_run_writes_its_figures_and_one_json_object(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(active, "QUICK_FIGURES", tmp_path)
    result = active.run(quick=True)
    json.dumps(result)
    assert result["data"].startswith("replay of a recorded campaign of 250 real LAMMPS runs on")
    assert result["machine"] == machine()  # where the replay ran (``seconds``)
    assert set(result["samplers"]) == {"suggest", "random", "lhs"}
    assert len(result["samplers"]["suggest"]["runs"]) == 3
    assert (tmp_path / "mape_vs_runs.png").stat().st_size > 0
    assert (tmp_path / "mape_vs_core_seconds.png").stat().st_size > 0
    # the target, on the replay: suggest needs at most 0.6 × random's runs
    assert result["suggest_vs_random_runs"] <= 0.6
