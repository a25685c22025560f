"""The producer's commands: ``run-one``, ``produce`` and ``submit``.

``lammps_stream.cli`` builds the parser and calls these; they use only ``producers`` and
the shared ``lammps_stream`` core.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lammps_stream.config import Config
from lammps_stream.console import console as _console
from lammps_stream.console import table as _table
from lammps_stream.errors import UsageError
from lammps_stream.schemas import is_uuid

_JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def run_one(config: Config, args: argparse.Namespace) -> int:
    """``run-one``: inside an MPI launch, run on every rank; outside, launch the ranks
    (``mpiexec`` or ``srun``) and watch them, publishing a failure if they die."""
    from producers.handoff import finished_record_file
    from producers.launch import launch, run_one_here, terminated, write_report
    from producers.mpi import inside_mpi_launch

    def report(summary: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps(summary), flush=True)
        else:
            print_run(_console(), summary)

    plan = _run_one_plan(config, args)
    if inside_mpi_launch():
        keep = None
        if args.report_file:  # the launcher reads them, whatever mpiexec does to stdout
            report = write_report(Path(args.report_file), then=report)
            keep = finished_record_file(Path(args.report_file))
        summary = run_one_here(
            config, plan, submitted_at=args.submitted_at, report=report, keep=keep
        )
        if summary is None:  # ranks other than 0 report nothing
            return 0
    else:
        launched = launch(config, plan)
        summary = asdict(launched)
        report(summary)
        if launched.terminated:
            raise terminated(launched)
    return 0 if summary["status"] == "ok" else 1


def _run_one_plan(config: Config, args: argparse.Namespace) -> Any:
    """The run ``run-one`` flags describe, or line ``--index`` of a ``--plan`` file (which
    gives the whole run: a flag that would change it is refused, not ignored)."""
    from producers.sampling import RunPlan, read_plan

    if args.plan:
        given = [flag for flag, value in _run_flags(args).items() if value is not None]
        if given:
            raise UsageError(
                f"run-one: the --plan line gives the whole run; drop {', '.join(given)} "
                "(or drop --plan and --index and describe the run with flags)"
            )
        return read_plan(args.plan, args.index)
    if args.index is not None:
        raise UsageError(
            "run-one: --index picks a line of a plan file; give it with --plan FILE (or drop it)"
        )
    deck = args.deck or config.producer.deck
    _check_axes(deck, args)
    params: dict[str, Any] = {
        "deck": deck,
        "x": args.x or 1,
        "y": args.y or 1,
        "z": args.z or 1,
        "steps": args.steps or _default_steps(deck, config),
        "ranks": args.np or config.producer.np,
        "threads": args.threads or config.producer.threads,
    }
    if args.var:
        from lammps_stream.space import check_variable_name

        for name, _ in args.var:
            check_variable_name("run-one --var", name, axis_as="-{name} N")
        params["vars"] = {name: var_value(value) for name, value in args.var}
    split = args.split or "train"
    if args.run_id:
        return RunPlan(params=params, split=split, run_id=_checked_run_id(args.run_id))
    return RunPlan(params=params, split=split)


def var_value(text: str) -> int | float | str:
    """A ``--var NAME=VALUE`` value as its record keeps it: a number when the text is a JSON
    number (a plan's ``t: 1.2``, passed to the ranks as ``--var t=1.2``, is recorded as the
    plan holds it, not as the text "1.2"), else the text.

    >>> [var_value(v) for v in ("3", "-1.2", "1e-3", "007", "abc", "1e999", "1_000")]
    [3, -1.2, 0.001, '007', 'abc', '1e999', '1_000']
    """
    if not _JSON_NUMBER.fullmatch(text):
        return text
    number = json.loads(text)
    return number if math.isfinite(number) else text


def _check_axes(deck: str, args: argparse.Namespace) -> None:
    """:class:`UsageError` for ``-x``/``-y``/``-z`` above 1 along an axis ``deck`` does not
    replicate (declares no ``variable AXIS index``): LAMMPS would run the box of size 1 there,
    and the record would claim the size asked for.

    >>> _check_axes("lj", argparse.Namespace(x=2, y=None, z=3))
    """
    from producers.decks import resolve_deck

    given = {axis: getattr(args, axis) for axis in ("x", "y", "z")}
    if all(value in (None, 1) for value in given.values()):
        return
    found = resolve_deck(deck)
    for axis, value in given.items():
        if value not in (None, 1) and axis not in found.variables:
            raise UsageError(
                f"run-one: deck {found.name} does not replicate along {axis} (it declares no "
                f"`variable {axis} index`); drop -{axis} {value}"
            )


def _run_flags(args: argparse.Namespace) -> dict[str, Any]:
    """``run-one``'s flags that describe a run, by name (None where not given)."""
    return {
        "--deck": args.deck,
        "-x": args.x,
        "-y": args.y,
        "-z": args.z,
        "--steps": args.steps,
        "--np": args.np,
        "--threads": args.threads,
        "--var": args.var,
        "--split": args.split,
        "--run-id": args.run_id,
    }


def _checked_run_id(run_id: str) -> str:
    """``run_id`` if it is a UUID; checked on every rank before any runs, so a bad one never
    reaches rank 0's record alone.

    >>> _checked_run_id("run-1")
    Traceback (most recent call last):
    ...
    lammps_stream.errors.UsageError: run-one: --run-id must be a UUID (omit it for a new ...
    """
    if not is_uuid(run_id):
        raise UsageError(
            f"run-one: --run-id must be a UUID (omit it for a new one), got {run_id!r}"
        )
    return run_id


def _default_steps(deck: str, config: Config) -> int:
    from producers.decks import resolve_deck

    return config.producer.steps or resolve_deck(deck).default_steps


def print_run(console: Any, summary: dict[str, Any]) -> None:
    """One line per run: ✓ or ✗, its id, split and sizes, its wall time or error, and
    whether the record was sent or spooled."""
    p = summary["params"]
    size = f"{p['deck']} {p['x']}×{p['y']}×{p['z']} steps={p['steps']} np={p['ranks']}"
    delivery = summary["delivery"]
    if summary.get("delivery_reason"):
        delivery += f" ({summary['delivery_reason']})"
    if summary["status"] == "ok":
        console.print(
            f"[green]✓[/green] {summary['run_id'][:8]} {summary['split']:5} {size}: "
            f"{summary['wall_seconds']:.2f} s → {delivery}"
        )
    else:
        error = summary["error"]
        console.print(f"[red]✗[/red] {summary['run_id'][:8]} {size}: {error} → {delivery}")


def produce(config: Config, args: argparse.Namespace) -> int:
    """``produce``: flush the spool, replay a recorded file, or plan and launch runs here;
    ``--flush`` goes first when given with either. ``--dry-run`` sends and launches nothing:
    it says how many records are spooled, lists the recorded ones, or prints the plan."""
    if args.replay:
        _refuse_plan_flags(args)
    if args.flush:
        flush(config, dry_run=args.dry_run)
        if args.count is None and not args.replay:
            return 0
    if args.replay:
        return replay(config, args.replay, dry_run=args.dry_run)
    sampler = args.sampler or config.producer.sampler
    if args.count is None and sampler != "grid":
        raise UsageError("produce: give --count N (how many runs), or --flush to replay the spool")
    plans = plan_from_args(config, args, sampler)
    if args.dry_run:
        print_plans(_console(), plans)
        return 0
    reports = launch_plans(config, plans)
    return 0 if all(r.status == "ok" for r in reports) else 1


# the flags that plan new runs, which a replay of recorded ones has no use for
PLAN_FLAGS = ("count", "np", "seed", "deck", "space", "sampler")


def _refuse_plan_flags(args: argparse.Namespace) -> None:
    """:class:`UsageError` for ``--replay`` given with flags that plan runs: it plans none.

    >>> args = argparse.Namespace(replay="runs.jsonl", count=3, seed=None, sampler="lhs")
    >>> _refuse_plan_flags(args)
    Traceback (most recent call last):
    ...
    lammps_stream.errors.UsageError: produce: --replay sends the runs recorded in runs.jsonl ...
    """
    given = [f"--{name}" for name in PLAN_FLAGS if getattr(args, name, None) is not None]
    if getattr(args, "split", None) not in (None, "train"):  # a record keeps its own split
        given.append("--split")
    if not given:
        return
    flags = given[0] if len(given) == 1 else f"{', '.join(given[:-1])} and {given[-1]}"
    raise UsageError(
        f"produce: --replay sends the runs recorded in {args.replay} and plans none; "
        f"drop {flags} (plan new runs with another `produce --count N`)"
    )


def flush(config: Config, dry_run: bool = False) -> None:
    """Send the records spooled while the broker was unreachable; with ``dry_run``, only
    say how many there are."""
    topic = config.kafka.topics.runs
    if dry_run:
        from lammps_stream.config import expand
        from producers.spool import Spool, stale_after

        stale = stale_after(config.kafka.request_timeout_seconds)
        count = len(Spool(expand(config.producer.spool_dir), stale))
        said = f"would flush {count} spooled record(s) to {topic} (dry run: nothing sent)"
        _console().print(said)
        return
    from producers.publisher import Publisher

    publisher = Publisher(config)
    try:
        sent = publisher.flush_spool()
    finally:
        publisher.close()
    _console().print(f"flushed {len(sent)} spooled record(s) to {topic}")


def replay(config: Config, path: str, dry_run: bool = False) -> int:
    """Publish recorded RunRecords (JSON lines) again, as they are: a recorded campaign
    can be streamed through a fresh service. Invalid lines are reported and skipped. With
    ``dry_run``, list the records it would send, and send none."""
    lines = _recorded_lines(path)
    if dry_run:
        return _preview_replay(config, path, lines)
    from producers.publisher import Publisher

    publisher = Publisher(config)
    went: dict[str, int] = {"sent": 0, "spooled": 0, "set aside": 0}
    skipped = 0
    reason = ""
    try:
        for number, line in lines:
            record = _recorded_record(number, line)
            if record is None:
                skipped += 1
                continue
            delivery = publisher.publish(record)
            went[delivery.status] += 1
            reason = delivery.reason or reason
    finally:
        publisher.close()
    _console().print(
        f"replayed {went['sent']} record(s) from {path} to {config.kafka.topics.runs}"
        + (f"; skipped {skipped}" if skipped else "")
    )
    if went["spooled"]:
        _console().print(
            f"[yellow]{went['spooled']} record(s) spooled, not sent ({reason}): "
            "`lammps-stream produce --flush` sends them once the broker is back[/yellow]"
        )
    if went["set aside"]:
        _console().print(
            f"[red]{went['set aside']} record(s) refused by the broker for good ({reason}): "
            "kept in the spool as .unreadable-*, not replayed[/red]"
        )
    return 1 if skipped or went["spooled"] or went["set aside"] else 0


def _recorded_lines(path: str) -> list[tuple[int, bytes]]:
    """The non-blank lines of a recorded file, numbered from 1; read before anything is
    sent, so that a file that cannot be read is refused at once."""
    try:
        lines = Path(path).read_bytes().splitlines()
    except OSError as exc:
        raise UsageError(f"--replay {path}: cannot read it ({exc.strerror})") from None
    return [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]


def _recorded_record(number: int, line: bytes) -> dict[str, Any] | None:
    """Line ``number`` as a RunRecord; None, saying why, if it is not one."""
    from lammps_stream.errors import InvalidRecordError
    from lammps_stream.schemas import decode_run_record

    try:
        return decode_run_record(line)
    except InvalidRecordError as err:
        _console().print(f"[red]line {number}: {err} ({err.code}); skipped[/red]")
        return None


def _preview_replay(config: Config, path: str, lines: list[tuple[int, bytes]]) -> int:
    """``--replay FILE --dry-run``: the records as a table, and how many would be sent."""
    records = [(n, r) for n, line in lines if (r := _recorded_record(n, line)) is not None]
    skipped = len(lines) - len(records)
    title = f"{len(records)} recorded runs (dry run: nothing sent)"
    sizes = ("x", "y", "z", "steps", "ranks", "threads")
    table = _table("line", "run", "split", "status", "deck", *sizes, title=title)
    for number, record in records:
        p = record["params"]
        first = [str(number), record["run_id"][:8], record["split"], record["status"]]
        table.add_row(*first, *(str(p.get(k, "")) for k in ("deck", *sizes)))
    console = _console()
    console.print(table)
    console.print(
        f"would replay {len(records)} record(s) from {path} to {config.kafka.topics.runs}"
        + (f"; skipped {skipped}" if skipped else "")
    )
    return 1 if skipped else 0


def plan_from_args(config: Config, args: argparse.Namespace, sampler: str) -> list[Any]:
    """The runs that the ``produce``/``submit`` flags ask for. ``suggest`` takes the model
    service's fresh suggestions (see :mod:`producers.suggestions`), the rest at random."""
    from producers.sampling import plan_runs
    from producers.space import ParameterSpace, space_from_config

    if args.space:
        space = ParameterSpace.from_file(args.space)
    else:
        space = space_from_config(config.producer)
    space = space.fixed(deck=args.deck, ranks=args.np)
    if sampler == "suggest":
        from producers.suggestions import plan_from_suggestions

        if args.split == "test":
            raise UsageError(
                "--sampler suggest makes training runs; draw test runs with random, lhs or "
                "sobol, so that the held-out score stays unbiased"
            )
        return plan_from_suggestions(
            config,
            space,
            args.count,
            seed=args.seed,
            deck=args.deck,
            ranks=args.np,
            claim=not (args.dry_run or getattr(args, "print", False)),  # looking takes none
            say=lambda line: _console().print(line, highlight=False),
        )
    return plan_runs(space, args.count, sampler=sampler, seed=args.seed, split=args.split)


def print_plans(console: Any, plans: list[Any]) -> None:
    title = f"{len(plans)} planned runs (dry run: nothing launched)"
    table = _table(
        "#", "run", "split", "deck", "x", "y", "z", "steps", "ranks", "threads", "vars", title=title
    )
    for i, plan in enumerate(plans):
        p = plan.params
        extra = " ".join(f"{k}={v}" for k, v in p.get("vars", {}).items())
        sizes = [str(p[k]) for k in ("x", "y", "z", "steps", "ranks", "threads")]
        table.add_row(str(i), plan.run_id[:8], plan.split, str(p["deck"]), *sizes, extra)
    console.print(table)


def launch_plans(config: Config, plans: list[Any], label: str = "") -> list[Any]:
    """Launch ``plans`` one after another with a progress bar (``produce`` and ``demo``)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from producers.launch import produce as launch_all
    from producers.mpi import mpiexec

    mpiexec(config.producer.mpiexec)
    split = plans[0].split if plans else "train"
    console = _console()
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(label or f"{split} runs", total=len(plans))

        def done(report: Any) -> None:
            print_run(progress.console, asdict(report))
            progress.advance(task)

        return launch_all(config, plans, on_done=done)


def submit(config: Config, args: argparse.Namespace) -> int:
    """``submit slurm|flux``: write the job (script, plan, config), submit it unless
    ``--print``, and with ``--wait`` follow a Slurm array to its end."""
    from producers import submit as submission

    if args.wait and args.scheduler == "flux":
        raise UsageError(
            "submit flux: --wait follows a Slurm array only; submit without it, then wait for "
            "the Flux batch job with `flux job attach JOBID` (or watch it with `flux jobs`)"
        )
    sampler = args.sampler or config.producer.sampler
    if args.count is None and sampler != "grid":
        raise UsageError(f"submit {args.scheduler}: give --count N (how many runs)")
    plans = plan_from_args(config, args, sampler)
    console = _console()
    if args.dry_run:
        print_plans(console, plans)
        return 0
    job = submission.write_job(config, plans, args.scheduler)
    count = len(job.plan.read_text().splitlines())
    if args.print:
        print(job.script.read_text(), end="")
        console.print(
            f"[dim]not submitted; script, plan and config are in {job.directory}[/dim]",
            highlight=False,
        )
        return 0
    if args.scheduler == "flux":
        job_id = submission.flux_batch(job.script)
        console.print(f"submitted Flux batch job {job_id}: {count} runs; files in {job.directory}")
        return 0
    job_id = submission.sbatch(job.script)
    console.print(f"submitted Slurm job array {job_id}: {count} tasks; files in {job.directory}")
    if not args.wait:
        return 0
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(f"job {job_id}", total=count)
        states = submission.wait_for_array(
            job_id, count, lambda done: progress.update(task, completed=done)
        )
    failed = {t: s for t, s in states.items() if s != "COMPLETED"}
    for t, s in sorted(failed.items()):
        console.print(f"[red]task {t}: {s}[/red] (see {job.directory}/slurm-{job_id}_{t}.out)")
    console.print(f"{len(states) - len(failed)} of {count} tasks completed")
    return 1 if failed or len(states) < count else 0
