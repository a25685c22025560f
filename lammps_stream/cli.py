"""The ``lammps-stream`` command.

Every command reads the configuration (``--config``, ``LAMMPS_STREAM_*``, ``--set
key=value``) and imports the component it drives only when it runs, so a producer
host needs no Faust and a consumer host no LAMMPS. A mistake ends with one line on
stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from lammps_stream import __version__
from lammps_stream.access import ROLES
from lammps_stream.config import Config, load_config
from lammps_stream.console import aside
from lammps_stream.console import console as make_console
from lammps_stream.console import table as make_table
from lammps_stream.errors import LammpsStreamError, UsageError


class Parser(argparse.ArgumentParser):
    """argparse that reports a mistake in one line, with the way to get help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")

    def parse_args(
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """As argparse's, but a global option given after the command is shown before it."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            words = list(sys.argv[1:] if args is None else args)
            moved, rest = self._global_options_in(extras)
            if not moved:
                self.error(f"unrecognized arguments: {' '.join(extras)}")
            self.exit(2, f"{self.prog}: {misplaced_hint(self.prog, words, moved, rest)}\n")
        return parsed

    def _global_options_in(self, extras: list[str]) -> tuple[list[list[str]], list[str]]:
        """Split unrecognized ``extras`` into this parser's own options, each with its value
        (``["--set", "k=v"]``, ``["--set=k=v"]``), and the rest."""
        moved: list[list[str]] = []
        rest: list[str] = []
        words = iter(extras)
        for word in words:
            flag, inline, _ = word.partition("=")
            action = self._option_string_actions.get(flag)
            if action is None or isinstance(action, argparse._HelpAction):
                rest.append(word)
            elif action.nargs == 0 or inline:
                moved.append([word])
            else:
                moved.append([word, next(words, str(action.metavar or "VALUE"))])
        return moved, rest


def misplaced_hint(prog: str, argv: list[str], moved: list[list[str]], rest: list[str]) -> str:
    """The one line for global options given after the command: which go before it, and the
    command line with them moved there.

    >>> misplaced_hint("lammps-stream", ["predictions", "--set", "a=1"], [["--set", "a=1"]], [])
    '--set goes before the command: lammps-stream --set a=1 predictions'
    """
    words = list(argv)
    for word in reversed([w for option in moved for w in option]):
        if word in words:  # the last one: a misplaced option comes after the command
            del words[len(words) - 1 - words[::-1].index(word)]
    flags = list(dict.fromkeys(option[0].partition("=")[0] for option in moved))
    names = flags[0] if len(flags) == 1 else f"{', '.join(flags[:-1])} and {flags[-1]}"
    verb = "goes" if len(flags) == 1 else "go"
    fixed = shlex.join([prog, *(w for option in moved for w in option), *words])
    unknown = f"unrecognized arguments: {' '.join(rest)}; " if rest else ""
    return f"{unknown}{names} {verb} before the command: {fixed}"


def whole_number(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum`` (and <= ``maximum``), refused with a
    one-line reason.

    >>> whole_number(1)("3")
    3
    >>> seed_number("-1")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be between 0 and 4294967295, got -1
    """
    wanted = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a whole number {wanted}, got {text!r}"
            ) from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {value}")
        return value

    return parse


positive_int = whole_number(1)
non_negative_int = whole_number(0)
# a sampler's seed, the same range for every command and sampler: scipy's lhs and sobol
# refuse a negative one, numpy's legacy generator one above 2**32 - 1
seed_number = whole_number(0, 2**32 - 1)


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0, refused with a one-line reason.

    >>> positive_float("0.1")
    0.1
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


# -- commands ------------------------------------------------------------------------------


def cmd_stack(config: Config, args: argparse.Namespace) -> int:
    from lammps_stream.stack import LocalStack, status_json

    console = make_console()
    stack = LocalStack(config, say=aside(console))
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
    expected = [row for row in rows if row.name == "kafka" or config.stack.start_service]
    return 0 if all(row.healthy for row in expected) else 1


def _print_status(console: Any, rows: list[Any]) -> None:
    table = make_table("part", "pid", "address", "health", "detail", whole=("address",))
    for row in rows:
        health = "[green]healthy[/green]" if row.healthy else "[red]down[/red]"
        table.add_row(row.name, str(row.pid or "-"), row.address, health, row.detail)
    console.print(table)


def cmd_kafka(config: Config, args: argparse.Namespace) -> int:
    from lammps_stream.stack.kafka import tool_command

    command = tool_command(config, args.tool, list(args.tool_args))
    os.execv(command[0], command)
    return 0  # pragma: no cover


def cmd_acls(config: Config, args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    import yaml

    from lammps_stream.access import apply, grants

    role = args.role
    granted = apply(config, role, args.user or "") if args.apply else grants(config, role)
    if args.json:
        print(json.dumps([asdict(g) for g in granted]))
    elif args.strimzi:
        acls = [g.as_strimzi() for g in granted]
        print(yaml.safe_dump({"authorization": {"type": "simple", "acls": acls}}, sort_keys=False))
    else:
        console = make_console()
        table = make_table("resource", "name", "pattern", "operations", whole=("name",))
        for g in granted:
            table.add_row(g.resource, g.name, g.pattern, ", ".join(g.operations))
        console.print(table)
        who = f"User:{args.user}" if args.user else f"the {args.role} role"
        done = "granted to" if args.apply else "needed by"
        count = sum(len(g.operations) for g in granted)
        console.print(f"{count} ACLs on {len(granted)} resources {done} {who}")
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
        console=make_console(),
    )


# -- parser --------------------------------------------------------------------------------


def build_parser() -> Parser:
    """The ``lammps-stream`` parser: the global options, then the commands group by group."""
    parser = Parser(prog="lammps-stream", description="Stream LAMMPS runs into online models.")
    _add_global_options(parser)
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )
    _add_stack_commands(sub)
    _add_producer_commands(sub)
    _add_service_commands(sub)
    _add_result_commands(sub)
    _add_workflow_commands(sub)
    return parser


def _add_global_options(parser: argparse.ArgumentParser) -> None:
    """The options before the command: ``--version``, the config, overrides, the bootstrap."""
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


def _add_stack_commands(sub: argparse._SubParsersAction[Parser]) -> None:
    """``stack``, ``kafka``, ``acls``: the local stack, the broker's tools and its ACLs."""
    stack = sub.add_parser("stack", help="start, stop or inspect the local Kafka + service")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument("--json", action="store_true", help="status as JSON")
    stack.add_argument("--no-service", action="store_true", help="start Kafka only")
    stack.set_defaults(handler=cmd_stack)

    kafka = sub.add_parser("kafka", help="run an Apache Kafka console tool against the broker")
    kafka.add_argument(
        "tool",
        help="console-consumer, console-producer, topics, configs, consumer-groups, "
        "get-offsets, metadata-quorum, acls, storage",
    )
    kafka.add_argument("tool_args", nargs=argparse.REMAINDER, help="the tool's own flags")
    kafka.set_defaults(handler=cmd_kafka)

    acls = sub.add_parser("acls", help="the Kafka ACLs a role needs; --apply grants them")
    acls.add_argument("role", choices=ROLES, help="who logs in with the user")
    acls.add_argument("user", nargs="?", default="", help="the SCRAM user (with --apply)")
    acls.add_argument("--apply", action="store_true", help="create them (log in as a super user)")
    shown = acls.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="as JSON")
    shown.add_argument("--strimzi", action="store_true", help="as a KafkaUser's authorization")
    acls.set_defaults(handler=cmd_acls)


def _add_producer_commands(sub: argparse._SubParsersAction[Parser]) -> None:
    """``run-one``, ``produce``, ``submit``: running LAMMPS and publishing its records."""
    run_one = sub.add_parser("run-one", help="run one LAMMPS deck under MPI and publish its record")
    run_one.add_argument("--deck", help="lj, eam, chain, chute, rhodo, or a path")
    run_one.add_argument("-x", type=positive_int, help="replications along x (default 1)")
    run_one.add_argument("-y", type=positive_int, help="replications along y (default 1)")
    run_one.add_argument("-z", type=positive_int, help="replications along z (default 1)")
    run_one.add_argument("--steps", type=positive_int)
    run_one.add_argument("--np", type=positive_int, help="MPI ranks when not started by mpiexec")
    run_one.add_argument("--threads", type=positive_int)
    run_one.add_argument("--var", type=key_value, action="append", help="extra -var NAME=VALUE")
    run_one.add_argument("--split", choices=["train", "test"], help="default train")
    run_one.add_argument("--run-id")
    run_one.add_argument("--plan", metavar="FILE", help="a plan file written by `submit`")
    run_one.add_argument(
        "--index",
        type=non_negative_int,
        help="which line of --plan (default: $SLURM_ARRAY_TASK_ID or $FLUX_JOB_CC)",
    )
    run_one.add_argument("--submitted-at")
    run_one.add_argument("--report-file", help=argparse.SUPPRESS)  # set by the launching run-one
    run_one.add_argument("--json", action="store_true", help="print the summary as JSON")
    run_one.set_defaults(handler="producers.commands:run_one")

    produce = sub.add_parser("produce", help="launch N runs drawn from a parameter space")
    _add_plan_flags(produce)
    produce.add_argument("--flush", action="store_true", help="replay spooled records first")
    produce.add_argument("--replay", metavar="FILE", help="publish recorded RunRecords (JSONL)")
    produce.set_defaults(handler="producers.commands:produce")

    submit = sub.add_parser("submit", help="submit runs as a Slurm job array or Flux jobs")
    submit.add_argument("scheduler", choices=["slurm", "flux"])
    _add_plan_flags(submit)
    submit.add_argument(
        "--wait", action="store_true", help="Slurm only: follow the array until every task ends"
    )
    submit.add_argument(
        "--print",
        action="store_true",
        help="write the job directory and show its script, do not submit",
    )
    submit.add_argument("--image", help="Singularity/Apptainer image the tasks run inside")
    submit.add_argument("--partition", help="Slurm partition")
    submit.add_argument(
        "--time",
        dest="time_limit",
        help="time limit per task as sbatch takes it (45, 30:00, 02:00:00, 1-12:00); Flux is "
        "given the same minutes",
    )
    submit.set_defaults(handler="producers.commands:submit")


def _add_service_commands(sub: argparse._SubParsersAction[Parser]) -> None:
    """``serve``, ``predictions``, ``models``, ``predict``: the model service and its answers."""
    serve = sub.add_parser("serve", help="run the model service (Faust worker) in the foreground")
    serve.add_argument("--stack-state", help=argparse.SUPPRESS)
    serve.set_defaults(handler="model_service.worker:serve")

    preds = sub.add_parser("predictions", help="show predictions from the predictions topic")
    preds.add_argument("--follow", "-f", action="store_true", help="wait for new predictions")
    preds.add_argument("--json", action="store_true", help="one JSON object per line")
    preds.add_argument(
        "--limit",
        type=non_negative_int,
        default=None,
        help="at most N, 0 for all (without --follow: the last N, default 20)",
    )
    preds.add_argument("--from-beginning", action="store_true", help="with --follow: replay first")
    _add_since_flag(preds)
    _add_filter_flags(preds, split=True)
    preds.set_defaults(handler="consumers.commands:predictions")

    models = sub.add_parser("models", help="the running service's models and their scores")
    models.add_argument("action", choices=["list", "add", "remove"])
    models.add_argument("names", nargs="*", metavar="NAME", help="the model to add or remove")
    models.add_argument(
        "--json", action="store_true", help="list: the models of GET /models, as JSON"
    )
    models.add_argument(
        "--class", dest="cls", metavar="PATH", help="add: a river class, e.g. river.tree.X"
    )
    models.add_argument(
        "--param", action="append", metavar="KEY=VALUE", help="add: a parameter (repeat)"
    )
    models.add_argument("--spec", metavar="FILE", help="add: a YAML spec (name, class, params)")
    models.add_argument("--features", choices=["log", "raw"], default="log")
    models.add_argument("--target", choices=["log", "seconds"], default="log")
    models.add_argument("--scale", action="store_true", help="add: a StandardScaler in front")
    models.set_defaults(handler="consumers.commands:models")

    predict = sub.add_parser("predict", help="every model's prediction for parameters, now")
    predict.add_argument(
        "params",
        nargs="*",
        metavar="KEY=VALUE",
        help="deck=lj x=4 y=4 z=2 steps=100 ranks=2 threads=1",
    )
    predict.add_argument("--json", action="store_true", help="the service's answer as JSON")
    predict.add_argument(
        "--walltime",
        action="store_true",
        help='also print a safe sbatch --time / flux --time-limit (with --json: as "walltime")',
    )
    predict.set_defaults(handler="consumers.commands:predict")


def _add_result_commands(sub: argparse._SubParsersAction[Parser]) -> None:
    """``history``, ``evaluate``, ``plot``, ``report``: how well the models learned."""
    history = sub.add_parser("history", help="every model's scores against records learned")
    history.add_argument("--out", required=True, help="CSV file (or .parquet with pyarrow)")
    history.add_argument("--model")
    history.set_defaults(handler="consumers.commands:history")

    evaluate = sub.add_parser("evaluate", help="held-out accuracy per model (markdown, JSON)")
    evaluate.add_argument("--json", action="store_true", help="JSON instead of markdown")
    evaluate.add_argument("--out", help="also write evaluation.md and evaluation.json here")
    evaluate.add_argument("--split", choices=["test", "train"], default="test")
    evaluate.add_argument("--model")
    _add_since_flag(evaluate)
    evaluate.set_defaults(handler="consumers.commands:evaluate")

    plot = sub.add_parser("plot", help="figures (PNG) from the predictions")
    plot.add_argument("--out", required=True, help="directory for the PNG files")
    _add_since_flag(plot)
    plot.set_defaults(handler="consumers.commands:plot")

    report = sub.add_parser("report", help="a markdown and a self-contained HTML report")
    report.add_argument("--out", required=True, help="directory for report.md, report.html")
    _add_since_flag(report)
    report.set_defaults(handler="consumers.commands:report")


def _add_workflow_commands(sub: argparse._SubParsersAction[Parser]) -> None:
    """``campaign``, ``demo``: the whole pipeline, to an accuracy target or end to end."""
    campaign = sub.add_parser(
        "campaign", help="launch runs until a held-out MAPE target or a core-seconds budget"
    )
    campaign.add_argument(
        "--target-mape", type=positive_float, default=0.10, help="e.g. 0.10 (default)"
    )
    campaign.add_argument(
        "--max-core-seconds",
        type=positive_float,
        required=True,
        help="budget: wall seconds × ranks × threads over every run launched",
    )
    campaign.add_argument("--sampler", choices=["suggest", "random", "lhs"], default="suggest")
    campaign.add_argument("--space", metavar="FILE", help="parameter space YAML")
    campaign.add_argument("--deck", help="only this deck")
    campaign.add_argument("--np", type=positive_int, help="MPI ranks per run")
    campaign.add_argument("--seed", type=seed_number, help="seed of the samplers")
    campaign.add_argument(
        "--test-runs",
        type=positive_int,
        default=20,
        help="held-out runs the MAPE is measured on (launched first if the service has fewer)",
    )
    campaign.add_argument("--batch", type=positive_int, default=1, help="runs between checks")
    campaign.add_argument(
        "--wait-seconds",
        type=positive_float,
        default=120.0,
        help="how long to wait for the service to learn a batch",
    )
    campaign.add_argument("--json", action="store_true", help="the outcome as one JSON object")
    campaign.set_defaults(handler="producers.campaign:campaign")

    demo = sub.add_parser("demo", help="the whole pipeline end to end on the local stack")
    demo.add_argument("--runs", type=non_negative_int, default=24)
    demo.add_argument("--test-runs", type=positive_int, default=8)
    demo.add_argument("--np", type=positive_int, default=2)
    demo.add_argument("--seed", type=seed_number, default=2026)
    demo.add_argument("--out", default="results/demo")
    demo.add_argument("--keep", action="store_true", help="leave the stack running")
    demo.set_defaults(handler=cmd_demo)


def _add_since_flag(parser: argparse.ArgumentParser) -> None:
    """``--since``: only predictions emitted from then on (a demo and a campaign on one stack
    share the predictions topic)."""
    parser.add_argument(
        "--since",
        help="only predictions from then on: 10m, 2h, 1d or 2026-11-25T10:00:00Z (no zone: UTC)",
    )


def _add_filter_flags(parser: argparse.ArgumentParser, split: bool) -> None:
    parser.add_argument("--model", help="only this model")
    parser.add_argument("--run", help="only this run (an id or its first characters)")
    if split:
        parser.add_argument("--split", choices=["train", "test"], help="only this split")


def _add_plan_flags(parser: argparse.ArgumentParser) -> None:
    """The flags ``produce`` and ``submit`` share to plan runs."""
    parser.add_argument("--count", type=non_negative_int, help="how many runs")
    parser.add_argument("--np", type=positive_int, help="MPI ranks per run")
    parser.add_argument("--seed", type=seed_number, help="seed of the sampler")
    parser.add_argument("--deck", help="lj, eam, chain, chute, rhodo, or a path")
    parser.add_argument("--split", choices=["train", "test"], default="train")
    parser.add_argument("--space", metavar="FILE", help="parameter space YAML (see docs/hpc.md)")
    parser.add_argument(
        "--sampler",
        choices=["random", "lhs", "sobol", "grid", "suggest"],
        help="suggest: the model service's suggestions, then random",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the planned runs only")


# the Python modules of setup.cfg's extras_require, and the extras that install them
MODULE_EXTRAS: dict[str, tuple[str, ...]] = {
    "scipy": ("producer",),
    "lammps": ("producer",),
    "mpi4py": ("producer",),
    "prometheus_client": ("producer", "service"),
    "faust": ("service",),
    "aiokafka": ("service",),
    "river": ("service",),
    "matplotlib": ("consumers",),
    "confluent_kafka": ("bench",),
}
PACKAGE_EXTRAS = {"producers": "producer", "model_service": "service", "consumers": "consumers"}
# modules every install has: this project's own and its install_requires
INSTALLED_MODULES = {"lammps_stream", "producers", "model_service", "consumers"}
INSTALLED_MODULES |= {"yaml", "kafka", "rich", "orjson"}


def missing_module(command: str, name: str | None, package: str) -> UsageError:
    """The one-line error for module ``name`` not installed, which ``command`` (run by a
    handler of ``package``) needs, with the way to install it.

    >>> str(missing_module("plot", "matplotlib.pyplot", "consumers"))
    "plot needs matplotlib, which is not installed: pip install 'lammps-stream-ml[consumers]'"
    """
    module = (name or "").partition(".")[0]
    if not module:
        return UsageError(
            f"{command} needs a Python module that is not installed: reinstall lammps-stream-ml"
        )
    hint = _install_hint(module, package)
    return UsageError(f"{command} needs {module}, which is not installed: {hint}")


def _install_hint(module: str, package: str) -> str:
    """How to install ``module`` for a command whose handler is in ``package``: the extra
    that lists it, preferring the command's own; for a module no extra lists, the command's
    extra (it is likely one of that extra's dependencies), else the module itself.

    >>> _install_hint("prometheus_client", "model_service")
    "pip install 'lammps-stream-ml[service]'"
    >>> _install_hint("yaml", "consumers"), _install_hint("pyarrow", "lammps_stream")
    ('reinstall lammps-stream-ml', 'install it, e.g. pip install pyarrow')
    """
    if module in INSTALLED_MODULES:
        return "reinstall lammps-stream-ml"
    own = PACKAGE_EXTRAS.get(package)
    extras = MODULE_EXTRAS.get(module) or ((own,) if own else ())
    if not extras:
        return f"install it, e.g. pip install {module}"
    return f"pip install 'lammps-stream-ml[{own if own in extras else extras[0]}]'"


def _package(handler: str | Callable[[Config, argparse.Namespace], int]) -> str:
    """The top-level package whose code a handler runs."""
    module = handler if isinstance(handler, str) else handler.__module__
    return module.partition(":")[0].partition(".")[0]


def resolve(
    handler: str | Callable[[Config, argparse.Namespace], int], command: str = "this command"
) -> Any:
    """A command's handler; ``"module:function"`` is imported only when the command runs,
    so that each component's dependencies are needed only by its own commands."""
    if callable(handler):
        return handler
    module, _, name = handler.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise missing_module(command, exc.name, _package(handler)) from None


def run_command(config: Config, args: argparse.Namespace) -> int:
    """Run ``args.handler``; a module it imports only now (faust, matplotlib, scipy) and that
    is not installed ends with :func:`missing_module`'s one line, not a traceback."""
    handler = resolve(args.handler, args.command)
    try:
        return handler(config, args)
    except ModuleNotFoundError as exc:
        raise missing_module(args.command, exc.name, _package(args.handler)) from None


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """``--set`` pairs and the shortcut flags as dotted config keys."""
    overrides: dict[str, Any] = dict(args.set)
    if args.bootstrap is not None:  # given empty, it is refused, not dropped
        overrides["kafka.bootstrap"] = args.bootstrap
    if getattr(args, "no_service", False):
        overrides["stack.start_service"] = False
    for flag, key in (
        ("image", "producer.image"),
        ("partition", "producer.partition"),
        ("time_limit", "producer.time_limit"),
    ):
        if getattr(args, flag, None) is not None:  # `--partition ''`: none, whatever the file says
            overrides[key] = getattr(args, flag)
    return overrides


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lammps-stream``."""
    args = build_parser().parse_args(argv)
    if args.command == "predictions" and args.limit is None and not args.follow:
        args.limit = 20
    try:
        config = load_config(args.config, overrides=overrides_from(args))
        return run_command(config, args)
    except LammpsStreamError as err:
        print(f"lammps-stream: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `lammps-stream predictions --json | head`: the reader has enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 141
