from __future__ import annotations

import json
import logging
import re
import threading
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError

from consumers import reader
from consumers.history import history_rows
from consumers.reader import once_each, table_row, to_json_line
from lammps_stream.config import Config, load_config
from lammps_stream.errors import BrokerUnavailableError, NoDataError, UsageError
from lammps_stream.schemas import encode, example_prediction, validate_prediction


def test_row_shows_run_split_model_and_error() -> None:
    row = table_row(example_prediction(predicted_wall_seconds=3.25, actual_wall_seconds=3.0))
    assert row == {
        "run": "0f8fad5b",
        "split": "test",
        "params": "lj 2 np=",
        "model": "linear",
        "predicted": "3.25",
        "actual": "3.00",
        "error": "+0.25",
    }


def test_request_has_no_actual() -> None:
    row = table_row(
        example_prediction(
            run_id=None, request_id="abcdef123", actual_wall_seconds=None, split=None
        )
    )
    assert row["run"] == "abcdef12" and row["actual"] == "" and row["error"] == ""
    assert row["split"] == "request"


def test_json_line_is_the_record() -> None:
    p = example_prediction()
    assert json.loads(to_json_line(p)) == p


class FakeConsumer:
    """What :func:`read_records` asks of a kafka-python consumer: one partition holding
    ``values`` (under ``keys``, if given); ``fails`` names the call that times out, as with
    a broker gone midway."""

    def __init__(
        self,
        values: list[bytes | None],
        fails: str = "",
        keys: list[bytes | None] | None = None,
    ) -> None:
        self.values, self.fails, self.at, self.closed = values, fails, 0, False
        self.keys = keys or [None] * len(values)

    def _maybe_fail(self, call: str) -> None:
        if call == self.fails:
            raise KafkaTimeoutError(f"{call} timed out")

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.tp = partitions[0]

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self.at = 0

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.at = offset

    def offsets_for_times(self, stamps: dict) -> dict:
        self._maybe_fail("offsets_for_times")
        return {tp: SimpleNamespace(offset=0) for tp in stamps}

    def end_offsets(self, partitions: list[TopicPartition]) -> dict:
        self._maybe_fail("end_offsets")
        return {tp: len(self.values) for tp in partitions}

    def position(self, tp: TopicPartition, timeout_ms: int | None = None) -> int:
        return self.at

    def poll(self, timeout_ms: int) -> dict:
        self._maybe_fail("poll")
        batch = [
            SimpleNamespace(key=k, value=v)
            for k, v in zip(self.keys[self.at :], self.values[self.at :], strict=True)
        ]
        self.at = len(self.values)
        return {self.tp: batch}

    def close(self) -> None:
        self.closed = True


class GoneConsumer(FakeConsumer):
    """A consumer whose broker went away after ``served`` of its records: ``poll`` returns
    nothing from then on, without raising, as kafka-python's does."""

    def __init__(self, values: list[bytes], served: int) -> None:
        super().__init__(values)
        self.served = served

    def poll(self, timeout_ms: int) -> dict:
        if self.at >= self.served:
            time.sleep(timeout_ms / 1000 / 50)
            return {}
        batch = [SimpleNamespace(key=None, value=v) for v in self.values[self.at : self.served]]
        self.at = self.served
        return {self.tp: batch}


def _config() -> Config:
    return load_config(path=None, env={})


def test_readers_skip_and_count_records_that_would_break_them(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    good = example_prediction()
    bad = [
        example_prediction(run_id=12345),
        example_prediction(run_id=None, request_id=["a"]),
        example_prediction(params={"deck": "lj", "x": "2"}),
    ]
    values = [encode(p) for p in [bad[0], good, *bad[1:]]] + [b"{not json"]
    consumer = FakeConsumer(values)
    monkeypatch.setattr(reader, "make_consumer", lambda config: consumer)
    with caplog.at_level(logging.WARNING, logger="consumers.reader"):
        found = list(reader.read_predictions(_config()))
    assert found == [good] and consumer.closed
    assert caplog.messages == [
        "skipped 4 invalid records on lammps.predictions "
        "(the first: run_id: must be a non-empty string, got 12345)"
    ]
    # what every reader does with a prediction works on the one that was kept
    assert table_row(good)["run"] == good["run_id"][:8]
    assert once_each(found + found) == [good]
    (row,) = history_rows([good | {"split": "train"}])
    assert (row["run_id"], row["model"], row["split"]) == (good["run_id"], good["model"], "train")


@pytest.mark.parametrize("call", ["end_offsets", "poll", "offsets_for_times"])
def test_a_broker_gone_while_reading_is_one_line(
    monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    consumer = FakeConsumer([encode(example_prediction())], fails=call)
    monkeypatch.setattr(reader, "make_consumer", lambda config: consumer)
    since = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(BrokerUnavailableError) as caught:
        list(reader.read_predictions(_config(), since=since))
    assert str(caught.value) == (
        "Kafka broker at 127.0.0.1:9092 stopped answering while lammps.predictions was read "
        "(KafkaTimeoutError); check it with `lammps-stream stack status` and try again"
    )
    assert consumer.closed


def test_a_read_that_stalls_is_one_line_not_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --follow, a broker gone midway (poll returns {} for ever) ends the read."""
    values = [encode(example_prediction(run_id=f"run{i}")) for i in range(5)]
    consumer = GoneConsumer(values, served=2)
    monkeypatch.setattr(reader, "make_consumer", lambda config: consumer)
    monkeypatch.setattr(reader, "MIN_STALL_SECONDS", 0.3)
    config = load_config(path=None, env={}, overrides={"kafka.request_timeout_seconds": 0.1})
    done: list[BaseException | list] = []

    def read() -> None:
        try:
            done.append(list(reader.read_predictions(config)))
        except BaseException as err:
            done.append(err)

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert done, "the read hung"
    (caught,) = done
    assert isinstance(caught, BrokerUnavailableError)
    assert str(caught) == (
        "Kafka broker at 127.0.0.1:9092 stopped answering while lammps.predictions was read "
        "(nothing for 0.3 s after 2 records, 3 more to read); check it with "
        "`lammps-stream stack status` and try again"
    )
    assert consumer.closed


def test_the_stall_deadline_follows_the_request_timeout() -> None:
    assert reader.stall_seconds(_config()) == 30.0
    slow = load_config(path=None, env={}, overrides={"kafka.request_timeout_seconds": 120})
    assert reader.stall_seconds(slow) == 120.0


def test_tombstones_are_no_invalid_records(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    good = example_prediction()
    consumer = FakeConsumer([None, encode(good), None])
    monkeypatch.setattr(reader, "make_consumer", lambda config: consumer)
    with caplog.at_level(logging.WARNING, logger="consumers.reader"):
        assert list(reader.read_predictions(_config())) == [good]
    assert caplog.messages == []


def _snapshot(model: str, created_at: str) -> dict:
    return {
        "schema": "lammps-stream.model_snapshot/1",
        "model": model,
        "created_at": created_at,
    }


def test_a_removed_model_has_no_snapshots(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``models remove`` tombstones the model's keys: its older snapshots, still on the
    topic until compaction, are not listed; a model added again after it is, from then on."""
    records = [
        (b"pa/0", _snapshot("pa", "2026-01-01T00:00:01Z")),
        (b"tree/0", _snapshot("tree", "2026-01-01T00:00:02Z")),
        (b"tree/1", _snapshot("tree", "2026-01-01T00:00:03Z")),
        (b"knn/0", _snapshot("knn", "2026-01-01T00:00:04Z")),
        (b"tree/0", None),  # models remove tree, by the worker owning partition 0
        (b"knn/0", None),  # models remove knn ...
        (b"knn/0", _snapshot("knn", "2026-01-01T00:00:06Z")),  # ... and models add knn
        (b"pa/0", _snapshot("pa", "2026-01-01T00:00:07Z")),
    ]
    consumer = FakeConsumer(
        [None if r is None else encode(r) for _, r in records], keys=[k for k, _ in records]
    )
    monkeypatch.setattr(reader, "make_consumer", lambda config: consumer)
    monkeypatch.setattr(reader, "validate_snapshot", lambda value: value)
    with caplog.at_level(logging.WARNING, logger="consumers.reader"):
        found = reader.read_snapshots(_config())
    assert [(s["model"], s["created_at"][-3:-1]) for s in found] == [
        ("pa", "01"),
        ("knn", "06"),
        ("pa", "07"),
    ]
    assert caplog.messages == []


def test_a_record_that_breaks_the_decoder_is_skipped_not_fatal(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    good = example_prediction()
    deep = b"[" * 100_000 + b"]" * 100_000
    huge = json.dumps(example_prediction(predicted_wall_seconds=10**400)).encode()
    consumer = FakeConsumer([deep, encode(good), huge])
    monkeypatch.setattr(reader, "make_consumer", lambda config: consumer)
    with caplog.at_level(logging.WARNING, logger="consumers.reader"):
        assert list(reader.read_predictions(_config())) == [good]
    (message,) = caplog.messages
    assert message.startswith("skipped 2 invalid records on lammps.predictions (the first: ")
    assert "\n" not in message


def test_a_validator_that_fails_in_its_own_way_skips_the_record(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def overflowing(value: object) -> dict:
        if value == [1]:
            raise OverflowError("int too large to convert to float")
        return validate_prediction(value)

    good = example_prediction()
    consumer = FakeConsumer([b"[1]", encode(good)])
    monkeypatch.setattr(reader, "make_consumer", lambda config: consumer)
    with caplog.at_level(logging.WARNING, logger="consumers.reader"):
        found = list(reader.read_records(_config(), "t", overflowing))
    assert found == [good]
    assert caplog.messages == [
        "skipped 1 invalid record on t "
        "(the first: cannot be read (OverflowError: int too large to convert to float))"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1000000d", "too far back to be a time"),
        ("99999999999999999999s", "too far back to be a time"),
        ("30000d", "before 1970"),
        ("1969-07-20T20:17:00Z", "before 1970"),
        ("0001-01-01", "before 1970"),
        ("yesterday", "(a time without a zone is UTC)"),
        ("²m", "give a duration like 10m"),
    ],
)
def test_since_out_of_range_is_a_usage_error(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        reader.parse_since(text)


def test_since_without_a_zone_is_utc() -> None:
    assert reader.parse_since("2026-11-25T10:00:00") == datetime(2026, 11, 25, 10, tzinfo=UTC)
    assert reader.parse_since("1970-01-01T00:00:00Z") == reader.EPOCH


def test_none_since_a_time_says_since_when(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader, "read_predictions", lambda config, since=None: iter([]))
    since = reader.parse_since("2026-11-25T10:00:00Z")
    with pytest.raises(NoDataError, match=r"no predictions matching model=pa since 2026-11-25T10:"):
        reader.load_predictions(_config(), model="pa", since=since)


def test_a_deck_name_that_is_not_utf8_can_be_shown() -> None:
    """A deck file named in Latin-1 (``in.m\\xe9tal``) gives a deck name with a lone surrogate,
    which the records carry on: the table shows it escaped instead of failing to print."""
    from lammps_stream.schemas import decode_json

    raw = encode(example_prediction(params={"deck": "m\udce9tal", "x": 2, "ranks": 1}))
    row = table_row(validate_prediction(decode_json(raw)))
    assert row["params"] == "m\\udce9tal 2 np=1"
    for text in row.values():
        text.encode("utf-8")
    assert json.loads(to_json_line(decode_json(raw)))["params"]["deck"] == "m\udce9tal"
