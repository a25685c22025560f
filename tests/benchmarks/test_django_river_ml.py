"""The pure parts of the django-river-ml comparison: what is installed, what the driver is
given, how its output becomes the benchmark's entry, and the driver's loop against a fake
riverapi client. Nothing here installs, starts or calls a server."""

from __future__ import annotations

import doctest
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from benchmarks import django_river_ml, throughput
from model_service.features import features


def test_doctests() -> None:
    assert doctest.testmod(django_river_ml).failed == 0


def test_payload_is_what_the_service_learns() -> None:
    batch = throughput.records(12)
    batch[3] = dict(batch[3], status="failed")
    batch[5] = dict(batch[5], split="test")
    work = django_river_ml.payload(batch, ["linear", "pa"], limit=8)
    usable = [r for i, r in enumerate(batch) if i not in (3, 5)][:8]
    assert work["models"] == ["linear", "pa"]
    assert work["x"] == [features(r["params"]) for r in usable]
    assert work["y"] == [r["result"]["wall_seconds"] for r in usable]


def test_requirements_pin_the_project_river() -> None:
    wanted = django_river_ml.requirements("1.2.3")
    assert "django-river-ml==0.0.21" in wanted
    assert "riverapi==0.0.21" in wanted
    assert wanted[-1] == "river==1.2.3"


def test_site_settings_mount_the_package(tmp_path: Path) -> None:
    django_river_ml.write_site(tmp_path)
    namespace: dict[str, Any] = {}
    exec((tmp_path / "benchsite" / "settings.py").read_text(), namespace)
    assert "django_river_ml" in namespace["INSTALLED_APPS"]
    assert namespace["DJANGO_RIVER_ML"]["APP_DIR"] == str(tmp_path)
    assert namespace["DJANGO_RIVER_ML"]["DISABLE_AUTHENTICATION"] is True
    assert namespace["ROOT_URLCONF"] == "benchsite.urls"
    assert "django_river_ml.urls" in (tmp_path / "benchsite" / "urls.py").read_text()


def test_free_port_is_a_port() -> None:
    assert 0 < django_river_ml.free_port() < 65536


def test_model_name_of_a_builtin_and_a_mapping() -> None:
    assert django_river_ml.model_name("pa") == "pa"
    assert django_river_ml.model_name({"name": "tree", "class": "river.tree.X"}) == "tree"


class FakeClient:
    """riverapi's Client as far as the driver uses it; refuses to host ``refused``."""

    calls: list[tuple[str, dict[str, float], float]]

    def __init__(self, url: str, quiet: bool = False) -> None:
        assert quiet, "the driver must not print every response"
        self.models: dict[str, int] = {}
        FakeClient.calls = []

    def upload_model(self, model: Any, flavor: str, model_name: str) -> str:
        assert flavor == "regression"
        if model_name == "refused":
            raise SystemExit("Unsuccessful response: 400")
        self.models[model_name] = 0
        return model_name

    def learn(self, name: str, x: dict[str, float], y: float) -> None:
        self.models[name] += 1
        FakeClient.calls.append((name, x, y))

    def stats(self, name: str) -> dict[str, Any]:
        return {"learn": {"n_calls": self.models[name]}}


@pytest.fixture
def fake_riverapi(monkeypatch: pytest.MonkeyPatch) -> None:
    package = types.ModuleType("riverapi")
    main = types.ModuleType("riverapi.main")
    main.Client = FakeClient  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "riverapi", package)
    monkeypatch.setitem(sys.modules, "riverapi.main", main)
    monkeypatch.setattr(
        django_river_ml,
        "versions",
        lambda: {"django-river-ml": "0.0.21", "river": "r", "Django": "d", "riverapi": "0.0.21"},
    )


def test_drive_learns_every_record_with_every_hosted_model(
    fake_riverapi: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import model_service.zoo

    real = model_service.zoo.build_models

    def build(items: list[Any]) -> dict[str, Any]:
        if items == ["refused"]:
            return {"refused": object()}
        return real(items)

    monkeypatch.setattr(model_service.zoo, "build_models", build)
    work = django_river_ml.payload(throughput.records(4), ["pa", "nonexistent", "refused"])
    driven = django_river_ml.drive(dict(work, url="http://127.0.0.1:1"))
    assert driven["hosted"] == ["pa"]
    assert set(driven["skipped"]) == {"nonexistent", "refused"}
    assert driven["learned"] == {"pa": 4}
    assert [(x, y) for _, x, y in FakeClient.calls] == list(zip(work["x"], work["y"], strict=True))
    entry = django_river_ml.shape(driven)
    assert entry["records"] == 4
    assert entry["models"] == ["pa"]
    assert entry["records_per_second"] > 0
    assert list(entry["milliseconds_per_request"]) == ["pa"]


def test_throughput_reports_an_error_entry_never_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise django_river_ml.Unavailable("django-river-ml: pip install failed (exit 1): no wheel")

    monkeypatch.setattr(django_river_ml, "measure", broken)
    entry = throughput.django_river_ml(throughput.records(3), ["pa"], quick=True)
    assert entry == {"error": "Unavailable: django-river-ml: pip install failed (exit 1): no wheel"}
    rounds = [
        {"in_process": 900.0, "worker": 450.0, "hand_written_loop": 300.0}
        | {"django_river_ml": django.get("records_per_second"), "django_details": django}
        for django in (entry, {"records_per_second": 22.5}, {"records_per_second": 30.0})
    ]
    assert throughput.summary(["pa"], rounds[:1])["worker_vs_django_river_ml"] is None
    both = throughput.summary(["pa"], rounds)  # the median of the rates that were measured
    assert both["django_river_ml_records_per_second"] == 26.2
    assert both["worker_vs_django_river_ml"] == round(450.0 / 26.2, 1)
