"""``python -m benchmarks NAME [--quick] [--json]``: run one benchmark, print its result."""

from __future__ import annotations

import argparse
import inspect
import json
import sys

from benchmarks import active, latency, memory, recovery, throughput
from benchmarks.harness import cpu_reference_ms

BENCHMARKS = {
    "throughput": throughput.run,
    "latency": latency.run,
    "memory": memory.run,
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
    if "progress" in inspect.signature(run).parameters:
        # a progress bar and a table on stderr unless --json
        result = run(quick=args.quick, progress=not args.json)
    elif args.json:
        result = run(quick=args.quick)
    else:
        from rich.console import Console

        with Console(stderr=True).status(f"{args.name}: running (minutes; --quick is shorter)"):
            result = run(quick=args.quick)
    result["cpu_reference_ms"] = {"before": before, "after": cpu_reference_ms()}
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            if not isinstance(value, dict | list):
                print(f"{key:28} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
