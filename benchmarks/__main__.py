"""``python -m benchmarks NAME [--quick] [--json]``: run one benchmark, print its result."""

from __future__ import annotations

import argparse
import json
import sys

from benchmarks import throughput

BENCHMARKS = {"throughput": throughput.run}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("name", choices=sorted(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="fewer records, for a smoke run")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    result = BENCHMARKS[args.name](quick=args.quick)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:28} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
