"""The service's HTTP API as the clients see it, against a tiny local server."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from lammps_stream.config import Config, load_config
from lammps_stream.errors import BrokerUnavailableError, UsageError
from lammps_stream.service_api import ServiceApi, ServiceRefusedError, ServiceTimeoutError
from tests.fake_service import fake_service


def test_an_answer_slower_than_the_timeout_says_so() -> None:
    with fake_service(delay=5) as config:
        api = ServiceApi(config, timeout=0.2)
        with pytest.raises(ServiceTimeoutError) as caught:
            api.post("/models", {"name": "tree"})
    assert isinstance(caught.value, BrokerUnavailableError)  # exit code and callers as before
    assert str(caught.value) == (
        f"model service at {config.service.url} did not answer POST /models within 0.2 s; "
        "check it with `lammps-stream stack status`"
    )


def test_an_answer_within_the_timeout_is_the_json() -> None:
    with fake_service(body={"models": []}, delay=0.05) as config:
        assert ServiceApi(config, timeout=5).get("/models") == {"models": []}


def test_a_refusal_keeps_its_status_and_code() -> None:
    answer = {"error": "model 'tree' exists;\nremove it first", "code": "exists"}
    with (
        fake_service(status=409, body=answer) as config,
        pytest.raises(ServiceRefusedError) as caught,
    ):
        ServiceApi(config).post("/models", {"name": "tree"})
    refused = caught.value
    assert isinstance(refused, UsageError)
    assert (refused.status, refused.code) == (409, "exists")
    assert str(refused) == (
        "POST /models: the service refused (409): model 'tree' exists; remove it first"
    )


def test_no_service_is_not_answering() -> None:
    with fake_service() as config:
        pass  # closed: nothing listens on its port now
    with pytest.raises(BrokerUnavailableError, match="is not answering") as caught:
        ServiceApi(config, timeout=2).get("/models")
    assert not isinstance(caught.value, ServiceTimeoutError)


@contextlib.contextmanager
def raw_server(reply: bytes) -> Iterator[Config]:
    """A local TCP server sending ``reply`` (raw bytes, HTTP or not) to the first request,
    then closing; the config that points at it."""
    server = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        with contextlib.suppress(OSError):
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(reply)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        port = server.getsockname()[1]
        yield load_config(path=None, env={}, overrides={"service.http_port": port})
    finally:
        server.close()
        thread.join(timeout=5)


@pytest.mark.parametrize(
    "reply",
    [
        b"SSH-2.0-OpenSSH_9.2p1\r\n",  # service.url names another program's port
        b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"models"',  # cut off mid-answer
    ],
    ids=["not-http", "cut-off"],
)
def test_an_answer_that_is_not_http_or_is_cut_off_is_one_line(reply: bytes) -> None:
    with raw_server(reply) as config, pytest.raises(BrokerUnavailableError) as caught:
        ServiceApi(config, timeout=5).get("/models")
    message = str(caught.value)
    assert "\n" not in message and config.service.url in message
    assert "GET /models" in message and "service.url" in message


@pytest.mark.parametrize("body", [b"<html>", b"[]"], ids=["html", "json-array"])
def test_an_answer_that_is_no_json_object_says_so(body: bytes) -> None:
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    with raw_server(head + body) as config, pytest.raises(BrokerUnavailableError) as caught:
        ServiceApi(config, timeout=5).get("/models")
    message = str(caught.value)
    assert "no JSON object" in message and "service.url" in message
    assert "not answering" not in message  # it answered: something else is at that address
