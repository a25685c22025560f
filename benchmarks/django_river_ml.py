"""Comparison (c) of ``throughput``: the prototype's server, django-river-ml, learning the same
records with the same models through its own client, riverapi.

django-river-ml and riverapi come from PyPI into a venv of their own under
``~/.cache/lammps-stream/bench/django-river-ml`` (created once, reused; never the project's
venv), with the pins of django-river-ml's own ``requirements.txt`` and the project's river
version, so both sides run the same river code. A minimal Django project in a temporary
directory mounts the package's URLs (authentication and rate limits off, the package's default
shelve storage); Django's development server (``runserver --noreload``) serves it on a free
127.0.0.1 port. A driver running in that venv builds the models with
:func:`model_service.zoo.build_models` (the repository is on both processes' ``PYTHONPATH``,
which is how django-river-ml unpickles custom code), uploads them with
``Client.upload_model`` and calls ``Client.learn`` once per record per model. Every learn
request is predict, score, learn on the server, as the worker does. Only that loop is timed.

The features are computed here, by :func:`model_service.features.features`, and handed to the
driver as JSON: both sides learn the same ``x`` and ``y`` (``result.wall_seconds``).

``python -m benchmarks.django_river_ml [--records N]`` measures it alone, on the first N of the
records ``throughput`` learns (the recorded campaign, cycled), with the configured models.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV = Path("~/.cache/lammps-stream/bench/django-river-ml").expanduser()
MAX_RECORDS = 500
SERVER = "manage.py runserver --noreload (Django's development server, threaded)"
# django-river-ml 0.0.21 declares its dependencies unpinned; its requirements.txt pins these two
# (django-ratelimit 4 renamed the ``ratelimit`` module the package imports).
PINS = ("django-river-ml==0.0.21", "riverapi==0.0.21", "django-ratelimit==3.0.0", "pyjwt==1.7.1")
STAMP = "lammps-stream-requirements.txt"


class Unavailable(RuntimeError):
    """django-river-ml could not be installed, started or driven; the message says why."""


def requirements(river_version: str) -> list[str]:
    """What the venv gets: the pins above and the project's river.

    >>> requirements("0.26.1")[-1]
    'river==0.26.1'
    """
    return [*PINS, f"river=={river_version}"]


def payload(
    batch: list[dict[str, Any]], models: list[Any], limit: int = MAX_RECORDS
) -> dict[str, Any]:
    """What the driver learns: the first ``limit`` usable training records as (x, y).

    >>> record = {"status": "ok", "split": "train", "result": {"wall_seconds": 2.5},
    ...           "params": {"deck": "lj", "x": 2, "y": 1, "z": 1, "steps": 100, "ranks": 2,
    ...                      "threads": 1}}
    >>> p = payload([record, dict(record, status="failed")], ["pa"])
    >>> p["models"], p["y"], p["x"][0]["work_per_rank|lj"]
    (['pa'], [2.5], 100.0)
    """
    from model_service.features import features

    usable = [r for r in batch if r.get("status") == "ok" and r.get("split") == "train"][:limit]
    return {
        "models": list(models),
        "x": [features(r["params"]) for r in usable],
        "y": [float(r["result"]["wall_seconds"]) for r in usable],
    }


def model_name(item: Any) -> str:
    """A model entry's name: a built-in's name, or a mapping's ``name``."""
    return item if isinstance(item, str) else str(item["name"])


def shape(driven: dict[str, Any], storage: str = "shelve") -> dict[str, Any]:
    """The benchmark's entry from the driver's output.

    >>> out = {"seconds": 4.0, "records": 200, "hosted": ["pa", "linear"],
    ...        "seconds_by_model": {"pa": 1.5, "linear": 2.5},
    ...        "skipped": {"knn": "upload refused"}, "learned": {"pa": 200, "linear": 200},
    ...        "versions": {"django-river-ml": "0.0.21", "river": "0.26.1", "Django": "5.2",
    ...                     "riverapi": "0.0.21"}}
    >>> entry = shape(out)
    >>> entry["records_per_second"], entry["requests_per_second"], entry["models"]
    (50.0, 100.0, ['pa', 'linear'])
    >>> entry["milliseconds_per_request"]
    {'pa': 7.5, 'linear': 12.5}
    >>> entry["server"]
    'django-river-ml 0.0.21 (river 0.26.1, Django 5.2, riverapi 0.0.21)'
    >>> shape(dict(out, hosted=[], skipped={"knn": "refused"}))
    Traceback (most recent call last):
    ...
    benchmarks.django_river_ml.Unavailable: django-river-ml hosted no model: {'knn': 'refused'}
    >>> shape(dict(out, learned={"pa": 200, "linear": 199}))
    Traceback (most recent call last):
    ...
    benchmarks.django_river_ml.Unavailable: django-river-ml learned {'linear': 199} of 200 records
    """
    if not driven["hosted"]:
        raise Unavailable(f"django-river-ml hosted no model: {driven['skipped']}")
    seconds = driven["seconds"]
    records = driven["records"]
    short = {name: n for name, n in driven["learned"].items() if n != records}
    if short:
        raise Unavailable(f"django-river-ml learned {short} of {records} records")
    versions = driven["versions"]
    return {
        "records_per_second": round(records / seconds, 1),
        "records": records,
        "models": driven["hosted"],
        "skipped_models": driven["skipped"],
        "requests_per_second": round(records * len(driven["hosted"]) / seconds, 1),
        "milliseconds_per_request": {
            name: round(1000 * spent / records, 2)
            for name, spent in driven.get("seconds_by_model", {}).items()
        },
        "seconds": round(seconds, 2),
        "learned": driven["learned"],
        "server": f"django-river-ml {versions['django-river-ml']} (river {versions['river']}, "
        f"Django {versions['Django']}, riverapi {versions['riverapi']})",
        "serving": f"{SERVER}, {storage} storage, one riverapi learn request per record per model",
    }


def settings_source(site: Path) -> str:
    """``settings.py`` of the throwaway project: the package's example settings, trimmed."""
    return f"""import os
SITE = {str(site)!r}
SECRET_KEY = "lammps-stream-benchmark-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_river_ml",
    "rest_framework",
    "rest_framework.authtoken",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_river_ml.middleware.timer_middleware",
]
ROOT_URLCONF = "benchsite.urls"
DATABASES = {{
    "default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(SITE, "db.sqlite3")}}
}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
DJANGO_RIVER_ML = {{
    "URL_PREFIX": "api",
    "STORAGE_BACKEND": "shelve",
    "APP_DIR": SITE,
    "DISABLE_AUTHENTICATION": True,
    "VIEW_RATE_LIMIT_DISABLE": True,
    "SHELVE_SECRET_KEY": "lammps-stream-benchmark-only",
    "JWT_SECRET_KEY": "lammps-stream-benchmark-only",
}}
"""


URLS = """from django.urls import include, path

urlpatterns = [path("", include("django_river_ml.urls", namespace="django_river_ml"))]
"""


def ensure_venv(river_version: str, venv: Path = VENV) -> Path:
    """The venv's python, with :func:`requirements` installed (once; again if they change)."""
    python = venv / "bin" / "python"
    wanted = "\n".join(requirements(river_version)) + "\n"
    stamp = venv / STAMP
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    if not python.exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        _run([_base_python(), "-m", "venv", str(venv)], "creating its venv")
    _run(
        [str(python), "-m", "pip", "install", "--quiet", *requirements(river_version)],
        f"pip install {' '.join(requirements(river_version))}",
        timeout=1200,
    )
    stamp.write_text(wanted)
    return python


def _base_python() -> str:
    """The interpreter this venv was made from (``python -m venv`` from a venv is fine too)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def _run(command: list[str], what: str, timeout: float = 600, **kwargs: Any) -> str:
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise Unavailable(f"django-river-ml: {what} failed: {err}") from err
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise Unavailable(f"django-river-ml: {what} failed (exit {done.returncode}): {tail}")
    return done.stdout


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_site(site: Path) -> None:
    """The throwaway Django project: ``benchsite/settings.py`` and ``benchsite/urls.py``."""
    package = site / "benchsite"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(settings_source(site))
    (package / "urls.py").write_text(URLS)


def _environment(site: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    env["DJANGO_SETTINGS_MODULE"] = "benchsite.settings"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _wait_until_up(url: str, server: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-5:])
            raise Unavailable(f"django-river-ml: the server exited ({server.returncode}): {tail}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as answer:
            if answer.status == 200:
                return
        time.sleep(0.2)
    raise Unavailable(f"django-river-ml: no answer from {url} within {timeout:.0f} s")


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def _storage(site: Path) -> str:
    import dbm

    kind = dbm.whichdb(str(site / "shelve.db"))
    return f"shelve ({kind})" if kind else "shelve"


def measure(
    batch: list[dict[str, Any]], models: list[Any], limit: int = MAX_RECORDS
) -> dict[str, Any]:
    """Records per second django-river-ml learns ``models`` on (at most ``limit`` of) ``batch``.

    Raises :class:`Unavailable` when it cannot be installed, started or driven.
    """
    from importlib.metadata import version

    python = ensure_venv(version("river"))
    work = payload(batch, models, limit)
    if not work["x"]:
        raise Unavailable("django-river-ml: no usable training records to learn")
    site = Path(tempfile.mkdtemp(prefix="lammps-stream-drml-"))
    server = None
    try:
        write_site(site)
        env = _environment(site)
        _run([str(python), "-m", "django", "migrate", "--verbosity", "0"], "migrate", env=env)
        port = free_port()
        log = site / "server.log"
        with log.open("wb") as out:
            server = subprocess.Popen(
                [str(python), "-m", "django", "runserver", "--noreload", f"127.0.0.1:{port}"],
                cwd=site,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        url = f"http://127.0.0.1:{port}"
        _wait_until_up(f"{url}/api/", server, log, timeout=120)
        job = site / "payload.json"
        job.write_text(json.dumps(dict(work, url=url)))
        out_text = _run(
            [str(python), "-m", "benchmarks.django_river_ml", "--driver", str(job)],
            "driving it with riverapi",
            timeout=3600,
            cwd=site,
            env=env,
        )
        driven = json.loads(out_text.strip().splitlines()[-1])
        if "error" in driven:
            raise Unavailable(f"django-river-ml: {driven['error']}")
        return shape(driven, _storage(site))
    finally:
        if server is not None:
            _stop(server)
        shutil.rmtree(site, ignore_errors=True)


def drive(job: dict[str, Any]) -> dict[str, Any]:
    """In django-river-ml's venv: upload the models, time the learn calls, read the counts."""
    from riverapi.main import Client

    from model_service.zoo import build_models

    client = Client(job["url"], quiet=True)
    hosted: list[str] = []
    skipped: dict[str, str] = {}
    for item in job["models"]:
        name = model_name(item)
        try:
            model = build_models([item])[name]
        except Exception as err:
            skipped[name] = f"cannot build it with this river: {err!r}"
            continue
        try:
            client.upload_model(model, "regression", model_name=name)
        except (Exception, SystemExit) as err:
            skipped[name] = f"upload refused: {err!r}"
            continue
        hosted.append(name)
    pairs = list(zip(job["x"], job["y"], strict=True))
    by_model = dict.fromkeys(hosted, 0.0)
    started = time.perf_counter()
    for i, (x, y) in enumerate(pairs):
        for name in hosted:
            request_started = time.perf_counter()
            try:
                client.learn(name, x=x, y=y)
            except (Exception, SystemExit) as err:
                return {"error": f"learn failed for {name} on record {i}: {err!r}"}
            by_model[name] += time.perf_counter() - request_started
    seconds = time.perf_counter() - started
    learned = {name: client.stats(name)["learn"]["n_calls"] for name in hosted}
    return {
        "seconds": seconds,
        "seconds_by_model": by_model,
        "records": len(pairs),
        "hosted": hosted,
        "skipped": skipped,
        "learned": learned,
        "versions": versions(),
    }


def versions() -> dict[str, str]:
    """The installed versions of what the comparison runs on (in django-river-ml's venv)."""
    from importlib.metadata import version

    return {name: version(name) for name in ("django-river-ml", "river", "Django", "riverapi")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.django_river_ml")
    parser.add_argument("--records", type=int, default=200, help="records to learn (default 200)")
    parser.add_argument("--driver", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.driver:
        print(json.dumps(drive(json.loads(Path(args.driver).read_text()))))
        return 0
    from benchmarks.harness import machine
    from benchmarks.throughput import records
    from lammps_stream.config import load_config

    batch = records(args.records)
    models = load_config(path=None, env={}, overrides={}).service.models
    print(json.dumps(measure(batch, models, limit=args.records) | {"machine": machine()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
