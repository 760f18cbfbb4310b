"""Helpers for the redpanda tests: configurations, role processes, ticks, and looking at what
the broker and the sqlite journal hold."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2

from tradeloom.events import Fill, PortfolioSnapshot, Rejection
from tradeloom_sqlite.persistence import SqlitePersistence

_T = TypeVar("_T")

HERE = Path(__file__).resolve().parent

FAST: dict[str, Any] = {
    "session_timeout_ms": 1000,
    "heartbeat_interval_ms": 300,
    "fetch_max_wait_ms": 10,
    "poll_timeout_ms": 100,
    "request_timeout_ms": 3000,
    "probe_interval_seconds": 0.3,
    "operation_timeout_seconds": 3.0,
}
"""Connection settings that keep tests quick: short group timeouts (a member that leaves is
replaced within a second) and short fetch waits (Tansu answers a fetch only when it times out)."""

FAST_RECONNECT = {"max_attempts": 20, "base_delay_seconds": 0.1, "max_delay_seconds": 0.5}


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


# -- configuration ---------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Decimal | str):
        return json.dumps(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    raise TypeError(f"no TOML for {value!r}")


def to_toml(document: Mapping[str, Any]) -> str:
    """Enough TOML for these configurations: tables of scalars, inline tables, arrays of
    tables for lists of dicts."""
    lines: list[str] = []

    def table(name: str, values: Mapping[str, Any]) -> None:
        scalars = {k: v for k, v in values.items() if not isinstance(v, dict) or k == "fields"}
        nested = {k: v for k, v in values.items() if k not in scalars}
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in scalars.items())
        lines.append("")
        for key, value in nested.items():
            table(f"{name}.{key}", value)

    for name, section in document.items():
        if isinstance(section, list):
            for entry in section:
                lines.append(f"[[{name}]]")
                lines.extend(f"{key} = {_toml_value(value)}" for key, value in entry.items())
                lines.append("")
        else:
            table(name, section)
    return "\n".join(lines)


def pipeline_config(
    *,
    bootstrap: str,
    prefix: str,
    db_path: Path,
    strategy: Mapping[str, Any],
    executor: Mapping[str, Any],
    feed_format: str = "json",
    reconnect: Mapping[str, Any] | None = None,
    extra_transport: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A configuration for a multi-process pipeline: feed from ``<prefix>ticks`` (plain JSON),
    every stage boundary on the broker under ``prefix``, fills journaled in ``db_path``."""
    connection = {"bootstrap_servers": bootstrap, **FAST}
    return {
        "pipeline": {"transport": "redpanda"},
        "plugins": {"modules": ["redpanda_test_plugin"]},
        "transport": {
            **connection,
            "topic_prefix": prefix,
            "group_prefix": prefix,
            **(extra_transport or {}),
        },
        "feed": {
            "name": "redpanda",
            "params": {
                **connection,
                "topic": f"{prefix}ticks",
                "group_id": f"{prefix}feed",
                "format": feed_format,
            },
        },
        "strategies": [dict(strategy)],
        "executor": dict(executor),
        "persistence": {"name": "sqlite", "params": {"path": str(db_path)}},
        "portfolio": {"snapshot_interval_seconds": 0.5},
        "reconnect": dict(reconnect or FAST_RECONNECT),
    }


def write_config(path: Path, document: Mapping[str, Any]) -> Path:
    path.write_text(to_toml(document))
    return path


def write_pipeline(
    folder: Path,
    *,
    bootstrap: str,
    prefix: str,
    strategy: Mapping[str, Any],
    executor: Mapping[str, Any],
) -> tuple[Path, Path]:
    """``folder/pipeline.toml`` for a multi-process pipeline journaling into
    ``folder/book.sqlite``; returns both paths (config, database)."""
    db = folder / "book.sqlite"
    config = write_config(
        folder / "pipeline.toml",
        pipeline_config(
            bootstrap=bootstrap, prefix=prefix, db_path=db, strategy=strategy, executor=executor
        ),
    )
    return config, db


# -- processes -------------------------------------------------------------------------------

ASSIGNED = re.compile(r"role (\w+) \(group [^)]*\): assigned partitions (.*)$", re.MULTILINE)
SERVING = re.compile(r"serving /health, /ready and /metrics on (\S+)")


class RoleProcess:
    """``tradeloom -v run -c CONFIG --role ...`` in a subprocess, its output in a log file."""

    def __init__(
        self,
        config: Path,
        roles: Iterable[str],
        log_dir: Path,
        name: str,
        extra_args: Iterable[str] = (),
    ) -> None:
        self.config = config
        self.roles = list(roles)
        self.extra_args = list(extra_args)
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> RoleProcess:
        self.runs += 1
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "tradeloom.cli", "-v", "run", "-c", str(self.config)]
        for role in self.roles:
            command += ["--role", role]
        command += self.extra_args
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start #{self.runs}: {' '.join(command)}\n".encode())
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def current_log(self) -> str:
        """The log of the latest start only."""
        return self.log().rsplit("===== start #", 1)[-1]

    def assignments(self, role: str) -> list[str]:
        """Every partition assignment of ``role`` in the latest run, oldest first."""
        return [m.group(2) for m in ASSIGNED.finditer(self.current_log()) if m.group(1) == role]

    def metrics_url(self, timeout: float = 30.0) -> str:
        """The ``/metrics`` address the latest run serves (``[health] http_port`` set)."""
        wait_until(lambda: SERVING.search(self.current_log()), timeout, f"{self.name}'s server")
        found = SERVING.search(self.current_log())
        assert found is not None
        return f"{found.group(1)}/metrics"

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until every consuming role of the process has partitions (and the signal
        handlers are installed)."""
        consuming = [r for r in self.roles if r != "feed"] or []
        wanted = (
            {"strategy", "risk", "execution", "portfolio"} if "all" in consuming else set(consuming)
        )
        wait_until(
            lambda: self.exited() or all(self.assignments(role) for role in wanted),
            timeout,
            f"{self.name} to join its groups",
        )
        if self.exited():
            raise AssertionError(f"{self.name} exited early:\n{self.current_log()[-3000:]}")

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM (drain, then stop) and wait; return the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"{self.name} did not stop within {timeout:g}s after SIGTERM:\n"
                f"{self.current_log()[-3000:]}"
            ) from None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextmanager
def running(*processes: RoleProcess) -> Iterator[list[RoleProcess]]:
    """Start the processes not started yet and wait until each is ready; kill whatever is left
    of them, and of processes added to the list yielded, however the block ends."""
    started = list(processes)
    try:
        for process in started:
            if process.process is None:
                process.start()
        for process in started:
            process.wait_ready()
        yield started
    finally:
        for process in started:
            process.kill()


# -- data ------------------------------------------------------------------------------------


def tick_json(symbol: str, price: Decimal, ts: datetime, qty: int = 1) -> bytes:
    """A plain JSON tick as an outside system would write it (the feed's default mapping)."""
    return json.dumps(
        {"symbol": symbol, "price": str(price), "qty": qty, "ts": ts.isoformat()}
    ).encode()


def wall_ts() -> datetime:
    return datetime.now(UTC)


def synthetic_ts(index: int) -> datetime:
    return datetime(2024, 1, 2, 9, 30, tzinfo=UTC) + timedelta(seconds=index)


async def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
    """Write ``(key, value)`` records with a plain aiokafka producer; return how many."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    count = 0
    try:
        for key, value in records:
            await producer.send(topic, value, key=key)
            count += 1
        await producer.flush()
    finally:
        await producer.stop()
    return count


async def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 15.0) -> list[Any]:
    """Read a topic from its start (no group) until ``expected`` records arrived (or the
    timeout passed); return the records."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=10
    )
    await consumer.start()
    try:
        partitions = None
        deadline = time.monotonic() + timeout
        while partitions is None and time.monotonic() < deadline:
            found = consumer.partitions_for_topic(topic)
            if found:
                partitions = [TopicPartition(topic, p) for p in sorted(found)]
            else:
                await consumer.topics()
                await asyncio.sleep(0.05)
        if partitions is None:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[Any] = []
        while len(records) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=100)
            for items in batch.values():
                records.extend(items)
        # anything beyond the expected count shows up too
        batch = await consumer.getmany(timeout_ms=300)
        for items in batch.values():
            records.extend(items)
        return records
    finally:
        await consumer.stop()


class GroupPositions:
    """Reads the positions consumer groups committed (through a consumer that names the group
    but never joins it: Tansu does not answer the admin client's offset listing)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._peekers: dict[str, AIOKafkaConsumer] = {}

    async def committed(self, group: str, partition: TopicPartition) -> int:
        peeker = self._peekers.get(group)
        if peeker is None:
            peeker = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False
            )
            await peeker.start()
            self._peekers[group] = peeker
        found = await peeker.committed(partition)
        return -1 if found is None else int(found)

    async def close(self) -> None:
        for peeker in self._peekers.values():
            await peeker.stop()


def partition_of(key: str, partitions: int) -> int:
    """The partition the default (murmur2) partitioner gives ``key``, as Kafka clients do."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def keys_covering(partitions: int, per_partition: int = 1) -> list[str]:
    """Instrument names that land on every partition, ``per_partition`` each."""
    chosen: dict[int, list[str]] = {p: [] for p in range(partitions)}
    index = 0
    while any(len(names) < per_partition for names in chosen.values()):
        name = f"I{index:03d}"
        names = chosen[partition_of(name, partitions)]
        if len(names) < per_partition:
            names.append(name)
        index += 1
    return [name for p in range(partitions) for name in chosen[p]]


# -- state -----------------------------------------------------------------------------------


def journal(db_path: Path) -> list[Fill]:
    """The fills journal of the sqlite database (empty when it does not exist yet)."""
    return _journaled(db_path, SqlitePersistence.load_fills)


def journaled_rejections(db_path: Path) -> list[Rejection]:
    """The rejections journal of the sqlite database (empty when it does not exist yet)."""
    return _journaled(db_path, SqlitePersistence.load_rejections)


def _journaled(db_path: Path, load: Callable[[SqlitePersistence], list[_T]]) -> list[_T]:
    if not db_path.exists():
        return []
    store = SqlitePersistence(db_path)
    store.open()
    try:
        return list(load(store))
    finally:
        store.close()


def snapshots(db_path: Path) -> dict[str, PortfolioSnapshot]:
    store = SqlitePersistence(db_path)
    store.open()
    try:
        return dict(store.load_snapshots())
    finally:
        store.close()
