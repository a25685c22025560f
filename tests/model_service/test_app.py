"""The Faust app's handlers without Kafka: answering PredictRequests while shards are restored
and on a standby, suggestions that cannot be encoded, and the shutdown's models-topic reader
(the agents themselves run against a real broker in the integration tests)."""

from __future__ import annotations

import asyncio
import functools
import json
import math
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from lammps_stream.config import load_config
from lammps_stream.schemas import REQUEST_SCHEMA, example_run_record
from model_service import app as app_module
from model_service.app import Wiring, _answer_request, _publish_suggestions, _shut_down, _sync_round
from model_service.service import ModelService

PARAMS = {"deck": "lj", "x": 2, "y": 1, "z": 1, "steps": 100, "ranks": 2, "threads": 1}


class Topic:
    """Stands in for an Outgoing topic: what was sent, decoded."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, dict[str, Any]]] = []

    async def send(self, key: bytes | None, value: bytes, on_delivered: Any = None) -> None:
        self.sent.append((key, json.loads(value)))


class Snapshots:
    def __init__(self) -> None:
        self.published: list[Any] = []

    async def publish(self, taken: list[Any]) -> None:
        self.published.extend(taken)


def wiring(models: tuple[str, ...] = ("linear", "pa")) -> Wiring:
    config = load_config(path=None, env={}, overrides={"service.models": list(models)})
    return Wiring(
        app=SimpleNamespace(should_stop=False),
        config=config,
        service=ModelService(config),
        predictions=Topic(),  # type: ignore[arg-type]
        dlq=Topic(),  # type: ignore[arg-type]
        suggested=Topic(),  # type: ignore[arg-type]
        snapshots=Snapshots(),  # type: ignore[arg-type]
    )


def request(request_id: str = "q1", offset: int = 0, partition: int = 0, **changes: Any) -> Any:
    body = {"schema": REQUEST_SCHEMA, "request_id": request_id, "params": PARAMS} | changes
    return SimpleNamespace(
        topic="lammps.requests",
        partition=partition,
        offset=offset,
        key=request_id.encode(),
        value=json.dumps(body).encode(),
    )


def holding(w: Wiring, *partitions: int) -> None:
    """``w``'s worker assigned ``partitions``, their shards restored."""
    w.service.assignment = set(partitions)
    for partition in partitions:
        w.service.rebuilding(partition)
        w.service.adopt(partition, w.service.shards.fresh())
    w.service.assigned = True


def reasons(w: Wiring) -> list[tuple[str, str]]:
    return [(letter["reason"]["code"], letter["reason"]["message"]) for _, letter in w.dlq.sent]


def test_a_request_is_answered_by_every_model() -> None:
    w = wiring()
    holding(w, 0)
    asyncio.run(_answer_request(w, request()))
    assert [(k, p["model"]) for k, p in w.predictions.sent] == [(b"q1", "linear"), (b"q1", "pa")]
    assert w.dlq.sent == []
    w.service.close()


def test_a_request_during_a_restore_waits_for_the_shards_and_is_answered() -> None:
    w = wiring()

    async def main() -> None:
        w.service.assignment = {0}  # the first assignment: shard 0 being rebuilt
        w.service.rebuilding(0)
        answering = asyncio.ensure_future(_answer_request(w, request()))
        await asyncio.sleep(0.2)
        assert not answering.done() and w.predictions.sent == w.dlq.sent == []
        w.service.adopt(0, w.service.shards.fresh())
        w.service.assigned = True
        await asyncio.wait_for(answering, 2.0)

    asyncio.run(main())
    assert len(w.predictions.sent) == 2 and w.dlq.sent == []
    w.service.close()


def test_a_request_during_a_rebalance_waits_for_the_rebuilt_shard() -> None:
    w = wiring()
    holding(w, 0)

    async def main() -> None:
        w.service.shards.drop(0)  # revoked (aiokafka revokes everything), to come back
        w.service.rebuilding(0)
        answering = asyncio.ensure_future(_answer_request(w, request()))
        await asyncio.sleep(0.2)
        assert not answering.done()
        w.service.adopt(0, w.service.shards.fresh())
        await asyncio.wait_for(answering, 2.0)

    asyncio.run(main())
    assert len(w.predictions.sent) == 2 and w.dlq.sent == []
    w.service.close()


def test_a_request_to_a_standby_is_a_dead_letter_not_lost() -> None:
    w = wiring()
    holding(w)  # assigned, and given no runs partition
    asyncio.run(_answer_request(w, request()))
    assert w.predictions.sent == []
    ((code, message),) = reasons(w)
    assert code == "processing_error" and "learns no runs partition" in message
    w.service.close()


def test_a_request_still_unanswerable_after_the_wait_is_a_dead_letter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app_module, "REQUEST_RESTORE_WAIT_SECONDS", 0.2)
    w = wiring()
    w.service.assignment = {0}
    w.service.rebuilding(0)  # and never rebuilt
    started = time.monotonic()
    asyncio.run(_answer_request(w, request()))
    assert 0.15 < time.monotonic() - started < 2.0
    ((code, message),) = reasons(w)
    assert code == "processing_error" and "still being restored after 0.2 s" in message
    w.service.close()


def test_a_request_waiting_when_the_worker_stops_is_a_dead_letter_at_once() -> None:
    w = wiring()
    w.service.assignment = {0}
    w.service.rebuilding(0)
    w.app.should_stop = True
    started = time.monotonic()
    asyncio.run(_answer_request(w, request()))
    assert time.monotonic() - started < 1.0
    ((code, message),) = reasons(w)
    assert code == "processing_error" and "stopping" in message
    w.service.close()


def test_a_bad_request_goes_to_the_dead_letters_with_its_code() -> None:
    w = wiring()
    holding(w, 0)
    asyncio.run(_answer_request(w, request(params={"deck": "lj"})))
    assert [code for code, _ in reasons(w)] == ["missing_field"]
    w.service.close()


def test_a_request_whose_handling_raises_is_a_dead_letter_and_the_next_is_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = wiring()
    holding(w, 0)
    real = app_module.validate_request

    def fails_once(record: Any) -> Any:
        if record["request_id"] == "q1":
            raise TypeError("a bug")
        return real(record)

    monkeypatch.setattr(app_module, "validate_request", fails_once)

    async def main() -> None:
        await _answer_request(w, request("q1", offset=0))
        await _answer_request(w, request("q2", offset=1))

    asyncio.run(main())
    assert reasons(w) == [("processing_error", "TypeError('a bug')")]
    assert {k for k, _ in w.predictions.sent} == {b"q2"}
    w.service.close()


def test_a_request_no_model_could_answer_is_a_dead_letter() -> None:
    w = wiring(models=("linear",))
    holding(w, 0)
    w.service.shards.by_partition[0].state["linear"].model = None  # predict_one raises
    asyncio.run(_answer_request(w, request()))
    assert w.predictions.sent == []
    ((code, message),) = reasons(w)
    assert code == "processing_error" and "no model could answer" in message
    w.service.close()


def test_suggestions_that_cannot_be_encoded_are_left_out_and_say_so(caplog: Any) -> None:
    w = wiring()
    good = {"suggestion_id": "s1", "score": 0.5, "params": PARAMS}
    bad = {"suggestion_id": "s2", "score": math.nan, "params": PARAMS}

    async def scored(scoring: Any) -> list[dict[str, Any]]:
        return [bad, good]

    w.service.score = scored  # type: ignore[method-assign]
    w.service.schedule.busy = True
    asyncio.run(_publish_suggestions(w, lambda: []))  # must not raise
    assert [k for k, _ in w.suggested.sent] == [b"s1"]
    assert not w.service.schedule.busy
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "1 suggestion(s) could not be encoded" in said
    w.service.close()


class SlowChanges:
    """A models-topic reader whose read takes a while, and which says whether it was closed
    while a read was under way (kafka-python consumers are not thread-safe)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.reading = threading.Event()
        self.closed_while_reading: bool | None = None

    def read(self, known: set[str]) -> list[Any]:
        self.reading.set()
        time.sleep(self.seconds)
        self.reading.clear()
        return []

    def close(self) -> None:
        self.closed_while_reading = self.reading.is_set()


def test_shutdown_waits_for_a_models_topic_read_before_closing_the_reader() -> None:
    w = wiring()
    holding(w, 0)
    changes = SlowChanges(0.3)
    w.service.changes = changes  # type: ignore[assignment]

    async def main() -> None:
        round_ = asyncio.ensure_future(_sync_round(w))
        while not changes.reading.is_set():
            await asyncio.sleep(0.01)
        round_.cancel()  # as Faust cancels its tasks: the read in its thread goes on
        await _shut_down(w)

    asyncio.run(main())
    assert changes.closed_while_reading is False


def test_a_read_outlasting_the_shutdown_wait_leaves_the_reader_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app_module, "SHUTDOWN_SYNC_WAIT_SECONDS", 0.1)
    w = wiring()
    holding(w, 0)
    changes = SlowChanges(0.5)
    w.service.changes = changes  # type: ignore[assignment]

    async def main() -> None:
        round_ = asyncio.ensure_future(_sync_round(w))
        while not changes.reading.is_set():
            await asyncio.sleep(0.01)
        await _shut_down(w)
        await asyncio.sleep(0.6)  # the read ends on its own
        await round_

    asyncio.run(main())
    assert changes.closed_while_reading is None  # never closed under the read


def test_shutdown_snapshots_every_shard() -> None:
    w = wiring(models=("linear",))
    holding(w, 0)
    w.service.shards.handle(0, example_run_record(), 0)
    asyncio.run(_shut_down(w))
    assert [c.model for c in w.snapshots.published] == ["linear"]


TREE = {"name": "tree", "class": "river.tree.HoeffdingTreeRegressor"}


class ModelsTopic:
    """``read_snapshots`` reading the records given, with their timestamps (ms); ``during``
    runs on the event loop halfway through the read, as a request would."""

    def __init__(self, records: list[tuple[bytes, bytes | None, float]]) -> None:
        self.records = records
        self.during: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def read(self, config: Any, topic: str, partition: int, start: int, end: Any, **kw: Any):
        for offset, (key, value, at) in enumerate(self.records):
            if offset == 1 and self.during is not None and self.loop is not None:
                asyncio.run_coroutine_threadsafe(self.during(), self.loop).result()
            yield SimpleNamespace(offset=offset, key=key, value=value, timestamp=int(at * 1000))


def taking_over(
    w: Wiring, topic: ModelsTopic, monkeypatch: pytest.MonkeyPatch, *partitions: int
) -> None:
    """``_take_over`` of ``partitions`` (0 alone by default), the models topic being
    ``topic`` (no Kafka)."""
    from model_service import recovery

    monkeypatch.setattr(recovery, "_read_partition_range", topic.read)
    monkeypatch.setattr(
        recovery,
        "rebuild_shard",
        lambda config, shards, found, key, p: recovery.RebuiltShard(shards.fresh(), {}),
    )

    async def main() -> None:
        topic.loop = asyncio.get_running_loop()
        await app_module._take_over(w, set(partitions or (0,)))

    asyncio.run(main())


def added_tree(w: Wiring) -> bytes:
    """A signed snapshot of tree, added at run time on some worker."""
    from lammps_stream.schemas import encode
    from model_service.learner import Learner
    from model_service.snapshots import snapshot_record
    from model_service.zoo import model_spec

    state = Learner([model_spec(TREE)], 0.9).state["tree"]
    record = snapshot_record(
        state, partition=0, runs_topic="lammps.runs", key=w.service.key, origin="added"
    )
    return encode(record)


def test_a_model_removed_during_the_models_topic_read_is_not_taken_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from model_service.model_admin import remove_model
    from model_service.zoo import model_spec

    w = wiring()
    holding(w, 1)
    w.service.shards.specs["tree"] = model_spec(TREE)
    w.service.origins["tree"] = "added"
    w.snapshots.remove = lambda name, partitions: asyncio.sleep(0)  # type: ignore[attr-defined]
    topic = ModelsTopic([(b"tree/0", added_tree(w), time.time() - 60), (b"pa/0", None, 0.0)])
    topic.during = lambda: remove_model(w.service, w.snapshots, "tree")  # DELETE meanwhile
    taking_over(w, topic, monkeypatch, 0, 1)  # keeps 1, is given 0
    assert "tree" not in w.service.shards.specs
    assert "tree" not in w.service.shards.by_partition[0].state
    w.service.close()


def test_a_model_removed_elsewhere_while_this_worker_rebuilt_is_not_rebuilt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its rounds of other workers' changes are skipped while it rebuilds: the tombstone it
    has not carried out yet is on the models topic it reads for the rebuild."""
    from model_service.zoo import model_spec

    w = wiring()
    w.service.shards.specs["tree"] = model_spec(TREE)
    w.service.origins["tree"] = "added"
    now = time.time()
    topic = ModelsTopic([(b"tree/0", added_tree(w), now - 60), (b"tree/0", None, now - 30)])
    taking_over(w, topic, monkeypatch)
    assert "tree" not in w.service.shards.specs and "tree" not in w.service.origins
    assert sorted(w.service.shards.by_partition[0].state) == ["linear", "pa"]
    w.service.close()


def test_a_model_added_here_after_the_tombstone_the_rebuild_reads_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from model_service.zoo import model_spec

    w = wiring()
    w.service.shards.specs["tree"] = model_spec(TREE)
    w.service.origins["tree"] = "added"
    w.service.sync.added_here("tree", at=time.time())
    topic = ModelsTopic([(b"tree/0", None, time.time() - 30)])
    taking_over(w, topic, monkeypatch)
    assert "tree" in w.service.shards.by_partition[0].state
    w.service.close()


# The HTTP views (model_service/views.py) on an aiohttp test server: no Kafka, no worker.


class Views:
    """A Faust app with the worker's views, its shard 0 restored, answering requests through
    ``answer`` (the shards' own predictions, published nowhere)."""

    def __init__(self, models: tuple[str, ...] = ("linear", "pa"), token: str = "") -> None:
        from model_service.views import add_views

        overrides: dict[str, Any] = {"service.models": list(models), "service.api_token": token}
        self.config = load_config(path=None, env={}, overrides=overrides)
        self.app = app_module._faust_app(self.config)
        self.service = ModelService(self.config)
        w = Wiring(
            app=self.app,
            config=self.config,
            service=self.service,
            predictions=Topic(),  # type: ignore[arg-type]
            dlq=Topic(),  # type: ignore[arg-type]
            suggested=Topic(),  # type: ignore[arg-type]
            snapshots=Snapshots(),  # type: ignore[arg-type]
        )
        holding(w, 0)
        add_views(self.app, self.service, functools.partial(app_module._answer, w), w.snapshots)
        self.app.web.init_server()
        self.loop = asyncio.new_event_loop()  # the web app's, for every request

    def close(self) -> None:
        self.loop.close()
        self.service.close()

    def ask(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """One request: its status and its body (as JSON when it is JSON)."""
        from aiohttp.test_utils import TestClient, TestServer

        async def main() -> tuple[int, Any]:
            async with TestClient(TestServer(self.app.web.web_app)) as client:
                response = await client.request(method, path, **kwargs)
                text = await response.text()
                try:
                    return response.status, json.loads(text)
                except ValueError:
                    return response.status, text

        return self.loop.run_until_complete(main())


@pytest.fixture
def views() -> Any:
    made = Views()
    yield made
    made.close()


def test_readyz_is_not_ready_while_a_rebalance_rebuilds_a_shard(views: Views) -> None:
    """Faust ends its rebalance (``app.rebalancing`` false) as soon as its own recovery is done,
    while the assignment handler may still be rebuilding the shards from the models topic."""
    assert views.ask("GET", "/readyz") == (200, {"ready": True})
    views.service.shards.drop(0)  # revoked, and given back: being rebuilt
    views.service.rebuilding(0)
    assert not views.app.rebalancing
    assert views.ask("GET", "/readyz") == (503, {"ready": False})
    views.service.adopt(0, views.service.shards.fresh())
    assert views.ask("GET", "/readyz") == (200, {"ready": True})


def test_a_model_spec_nested_too_deep_is_malformed_json_not_a_server_error(views: Views) -> None:
    status, body = views.ask("POST", "/models", data=b"[" * 100_000)
    assert status == 400 and body["code"] == "malformed_json"


def test_a_prediction_no_model_could_give_is_an_error_not_an_empty_answer(views: Views) -> None:
    for learner in views.service.shards.by_partition.values():
        for state in learner.state.values():
            state.model = None  # predict_one raises
    status, body = views.ask("POST", "/predict", json={"params": PARAMS})
    assert status == 500 and body["code"] == "processing_error"
    assert "no model could answer" in body["error"]


def test_a_model_added_while_the_broker_is_unreachable_is_refused_with_503_and_undone(
    views: Views, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lammps_stream.errors import BrokerUnavailableError
    from model_service import recovery

    def unreachable(*args: Any) -> int:
        raise BrokerUnavailableError("broker at 127.0.0.1:9092 is unreachable")

    monkeypatch.setattr(recovery, "warm_start", unreachable)  # replaying the runs topic
    status, body = views.ask("POST", "/models", json=TREE)
    assert status == 503 and body["code"] == "broker_unavailable"
    assert "unreachable" in body["error"]
    assert "tree" not in views.service.shards.specs and not views.service.adding


@pytest.mark.parametrize("path", ["/predict", "/models"])
@pytest.mark.parametrize("charset", ["no-such-charset", "base64", "rot13"])
def test_a_body_in_a_charset_python_cannot_decode_is_refused_not_a_server_error(
    views: Views, path: str, charset: str
) -> None:
    """aiohttp decodes the body with the charset the request names: an unknown one, or a
    codec that is not a text encoding, raises LookupError."""
    headers = {"Content-Type": f"application/json; charset={charset}"}
    status, body = views.ask("POST", path, data=json.dumps({"params": PARAMS}), headers=headers)
    assert status == 400 and body["code"] == "malformed_json"


def _standby_without_broker(views: Views, monkeypatch: pytest.MonkeyPatch) -> None:
    """``views``' worker made a standby (no partition: the runs partitions come from the
    broker) whose broker cannot say which partitions the runs topic has."""
    from lammps_stream.errors import BrokerUnavailableError
    from model_service import recovery

    def unreachable(*args: Any) -> list[int]:
        raise BrokerUnavailableError("broker at 127.0.0.1:9092 is unreachable")

    views.service.shards.drop(0)
    views.service.given_up(0)
    views.service.assignment = set()
    monkeypatch.setattr(recovery, "partitions_of", unreachable)


def test_a_model_added_on_a_standby_that_cannot_pass_it_on_says_so(
    views: Views, monkeypatch: pytest.MonkeyPatch
) -> None:
    _standby_without_broker(views, monkeypatch)
    status, body = views.ask("POST", "/models", json=TREE)
    assert status == 503 and body["code"] == "broker_unavailable"
    assert "added on this worker alone" in body["error"]
    assert "tree" in views.service.shards.specs


def test_a_model_removed_on_a_standby_that_cannot_reach_the_broker_is_503_and_kept(
    views: Views, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model was dropped before the runs partitions were asked for: a 500, no worker
    told, and asking again answered 404."""
    _standby_without_broker(views, monkeypatch)
    name = sorted(views.service.shards.specs)[0]
    status, body = views.ask("DELETE", f"/models/{name}")
    assert status == 503 and body["code"] == "broker_unavailable"
    assert "was not removed" in body["error"]
    assert name in views.service.shards.specs


def test_the_bearer_scheme_is_matched_in_any_case_and_the_token_exactly() -> None:
    """RFC 7235: the scheme is case-insensitive (`bearer t0ken` was refused); the token is not."""
    made = Views(token="t0ken")
    try:
        for header, status in [
            ("Bearer t0ken", 200),
            ("bearer t0ken", 200),
            ("BEARER t0ken", 200),
            ("Bearer T0KEN", 401),
            ("Basic t0ken", 401),
            ("Bearer", 401),
            ("t0ken", 401),
            ("", 401),
        ]:
            assert made.ask("GET", "/models", headers={"Authorization": header})[0] == status, (
                header
            )
        assert made.ask("GET", "/healthz")[0] == 200  # open
    finally:
        made.close()
