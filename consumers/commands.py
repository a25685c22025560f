"""The consumers' commands: ``predictions``, ``history``, ``evaluate``, ``plot``, ``report``.

Each reads the predictions topic (kafka-python, no consumer group); none needs LAMMPS or
Faust. ``lammps_stream.cli`` builds the parser and calls these.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import urllib.parse
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any

from consumers.reader import (
    first_only,
    load_predictions,
    matches,
    parse_since,
    read_predictions,
    read_snapshots,
    table_row,
    to_json_line,
)
from lammps_stream.config import Config, run_seconds_within, yaml_problem
from lammps_stream.console import console as make_console
from lammps_stream.console import table as make_table
from lammps_stream.errors import (
    BrokerUnavailableError,
    InvalidRecordError,
    NoDataError,
    UsageError,
)
from lammps_stream.schemas import validate_params
from lammps_stream.service_api import ServiceApi, ServiceRefusedError, ServiceTimeoutError

LIVE_ROWS = 20
# POST /models warm-starts the new model over the whole runs topic before it answers
ADD_TIMEOUT_SECONDS = 600.0
COLUMNS = ("run", "split", "params", "model", "predicted s", "actual s", "error s")


def predictions(config: Config, args: argparse.Namespace) -> int:
    """Show predictions: the last N as a table, or follow them live."""
    since = _since(args)
    filters = {"model": args.model, "split": args.split, "run": args.run}
    if not args.follow:
        rows = load_predictions(config, since=since, **filters)
        rows = rows[-args.limit :] if args.limit else rows
        if args.json:
            for p in rows:
                print(to_json_line(p))
        else:
            make_console().print(_table(rows, f"{len(rows)} predictions"))
        return 0
    found = read_predictions(config, from_beginning=args.from_beginning, follow=True, since=since)
    wanted = (p for p in found if matches(p, **filters))
    stream = first_only(wanted, window=config.service.dedup_window)
    if args.json or not sys.stdout.isatty():
        return _follow_lines(stream, args)
    return _follow_live(stream, args)


def _table(rows: list[dict[str, Any]], title: str) -> Any:
    from rich.markup import escape

    table = make_table(*COLUMNS, title=title, whole=("run", "model"))
    for p in rows:  # text as it is: a deck named lj[big] is not markup
        table.add_row(*(escape(text) for text in table_row(p).values()))
    return table


def _follow_lines(stream: Any, args: argparse.Namespace) -> int:
    for count, prediction in enumerate(stream, start=1):
        if args.json:
            print(to_json_line(prediction), flush=True)
        else:
            row = table_row(prediction)
            print(
                f"{row['run']}  {row['split']:7}  {row['model']:15}  pred {row['predicted']:>8}"
                f"  actual {row['actual']:>8}  err {row['error']:>7}  {row['params']}",
                flush=True,
            )
        if args.limit and count >= args.limit:
            break
    return 0


def _follow_live(stream: Any, args: argparse.Namespace) -> int:
    """A table that updates in place, newest last, as ``kafka-console-consumer`` users expect."""
    from rich.live import Live

    shown: deque[dict[str, Any]] = deque(maxlen=LIVE_ROWS)
    title = "following predictions (Ctrl-C to stop)"
    with Live(_table([], title), console=make_console(), auto_refresh=False) as live:
        for count, prediction in enumerate(stream, start=1):
            shown.append(prediction)
            live.update(_table(list(shown), title), refresh=True)
            if args.limit and count >= args.limit:
                break
    return 0


def history(config: Config, args: argparse.Namespace) -> int:
    """``history --out FILE``: every model's scores against records learned and time."""
    from consumers.history import (
        history_file,
        history_rows,
        signed_only,
        snapshot_rows,
        write_history,
    )

    out = history_file(Path(args.out))
    rows = history_rows(load_predictions(config, model=args.model))
    snapshots = [s for s in read_snapshots(config) if args.model in (None, s["model"])]
    trusted, note = signed_only(config, snapshots)
    rows = sorted(rows + snapshot_rows(trusted), key=lambda r: r["emitted_at"])
    write_history(rows, out)
    models = len({r["model"] for r in rows})
    # print, not the console: a path is neither markup nor cut at the console's width
    print(f"{len(rows)} rows ({len(trusted)} snapshots) for {models} models → {out}")
    if note:
        print(f"history: {note}", file=sys.stderr)
    return 0


def evaluate(config: Config, args: argparse.Namespace) -> int:
    """``evaluate``: the held-out table as markdown (and JSON with ``--json``)."""
    from consumers.evaluate import evaluate as score
    from consumers.output import writable_dir, write_text

    out = writable_dir(Path(args.out)) if args.out else None  # before the topic is read
    found = load_predictions(config, split=args.split, model=args.model, since=_since(args))
    result = score(found, args.split)
    if args.model and result.table.get(args.model, {}).get("n", 0) == 0:
        raise NoDataError(f"no {args.split} predictions for model {args.model} yet")
    if args.json:
        print(result.to_json())
    else:
        print(result.to_markdown(), end="")
    if out is not None:
        write_text(out / "evaluation.md", result.to_markdown())
        write_text(out / "evaluation.json", result.to_json() + "\n")
    return 0


def plot(config: Config, args: argparse.Namespace) -> int:
    """``plot --out DIR``: the figures as PNG."""
    from consumers.output import writable_dir
    from consumers.plots import plot_all

    out = writable_dir(Path(args.out))
    written = plot_all(load_predictions(config, since=_since(args)), out, models_info(config))
    if not written:
        raise NoDataError(
            f"nothing to plot: no prediction on {config.kafka.topics.predictions} is of a "
            "finished run yet (answers to questions have no actual time); publish runs with "
            "`lammps-stream produce`"
        )
    for path in written:
        print(f"wrote {path}")  # whole, as history's line
    return 0


def report(config: Config, args: argparse.Namespace) -> int:
    """``report --out DIR``: report.md and a self-contained report.html."""
    from consumers.output import writable_dir
    from consumers.report import write_report

    out = writable_dir(Path(args.out))
    found = load_predictions(config, since=_since(args))
    markdown, page = write_report(found, out, models_info(config))
    print(f"wrote {markdown} and {page}")  # whole, as history's line
    return 0


def _since(args: argparse.Namespace) -> datetime | None:
    """``--since`` as a time (see :func:`~consumers.reader.parse_since`), or None."""
    return parse_since(args.since) if args.since else None


def models_info(config: Config) -> list[dict[str, Any]] | None:
    """``GET /models`` from the service, or None when it does not answer."""
    from rich.markup import escape

    try:
        return ServiceApi(config, timeout=3).get("/models")["models"]
    except (BrokerUnavailableError, UsageError, KeyError) as err:
        why = str(err) if isinstance(err, UsageError) else f"{config.service.url} not answering"
        make_console().print(
            f"[dim]model service: {escape(why)}; figures that need the live models are left "
            "out[/dim]"
        )
        return None


def predict(config: Config, args: argparse.Namespace) -> int:
    """``predict deck=lj x=4 y=4 z=2 ranks=2``: every model's answer now, and the one to trust."""
    params = prediction_params(args.params, config)
    answer = ServiceApi(config).post("/predict", {"params": params})
    if args.json:  # one JSON document: the limit goes inside it, not on a line after it
        if args.walltime:
            answer["walltime"] = walltime_limit(answer, config.producer.timeout_seconds)
        print(json.dumps(answer, indent=2))
        return 0
    _print_answer(answer)
    if args.walltime:
        print(walltime_flags(answer, config.producer.timeout_seconds))
    return 0


def prediction_params(pairs: list[str], config: Config) -> dict[str, Any]:
    """``key=value`` words as run parameters; sizes default to 1, steps to 100, ranks to
    ``producer.np``.

    >>> from lammps_stream.config import load_config
    >>> prediction_params(["deck=eam", "x=4"], load_config(path=None, env={}))["x"]
    4
    """
    params: dict[str, Any] = {
        "deck": config.producer.deck,
        "x": 1,
        "y": 1,
        "z": 1,
        "steps": 100,
        "ranks": config.producer.np,
        "threads": 1,
    }
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in params:
            raise UsageError(
                f"predict: {pair!r} is not KEY=VALUE with KEY one of "
                f"{', '.join(params)} (e.g. deck=lj x=4 ranks=2)"
            )
        if key == "deck":
            params[key] = value
            continue
        try:
            params[key] = int(value)
        except ValueError:
            raise UsageError(f"predict: {key} must be a whole number, got {value!r}") from None
    try:
        validate_params(params, prefix="")
    except InvalidRecordError as err:  # said here, before the service is asked
        raise UsageError(f"predict: {err.message} (e.g. deck=lj x=4 ranks=2)") from None
    return params


def walltime_limit(answer: dict[str, Any], timeout_seconds: float | None = None) -> dict[str, Any]:
    """A safe time limit from the recommended model's upper bound: the whole minutes whose
    runs may go past that bound (a job's last minutes are kept to stop the run and report it,
    :func:`~lammps_stream.config.run_seconds_within`), and the ``producer.timeout_seconds``
    to set when the one configured would stop the run first (else None).

    >>> limit = walltime_limit({"recommended": "m", "predictions": [{"model": "m",
    ...     "predicted_wall_seconds": 50.0, "interval": {"high": 130.0}}]})
    >>> limit["minutes"], limit["sbatch_time"], limit["flux_time_limit"], limit["calibrated"]
    (3, '00:03:00', '3m', True)
    """
    name = answer.get("recommended")
    chosen = next((p for p in answer["predictions"] if p["model"] == name), None)
    if chosen is None:
        raise NoDataError("no model has learned enough to recommend a time limit yet")
    high = chosen["interval"].get("high")
    calibrated = high is not None
    if not calibrated:  # fewer than 5 scored runs: no band to take a bound from
        high = 2 * chosen["predicted_wall_seconds"]
    minutes = max(1, -(-int(high) // 60))
    while run_seconds_within(minutes) < high:
        minutes += 1
    too_short = timeout_seconds is not None and timeout_seconds < high
    return {
        "model": name,
        "upper_bound_seconds": high,
        "calibrated": calibrated,
        "minutes": minutes,
        "sbatch_time": f"{minutes // 60:02d}:{minutes % 60:02d}:00",
        "flux_time_limit": f"{minutes}m",
        "timeout_seconds_needed": math.ceil(high) if too_short else None,
    }


def walltime_flags(answer: dict[str, Any], timeout_seconds: float | None = None) -> str:
    """:func:`walltime_limit` as scheduler flags, and a word when
    ``producer.timeout_seconds`` would stop the run first.

    >>> walltime_flags({"recommended": "m", "predictions": [{"model": "m",
    ...     "predicted_wall_seconds": 50.0, "interval": {"high": 130.0}}]})
    'sbatch --time=00:03:00   flux --time-limit=3m   # upper bound 130 s (model m)'
    >>> walltime_flags({"recommended": "m", "predictions": [{"model": "m",
    ...     "predicted_wall_seconds": 50.0, "interval": {"high": None}}]}).partition("# ")[2]
    'twice the prediction, 100 s: no calibrated interval yet (model m)'
    >>> print(walltime_flags({"recommended": "m", "predictions": [{"model": "m",
    ...     "predicted_wall_seconds": 900.0, "interval": {"high": 1000.0}}]}, 900))
    sbatch --time=00:19:00   flux --time-limit=19m   # upper bound 1000 s (model m)
    and runs stop at 900 s; raise it: lammps-stream --set producer.timeout_seconds=1000 submit ...
    """
    limit = walltime_limit(answer, timeout_seconds)
    high = limit["upper_bound_seconds"]
    if limit["calibrated"]:
        basis = f"upper bound {high:.0f} s"
    else:
        basis = f"twice the prediction, {high:.0f} s: no calibrated interval yet"
    flags = (
        f"sbatch --time={limit['sbatch_time']}   "
        f"flux --time-limit={limit['flux_time_limit']}   # {basis} (model {limit['model']})"
    )
    if limit["timeout_seconds_needed"] is not None:
        flags += (  # a global option: before the command
            f"\nand runs stop at {timeout_seconds:.0f} s; raise it: lammps-stream --set "
            f"producer.timeout_seconds={limit['timeout_seconds_needed']} submit ..."
        )
    return flags


def _print_answer(answer: dict[str, Any]) -> None:
    table = make_table("model", "predicted s", "interval s", "learned", title="predicted wall time")
    for p in answer["predictions"]:
        low, high = p["interval"].get("low"), p["interval"].get("high")
        band = "–" if low is None else f"{low:.2f} – {high:.2f} ({p['interval']['coverage']:.0%})"
        name = f"{p['model']} ★" if p["model"] == answer.get("recommended") else p["model"]
        # a model that learned nothing answers with its prior (0 s, or e^0 = 1 s): no estimate
        guess = f"{p['predicted_wall_seconds']:.2f}" if p["model_version"] else "– (untrained)"
        table.add_row(name, guess, band, str(p["model_version"]))
    make_console().print(table)
    for line in answer.get("unfamiliar", []):  # on stderr: --walltime's line stays alone
        print(f"warning: {line}", file=sys.stderr)


def models(config: Config, args: argparse.Namespace) -> int:
    """``models list|add|remove``: the running service's models, their counts and scores."""
    api = ServiceApi(config)
    if args.action == "add":
        return _add_model(config, model_spec_from_args(args))
    if args.action == "remove":
        api.delete(f"/models/{urllib.parse.quote(_one_name(args), safe='')}")
        print(f"removed {_one_name(args)}; its snapshots are tombstoned on the models topic")
        return 0
    return _list_models(api, args.json)


def _add_model(config: Config, spec: dict[str, Any]) -> int:
    """``POST /models``: it answers once the model is warm-started over the whole runs
    topic, which takes minutes on a long one; a spinner shows meanwhile."""
    from rich.markup import escape

    name = spec.get("name") or "the model"
    api = ServiceApi(config, timeout=ADD_TIMEOUT_SECONDS)
    try:
        with make_console().status(f"warm-starting {escape(str(name))} over the runs topic…"):
            added = api.post("/models", spec)
    except ServiceTimeoutError:
        raise ServiceTimeoutError(
            f"models add: no answer from the model service at {api.base} within "
            f"{api.timeout:g} s; it may still be warm-starting {name} over the runs topic: "
            "see `lammps-stream models list` before adding it again"
        ) from None
    except ServiceRefusedError as err:
        if err.status != 409:
            raise
        raise UsageError(
            f"models add: the service already has a model named {name} (or is still adding "
            f"it); see `lammps-stream models list`, or `lammps-stream models remove {name}` "
            "first to replace it"
        ) from None
    print(
        f"added {added['name']} ({added['spec']['class']}), warm-started on "
        f"{added['learned']} runs replayed from the runs topic"
    )
    return 0


def model_spec_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """A model spec from ``models add NAME --class C --param k=v ...`` or ``--spec FILE``.

    >>> ns = argparse.Namespace(names=["tree"], spec=None, cls="river.tree.HoeffdingTreeRegressor",
    ...     param=["grace_period=50", "leaf_prediction=mean"], features="log", target="log",
    ...     scale=False)
    >>> model_spec_from_args(ns)["params"]
    {'grace_period': 50, 'leaf_prediction': 'mean'}
    """
    import yaml

    if args.spec:
        try:
            spec = yaml.safe_load(Path(args.spec).read_text(encoding="utf-8"))
        except OSError as err:
            raise UsageError(f"models add: cannot read --spec {args.spec}: {err}") from None
        except UnicodeDecodeError:
            raise UsageError(
                f"models add: --spec {args.spec} is not UTF-8 text; save the YAML file as UTF-8"
            ) from None
        except yaml.YAMLError as err:
            raise UsageError(
                f"models add: --spec {args.spec} is not valid YAML ({yaml_problem(err)})"
            ) from None
        if not isinstance(spec, dict):
            raise UsageError(f"models add: {args.spec} must hold one mapping (name, class, ...)")
        if args.names:
            spec["name"] = _one_name(args)
        return spec
    if not args.cls:
        raise UsageError(
            "models add: say what to build, e.g. models add tree "
            "--class river.tree.HoeffdingTreeRegressor --param grace_period=50 (or --spec FILE)"
        )
    params = dict(_param(pair) for pair in args.param or [])
    return {
        "name": _one_name(args),
        "class": args.cls,
        "params": params,
        "features": args.features,
        "target": args.target,
        "scale": args.scale,
    }


def _param(pair: str) -> tuple[str, Any]:
    """``--param KEY=VALUE``, the value read as YAML (``50``, ``mean``, ``[1, 2]``).

    >>> _param("grace_period=[1,")
    Traceback (most recent call last):
    ...
    lammps_stream.errors.UsageError: models add: --param grace_period: cannot read '[1,' (...); ...
    """
    import yaml

    key, sep, value = pair.partition("=")
    if not sep or not key:
        raise UsageError(f"models add: --param {pair!r} is not KEY=VALUE")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise UsageError(
            f"models add: --param {key}: cannot read {value!r} ({yaml_problem(err)}); "
            "write a number, "
            "a word, a list like [1, 2] or quoted text"
        ) from None


def _one_name(args: argparse.Namespace) -> str:
    if len(args.names) != 1:
        raise UsageError(f"models {args.action}: name exactly one model, e.g. models remove knn")
    return args.names[0]


def _list_models(api: ServiceApi, as_json: bool) -> int:
    info = api.get("/models")["models"]
    if as_json:
        print(json.dumps(info, indent=2))
        return 0
    table = make_table(
        "model",
        "learned",
        "preq\nMAE s",
        "preq\nR²",
        "test\nn",
        "test\nMAE s",
        "test\nMAPE",
        "interval\ncover",
        "drifts",
        title=f"models at {api.base}",
    )
    for m in info:
        pre, test = m["metrics"]["prequential"], m["metrics"]["test"]
        table.add_row(
            m["name"],
            str(m["learned"]),
            _num(pre["mae"]),
            _num(pre["r2"]),
            str(test["n"]),
            _num(test["mae"]),
            _num(test["mape"], pct=True),
            _num(m.get("interval_test_coverage"), pct=True),
            str(m.get("drifts", 0)),
        )
    make_console().print(table)
    return 0


def _num(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f} %" if pct else f"{value:.3f}"
