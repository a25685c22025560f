"""``python -m benchmarks NAME [--quick] [--json]``: run one benchmark, print its result."""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from typing import Any

from benchmarks import active, latency, memory, models, recovery, throughput
from benchmarks.harness import cpu_reference_ms
from lammps_stream.errors import LammpsStreamError

BENCHMARKS = {
    "throughput": throughput.run,
    "latency": latency.run,
    "memory": memory.run,
    "models": models.run,
    "recovery": recovery.run,
    "active": active.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("name", choices=sorted(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="fewer records, for a smoke run")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    run = BENCHMARKS[args.name]
    before = cpu_reference_ms()
    try:
        result = _run(run, args)
    except LammpsStreamError as err:  # a missing client, a broker that would not start...
        print(f"python -m benchmarks {args.name}: {err}", file=sys.stderr)
        return 2
    result["cpu_reference_ms"] = {"before": before, "after": cpu_reference_ms()}
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            if not isinstance(value, dict | list):
                print(f"{key:28} {value}")
    return 0


def _run(run: Any, args: argparse.Namespace) -> dict[str, Any]:
    if "progress" in inspect.signature(run).parameters:
        # a progress bar and a table on stderr unless --json
        return run(quick=args.quick, progress=not args.json)
    if args.json:
        return run(quick=args.quick)
    from rich.console import Console

    with Console(stderr=True).status(f"{args.name}: running (minutes; --quick is shorter)"):
        return run(quick=args.quick)


if __name__ == "__main__":
    sys.exit(main())
