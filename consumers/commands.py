"""The consumers' commands: ``predictions``, ``history``, ``evaluate``, ``plot``, ``report``.

Each reads the predictions topic (kafka-python, no consumer group); none needs LAMMPS or
Faust. ``lammps_stream.cli`` builds the parser and calls these.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path
from typing import Any

from consumers.reader import (
    load_predictions,
    matches,
    parse_since,
    read_predictions,
    read_snapshots,
    table_row,
    to_json_line,
)
from lammps_stream.config import Config
from lammps_stream.console import console as make_console
from lammps_stream.errors import NoDataError

LIVE_ROWS = 20
COLUMNS = ("run", "split", "params", "model", "predicted s", "actual s", "error s")


def predictions(config: Config, args: argparse.Namespace) -> int:
    """Show predictions: the last N as a table, or follow them live."""
    since = parse_since(args.since) if args.since else None
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
    stream = (
        p
        for p in read_predictions(
            config, from_beginning=args.from_beginning, follow=True, since=since
        )
        if matches(p, **filters)
    )
    if args.json or not sys.stdout.isatty():
        return _follow_lines(stream, args)
    return _follow_live(stream, args)


def _table(rows: list[dict[str, Any]], title: str) -> Any:
    from rich.table import Table

    table = Table(*COLUMNS, title=title)
    for p in rows:
        table.add_row(*table_row(p).values())
    return table


def _follow_lines(stream: Any, args: argparse.Namespace) -> int:
    for count, prediction in enumerate(stream, start=1):
        if args.json:
            print(to_json_line(prediction), flush=True)
        else:
            row = table_row(prediction)
            print(
                f"{row['run']}  {row['split']:5}  {row['model']:15}  pred {row['predicted']:>8}"
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
    from consumers.history import history_rows, snapshot_rows, write_history
    from consumers.output import writable_file

    out = writable_file(Path(args.out))
    rows = history_rows(load_predictions(config, model=args.model))
    snapshots = [s for s in read_snapshots(config) if args.model in (None, s["model"])]
    rows = sorted(rows + snapshot_rows(snapshots), key=lambda r: r["emitted_at"])
    write_history(rows, out)
    models = len({r["model"] for r in rows})
    make_console().print(
        f"{len(rows)} rows ({len(snapshots)} snapshots) for {models} models → {out}"
    )
    return 0


def evaluate(config: Config, args: argparse.Namespace) -> int:
    """``evaluate``: the held-out table as markdown (and JSON with ``--json``)."""
    from consumers.evaluate import evaluate as score
    from consumers.output import writable_dir

    result = score(load_predictions(config, split=args.split, model=args.model), args.split)
    if args.model and result.table.get(args.model, {}).get("n", 0) == 0:
        raise NoDataError(f"no {args.split} predictions for model {args.model} yet")
    if args.json:
        print(result.to_json())
    else:
        print(result.to_markdown(), end="")
    if args.out:
        out = writable_dir(Path(args.out))
        (out / "evaluation.md").write_text(result.to_markdown())
        (out / "evaluation.json").write_text(result.to_json() + "\n")
    return 0


def plot(config: Config, args: argparse.Namespace) -> int:
    """``plot --out DIR``: the figures as PNG."""
    from consumers.output import writable_dir
    from consumers.plots import plot_all

    out = writable_dir(Path(args.out))
    written = plot_all(load_predictions(config), out, models_info(config))
    for path in written:
        make_console().print(f"wrote {path}")
    return 0


def report(config: Config, args: argparse.Namespace) -> int:
    """``report --out DIR``: report.md and a self-contained report.html."""
    from consumers.output import writable_dir
    from consumers.report import write_report

    out = writable_dir(Path(args.out))
    markdown, page = write_report(load_predictions(config), out, models_info(config))
    make_console().print(f"wrote {markdown} and {page}")
    return 0


def models_info(config: Config) -> list[dict[str, Any]] | None:
    """``GET /models`` from the service, or None when it does not answer."""
    try:
        with urllib.request.urlopen(f"{config.service.url}/models", timeout=3) as response:
            return json.loads(response.read())["models"]
    except (urllib.error.URLError, OSError, ValueError, KeyError):
        make_console().print(
            f"[dim]model service at {config.service.url} not answering: "
            "figures that need the live models are left out[/dim]"
        )
        return None
