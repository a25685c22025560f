"""The service's HTTP API as the clients see it, against a tiny local server."""

from __future__ import annotations

import pytest

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
