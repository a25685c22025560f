from __future__ import annotations

import json
from pathlib import Path

import pytest

from lammps_stream.config import load_config
from lammps_stream.errors import BrokerUnavailableError, InvalidRecordError, SpoolError
from lammps_stream.schemas import example_run_record, new_id
from producers.publisher import Delivery, Publisher


class FlakyBroker:
    """Stands in for Kafka inside a unit test: down until ``up`` is set."""

    def __init__(self) -> None:
        self.up = False
        self.sent: list[str] = []

    def __call__(self, record: dict) -> Delivery:
        if not self.up:
            raise BrokerUnavailableError("down")
        self.sent.append(record["run_id"])
        return Delivery(record["run_id"], "sent", 0, len(self.sent) - 1)


@pytest.fixture
def publisher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Publisher, FlakyBroker]:
    config = load_config(path=None, env={}, overrides={"producer.spool_dir": str(tmp_path)})
    pub = Publisher(config)
    broker = FlakyBroker()
    monkeypatch.setattr(pub, "_send", broker)
    return pub, broker


def test_outage_spools_and_the_next_publish_replays_in_order(publisher) -> None:
    pub, broker = publisher
    first, second, third = (example_run_record(run_id=new_id()) for _ in range(3))
    assert pub.publish(first).status == "spooled"
    assert pub.publish(second).status == "spooled"
    assert len(pub.spool) == 2
    broker.up = True
    assert pub.publish(third).status == "sent"
    assert broker.sent == [first["run_id"], second["run_id"], third["run_id"]]
    assert len(pub.spool) == 0


def test_flush_replays_each_record_once(publisher) -> None:
    pub, broker = publisher
    record = example_run_record(run_id=new_id())
    pub.publish(record)
    broker.up = True
    assert [d.run_id for d in pub.flush_spool()] == [record["run_id"]]
    assert pub.flush_spool() == []
    assert broker.sent == [record["run_id"]]


def test_flush_while_down_keeps_the_spool(publisher) -> None:
    pub, _ = publisher
    pub.publish(example_run_record(run_id=new_id()))
    with pytest.raises(BrokerUnavailableError):
        pub.flush_spool()
    assert len(pub.spool) == 1


def test_a_record_another_process_is_replaying_is_not_sent_again(publisher) -> None:
    pub, broker = publisher
    record = example_run_record(run_id=new_id())
    pub.publish(record)
    ((path, _),) = pub.spool.pending()
    assert pub.spool.claim(path) is not None  # another task of the array is sending it
    broker.up = True
    assert pub.flush_spool() == []
    assert broker.sent == []


def test_a_spool_that_cannot_be_replayed_does_not_stop_this_run(publisher, monkeypatch) -> None:
    pub, broker = publisher
    broker.up = True

    def unreadable() -> list:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(pub.spool, "pending", unreadable)
    record = example_run_record(run_id=new_id())
    assert pub.publish(record).status == "sent"
    assert broker.sent == [record["run_id"]]


def test_an_unwritable_spool_prints_the_record_and_says_how_to_replay_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("")
    spool_dir = tmp_path / "a-file" / "spool"
    config = load_config(path=None, env={}, overrides={"producer.spool_dir": str(spool_dir)})
    pub = Publisher(config)
    monkeypatch.setattr(pub, "_send", FlakyBroker())
    record = example_run_record(run_id=new_id())
    with pytest.raises(SpoolError, match=r"produce --replay FILE"):
        pub.publish(record)
    assert json.loads(capsys.readouterr().err) == record


def test_invalid_record_is_refused_before_sending(publisher) -> None:
    pub, broker = publisher
    broker.up = True
    with pytest.raises(InvalidRecordError):
        pub.publish(example_run_record(split="nope"))
    assert broker.sent == []


@pytest.mark.parametrize("up", [True, False])
def test_a_record_with_infinity_in_its_params_is_refused_neither_sent_nor_spooled(
    publisher, up: bool
) -> None:
    pub, broker = publisher
    broker.up = up
    record = example_run_record(run_id=new_id())
    record["params"]["vars"] = {"t": float("inf")}  # e.g. --var t=1e400, read as a float
    with pytest.raises(InvalidRecordError, match=r"params\.vars\.t: must be finite") as refused:
        pub.publish(record)
    assert refused.value.code == "not_finite"
    assert broker.sent == [] and len(pub.spool) == 0


@pytest.mark.parametrize("up", [True, False])
def test_a_record_no_json_can_hold_is_refused_with_one_clear_error(publisher, up: bool) -> None:
    """Not a broker outage: one error before anything is sent or spooled (the spool once
    raised a bare ValueError, and `produce --replay` stopped there)."""
    pub, broker = publisher
    broker.up = up
    record = example_run_record(run_id=new_id())
    record["env"]["load"] = float("nan")  # beyond what validation looks at
    with pytest.raises(InvalidRecordError) as refused:
        pub.publish(record)
    assert refused.value.code == "not_finite"
    said = str(refused.value)
    assert said.startswith(f"run {record['run_id']}: cannot be written as JSON: Out of range")
    assert said.endswith("; it is neither sent nor spooled")
    assert broker.sent == [] and len(pub.spool) == 0 and not list(pub.spool.directory.iterdir())


def test_a_spooled_record_no_json_can_hold_is_set_aside_and_the_rest_replayed(
    publisher, caplog: pytest.LogCaptureFixture
) -> None:
    pub, broker = publisher
    first = example_run_record(run_id=new_id())
    pub.publish(first)  # spooled: the broker is down
    bad = pub.spool.directory / "bad-ok.json"  # written by an older version, or by hand
    bad.write_text('{"run_id": "bad", "status": "ok", "result": {"wall_seconds": NaN}}')
    broker.up = True
    second = example_run_record(run_id=new_id())
    with caplog.at_level("ERROR", logger="producers.publisher"):
        assert pub.publish(second).status == "sent"
    assert broker.sent == [first["run_id"], second["run_id"]]
    assert len(pub.spool) == 0 and pub.flush_spool() == []
    assert [p.name for p in pub.spool.directory.iterdir()] == [".unreadable-bad-ok.json"]
    (said,) = [r.getMessage() for r in caplog.records]
    assert "run bad: cannot be written as JSON" in said and ".unreadable-bad-ok.json" in said


def test_an_unreachable_pushgateway_never_fails_a_run() -> None:
    from producers.pushgateway import push_run

    record = example_run_record(run_id=new_id())
    assert push_run("http://127.0.0.1:1", record) is False


def test_a_pushgateway_that_cannot_be_asked_never_fails_a_run() -> None:
    from producers.pushgateway import push_run

    assert push_run("http://pushgw:91a", example_run_record(run_id=new_id())) is False


def test_a_malformed_pushgateway_url_is_refused_with_the_config() -> None:
    from lammps_stream.errors import ConfigError

    with pytest.raises(ConfigError, match=r"producer\.pushgateway: expected a URL like"):
        load_config(path=None, env={}, overrides={"producer.pushgateway": "http://pushgw:91a"})
    for good in ("pushgateway:9091", "https://gw.example.org", "http://10.0.0.1:9091/"):
        load_config(path=None, env={}, overrides={"producer.pushgateway": good})


def test_a_missing_tls_file_spools_the_run_and_says_why(tmp_path: Path) -> None:
    config = load_config(
        path=None,
        env={},
        overrides={
            "producer.spool_dir": str(tmp_path),
            "kafka.security_protocol": "SSL",
            "kafka.ssl_cafile": str(tmp_path / "missing-ca.crt"),
        },
    )
    delivery = Publisher(config).publish(example_run_record(run_id=new_id()))
    assert delivery.status == "spooled"
    assert delivery.reason.startswith(f"kafka.ssl_cafile: {tmp_path / 'missing-ca.crt'} does not")


def test_produce_replay_reports_each_unusable_line_and_sends_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`produce --replay` once stopped midway: its lines decoded (infinity, a number no double
    holds), then the publisher raised a bare ValueError. Each is now an invalid line, reported
    with its reason code and skipped, as a line that is not JSON always was."""
    from rich.console import Console

    from lammps_stream.schemas import encode
    from producers import commands

    good = [example_run_record(run_id=new_id()) for _ in range(2)]
    raw = encode(example_run_record(run_id=new_id()))
    lines = [
        encode(good[0]),
        raw.replace(b'"threads":1', b'"threads":1,"vars":{"t":1e400}'),
        raw.replace(b'"wall_seconds":2.1', b'"wall_seconds":1' + b"0" * 400),
        b"[" * 400_000,
        encode(good[1]),
    ]
    recorded = tmp_path / "runs.jsonl"
    recorded.write_bytes(b"\n".join(lines) + b"\n")
    published: list[str] = []

    class Sending:
        def __init__(self, config) -> None: ...

        def publish(self, record: dict) -> Delivery:
            published.append(record["run_id"])
            return Delivery(record["run_id"], "sent", 0, len(published))

        def close(self) -> None: ...

    out = Console(width=300, record=True, color_system=None)
    monkeypatch.setattr("producers.publisher.Publisher", Sending)
    monkeypatch.setattr(commands, "_console", lambda: out)
    config = load_config(path=None, env={}, overrides={"producer.spool_dir": str(tmp_path)})
    assert commands.replay(config, str(recorded)) == 1
    assert published == [r["run_id"] for r in good]
    said = out.export_text()
    assert "line 2: JSON number 1e400 is not finite (beyond a double's range) (not_finite)" in said
    assert "line 3: JSON number 1000000000…0000 (401 digits) is not finite" in said
    assert "line 4: not valid JSON: nested more than 64 levels deep (malformed_json)" in said
    assert "replayed 2 record(s)" in said and "skipped 3" in said


def test_a_record_the_broker_refuses_for_good_never_blocks_the_spool(
    publisher, caplog: pytest.LogCaptureFixture
) -> None:
    """A spooled record over the broker's message size (a broker with a smaller
    ``message.max.bytes``), and a file in the spool that is no RunRecord: each set aside once,
    the others replayed; a new record refused so is set aside too, not spooled."""
    pub, broker = publisher
    big = example_run_record(run_id=new_id())
    first = example_run_record(run_id=new_id())
    for record in (big, first):
        pub.publish(record)  # spooled: the broker is down
    (pub.spool.directory / "foreign.json").write_text('{"hello": "world"}')
    broker.up = True
    sent = broker.__call__

    def refusing(record: dict) -> Delivery:
        if record["run_id"] in (big["run_id"], late_big["run_id"]):
            raise InvalidRecordError("refused", f"run {record['run_id']}: refused for good")
        return sent(record)

    late_big = example_run_record(run_id=new_id())
    pub._send = refusing
    with caplog.at_level("ERROR", logger="producers.publisher"):
        assert pub.publish(example_run_record(run_id=new_id())).status == "sent"
        delivery = pub.publish(late_big)
    assert broker.sent[0] == first["run_id"] and len(broker.sent) == 2
    assert (delivery.status, delivery.reason) == (
        "set aside",
        f"run {late_big['run_id']}: refused for good",
    )
    kept = sorted(p.name for p in pub.spool.directory.iterdir())
    assert kept == sorted(
        [
            f".unreadable-{big['run_id']}-ok.json",
            f".unreadable-{late_big['run_id']}-ok.json",
            ".unreadable-foreign.json",
        ]
    )
    assert len(pub.spool) == 0 and pub.flush_spool() == []


def test_a_record_larger_than_a_kafka_message_is_refused_before_sending(publisher) -> None:
    pub, broker = publisher
    broker.up = True
    record = example_run_record(run_id=new_id())
    record["params"]["vars"] = {"blob": "x" * 1_100_000}
    with pytest.raises(InvalidRecordError) as caught:
        pub.publish(record)
    assert caught.value.code == "too_large"
    assert "more than a Kafka message holds (1,000,000)" in str(caught.value)
    assert broker.sent == [] and not list(pub.spool.directory.iterdir())


class StuckProducer:
    """kafka-python's KafkaProducer after the broker went away mid-send: the record's batch
    is never acknowledged, so ``get`` times out, and so does ``close`` (it flushes first and
    raises KafkaTimeoutError while a batch is pending) until the sender is force-closed."""

    def __init__(self) -> None:
        self.pending = False
        self.closed = False
        self._sender = self  # KafkaProducer._sender: force_close() drops pending batches

    def send(self, topic: str, key: bytes, value: bytes) -> StuckProducer:
        self.pending = True
        return self

    def get(self, timeout: float) -> None:
        from kafka.errors import KafkaTimeoutError

        raise KafkaTimeoutError(f"Timeout after waiting for {timeout} secs.")

    def force_close(self) -> None:
        self.pending = False

    def close(self, timeout: float | None = None) -> None:
        from kafka.errors import KafkaTimeoutError

        if self.pending:
            raise KafkaTimeoutError("Timeout waiting for future")
        self.closed = True


def test_a_broker_lost_mid_send_spools_the_run_and_closes_the_producer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker went away after the producer connected: the acknowledgement never came,
    and closing the producer (whose flush times out on the unacknowledged record) once raised
    KafkaTimeoutError out of publish: the finished run was neither sent nor spooled."""
    producers: list[StuckProducer] = []

    def stuck(config) -> StuckProducer:
        producers.append(StuckProducer())
        return producers[-1]

    monkeypatch.setattr("producers.publisher.make_producer", stuck)
    config = load_config(path=None, env={}, overrides={"producer.spool_dir": str(tmp_path)})
    pub = Publisher(config)
    record = example_run_record(run_id=new_id())
    delivery = pub.publish(record)
    pub.close()
    assert delivery.status == "spooled" and "KafkaTimeoutError" in delivery.reason
    assert [r for _, r in pub.spool.pending()] == [record]
    assert pub._producer is None and all(p.closed for p in producers)
