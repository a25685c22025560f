from __future__ import annotations

import re

from lammps_stream.scoring import Scores
from model_service.metrics import ServiceMetrics


def test_series_are_named_with_units_and_a_model_label() -> None:
    m = ServiceMetrics()
    m.model_step("linear", 1e-4, 2e-4)
    m.learned.labels(model="linear").set(3)
    scores = Scores()
    scores.update(2.0, 1.0)
    scores.update(4.0, 4.0)
    m.scores_of("linear", {"prequential": scores, "test": Scores(), "prequential_rolling": scores})
    m.dead("malformed_json")
    text = m.exposition().decode()
    assert 'lammps_stream_model_learned_records{model="linear"} 3.0' in text
    assert 'lammps_stream_prequential_mae_seconds{model="linear"} 0.5' in text
    assert re.search(r'lammps_stream_prequential_r2_ratio\{model="linear"\} 0\.5', text)
    assert 'lammps_stream_dead_letters_total{reason="malformed_json"} 1.0' in text
    assert 'lammps_stream_records_total{outcome="dead"} 1.0' in text
    assert 'lammps_stream_test_mae_seconds{model="linear"}' not in text  # no test runs yet
    assert 'lammps_stream_prequential_rolling_mae_seconds{model="linear"} 0.5' in text
    for name in re.findall(r"^# TYPE (\S+)", text, re.M):
        assert name.startswith("lammps_stream_")


def test_counters_and_histograms_come_without_created_series() -> None:
    m = ServiceMetrics()
    m.model_step("linear", 1e-4, 2e-4)
    m.record("learned")
    text = m.exposition().decode()
    assert 'lammps_stream_records_total{outcome="learned"} 1.0' in text
    assert "lammps_stream_learn_seconds_count" in text
    assert "_created" not in text


def test_a_models_error_count_starts_at_0_and_goes_with_the_model() -> None:
    m = ServiceMetrics()
    m.track("knn")
    assert 'lammps_stream_model_errors_total{model="knn"} 0.0' in m.exposition().decode()
    m.model_errors.labels(model="knn").inc()
    m.forget("knn")
    assert 'model="knn"' not in m.exposition().decode()


def test_each_score_comes_with_what_pools_it_across_workers() -> None:
    m = ServiceMetrics()
    scores = Scores()
    for actual, predicted in [(2.0, 1.0), (4.0, 4.0), (6.0, 7.0)]:
        scores.update(actual, predicted)
    m.scores_of("pa", {"test": scores})
    m.coverage_of("pa", 2, 3)
    text = m.exposition().decode()
    assert 'lammps_stream_test_scored_records{model="pa"} 3.0' in text
    assert 'lammps_stream_test_actual_mean_seconds{model="pa"} 4.0' in text
    std = re.search(r'lammps_stream_test_actual_stddev_seconds\{model="pa"\} (\S+)', text)
    assert std and abs(float(std[1]) - (8 / 3) ** 0.5) < 1e-12
    assert 'lammps_stream_interval_tested_records{model="pa"} 3.0' in text


def test_a_score_without_a_value_loses_its_series_instead_of_keeping_the_last() -> None:
    """A worker whose partitions went elsewhere scores no run: its old MAE must not linger."""
    m = ServiceMetrics()
    scores = Scores()
    scores.update(2.0, 1.0)
    m.scores_of("pa", {"prequential": scores})
    m.coverage_of("pa", 1, 1)
    m.scores_of("pa", {"prequential": Scores()})
    m.coverage_of("pa", 0, 0)
    text = m.exposition().decode()
    assert 'lammps_stream_prequential_mae_seconds{model="pa"}' not in text
    assert 'lammps_stream_prequential_scored_records{model="pa"} 0.0' in text
    assert 'lammps_stream_interval_coverage_ratio{model="pa"}' not in text
    assert 'lammps_stream_interval_tested_records{model="pa"} 0.0' in text


def test_a_score_that_overflowed_is_no_series() -> None:
    """A score at infinity (a relative error over a near-zero time) is left out, as NaN is:
    Prometheus would show +Inf for good."""
    from lammps_stream.scoring import Scores
    from model_service.metrics import ServiceMetrics

    metrics = ServiceMetrics()
    scores = Scores()
    scores.update(1e-300, 1e10)  # the relative error overflows
    metrics.scores_of("pa", {"prequential": scores})
    text = metrics.exposition()
    assert b'lammps_stream_prequential_mape_ratio{model="pa"}' not in text
    assert b'lammps_stream_prequential_mae_seconds{model="pa"}' in text


def test_every_outcome_and_reason_series_starts_at_zero() -> None:
    # A series born with its first record at 1 shows no increase() for that record: on a fresh
    # worker three failed runs read as two, and the alerts counted on them miss their threshold.
    from lammps_stream.errors import REASON_CODES
    from model_service.metrics import OUTCOMES

    text = ServiceMetrics().exposition().decode()
    for outcome in OUTCOMES:
        assert f'lammps_stream_records_total{{outcome="{outcome}"}} 0.0' in text
    for code in REASON_CODES:
        assert f'lammps_stream_dead_letters_total{{reason="{code}"}} 0.0' in text


def test_every_reason_code_the_code_raises_is_listed() -> None:
    import re
    from pathlib import Path

    from lammps_stream.errors import REASON_CODES

    root = Path(__file__).resolve().parents[2]
    raised = set()
    for package in ("lammps_stream", "model_service"):
        for source in (root / package).glob("*.py"):
            text = source.read_text()
            raised |= set(re.findall(r'InvalidRecordError\(\s*"(\w+)"', text))
            raised |= set(re.findall(r'send_dead_letter\([^()]*"(\w+)"', text))
    assert "not_utf8" in raised and "processing_error" in raised
    assert raised <= set(REASON_CODES)
