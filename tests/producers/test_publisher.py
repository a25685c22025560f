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
