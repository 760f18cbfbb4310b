"""What a run produces: fills, rejections, final snapshots, an equity curve and statistics,
written as ``result.json`` and an equity-curve picture."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
from collections.abc import Collection, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path
from typing import Any

import attrs

from tradeloom.components import DeadLetter
from tradeloom.events import CANCELLED, Fill, PortfolioSnapshot, Rejection

ZERO = Decimal(0)
MAX_DEAD_LETTERS_KEPT = 10_000
"""Dead letters a run result keeps (the first ones); its count is always complete."""


class EquityCurve:
    """Equity over time, one point per time: the equity once everything of that time is in.

    Several events at one time (the bars of several instruments, the fills at the end) change
    the point of that time rather than add one: between them the books hold prices of two
    times at once, a state that never existed, and its drawdown is not real. Drawdown is
    tracked on every time; the stored curve is thinned to at most ``max_points`` (every other
    point is dropped when full) so memory stays bounded."""

    def __init__(self, max_points: int = 5000) -> None:
        self.max_points = max_points
        self.points: list[tuple[datetime, Decimal]] = []
        self._stride = 1
        self._count = 0
        self._next_point = 0  # the count of the next point kept: the next multiple of stride
        # The point of the latest time, still open to changes, kept as two fields: no tuple
        # is built per call.
        self.last_time: datetime | None = None
        """The time of the latest point added (None before the first)."""
        self._last_equity: Decimal | None = None
        self._settled: Decimal | None = None  # the equity of the time before, taken in
        self._peak: Decimal | None = None
        self._trough = ZERO  # the lowest equity since the peak
        self._max_drawdown = ZERO  # a fraction of the peak

    def start_from(self, equity: Decimal) -> None:
        """The equity before the first time: the first peak a drawdown is measured from (the
        first point already holds that time's fills: an order sent in ``on_start``, or filled
        at once with ``fill_at = "last"``, may lose money before any point)."""
        self._peak = self._trough = equity

    @property
    def last(self) -> tuple[datetime, Decimal] | None:
        """The latest point added (kept even when the stored curve thinned it out)."""
        if self.last_time is None or self._last_equity is None:
            return None
        return (self.last_time, self._last_equity)

    @property
    def peak(self) -> Decimal | None:
        peak, last = self._peak, self._last_equity
        if last is not None and (peak is None or last > peak):
            return last
        return peak

    @property
    def max_drawdown(self) -> Decimal:
        """The deepest fall from a peak, as a fraction of the peak, over every time."""
        deepest, peak, last = self._max_drawdown, self._peak, self._last_equity
        if last is not None and peak is not None and peak > 0 and last < self._trough:
            return max(deepest, (peak - last) / peak)
        return deepest

    def add(self, ts: datetime, equity: Decimal) -> None:
        last_ts = self.last_time
        if ts == last_ts:  # the same time: its point changes
            self._last_equity = equity
            return
        # A later time came: the point of the time before is final, and counted here (inline:
        # this runs for every market event).
        settled = self._last_equity
        self.last_time = ts
        self._last_equity = equity
        if last_ts is None or settled is None:
            return
        # Equity mostly stays as it was (mostly the very same object): the same value as the
        # time before cannot make a new peak or a deeper drawdown. (Nor can an equal value in
        # a new object: the value before is at most the peak and at least the trough, so the
        # two comparisons below rule it out.)
        if settled is not self._settled:
            self._settled = settled
            peak = self._peak
            if peak is None or settled > peak:
                self._peak = self._trough = settled
            elif settled < self._trough:
                # The deepest drawdown from a peak is at the lowest equity after it, so the
                # division is needed only at a new low (not at every other change).
                self._trough = settled
                if peak > 0:
                    drawdown = (peak - settled) / peak
                    if drawdown > self._max_drawdown:
                        self._max_drawdown = drawdown
        count = self._count
        self._count = count + 1
        if count == self._next_point:
            points = self.points
            points.append((last_ts, settled))
            if len(points) > self.max_points:
                self.points = points[::2]
                self._stride *= 2
            self._next_point = (count // self._stride + 1) * self._stride

    def series(self) -> list[tuple[datetime, Decimal]]:
        last = self.last
        if last is not None:
            return [*self.points, last]
        return list(self.points)


@attrs.define(repr=False)
class RunResult:
    """The outcome of a backtest or run, as returned by the Python API."""

    fills: list[Fill] = attrs.Factory(list)
    rejections: list[Rejection] = attrs.Factory(list)
    snapshots: dict[str, PortfolioSnapshot] = attrs.Factory(dict)
    dead_letters: list[DeadLetter] = attrs.Factory(list)
    equity_curve: EquityCurve = attrs.Factory(EquityCurve)
    starting_equity: Decimal = ZERO
    market_events: int = 0
    duplicates_ignored: int = 0
    unsaved_portfolios: list[str] = attrs.Factory(list)
    wall_seconds: float = 0.0
    first_event_time: datetime | None = None
    last_event_time: datetime | None = None
    first_event_start: datetime | None = None
    last_event_start: datetime | None = None
    """When the first and the last market event began: a bar's ``start`` (its time is its
    end), a tick's time. The summary's period shows these, as a data file names its bars."""
    resumed_after: datetime | None = None
    """A resumed backtest: the latest time in the stored state it continued from; market
    events at or before it were skipped (``skipped_events``), as the state already holds them."""
    skipped_events: int = 0
    keep_events: int | None = None
    """Fills and rejections kept in the lists: all (None, backtests) or about the latest
    this many (live runs, so memory stays bounded). The counts below are always complete."""
    fill_count: int = 0
    rejection_count: int = 0
    cancel_count: int = 0
    """Of the rejections, those that answer the strategy's own cancels (validator "cancel")."""
    dead_letter_count: int = 0
    """Bad input sent to the dead-letter destination; ``dead_letters`` keeps the first
    :data:`MAX_DEAD_LETTERS_KEPT` of them."""
    round_trip_count: int = 0
    commission_total: Decimal = ZERO
    interrupted: str | None = None
    """Set when the run was interrupted (Ctrl-C, or cancelled by the code that ran it): where
    it stopped, in words. The result then holds what happened until then. Set before the
    plugins' ``tradeloom_pipeline_stopped`` calls."""
    failed: str | None = None
    """Set when the run stopped on an error (which the run raises): the error, in words. The
    result then holds what happened until then (the command line still writes it)."""

    def add_fill(self, fill: Fill, position_before: Decimal, position_after: Decimal) -> None:
        self.fill_count += 1
        self.commission_total += fill.commission
        if position_before and (
            not position_after or (position_after > 0) != (position_before > 0)
        ):
            self.round_trip_count += 1
        self.fills = self._kept(self.fills)
        self.fills.append(fill)

    def add_dead_letter(self, letter: DeadLetter) -> None:
        self.dead_letter_count += 1
        if len(self.dead_letters) < MAX_DEAD_LETTERS_KEPT:
            self.dead_letters.append(letter)

    def add_rejection(self, rejection: Rejection) -> None:
        self.rejection_count += 1
        if rejection.validator == CANCELLED:
            self.cancel_count += 1
        self.rejections = self._kept(self.rejections)
        self.rejections.append(rejection)

    def _kept(self, events: list[Any]) -> list[Any]:
        if self.keep_events is not None and len(events) >= self.keep_events:
            return events[len(events) - self.keep_events // 2 :]
        return events

    def __repr__(self) -> str:
        # Counts, not contents: asyncio builds the repr of a finished task's result (this
        # object, with every fill) when a run ends, and a repr of a million-tick run's fills
        # would cost seconds.
        return (
            f"RunResult(market_events={self.market_events}, fills={len(self.fills)}, "
            f"rejections={len(self.rejections)}, dead_letters={self.dead_letter_count}, "
            f"final_equity={self.final_equity}, wall_seconds={self.wall_seconds:.3f})"
        )

    @property
    def final_equity(self) -> Decimal:
        if self.snapshots:
            return sum((s.equity for s in self.snapshots.values()), ZERO)
        return self.starting_equity

    @property
    def total_return(self) -> Decimal:
        """The change of equity as a fraction of the starting equity's size: a resumed run
        whose restored books start below zero (a short gone wrong) and then gain has a
        positive return. ``0`` when the run started from no equity at all."""
        start = self.starting_equity
        if not start:
            return ZERO
        return (self.final_equity - start) / abs(start)

    @property
    def max_drawdown(self) -> Decimal:
        return self.equity_curve.max_drawdown

    @property
    def trade_count(self) -> int:
        """Number of fills."""
        return self.fill_count

    @property
    def round_trips(self) -> int:
        """Number of times a position went back to flat (or through it)."""
        return self.round_trip_count

    @property
    def commission(self) -> Decimal:
        return self.commission_total

    def summary(self) -> dict[str, Any]:
        return {
            "starting_equity": str(self.starting_equity),
            "final_equity": str(self.final_equity),
            "total_return": str(_rounded(self.total_return, 6)),
            "max_drawdown": str(_rounded(self.max_drawdown, 6)),
            "trade_count": self.trade_count,
            "round_trips": self.round_trips,
            "commission": str(self.commission),
            "rejections": self.rejection_count,
            "cancels": self.cancel_count,
            "dead_letters": self.dead_letter_count,
            "market_events": self.market_events,
            "first_event_time": _iso(self.first_event_time),
            "last_event_time": _iso(self.last_event_time),
            "first_event_start": _iso(self.first_event_start),
            "last_event_start": _iso(self.last_event_start),
            "resumed_after": self.resumed_after.isoformat() if self.resumed_after else None,
            "skipped_events": self.skipped_events,
            "interrupted": self.interrupted,
            "failed": self.failed,
            "unsaved_portfolios": self.unsaved_portfolios,
            "wall_seconds": round(self.wall_seconds, 3),
        }

    def to_json(self, roles: Collection[str] | None = None) -> dict[str, Any]:
        """The result as JSON. ``roles``: those a process of a split deployment ran, named in
        the summary; the figures it did not measure there (the feed's events without the feed
        role, the books' without the portfolio role) are null, not zero."""
        summary: dict[str, Any] = self.summary()
        if roles is not None:
            unmeasured: set[str] = set()
            if "feed" not in roles:
                unmeasured |= _FEED_FIGURES
            if "portfolio" not in roles:
                unmeasured |= _BOOK_FIGURES
            summary = {key: None if key in unmeasured else value for key, value in summary.items()}
            summary["roles"] = sorted(roles)
        return {
            "summary": summary,
            "portfolios": {
                pid: snapshot.model_dump(mode="json") for pid, snapshot in self.snapshots.items()
            },
            "fills": [fill.model_dump(mode="json") for fill in self.fills],
            "rejections": [
                {
                    "signal_id": str(r.signal.event_id),
                    "strategy_id": r.signal.strategy_id,
                    "instrument": r.signal.instrument,
                    "side": r.signal.side.value,
                    "quantity": str(r.signal.quantity),
                    "order_type": r.signal.order_type.value,
                    "limit_price": None
                    if r.signal.limit_price is None
                    else str(r.signal.limit_price),
                    "signal_ts": r.signal.ts.isoformat(),
                    "validator": r.validator,
                    "reason": r.reason,
                    "ts": r.ts.isoformat(),
                }
                for r in self.rejections
            ],
            "dead_letters": [
                {
                    "source": d.source,
                    "location": d.location,
                    "error_type": d.error_type,
                    "reason": d.reason,
                }
                for d in self.dead_letters
            ],
            "equity_curve": [
                [ts.isoformat(), str(value)] for ts, value in self.equity_curve.series()
            ],
        }

    def write(
        self,
        out_dir: str | Path,
        *,
        picture: bool = True,
        roles: Collection[str] | None = None,
    ) -> dict[str, Path]:
        """Write ``result.json`` and (unless ``picture`` is false) ``equity.png`` into
        ``out_dir``; return their paths. ``roles``: those a process of a split deployment ran
        (see :meth:`to_json`); one without the portfolio's books draws no equity curve."""
        if roles is not None and "portfolio" not in roles:
            picture = False
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        # Both files are written beside their places first and moved there only once both
        # are whole: one that cannot be written (a full disk) leaves the earlier run's pair as
        # it was, neither cut short nor half replaced.
        written = {"result": out / "result.json"}
        if picture:
            written["equity_curve"] = out / "equity.png"
        with _replaced_whole(list(written.values())) as (result_file, *picture_file):
            result_file.write_text(json.dumps(self.to_json(roles), indent=2) + "\n")
            if picture_file:
                plot_equity_curve(self.equity_curve.series(), picture_file[0], self.summary())
        return written

    def format_summary(self, roles: Collection[str] | None = None) -> str:
        """The summary as text. ``roles``: those a process of a split deployment ran; only
        the lines about what it did are shown (the feed's events, the portfolio's books)."""
        s = self.summary()
        pct = Decimal(100)
        feed = roles is None or "feed" in roles
        books = roles is None or "portfolio" in roles
        lines = [f"  roles           {', '.join(sorted(roles))}"] if roles is not None else []
        if self.interrupted:
            lines.append(f"  interrupted     {self.interrupted}")
        if self.failed:
            lines.append(f"  failed          {self.failed.splitlines()[0]}")
        if feed:
            lines += [
                "  period          "
                + _period(
                    self.first_event_start,
                    self.last_event_start,
                    self.first_event_time,
                    self.last_event_time,
                ),
                f"  market events   {s['market_events']:,}",
            ]
        if self.resumed_after:
            lines.append(
                f"  resumed after   {s['resumed_after']} ({s['skipped_events']:,} skipped)"
            )
        if books:
            lines += [
                f"  starting equity {_rounded(self.starting_equity, 2):,}",
                f"  final equity    {_rounded(self.final_equity, 2):,}",
                f"  total return    {_rounded(self.total_return * pct, 2):,}%",
                f"  max drawdown    {_rounded(self.max_drawdown * pct, 2):,}%",
                f"  fills           {s['trade_count']:,} ({s['round_trips']:,} round "
                f"trip{'' if s['round_trips'] == 1 else 's'})",
                f"  commission      {_rounded(self.commission, 2):,}",
                f"  rejections      {s['rejections']:,}"
                + (f" ({s['cancels']:,} of them cancels)" if s["cancels"] else ""),
            ]
        lines.append(f"  bad input       {s['dead_letters']:,}")
        return "\n".join(lines)


def _rounded(value: Decimal, places: int) -> Decimal:
    """``value`` to ``places`` decimal places, however large (the context's 28 digits would
    make ``quantize`` fail on a huge one), half up as money is shown (0.125 is 0.13), and never
    a negative zero."""
    with localcontext() as context:
        context.prec = max(context.prec, value.adjusted() + places + 2)
        context.rounding = ROUND_HALF_UP
        rounded = value.quantize(Decimal(1).scaleb(-places))
    return rounded if rounded else abs(rounded)


@contextmanager
def _replaced_whole(paths: list[Path]) -> Iterator[list[Path]]:
    """Temporary files beside ``paths`` (the files a link points to) to write to; once all
    are written, each is flushed to disk and moved onto its path, keeping that file's mode.
    Removed when writing any of them failed."""
    targets = [Path(os.path.realpath(path)) for path in paths]
    partials: list[Path] = []
    try:
        for target in targets:
            # Named for this writer (two processes may write into one directory), created with
            # the mode a new file gets (the umask applies); the suffix tells matplotlib the format.
            partial = target.with_name(
                f".{target.stem}.{os.getpid()}.{secrets.token_hex(4)}{target.suffix}"
            )
            os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            partials.append(partial)
        yield partials
        for partial, target in zip(partials, targets, strict=True):  # all whole on disk first
            with open(partial, "rb+") as written:
                os.fsync(written.fileno())
            with suppress(FileNotFoundError):  # a new file keeps the mode it was made with
                os.chmod(partial, stat.S_IMODE(target.stat().st_mode))
        _move_together(partials, targets)
    finally:
        for partial in partials:
            with suppress(OSError):  # the error that stopped the writing is the one to report
                partial.unlink(missing_ok=True)


def _move_together(partials: list[Path], targets: list[Path]) -> None:
    """Move each partial onto its target; when one cannot be moved (a folder in its place, a
    failing disk), put back the targets moved before it, so the earlier files stay together."""
    moved: list[tuple[Path, Path | None]] = []
    try:
        for partial, target in zip(partials, targets, strict=True):
            kept = _kept_copy(target)
            try:
                os.replace(partial, target)
            except BaseException:
                if kept is not None:
                    with suppress(OSError):
                        kept.unlink()
                raise
            moved.append((target, kept))
    except BaseException:
        for target, kept in reversed(moved):
            with suppress(OSError):
                if kept is not None:
                    os.replace(kept, target)
                else:
                    target.unlink()
        raise
    finally:
        for _, kept in moved:
            if kept is not None:
                with suppress(OSError):
                    kept.unlink(missing_ok=True)


def _kept_copy(target: Path) -> Path | None:
    """A second name (or a copy) of the file at ``target`` to put back, or None: none there."""
    if not target.is_file():
        return None
    kept = target.with_name(f".{target.stem}.{os.getpid()}.{secrets.token_hex(4)}.kept")
    try:
        os.link(target, kept)
    except OSError:  # a file system without hard links
        shutil.copy2(target, kept)
    return kept


def plot_equity_curve(
    series: list[tuple[datetime, Decimal]], path: Path, summary: dict[str, Any]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    title = equity_title(summary)
    # Plotting needs floats; the numbers in result.json stay exact Decimals.
    values = [float(value) for _, value in series]
    try:
        _draw(plt, path, title, [ts for ts, _ in series], values)
    except (ValueError, OverflowError):
        # Times matplotlib cannot place on a date axis (year 1, a feed's zero time, or year
        # 9999): the curve is drawn over its points' order instead, not lost with result.json.
        _draw(plt, path, title, list(range(len(values))), values, "point (in time order)")


def _draw(
    plt: Any, path: Path, title: str, xs: list[Any], values: list[float], x_label: str = ""
) -> None:
    figure, axes = plt.subplots(figsize=(10, 4.5), dpi=100)
    try:
        if xs:
            axes.plot(xs, values, lw=1.2)
        axes.set_title(title)
        axes.set_ylabel("equity")
        if x_label:
            axes.set_xlabel(x_label)
        axes.grid(alpha=0.3)
        figure.autofmt_xdate()
        figure.tight_layout()
        figure.savefig(path, metadata={"Title": title})  # also in the file's PNG text
    finally:
        plt.close(figure)


def equity_title(summary: dict[str, Any]) -> str:
    """The title of ``equity.png``: equity from start to end, fills and drawdown; an
    interrupted or failed run's says so (its curve ends where it stopped, not where the data
    does)."""
    title = (
        f"Equity: {_rounded(Decimal(summary['starting_equity']), 2):,} -> "
        f"{_rounded(Decimal(summary['final_equity']), 2):,} "
        f"({summary['trade_count']} fills, max drawdown "
        f"{_rounded(Decimal(summary['max_drawdown']) * 100, 2)}%)"
    )
    if summary.get("interrupted"):
        title += f"\ninterrupted {summary['interrupted']}"
    if summary.get("failed"):
        title += f"\nfailed: {summary['failed'].splitlines()[0]}"
    return title


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _period(
    first: datetime | None,
    last: datetime | None,
    first_end: datetime | None = None,
    last_end: datetime | None = None,
) -> str:
    """``first .. last`` (when the first and last events began); dates alone for daily bars:
    bars that start at midnight UTC, or that last a day (23 to 25 hours) from a midnight in
    another zone, then named by the date at their middle (which is their own date for zones
    within 12 hours of UTC)."""
    if first is None or last is None:
        return "-"
    if first.time() == last.time() == time.min:  # event times are UTC
        return f"{first.date()} .. {last.date()}"
    if first_end is not None and last_end is not None:
        spans = (first_end - first, last_end - last)
        if all(_DAY_AT_LEAST <= span <= _DAY_AT_MOST for span in spans):
            return f"{(first + spans[0] / 2).date()} .. {(last + spans[1] / 2).date()}"
    return f"{first.isoformat()} .. {last.isoformat()}"


_FEED_FIGURES = frozenset(
    {
        "market_events",
        "first_event_time",
        "last_event_time",
        "first_event_start",
        "last_event_start",
        "skipped_events",
    }
)
_BOOK_FIGURES = frozenset(
    {
        "starting_equity",
        "final_equity",
        "total_return",
        "max_drawdown",
        "trade_count",
        "round_trips",
        "commission",
        "rejections",
        "cancels",
    }
)
"""Summary figures a process of a split deployment measures only with the feed role, and only
with the portfolio role (its books, the fills and rejections it took in)."""

_DAY_AT_LEAST = timedelta(hours=23)  # a day with a daylight-saving change: 23 or 25 hours
_DAY_AT_MOST = timedelta(hours=25)
