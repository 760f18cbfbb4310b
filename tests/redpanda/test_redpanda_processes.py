"""A pipeline spread over role processes (``tradeloom run --role ...``) on a real broker:
drain-then-stop on SIGTERM, restart where it stopped, and consumer groups sharing the work.

Every tick becomes exactly one buy of one unit (``buy_every_tick``), so the fills journal
shows any lost tick (a missing fill) and any doubled effect (an extra fill) by counting.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from redpanda_support import (
    GroupPositions,
    RoleProcess,
    journal,
    journaled_rejections,
    keys_covering,
    partition_of,
    pipeline_config,
    read_topic,
    running,
    snapshots,
    tick_json,
    wait_until,
    wall_ts,
    write_config,
    write_pipeline,
)
from tansu_broker import Broker

from tradeloom_decimal.codec import DecimalJsonCodec

CODEC = DecimalJsonCodec()

EVERY_TICK = {"name": "buy_every_tick", "id": "every"}
FILL_AT_LAST = {"name": "paper", "params": {"fill_at": "last"}}


def _price(round_: int) -> Decimal:
    return Decimal(100 + round_) + Decimal("0.25")


def _ticks(symbols: list[str], rounds: int, start: int = 0) -> list[tuple[bytes, bytes]]:
    return [
        (symbol.encode(), tick_json(symbol, _price(n), wall_ts()))
        for n in range(start, start + rounds)
        for symbol in symbols
    ]


def _produce_paced(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], gap: float
) -> threading.Thread:
    """Write records one by one, ``gap`` seconds apart, from a thread (an outside producer)."""

    async def paced() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for key, value in records:
                await producer.send_and_wait(topic, value, key=key)
                await asyncio.sleep(gap)
        finally:
            await producer.stop()

    thread = threading.Thread(target=lambda: asyncio.run(paced()), daemon=True)
    thread.start()
    return thread


def _price_until(
    bootstrap: str, topic: str, symbol: str, start: int, done: Callable[[], bool]
) -> list[Decimal]:
    """Write ``symbol``'s prices from round ``start`` on, a fifth of a second apart, until
    ``done()``, and one more after it (a second fill would have a price to happen at): a
    restarted process may take its first prices before it reads again the order they are to
    fill, however long its group join took. The prices written, in order."""
    written: list[Decimal] = []
    deadline = time.monotonic() + 30
    n = start
    finished = False
    while not finished and time.monotonic() < deadline:
        (record,) = _ticks([symbol], 1, start=n)
        _produce_paced(bootstrap, topic, [record], 0).join(30)
        written.append(_price(n))
        n += 1
        pause_ends = time.monotonic() + 0.2
        while not finished and time.monotonic() < pause_ends:
            finished = bool(done())
            time.sleep(0.02)
    if finished:
        (record,) = _ticks([symbol], 1, start=n)
        _produce_paced(bootstrap, topic, [record], 0).join(30)
        written.append(_price(n))
    return written  # when not finished, the caller's wait names what did not happen


def _assert_each_tick_filled_once(db: Path, per_symbol: dict[str, int]) -> None:
    fills = journal(db)
    order_ids = [fill.order_id for fill in fills]
    assert len(set(order_ids)) == len(order_ids), "a fill was journaled twice"
    assert Counter(fill.instrument for fill in fills) == Counter(per_symbol)
    assert all(fill.quantity == 1 for fill in fills)
    snapshot = snapshots(db)["every"]
    assert snapshot.fills_applied == sum(per_symbol.values())
    assert {i: p.quantity for i, p in snapshot.positions.items()} == {
        symbol: Decimal(count) for symbol, count in per_symbol.items()
    }


def test_sigterm_to_execution_and_portfolio_mid_stream_then_restart(
    broker: Broker, prefix: str, tmp_path: Path
) -> None:
    config, db = write_pipeline(
        tmp_path,
        bootstrap=broker.bootstrap,
        prefix=prefix,
        strategy=EVERY_TICK,
        executor=FILL_AT_LAST,
    )
    symbols = ["AAA", "BBB", "CCC"]
    front = RoleProcess(config, ["feed", "strategy", "risk"], tmp_path, "front").start()
    execution = RoleProcess(config, ["execution"], tmp_path, "execution").start()
    portfolio = RoleProcess(config, ["portfolio"], tmp_path, "portfolio").start()
    with running(front, execution, portfolio) as processes:
        # 30 rounds flow for about two seconds; both processes are stopped in the middle.
        first = _produce_paced(broker.bootstrap, f"{prefix}ticks", _ticks(symbols, 30), 0.02)
        wait_until(lambda: len(journal(db)) >= 15, 30, "the first fills")
        assert execution.terminate() == 0, execution.current_log()[-2000:]
        assert portfolio.terminate() == 0, portfolio.current_log()[-2000:]
        stopped_with = len(journal(db))
        assert "SIGTERM: draining, then stopping" in portfolio.current_log()
        assert first.is_alive(), "the stream ended before the processes were stopped"
        first.join(30)
        second = _produce_paced(
            broker.bootstrap, f"{prefix}ticks", _ticks(symbols, 10, start=30), 0.0
        )
        second.join(30)
        assert stopped_with < 90
        execution.start()
        portfolio.start()
        execution.wait_ready()
        portfolio.wait_ready()
        wait_until(lambda: len(journal(db)) >= 120, 60, "all 120 fills")
        time.sleep(0.5)  # anything redelivered would arrive now
        for process in processes:
            assert process.terminate() == 0, process.current_log()[-2000:]
    _assert_each_tick_filled_once(db, {symbol: 40 for symbol in symbols})


def _split(first: RoleProcess, second: RoleProcess, role: str, topic: str) -> bool:
    """Whether the two processes' latest assignments of ``role`` split the 6 partitions of
    ``topic`` between them, 3 each."""
    mine = _topic_partitions(first.assignments(role)[-1], topic)
    theirs = _topic_partitions(second.assignments(role)[-1], topic)
    return len(mine) == 3 and len(theirs) == 3 and not mine & theirs


def _topic_partitions(assignment: str, topic: str) -> set[int]:
    found = re.search(re.escape(topic) + r"\[([\d,]+)\]", assignment)
    return {int(p) for p in found.group(1).split(",")} if found else set()


def test_two_strategy_processes_share_partitions_and_one_takes_over(
    broker: Broker, prefix: str, tmp_path: Path
) -> None:
    config, db = write_pipeline(
        tmp_path,
        bootstrap=broker.bootstrap,
        prefix=prefix,
        strategy=EVERY_TICK,
        executor=FILL_AT_LAST,
    )
    symbols = keys_covering(6)  # one instrument on each of the 6 partitions
    back = RoleProcess(config, ["feed", "risk", "execution", "portfolio"], tmp_path, "back")
    first = RoleProcess(config, ["strategy"], tmp_path, "strategy-1")
    second = RoleProcess(config, ["strategy"], tmp_path, "strategy-2")
    with running(back, first, second):

        def shared() -> bool:
            mine = _topic_partitions(first.assignments("strategy")[-1], f"{prefix}market")
            theirs = _topic_partitions(second.assignments("strategy")[-1], f"{prefix}market")
            return len(mine) == 3 and len(theirs) == 3 and not mine & theirs

        wait_until(shared, 30, "the two strategy processes to split the 6 partitions")
        stream = _produce_paced(broker.bootstrap, f"{prefix}ticks", _ticks(symbols, 30), 0.01)
        wait_until(lambda: len(journal(db)) >= 40, 30, "fills from both strategy processes")
        assert first.terminate() == 0, first.current_log()[-2000:]
        wait_until(
            lambda: (
                _topic_partitions(second.assignments("strategy")[-1], f"{prefix}market")
                == set(range(6))
            ),
            30,
            "the remaining strategy process to take every partition",
        )
        stream.join(30)
        wait_until(lambda: len(journal(db)) >= 180, 60, "all 180 fills")
        time.sleep(0.5)
        for process in (back, second):
            assert process.terminate() == 0, process.current_log()[-2000:]
    _assert_each_tick_filled_once(db, {symbol: 30 for symbol in symbols})
    for process in (first, second):
        published = re.search(r"closed: (\d+) published", process.current_log())
        assert published and int(published.group(1)) > 0, f"{process.name} sent no signals"


def test_a_cancel_crosses_strategy_risk_and_execution_processes(
    broker: Broker, prefix: str, tmp_path: Path
) -> None:
    config, db = write_pipeline(
        tmp_path,
        bootstrap=broker.bootstrap,
        prefix=prefix,
        strategy={"name": "rest_then_cancel", "id": "rest"},
        executor=FILL_AT_LAST,
    )
    symbols = ["AAA", "BBB"]
    with running(
        RoleProcess(config, ["feed", "strategy"], tmp_path, "front"),
        RoleProcess(config, ["risk"], tmp_path, "risk"),
        RoleProcess(config, ["execution"], tmp_path, "execution"),
        RoleProcess(config, ["portfolio"], tmp_path, "portfolio"),
    ) as processes:
        # Paced: each tick's outcome is back before the next tick comes.
        _produce_paced(broker.bootstrap, f"{prefix}ticks", _ticks(symbols, 5), 0.3).join(60)
        wait_until(lambda: len(journal(db)) >= 2, 30, "the market buys after the cancels")
        rejections = [
            CODEC.decode(record.value)
            for record in asyncio.run(read_topic(broker.bootstrap, f"{prefix}rejections", 2))
        ]
        for process in processes:
            assert process.terminate() == 0, process.current_log()[-2000:]
    assert sorted((r.signal.instrument, r.validator, r.reason) for r in rejections) == [
        (symbol, "cancel", "cancelled by the strategy") for symbol in symbols
    ]
    assert all(r.signal.limit_price is not None for r in rejections)
    fills = journal(db)
    assert sorted(fill.instrument for fill in fills) == symbols
    assert all(fill.price > 100 for fill in fills)  # the market buys, never the limit at half


def test_a_second_execution_process_takes_over_the_orders_resting_in_the_first(
    broker: Broker, prefix: str, tmp_path: Path
) -> None:
    # Limit buys rest in the execution process for the 6 instruments (one per partition);
    # a second one joins and the group gives it half of them. Those orders rested in the
    # first process, which no longer gets their prices: they are handed over to the second,
    # and every one fills when the prices come down through the limits.
    config, db = write_pipeline(
        tmp_path,
        bootstrap=broker.bootstrap,
        prefix=prefix,
        strategy={"name": "rest_below", "id": "rest"},
        executor=FILL_AT_LAST,
    )
    symbols = keys_covering(6)
    front = RoleProcess(config, ["feed", "strategy", "risk", "portfolio"], tmp_path, "front")
    first = RoleProcess(config, ["execution"], tmp_path, "execution-1")
    second = RoleProcess(config, ["execution"], tmp_path, "execution-2")
    with running(front, first) as processes:
        _produce_paced(broker.bootstrap, f"{prefix}ticks", _ticks(symbols, 1), 0).join(30)
        wait_until(
            lambda: len(asyncio.run(read_topic(broker.bootstrap, f"{prefix}orders", 6, 1))) >= 6,
            30,
            "the six limit orders",
        )
        processes.append(second.start())
        second.wait_ready()

        wait_until(
            lambda: _split(first, second, "execution", f"{prefix}market"),
            30,
            "the two execution processes to split the 6 partitions",
        )
        lower = [(symbol.encode(), tick_json(symbol, Decimal(90), wall_ts())) for symbol in symbols]
        _produce_paced(broker.bootstrap, f"{prefix}ticks", lower, 0).join(30)
        wait_until(lambda: len(journal(db)) >= 6, 30, "a fill of each resting order")
        for process in processes:
            assert process.terminate() == 0, process.current_log()[-2000:]
    fills = journal(db)
    assert sorted(fill.instrument for fill in fills) == sorted(symbols)
    assert all(fill.price == Decimal(90) for fill in fills)  # below the limits: at the price
    # Only the first had orders waiting (a rebalance may take back every partition first).
    assert re.search(r"handed [36] waiting order\(s\)", first.current_log())
    assert "waiting order(s)" not in second.current_log()


def _on_partition_of(key: str) -> str:
    """Another instrument whose records land on ``key``'s partition (the transport's default
    6): handled after ``key``'s there."""
    return next(
        name
        for name in (f"Y{n}" for n in range(1000))
        if partition_of(name, 6) == partition_of(key, 6)
    )


def _buy_list_pipeline(
    broker: Broker,
    prefix: str,
    folder: Path,
    instruments: list[str],
    executor: dict[str, Any] = FILL_AT_LAST,
) -> tuple[Path, Path]:
    """A pipeline whose strategy buys each of ``instruments`` once, in order, on the first AAA
    tick; signals wait up to 300 s for a first price."""
    db = folder / "book.sqlite"
    document = pipeline_config(
        bootstrap=broker.bootstrap,
        prefix=prefix,
        db_path=db,
        strategy={
            "name": "buy_list_once",
            "id": "list",
            "params": {"trigger": "AAA", "instruments": instruments},
        },
        executor=executor,
    )
    document["pending"] = {"max_wait_seconds": 300}
    return write_config(folder / "pipeline.toml", document), db


def _signals_held_then_priced_ones_filled(
    broker: Broker, prefix: str, db: Path, held: list[str], after: list[str]
) -> None:
    """Give ``after`` a price, then trigger the buys: the ``held`` signals wait for a price,
    the ``after`` ones (each behind a held one on its partition) fill, which shows that the
    risk process handled the held ones."""
    ticks = f"{prefix}ticks"
    _produce_paced(broker.bootstrap, ticks, _ticks(after, 1), 0).join(30)
    # The executor fills at the last price it saw: it must have taken them too (on a loaded
    # machine the order could otherwise come first, and wait for a next price that never comes).
    wait_until(
        lambda: all(
            _committed(broker, f"{prefix}{role}", f"{prefix}market", k) > 0
            for k in after
            for role in ("risk", "execution")
        ),
        30,
        "the risk and execution processes to take the prices",
    )
    _produce_paced(broker.bootstrap, ticks, _ticks(["AAA"], 1), 0).join(30)
    wait_until(
        lambda: sorted(fill.instrument for fill in journal(db)) == sorted(after),
        30,
        f"the fills of {after}, handled after {held}",
    )


def test_a_signal_waiting_for_a_first_price_outlives_a_killed_risk_process(
    broker: Broker, prefix: str, tmp_path: Path
) -> None:
    # The risk process keeps a signal for an instrument without a price (ZZZ) in memory. Its
    # record stays uncommitted while it waits: killed with -9, the restarted process reads it
    # again (and the signal after it on that partition, whose second order the paper trader
    # ignores), and fills it when the price comes. It was committed at once, and lost.
    held, after = "ZZZ", _on_partition_of("ZZZ")
    config, db = _buy_list_pipeline(broker, prefix, tmp_path, [held, after])
    front = RoleProcess(config, ["feed", "strategy", "execution", "portfolio"], tmp_path, "front")
    risk = RoleProcess(config, ["risk"], tmp_path, "risk")
    with running(front, risk) as processes:
        _signals_held_then_priced_ones_filled(broker, prefix, db, [held], [after])
        # Not committed past the waiting signal (its partition's position stays on it).
        signals = asyncio.run(read_topic(broker.bootstrap, f"{prefix}signals", 2))
        (waiting,) = [r for r in signals if r.key == held.encode()]
        assert _committed(broker, f"{prefix}risk", f"{prefix}signals", held) == waiting.offset
        risk.kill()
        risk.start().wait_ready()
        _produce_paced(broker.bootstrap, f"{prefix}ticks", _ticks([held], 1), 0).join(30)
        wait_until(lambda: len(journal(db)) >= 2, 30, f"the fill of the {held} signal")
        time.sleep(1)  # a second fill of the signal after it would come now
        for process in processes:
            assert process.terminate() == 0, process.current_log()[-2000:]
    assert Counter(fill.instrument for fill in journal(db)) == {held: 1, after: 1}
    # The signal after the waiting one, read again, was not decided again (it was filled).
    assert _decisions(broker, prefix, 2) == (Counter([held, after]), [])


def test_a_signal_refused_before_a_risk_crash_is_not_decided_again(
    broker: Broker, prefix: str, tmp_path: Path
) -> None:
    # Behind a signal waiting for a first price (the risk process keeps its commit there), a
    # signal that max_position refuses. Killed with -9, the restarted risk process reads both
    # again: the refused one's rejection is in the journal, so it is not decided again (no
    # second rejection; were the limit raised in between, no order either).
    held, refused = "ZZZ", _on_partition_of("ZZZ")
    config, db = _buy_list_pipeline(broker, prefix, tmp_path, [held, refused])
    document = tomllib.loads(config.read_text())
    document["validators"] = [
        {"name": "max_position", "params": {"limit": "100", "limits": {refused: "0.5"}}}
    ]
    write_config(config, document)
    front = RoleProcess(config, ["feed", "strategy", "execution", "portfolio"], tmp_path, "front")
    risk = RoleProcess(config, ["risk"], tmp_path, "risk")
    with running(front, risk) as processes:
        _produce_paced(broker.bootstrap, f"{prefix}ticks", _ticks(["AAA"], 1), 0).join(30)
        wait_until(lambda: len(journaled_rejections(db)) == 1, 30, "the refusal's rejection")
        signals = asyncio.run(read_topic(broker.bootstrap, f"{prefix}signals", 2))
        (waiting,) = [r for r in signals if r.key == held.encode()]
        assert _committed(broker, f"{prefix}risk", f"{prefix}signals", held) == waiting.offset
        risk.kill()
        risk.start().wait_ready()
        _produce_paced(broker.bootstrap, f"{prefix}ticks", _ticks([held], 1), 0).join(30)
        wait_until(lambda: len(journal(db)) >= 1, 30, f"the fill of the {held} signal")
        time.sleep(1)  # a second decision on the refused signal would come now
        for process in processes:
            assert process.terminate() == 0, process.current_log()[-2000:]
    assert [fill.instrument for fill in journal(db)] == [held]
    (rejection,) = journaled_rejections(db)
    assert (rejection.signal.instrument, rejection.validator) == (refused, "max_position")
    assert _decisions(broker, prefix, 1) == (Counter([held]), [rejection.reason])


def test_signals_waiting_for_a_price_go_with_their_partition_to_another_risk_process(
    broker: Broker, prefix: str, tmp_path: Path
) -> None:
    # Two signals wait in the first risk process, on partitions 0 and 5; a second one joins,
    # and the group gives it one of those (0-2 or 3-5). The first drops the signal whose
    # partition moved (it would no longer see its price) and the second reads it again.
    held = [next(f"H{n}" for n in range(1000) if partition_of(f"H{n}", 6) == p) for p in (0, 5)]
    after = [_on_partition_of(name) for name in held]
    config, db = _buy_list_pipeline(broker, prefix, tmp_path, [*held, *after])
    front = RoleProcess(config, ["feed", "strategy", "execution", "portfolio"], tmp_path, "front")
    first = RoleProcess(config, ["risk"], tmp_path, "risk-1")
    second = RoleProcess(config, ["risk"], tmp_path, "risk-2")
    with running(front, first) as processes:
        _signals_held_then_priced_ones_filled(broker, prefix, db, held, after)
        processes.append(second.start())
        second.wait_ready()

        wait_until(
            lambda: _split(first, second, "risk", f"{prefix}signals"),
            30,
            "the two risk processes to split the 6 partitions",
        )
        _produce_paced(broker.bootstrap, f"{prefix}ticks", _ticks(held, 1), 0).join(30)
        wait_until(lambda: len(journal(db)) >= 4, 30, "the fills of the waiting signals")
        time.sleep(1)  # a second fill of a signal would come now
        for process in processes:
            assert process.terminate() == 0, process.current_log()[-2000:]
    assert Counter(fill.instrument for fill in journal(db)) == dict.fromkeys([*held, *after], 1)
    assert re.search(r"handed [12] signal\(s\) waiting for a first price", first.log())
    # Nothing decided twice: one order per signal, no rejection.
    assert _decisions(broker, prefix, 4) == (Counter([*held, *after]), [])


def test_an_order_waiting_for_the_next_price_outlives_a_killed_execution_process(
    broker: Broker, prefix: str, tmp_path: Path
) -> None:
    # With fill_at = "next" the execution process keeps an order in memory until its
    # instrument's next price. Its record stays uncommitted while it waits: killed with -9,
    # the restarted process reads it again and fills it when the price comes. With it comes
    # the order after it on that partition, filled already: the journal says so, and it is
    # not executed again. The waiting order's record was committed at once, and lost.
    held, after = "ZZZ", _on_partition_of("ZZZ")
    config, db = _buy_list_pipeline(
        broker, prefix, tmp_path, [held, after], {"name": "paper", "params": {"fill_at": "next"}}
    )
    front = RoleProcess(config, ["feed", "strategy", "risk", "portfolio"], tmp_path, "front")
    execution = RoleProcess(config, ["execution"], tmp_path, "execution")
    with running(front, execution) as processes:
        ticks = f"{prefix}ticks"
        _produce_paced(broker.bootstrap, ticks, _ticks([held, after], 1), 0).join(30)
        wait_until(
            lambda: all(
                _committed(broker, f"{prefix}risk", f"{prefix}market", k) > 0 for k in (held, after)
            ),
            30,
            "the risk process to take the first prices",
        )
        _produce_paced(broker.bootstrap, ticks, _ticks(["AAA"], 1), 0).join(30)
        orders = asyncio.run(read_topic(broker.bootstrap, f"{prefix}orders", 2))
        (waiting,) = [r for r in orders if r.key == held.encode()]
        _produce_paced(broker.bootstrap, ticks, _ticks([after], 1, start=1), 0).join(30)
        wait_until(lambda: len(journal(db)) >= 1, 30, f"the fill of the {after} order")
        group = f"{prefix}execution"
        wait_until(
            lambda: _committed(broker, group, f"{prefix}orders", held) == waiting.offset,
            30,
            "the execution process to commit up to the waiting order",
        )
        time.sleep(0.5)  # a commit past the waiting order would come now
        assert _committed(broker, group, f"{prefix}orders", held) == waiting.offset
        execution.kill()
        execution.start().wait_ready()
        # Read again, the order meets one of the prices that come after the restart.
        prices = _price_until(broker.bootstrap, ticks, held, 1, lambda: len(journal(db)) >= 2)
        wait_until(lambda: len(journal(db)) >= 2, 1, f"the fill of the {held} order")
        time.sleep(1)  # a second fill of the order after it would come now
        for process in processes:
            assert process.terminate() == 0, process.current_log()[-2000:]
    fills = journal(db)
    assert Counter(fill.instrument for fill in fills) == {held: 1, after: 1}
    price_of = {fill.instrument: fill.price for fill in fills}
    assert price_of[after] == Decimal("101.25") and price_of[held] in prices
    # The order after the waiting one, read again, was not executed again (no second fill).
    published = asyncio.run(read_topic(broker.bootstrap, f"{prefix}fills", 3, 3))
    assert sorted(CODEC.decode(record.value).instrument for record in published) == sorted(
        [held, after]
    )
    assert asyncio.run(read_topic(broker.bootstrap, f"{prefix}rejections", 1, 1)) == []


def test_an_order_cancelled_before_an_execution_crash_is_not_placed_again(
    broker: Broker, prefix: str, tmp_path: Path
) -> None:
    # The execution process keeps its commit at an order waiting for the next price (fill_at
    # "next"). Behind it on its partition: a limit order, then its cancel, answered by a
    # rejection that the portfolio process journals. Killed with -9, the restarted execution
    # process reads all three again; from the rejections journal it knows the limit order's
    # signal is answered, so it neither places it again (it would fill at the low price that
    # comes next) nor answers its cancel a second time.
    held, rested = "ZZZ", _on_partition_of("ZZZ")
    db = tmp_path / "book.sqlite"
    document = pipeline_config(
        bootstrap=broker.bootstrap,
        prefix=prefix,
        db_path=db,
        strategy={
            "name": "buy_rest_cancel",
            "id": "rest",
            "params": {"trigger": "AAA", "held": held, "rested": rested},
        },
        executor={"name": "paper", "params": {"fill_at": "next"}},
    )
    config = write_config(tmp_path / "pipeline.toml", document)
    front = RoleProcess(config, ["feed", "strategy", "risk", "portfolio"], tmp_path, "front")
    execution = RoleProcess(config, ["execution"], tmp_path, "execution")
    ticks = f"{prefix}ticks"
    with running(front, execution) as processes:
        _produce_paced(broker.bootstrap, ticks, _ticks([held, rested], 1), 0).join(30)
        wait_until(
            lambda: all(
                _committed(broker, f"{prefix}risk", f"{prefix}market", k) > 0
                for k in (held, rested)
            ),
            30,
            "the risk process to take the first prices",
        )
        _produce_paced(broker.bootstrap, ticks, _ticks(["AAA"], 1), 0).join(30)
        orders = asyncio.run(read_topic(broker.bootstrap, f"{prefix}orders", 2))
        (waiting,) = [r for r in orders if r.key == held.encode()]
        _produce_paced(broker.bootstrap, ticks, _ticks(["AAA"], 1, start=1), 0).join(30)
        wait_until(lambda: len(journaled_rejections(db)) == 1, 30, "the cancel's rejection")
        (cancelled,) = journaled_rejections(db)
        assert (cancelled.signal.instrument, cancelled.validator) == (rested, "cancel")
        group = f"{prefix}execution"
        wait_until(
            lambda: _committed(broker, group, f"{prefix}orders", held) == waiting.offset,
            30,
            "the execution process to commit up to the waiting order",
        )
        execution.kill()
        execution.start().wait_ready()
        # A price under the cancelled order's limit, then the held order's next price.
        low = [(rested.encode(), tick_json(rested, Decimal("0.50"), wall_ts()))]
        _produce_paced(broker.bootstrap, ticks, low, 0).join(30)
        _price_until(broker.bootstrap, ticks, held, 1, lambda: len(journal(db)) >= 1)
        wait_until(lambda: len(journal(db)) >= 1, 1, f"the fill of the {held} order")
        time.sleep(1)  # a fill or a second rejection of the cancelled order would come now
        for process in processes:
            assert process.terminate() == 0, process.current_log()[-2000:]
    assert [fill.instrument for fill in journal(db)] == [held]
    published = asyncio.run(read_topic(broker.bootstrap, f"{prefix}rejections", 2, 2))
    assert [CODEC.decode(record.value).signal.instrument for record in published] == [rested]
    assert journaled_rejections(db) == [cancelled]


def test_a_role_process_without_the_feed_that_fails_reports_what_it_did(
    broker: Broker, prefix: str, tmp_path: Path
) -> None:
    # A strategy process knows no first event time (that is the feed's): it still shows the
    # failed run's summary and writes its result, as a process with the feed does.
    config, _ = write_pipeline(
        tmp_path,
        bootstrap=broker.bootstrap,
        prefix=prefix,
        strategy={"name": "buys_then_raises", "id": "fragile"},
        executor=FILL_AT_LAST,
    )
    out = tmp_path / "strategy-out"
    back = RoleProcess(config, ["feed", "risk", "execution", "portfolio"], tmp_path, "back")
    strategy = RoleProcess(config, ["strategy"], tmp_path, "strategy", ["--out", str(out)])
    with running(back, strategy):
        _produce_paced(broker.bootstrap, f"{prefix}ticks", _ticks(["AAA"], 3), 0.2).join(30)
        wait_until(strategy.exited, 30, "the strategy process to fail")
        assert back.terminate() == 0, back.current_log()[-2000:]
    assert strategy.process is not None and strategy.process.returncode == 1
    log = strategy.current_log()
    assert "the model lost its weights" in log
    assert "Run (failed)" in log
    result = json.loads((out / "result.json").read_text())
    assert "the model lost its weights" in result["summary"]["failed"]


def _decisions(broker: Broker, prefix: str, orders: int) -> tuple[Counter[str], list[str]]:
    """The risk stage's decisions: the instruments of the orders (read until one more than
    ``orders`` came or a few seconds passed) and the reasons of the rejections."""
    made = asyncio.run(read_topic(broker.bootstrap, f"{prefix}orders", orders + 1, 3))
    refused = asyncio.run(read_topic(broker.bootstrap, f"{prefix}rejections", 1, 1))
    return (
        Counter(CODEC.decode(record.value).instrument for record in made),
        [CODEC.decode(record.value).reason for record in refused],
    )


def _committed(broker: Broker, group: str, topic: str, key: str) -> int:
    positions = GroupPositions(broker.bootstrap)

    async def read() -> int:
        try:
            partition = TopicPartition(topic, partition_of(key, 6))
            return await positions.committed(group, partition)
        finally:
            await positions.close()

    return asyncio.run(read())
