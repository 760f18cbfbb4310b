"""tradeloom benchmarks: ``python benchmarks/run.py`` (``--help`` for the options).

1. The event-driven backtest workload (SMA(10/30) crossover, long or flat 1 unit, market
   orders filled at the next price, zero commission) on synthetic ticks and bars, in
   tradeloom and in backtrader on the same CSV files in the same run (and in nautilus_trader
   with ``--nautilus-python``, the interpreter of an environment that has it). Each engine runs
   in its own process, so its peak memory is its own. All must report the same fills and P&L:
   MATCH or MISMATCH is printed, and a mismatch exits with status 1.
2. Micro benchmarks: codec round trips, ids, tick-to-fill latency, one order's life cycle.
3. With ``--instructions``: instructions per tick, counted by Valgrind's Callgrind, a figure
   that does not move with the load of a shared machine (``instructions.py``).

Figures are printed and written as JSON to ``benchmarks/results/``. Data files are generated
deterministically into ``benchmarks/data/`` (not committed) on first use.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_common import machine, parse  # noqa: E402
from bench_data import ensure  # noqa: E402
from instructions import per_tick  # noqa: E402
from instructions import show as show_instructions  # noqa: E402

#: The two runs whose difference gives the instructions of one more tick.
INSTRUCTION_TICKS = (20_000, 80_000)


def child(script: str, *args: str, python: str = sys.executable) -> dict[str, Any]:
    command = [python, str(HERE / script), *args]
    done = subprocess.run(command, capture_output=True, text=True, cwd=HERE, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"benchmark step failed: {' '.join(command)}")
    return parse(done.stdout)


def best_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the least CPU time (the machine may be shared), with every run's times."""
    best = min(runs, key=lambda r: r["cpu_seconds"])
    best["runs"] = [{k: r[k] for k in ("seconds", "cpu_seconds")} for r in runs]
    return best


def backtest(kind: str, count: int, data_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    path = ensure(data_dir / f"{kind}s-{count}.csv", kind, count)
    label = f"{count:,} {kind}s"
    print(f"\n== backtest: {label} ({path.name}) ==", flush=True)
    peers = [] if args.skip_backtrader else [("backtrader", "", sys.executable)]
    if args.nautilus_python:
        peers.append(("nautilus", "nautilus_", args.nautilus_python))
    engines = [("tradeloom", sys.executable), *((name, python) for name, _, python in peers)]
    # The engines take turns, so a stretch of a busy shared machine slows each of them rather
    # than the one that happened to run then; each engine's best run is compared.
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in engines}
    for _ in range(args.repeat):
        for name, python in engines:
            run = child(f"engine_{name}.py", str(path), "--kind", kind, python=python)
            runs[name].append(run)
    tradeloom = best_of(runs["tradeloom"])
    show(tradeloom)
    entry: dict[str, Any] = {"kind": kind, "events": count, "tradeloom": tradeloom}
    for name, prefix, _ in peers:
        peer = best_of(runs[name])
        show(peer)
        same = tradeloom["fills"] == peer["fills"] and Decimal(tradeloom["pnl"]) == Decimal(
            peer["pnl"]
        )
        entry[name] = peer
        # backtrader's keys carry no prefix (as in the results of earlier rounds).
        entry[f"{prefix}match"] = same
        entry[f"{prefix}ratio_wall"] = tradeloom["events_per_second"] / peer["events_per_second"]
        entry[f"{prefix}ratio_cpu"] = peer["cpu_seconds"] / tradeloom["cpu_seconds"]
        print(
            f"  {'MATCH' if same else 'MISMATCH'}: fills {tradeloom['fills']} / "
            f"{peer['fills']}, P&L {tradeloom['pnl']} / {peer['pnl']}; "
            f"tradeloom/{name} = {entry[f'{prefix}ratio_wall']:.1f}x (wall), "
            f"{entry[f'{prefix}ratio_cpu']:.1f}x (CPU)",
            flush=True,
        )
    return entry


def show(run: dict[str, Any]) -> None:
    cpu_rate = run["events"] / run["cpu_seconds"]
    print(
        f"  {run['engine']:<10} {run['events_per_second']:>10,.0f} events/s "
        f"({cpu_rate:,.0f}/s of CPU)  {run['seconds']:7.2f} s wall  "
        f"{run['cpu_seconds']:7.2f} s CPU  peak RSS {run['peak_rss_mb']:6.1f} MiB  "
        f"fills {run['fills']:,}  round trips {run['round_trips']:,}  P&L {run['pnl']}",
        flush=True,
    )


def show_micro(micro: dict[str, Any]) -> None:
    print("\n== codec round trips (encode + decode) ==")
    for name, rate in micro["codec"]["round_trips_per_second"].items():
        print(f"  {name:<20} {rate:>12,.0f} /s")
    print(
        f"  {'tick stream':<20} {micro['codec']['tick_stream_round_trips_per_second']:>12,.0f} /s"
        " (distinct ticks)"
    )
    print(f"\n== ids ==\n  uuid7 {micro['ids']['ids_per_second']:,.0f} ids/s")
    print("\n== tick-to-fill latency (one process, memory transport) ==")
    for entry in micro["tick_to_fill"]:
        for what in ("tick_to_fill", "tick_handling"):
            print(f"  fill_at={entry['fill_at']:<5} {what:<14} {_pcts(entry[what])}")
    print("\n== one order's life cycle (signal -> validators -> paper fill -> portfolios) ==")
    for entry in micro["order_life_cycle"]:
        names = ", ".join(entry["validators"]) or "no validators"
        print(f"  {names:<52} {_pcts(entry['life_cycle'])}")


def _pcts(stats: dict[str, Any]) -> str:
    return (
        f"p50 {stats['p50_us']:8.1f} us  p99 {stats['p99_us']:8.1f} us  "
        f"p99.9 {stats['p99_9_us']:8.1f} us  mean {stats['mean_us']:7.1f} us  "
        f"(n={stats['count']:,})"
    )


def write(out_dir: Path, name: str, payload: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="tradeloom benchmarks", formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ticks", type=int, default=1_000_000, help="ticks (default 1,000,000)")
    parser.add_argument("--bars", type=int, default=200_000, help="bars (default 200,000)")
    parser.add_argument(
        "--latency-ticks",
        type=int,
        default=200_000,
        help="ticks for the tick-to-fill latency runs (default 200,000)",
    )
    parser.add_argument("--codec-rounds", type=int, default=100_000)
    parser.add_argument("--ids", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=50_000, help="orders for the life cycle")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per engine, the engines taking turns; the least CPU time is kept",
    )
    parser.add_argument("--skip-backtrader", action="store_true")
    parser.add_argument(
        "--nautilus-python",
        metavar="PYTHON",
        help="also run the backtests in nautilus_trader, with this interpreter (of an "
        "environment that has nautilus_trader; it pins its own dependencies)",
    )
    parser.add_argument(
        "--only", choices=("backtest", "micro"), help="run only the backtests or the micro set"
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count instructions per tick with Valgrind's Callgrind (figures that do not "
        "move with the machine's load; a few minutes; see instructions.py)",
    )
    parser.add_argument("--data-dir", type=Path, default=HERE / "data")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    if not args.skip_backtrader and args.only != "micro":
        try:
            import backtrader  # noqa: F401
        except ImportError:
            parser.error(
                "backtrader is not installed: pip install -r benchmarks/requirements.txt "
                "(or pass --skip-backtrader)"
            )

    if args.instructions and shutil.which("valgrind") is None:
        parser.error("--instructions needs valgrind (apt-get install valgrind)")

    started = time.perf_counter()
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}")
    status = 0
    if args.only in (None, "backtest"):
        runs = [
            backtest(kind, count, args.data_dir, args)
            for kind, count in (("tick", args.ticks), ("bar", args.bars))
            if count > 0
        ]
        print(f"\nwrote {write(args.out, 'backtest', {'machine': info, 'runs': runs})}")
        if any(run.get(key) is False for run in runs for key in ("match", "nautilus_match")):
            print("MISMATCH: tradeloom and a peer disagree", file=sys.stderr)
            status = 1
    if args.only in (None, "micro"):
        ticks_file = ensure(
            args.data_dir / f"ticks-{args.latency_ticks}.csv", "tick", args.latency_ticks
        )
        micro = child(
            "micro.py",
            "--ticks-file",
            str(ticks_file),
            "--codec-rounds",
            str(args.codec_rounds),
            "--ids",
            str(args.ids),
            "--orders",
            str(args.orders),
        )
        show_micro(micro)
        print(f"\nwrote {write(args.out, 'micro', {'machine': info, **micro})}")
    if args.instructions:
        counted = per_tick(INSTRUCTION_TICKS[0], INSTRUCTION_TICKS[1], args.data_dir)
        show_instructions(counted)
        print(f"\nwrote {write(args.out, 'instructions', {'machine': info, **counted})}")
    print(f"\ndone in {time.perf_counter() - started:.0f} s")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
