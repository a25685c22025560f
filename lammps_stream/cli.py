"""The ``lammps-stream`` command.

Every command reads the configuration (``--config``, ``LAMMPS_STREAM_*``, ``--set
key=value``) and imports the component it drives only when it runs, so a producer
host needs no Faust and a consumer host no LAMMPS. A mistake ends with one line on
stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from lammps_stream import __version__
from lammps_stream.config import Config, load_config
from lammps_stream.errors import LammpsStreamError, UsageError


class Parser(argparse.ArgumentParser):
    """argparse that reports a mistake in one line, with the way to get help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def positive_int(text: str) -> int:
    """An integer >= 1, for ``--count``, ``--np`` and the sizes."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


# -- commands ------------------------------------------------------------------------------


def cmd_stack(config: Config, args: argparse.Namespace) -> int:
    from lammps_stream.stack import LocalStack, status_json

    console = _console()
    stack = LocalStack(config, say=lambda msg: console.print(f"[dim]{msg}[/dim]"))
    if args.action == "up":
        rows = stack.up()
    elif args.action == "down":
        stopped = stack.down()
        console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
        return 0
    else:
        rows = stack.status()
    if getattr(args, "json", False):
        print(status_json(rows))
    else:
        _print_status(console, rows)
    return (
        0
        if all(row.healthy for row in rows if row.name == "kafka" or config.stack.start_service)
        else 1
    )


def _print_status(console: Any, rows: list[Any]) -> None:
    from rich.table import Table

    table = Table("part", "pid", "address", "health", "detail")
    for row in rows:
        health = "[green]healthy[/green]" if row.healthy else "[red]down[/red]"
        table.add_row(row.name, str(row.pid or "-"), row.address, health, row.detail)
    console.print(table)


def cmd_kafka(config: Config, args: argparse.Namespace) -> int:
    from lammps_stream.stack.kafka import tool_command

    command = tool_command(config, args.tool, list(args.tool_args))
    os.execv(command[0], command)
    return 0  # pragma: no cover


def cmd_run_one(config: Config, args: argparse.Namespace) -> int:
    from producers.launch import launch, run_one_here
    from producers.mpi import inside_mpi_launch

    def report(summary: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps(summary), flush=True)
        else:
            _print_run(_console(), summary)

    plan = _run_one_plan(config, args)
    if inside_mpi_launch():
        summary = run_one_here(config, plan, submitted_at=args.submitted_at, report=report)
        if summary is None:  # ranks other than 0 report nothing
            return 0
    else:
        summary = launch(config, plan, config.producer.timeout_seconds).__dict__
        report(summary)
    return 0 if summary["status"] == "ok" else 1


def _run_one_plan(config: Config, args: argparse.Namespace) -> Any:
    """The run ``run-one`` flags describe, or line ``--index`` of a ``--plan`` file."""
    from producers.sampling import RunPlan, read_plan

    if args.plan:
        return read_plan(args.plan, args.index)
    deck = args.deck or config.producer.deck
    params: dict[str, Any] = {
        "deck": deck,
        "x": args.x,
        "y": args.y,
        "z": args.z,
        "steps": args.steps or _default_steps(deck, config),
        "ranks": args.np or config.producer.np,
        "threads": args.threads or config.producer.threads,
    }
    if args.var:
        params["vars"] = dict(args.var)
    if args.run_id:
        return RunPlan(params=params, split=args.split, run_id=args.run_id)
    return RunPlan(params=params, split=args.split)


def _default_steps(deck: str, config: Config) -> int:
    from producers.decks import resolve_deck

    return config.producer.steps or resolve_deck(deck).default_steps


def _print_run(console: Any, summary: dict[str, Any]) -> None:
    p = summary["params"]
    size = f"{p['deck']} {p['x']}×{p['y']}×{p['z']} steps={p['steps']} np={p['ranks']}"
    if summary["status"] == "ok":
        console.print(
            f"[green]✓[/green] {summary['run_id'][:8]} {summary['split']:5} {size}: "
            f"{summary['wall_seconds']:.2f} s → {summary['delivery']}"
        )
    else:
        console.print(
            f"[red]✗[/red] {summary['run_id'][:8]} {size}: {summary['error']} → "
            f"{summary['delivery']}"
        )


def cmd_produce(config: Config, args: argparse.Namespace) -> int:
    from producers.publisher import Publisher

    if args.flush:
        publisher = Publisher(config)
        try:
            sent = publisher.flush_spool()
        finally:
            publisher.close()
        _console().print(f"flushed {len(sent)} spooled record(s) to {config.kafka.topics.runs}")
        if args.count is None:
            return 0
    sampler = args.sampler or config.producer.sampler
    if args.count is None and sampler != "grid":
        raise UsageError("produce: give --count N (how many runs), or --flush to replay the spool")
    plans = plan_from_args(config, args, sampler)
    if args.dry_run:
        _print_plans(_console(), plans)
        return 0
    reports = launch_plans(config, plans)
    return 0 if all(r.status == "ok" for r in reports) else 1


def plan_from_args(config: Config, args: argparse.Namespace, sampler: str) -> list[Any]:
    """The runs that the ``produce``/``submit`` flags ask for."""
    from producers.sampling import plan_runs
    from producers.space import ParameterSpace, space_from_config

    if args.space:
        space = ParameterSpace.from_file(args.space)
    else:
        space = space_from_config(config.producer)
    space = space.fixed(deck=args.deck, ranks=args.np)
    return plan_runs(space, args.count, sampler=sampler, seed=args.seed, split=args.split)


def _print_plans(console: Any, plans: list[Any]) -> None:
    from rich.table import Table

    title = f"{len(plans)} planned runs (dry run: nothing launched)"
    table = Table(
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

    from producers.launch import produce
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
            _print_run(progress.console, report.__dict__)
            progress.advance(task)

        return produce(config, plans, on_done=done)


def cmd_submit(config: Config, args: argparse.Namespace) -> int:
    from producers import submit

    sampler = args.sampler or config.producer.sampler
    if args.count is None and sampler != "grid":
        raise UsageError(f"submit {args.scheduler}: give --count N (how many runs)")
    plans = plan_from_args(config, args, sampler)
    console = _console()
    if args.dry_run:
        _print_plans(console, plans)
        return 0
    job = submit.write_job(config, plans, args.scheduler)
    count = len(job.plan.read_text().splitlines())
    if args.print:
        print(job.script.read_text(), end="")
        console.print(
            f"[dim]not submitted; script, plan and config are in {job.directory}[/dim]",
            highlight=False,
        )
        return 0
    if args.scheduler == "flux":
        job_id = submit.flux_batch(job.script)
        console.print(f"submitted Flux batch job {job_id}: {count} runs; files in {job.directory}")
        return 0
    job_id = submit.sbatch(job.script)
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
        states = submit.wait_for_array(
            job_id, count, lambda done: progress.update(task, completed=done)
        )
    failed = {t: s for t, s in states.items() if s != "COMPLETED"}
    for t, s in sorted(failed.items()):
        console.print(f"[red]task {t}: {s}[/red] (see {job.directory}/slurm-{job_id}_{t}.out)")
    console.print(f"{len(states) - len(failed)} of {count} tasks completed")
    return 1 if failed or len(states) < count else 0


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    try:
        from model_service.worker import serve
    except ImportError as exc:
        raise UsageError(
            f"serve needs the service extra ({exc.name} missing): "
            "pip install 'lammps-stream-ml[service]'"
        ) from None
    return serve(config)


def cmd_predictions(config: Config, args: argparse.Namespace) -> int:
    from consumers.reader import read_predictions, table_row, to_json_line

    stream = read_predictions(
        config, from_beginning=args.from_beginning or not args.follow, follow=args.follow
    )
    if args.model:
        stream = (p for p in stream if p["model"] == args.model)
    if args.follow:
        return _follow(stream, args)
    rows = list(stream)[-args.limit :] if args.limit else list(stream)
    if args.json:
        for p in rows:
            print(to_json_line(p))
        return 0
    from rich.table import Table

    table = Table("run", "split", "params", "model", "predicted s", "actual s", "error s")
    for p in rows:
        table.add_row(*table_row(p).values())
    _console().print(table)
    return 0


def _follow(stream: Any, args: argparse.Namespace) -> int:
    from consumers.reader import table_row, to_json_line

    for count, prediction in enumerate(stream, start=1):
        if args.json:
            print(to_json_line(prediction), flush=True)
        else:
            row = table_row(prediction)
            print(
                "  ".join(
                    [
                        row["run"],
                        f"{row['split']:5}",
                        f"{row['model']:15}",
                        f"pred {row['predicted']:>8}",
                        f"actual {row['actual']:>8}",
                        f"err {row['error']:>7}",
                        row["params"],
                    ]
                ),
                flush=True,
            )
        if args.limit and count >= args.limit:
            break
    return 0


def cmd_demo(config: Config, args: argparse.Namespace) -> int:
    from lammps_stream.demo import run_demo

    return run_demo(
        config,
        runs=args.runs,
        test_runs=args.test_runs,
        np=args.np,
        seed=args.seed,
        out=args.out,
        keep=args.keep,
        console=_console(),
    )


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=False, highlight=False)


# -- parser --------------------------------------------------------------------------------


def build_parser() -> Parser:
    parser = Parser(prog="lammps-stream", description="Stream LAMMPS runs into online models.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config",
        metavar="FILE",
        default="",
        help="YAML config (default: $LAMMPS_STREAM_CONFIG or ./lammps-stream.yaml)",
    )
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        type=key_value,
        action="append",
        default=[],
        help="override any setting, e.g. --set kafka.partitions=6",
    )
    parser.add_argument("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )

    stack = sub.add_parser("stack", help="start, stop or inspect the local Kafka + service")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument("--json", action="store_true", help="status as JSON")
    stack.add_argument("--no-service", action="store_true", help="start Kafka only")
    stack.set_defaults(handler=cmd_stack)

    kafka = sub.add_parser("kafka", help="run an Apache Kafka console tool against the broker")
    kafka.add_argument(
        "tool",
        help="console-consumer, console-producer, topics, consumer-groups, "
        "get-offsets, metadata-quorum, storage",
    )
    kafka.add_argument("tool_args", nargs=argparse.REMAINDER, help="the tool's own flags")
    kafka.set_defaults(handler=cmd_kafka)

    run_one = sub.add_parser("run-one", help="run one LAMMPS deck under MPI and publish its record")
    run_one.add_argument("--deck", help="lj, eam, chain, chute, rhodo, or a path")
    run_one.add_argument("-x", type=positive_int, default=1)
    run_one.add_argument("-y", type=positive_int, default=1)
    run_one.add_argument("-z", type=positive_int, default=1)
    run_one.add_argument("--steps", type=positive_int)
    run_one.add_argument("--np", type=positive_int, help="MPI ranks when not started by mpiexec")
    run_one.add_argument("--threads", type=positive_int)
    run_one.add_argument("--var", type=key_value, action="append", help="extra -var NAME=VALUE")
    run_one.add_argument("--split", choices=["train", "test"], default="train")
    run_one.add_argument("--run-id")
    run_one.add_argument("--plan", metavar="FILE", help="a plan file written by `submit`")
    run_one.add_argument(
        "--index",
        type=non_negative_int,
        help="which line of --plan (default: $SLURM_ARRAY_TASK_ID or $FLUX_TASK_INDEX)",
    )
    run_one.add_argument("--submitted-at")
    run_one.add_argument("--json", action="store_true", help="print the summary as JSON")
    run_one.set_defaults(handler=cmd_run_one)

    produce = sub.add_parser("produce", help="launch N runs at random sizes")
    _add_plan_flags(produce)
    produce.add_argument("--flush", action="store_true", help="replay spooled records first")
    produce.set_defaults(handler=cmd_produce)

    submit = sub.add_parser("submit", help="submit runs as a Slurm job array or Flux jobs")
    submit.add_argument("scheduler", choices=["slurm", "flux"])
    _add_plan_flags(submit)
    submit.add_argument("--wait", action="store_true", help="wait for every task (Slurm)")
    submit.add_argument("--print", action="store_true", help="show the script, do not submit")
    submit.add_argument("--image", help="Singularity/Apptainer image the tasks run inside")
    submit.add_argument("--partition", help="Slurm partition")
    submit.add_argument("--time", dest="time_limit", help="time limit per task, e.g. 00:30:00")
    submit.set_defaults(handler=cmd_submit)

    serve = sub.add_parser("serve", help="run the model service (Faust worker) in the foreground")
    serve.add_argument("--stack-state", help=argparse.SUPPRESS)
    serve.set_defaults(handler=cmd_serve)

    preds = sub.add_parser("predictions", help="show predictions from the predictions topic")
    preds.add_argument("--follow", "-f", action="store_true", help="wait for new predictions")
    preds.add_argument("--json", action="store_true", help="one JSON object per line")
    preds.add_argument(
        "--limit",
        type=non_negative_int,
        default=None,
        help="at most N (without --follow: the last N, default 20)",
    )
    preds.add_argument("--from-beginning", action="store_true")
    preds.add_argument("--model")
    preds.set_defaults(handler=cmd_predictions)

    demo = sub.add_parser("demo", help="the whole pipeline end to end on the local stack")
    demo.add_argument("--runs", type=non_negative_int, default=24)
    demo.add_argument("--test-runs", type=positive_int, default=8)
    demo.add_argument("--np", type=positive_int, default=2)
    demo.add_argument("--seed", type=int, default=2026)
    demo.add_argument("--out", default="results/demo")
    demo.add_argument("--keep", action="store_true", help="leave the stack running")
    demo.set_defaults(handler=cmd_demo)
    return parser


def _add_plan_flags(parser: argparse.ArgumentParser) -> None:
    """The flags ``produce`` and ``submit`` share to plan runs."""
    parser.add_argument("--count", type=non_negative_int, help="how many runs")
    parser.add_argument("--np", type=positive_int, help="MPI ranks per run")
    parser.add_argument("--seed", type=int, help="seed of the sampler")
    parser.add_argument("--deck", help="lj, eam, chain, chute, rhodo, or a path")
    parser.add_argument("--split", choices=["train", "test"], default="train")
    parser.add_argument("--space", metavar="FILE", help="parameter space YAML (see docs/hpc.md)")
    parser.add_argument("--sampler", choices=["random", "lhs", "sobol", "grid"])
    parser.add_argument("--dry-run", action="store_true", help="print the planned runs only")


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """``--set`` pairs and the shortcut flags as dotted config keys."""
    overrides: dict[str, Any] = dict(args.set)
    if args.bootstrap:
        overrides["kafka.bootstrap"] = args.bootstrap
    if getattr(args, "no_service", False):
        overrides["stack.start_service"] = False
    for flag, key in (
        ("image", "producer.image"),
        ("partition", "producer.partition"),
        ("time_limit", "producer.time_limit"),
    ):
        if getattr(args, flag, None):
            overrides[key] = getattr(args, flag)
    return overrides


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lammps-stream``."""
    args = build_parser().parse_args(argv)
    if args.command == "predictions" and args.limit is None and not args.follow:
        args.limit = 20
    handler: Callable[[Config, argparse.Namespace], int] = args.handler
    try:
        config = load_config(args.config, overrides=overrides_from(args))
        return handler(config, args)
    except LammpsStreamError as err:
        print(f"lammps-stream: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
