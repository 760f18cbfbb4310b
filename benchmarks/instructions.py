"""Instructions per tick of the benchmark workload, counted by Valgrind's Callgrind.

Times on a shared machine move by 10-30% from run to run; the number of instructions the CPU
executes for the same work does not (it moves by a few tens in 49,000). This runs the tradeloom
backtest of ``engine_tradeloom.py`` under Callgrind on two tick files of the same walk, a small
and a large one, and divides the difference of their instruction counts by the difference of
their tick counts: start-up, imports and the first block's warm-up cancel out, and what is left
is what one more tick costs. Compare two trees by running this in each (same machine, same
Python and library versions); a change that saves time saves instructions here too, unless it
only moves work to memory stalls, which this does not see.

``python benchmarks/instructions.py`` (or ``python benchmarks/run.py --instructions``). Needs
``valgrind`` (``apt-get install valgrind``); a run takes a few minutes (Callgrind runs the
interpreter about 50 times slower). ``PYTHONHASHSEED`` is fixed so set and dict layouts, and so
the counts, repeat; and the runs take no checkpoint before their end, as checkpoints come on the
wall clock (every ``snapshot_interval_seconds``), of which a slower host gives them more.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_common import machine, parse  # noqa: E402
from bench_data import ensure  # noqa: E402

_COLLECTED = re.compile(r"^==\d+== Collected : (\d+)$", re.M)


def count_instructions(data: Path, kind: str = "tick") -> dict[str, Any]:
    """Run one backtest of ``data`` under Callgrind: its instructions and its result."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    command = [
        valgrind,
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        str(HERE / "engine_tradeloom.py"),
        str(data),
        "--kind",
        kind,
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=HERE,
        # No checkpoint in the run: they come on the wall clock (every
        # snapshot_interval_seconds), so a run under Callgrind, 50 times slower, would count
        # more of them on a slower host.
        env={
            **os.environ,
            "PYTHONHASHSEED": "0",
            "TRADELOOM_PORTFOLIO__SNAPSHOT_INTERVAL_SECONDS": "1000000000",
        },
        check=False,
    )
    collected = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or collected is None:
        sys.stderr.write(done.stdout + done.stderr[-4000:])
        raise SystemExit(f"benchmark step failed: {' '.join(command)}")
    run = parse(done.stdout)
    return {"events": run["events"], "fills": run["fills"], "instructions": int(collected[1])}


def per_tick(small: int, large: int, data_dir: Path) -> dict[str, Any]:
    """Instructions one more tick costs, from runs of ``small`` and ``large`` ticks."""
    if not 0 < small < large:
        raise SystemExit(f"need 0 < small < large ticks, got {small:,} and {large:,}")
    runs = [
        count_instructions(ensure(data_dir / f"ticks-{count}.csv", "tick", count))
        for count in (small, large)
    ]
    extra = runs[1]["instructions"] - runs[0]["instructions"]
    return {
        "tool": "callgrind",
        "runs": runs,
        "instructions_per_tick": extra / (runs[1]["events"] - runs[0]["events"]),
    }


def show(counted: dict[str, Any]) -> None:
    print("\n== instructions per tick (Callgrind) ==")
    for run in counted["runs"]:
        print(
            f"  {run['events']:>9,} ticks  {run['instructions']:>16,} instructions  "
            f"fills {run['fills']:,}"
        )
    print(f"  one more tick: {counted['instructions_per_tick']:,.0f} instructions", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=20_000, help="ticks of the small run")
    parser.add_argument("--large", type=int, default=80_000, help="ticks of the large run")
    parser.add_argument("--data-dir", type=Path, default=HERE / "data")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    counted = per_tick(args.small, args.large, args.data_dir)
    show(counted)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "instructions.json"
        path.write_text(json.dumps({"machine": machine(), **counted}, indent=2) + "\n")
        print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
