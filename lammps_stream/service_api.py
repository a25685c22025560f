"""The model service's HTTP API as its clients use it (the consumers' commands, the
campaign's questions, the benchmarks): JSON in and out, the bearer token from
``service.api_token``, and one-line errors.

>>> from lammps_stream.config import load_config
>>> api = ServiceApi(load_config(path=None, env={}, overrides={"service.api_token": "t0k"}))
>>> api.url("/models"), api.headers()["Authorization"]
('http://127.0.0.1:6066/models', 'Bearer t0k')
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from typing import Any

from lammps_stream.config import Config
from lammps_stream.errors import BrokerUnavailableError, UsageError


class ServiceRefusedError(UsageError):
    """The service answered with an HTTP error: ``status``, its reason ``code`` (``exists``,
    ``bad_spec``, ...; ``""`` when it gave none) and its ``detail`` line."""

    def __init__(self, message: str, status: int, code: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.status, self.code, self.detail = status, code, detail


class ServiceTimeoutError(BrokerUnavailableError):
    """The service took the request but did not answer within the timeout: it may still be
    working on it."""


class ServiceApi:
    """``GET``/``POST``/``DELETE`` against the worker's web port; ``timeout`` seconds for
    each answer (a request that takes longer is a :class:`ServiceTimeoutError`)."""

    def __init__(self, config: Config, timeout: float = 10.0) -> None:
        self.base = config.service.url
        self.token = config.service.api_token
        self.timeout = timeout

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def get(self, path: str) -> dict[str, Any]:
        return self._call("GET", path)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", path, body)

    def delete(self, path: str) -> dict[str, Any]:
        return self._call("DELETE", path)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else _json_body(method, path, body)
        request = urllib.request.Request(
            self.url(path), data=data, headers=self.headers(), method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            raise _refusal(method, path, err) from None
        except TimeoutError:  # sent, and no answer in time (a connection never made: URLError)
            raise ServiceTimeoutError(
                f"model service at {self.base} did not answer {method} {path} within "
                f"{self.timeout:g} s; check it with `lammps-stream stack status`"
            ) from None
        except http.client.HTTPException as err:  # not HTTP at all, or cut off mid-answer
            raise BrokerUnavailableError(
                f"model service at {self.base} broke off its answer to {method} {path} "
                f"({err.__class__.__name__}); is service.url the model service's address? "
                "check it with `lammps-stream stack status`"
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise BrokerUnavailableError(
                f"model service at {self.base} is not answering ({err}); "
                "start it with `lammps-stream stack up`"
            ) from None
        return _answer(self.base, method, path, raw)


def _answer(base: str, method: str, path: str, raw: bytes) -> dict[str, Any]:
    """A 2xx answer's JSON object, or :class:`BrokerUnavailableError` when it is none (an
    HTML page, a list: another program answers at ``service.url``).

    >>> _answer("http://h:1", "GET", "/models", b'{"models": []}')
    {'models': []}
    >>> _answer("http://h:1", "GET", "/models", b"<html>")
    Traceback (most recent call last):
    ...
    lammps_stream.errors.BrokerUnavailableError: http://h:1 answered GET /models with no JSON ...
    """
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        shown = " ".join(raw[:40].decode("utf-8", "replace").split())
        raise BrokerUnavailableError(
            f"{base} answered {method} {path} with no JSON object ({shown!r}); is service.url "
            "(service.http_host, service.http_port) the model service's address?"
        )
    return answer


def _refusal(method: str, path: str, err: urllib.error.HTTPError) -> ServiceRefusedError:
    """What the service's refusal means, in one line.

    >>> import io
    >>> body = io.BytesIO(b'{"error": "no runs partition here", "code": "no_shard"}')
    >>> refused = _refusal("POST", "/predict", urllib.error.HTTPError("u", 503, "No", {}, body))
    >>> str(refused), refused.status, refused.code
    ('POST /predict: the service refused (503): no runs partition here', 503, 'no_shard')
    """
    try:
        answer = json.loads(err.read())
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        answer = {}
    detail = " ".join(str(answer.get("error", err.reason)).split())
    code = str(answer.get("code", ""))
    if err.code == 401:
        message = (
            f"{method} {path}: the service wants a bearer token; set service.api_token "
            "(LAMMPS_STREAM_SERVICE_API_TOKEN) to the worker's token"
        )
    else:
        message = f"{method} {path}: the service refused ({err.code}): {detail}"
    return ServiceRefusedError(message, err.code, code, detail)


def _json_body(method: str, path: str, body: dict[str, Any]) -> bytes:
    """``body`` as JSON, or :class:`UsageError` for a value JSON cannot hold.

    >>> import datetime
    >>> _json_body("POST", "/models", {"params": {"seed": datetime.date(2024, 1, 1)}})
    Traceback (most recent call last):
    ...
    lammps_stream.errors.UsageError: POST /models: a value cannot be sent as JSON ...
    """
    try:
        return json.dumps(body, allow_nan=False).encode()
    except (TypeError, ValueError) as err:
        raise UsageError(
            f"{method} {path}: a value cannot be sent as JSON ({err}); use numbers, text, "
            "true/false, lists and mappings (quote a date: 'seed=\"2024-01-01\"')"
        ) from None
