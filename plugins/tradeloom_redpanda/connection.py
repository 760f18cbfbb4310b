"""The broker link shared by the transport and the feed: topic creation, connection probes and
reconnection with backoff from ``[reconnect]``."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from tradeloom.backoff import ReconnectExhausted, backoff_delays
from tradeloom.errors import TradeloomError, describe_error
from tradeloom.settings import ReconnectSettings
from tradeloom_redpanda.options import ConnectionOptions

LAG_INTERVAL_SECONDS = 1.0
"""How often the transport's roles and the feed measure how far behind they are."""


class BrokerSetupError(TradeloomError):
    """The broker refused something that retrying will not fix (e.g. creating a topic with a
    replication factor larger than the cluster)."""


class BrokerLink:
    """An admin connection that keeps the needed topics in place and tells whether the broker
    is reachable.

    :meth:`probe` checks the connection and (re)creates missing topics, which also heals a
    broker that came back without them. :meth:`recover` runs the reconnection policy: up to
    ``max_attempts`` probes with exponential backoff and jitter, then
    :class:`~tradeloom.backoff.ReconnectExhausted`. Concurrent callers share one recovery.
    """

    def __init__(
        self,
        what: str,
        options: ConnectionOptions,
        topics: Sequence[str],
        reconnect: ReconnectSettings,
        logger: logging.Logger,
        reconnecting: dict[str, str] | None = None,
    ) -> None:
        self.what = what
        # Where to say that this link is reconnecting (a pipeline's status.reconnecting, which
        # the health checks read): the entry is there from the first failure to the end.
        self._reconnecting = reconnecting if reconnecting is not None else {}
        self.options = options
        self.topics = list(dict.fromkeys(topics))
        # Topics of a layout of their own (not keyed by instrument): created and re-created
        # like the others, left out of the partition count check.
        self.own_topics: dict[str, tuple[int, dict[str, str]]] = {}
        self.reconnect = reconnect
        self.logger = logger
        self.exhausted: ReconnectExhausted | None = None
        self.reconnections = 0
        self.topics_created = 0
        self._admin: AIOKafkaAdminClient | None = None
        self._recovery: asyncio.Future[None] | None = None
        self._name_hint = ""  # why the broker cannot be reached, when the name is the reason

    def __repr__(self) -> str:
        return f"BrokerLink({self.what!r}, {self.options.describe()})"

    # -- connecting ---------------------------------------------------------------------------

    async def connect(self) -> None:
        """Reach the broker and create missing topics, retrying per the reconnect settings."""
        await self._probe_or_recover()
        await self._check_partitions()

    async def _probe_or_recover(self) -> None:
        try:
            await self.probe()
        except BrokerSetupError:
            raise
        except Exception as exc:  # any failure to reach the broker is retried
            await self.recover(exc)

    async def _admin_client(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            admin = AIOKafkaAdminClient(**self.options.client_kwargs())
            try:
                await admin.start()
            except BaseException:
                await _quietly(admin.close())
                raise
            self._admin = admin
        return self._admin

    async def probe(self) -> None:
        """Check the connection, creating missing topics. Raises on failure."""
        async with asyncio.timeout(self.options.operation_timeout_seconds):
            try:
                admin = await self._admin_client()
                existing = set(await admin.list_topics())
            except BaseException:
                await self._drop_admin()
                raise
            missing = [topic for topic in (*self.topics, *self.own_topics) if topic not in existing]
            if missing and self.options.create_topics:
                await self._create(admin, missing)

    async def add_topic(self, name: str, partitions: int, configs: dict[str, str]) -> None:
        """Keep topic ``name`` in place too, with ``partitions`` and ``configs`` of its own
        (created now when missing, re-created as the others are)."""
        self.own_topics[name] = (partitions, configs)
        await self._probe_or_recover()

    async def _create(self, admin: AIOKafkaAdminClient, names: list[str]) -> None:
        options = self.options
        layouts = {name: self.own_topics.get(name, (options.partitions, {})) for name in names}
        response = await admin.create_topics(
            [
                NewTopic(name, partitions, options.replication_factor, topic_configs=configs)
                for name, (partitions, configs) in layouts.items()
            ]
        )
        for topic, code, message in _topic_errors(response):
            if code == 0:
                self.topics_created += 1
                self.logger.info(
                    "%s: created topic %s (%d partitions)", self.what, topic, layouts[topic][0]
                )
                continue
            error = for_code(code)
            if error is TopicAlreadyExistsError:
                continue  # another process created it first
            if getattr(error, "retriable", False):
                raise error(message or topic)
            raise BrokerSetupError(
                f"{self.what}: the broker refused to create topic {topic!r}: "
                f"{error.__name__}: {message or 'no message'}"
            )

    async def _check_partitions(self) -> None:
        """Warn when topics differ in partition count: records keyed by instrument then land
        in differently numbered partitions and one consumer no longer owns an instrument on
        every topic."""
        if len(self.topics) < 2:
            return
        try:
            async with asyncio.timeout(self.options.operation_timeout_seconds):
                admin = await self._admin_client()
                described = await admin.describe_topics(self.topics)
        except Exception as exc:  # a warning only
            self.logger.debug("%s: could not describe topics: %s", self.what, exc)
            return
        counts = {
            item["topic"]: len(item.get("partitions", []))
            for item in described
            if not item.get("error_code")
        }
        if len(set(counts.values())) > 1:
            listed = ", ".join(f"{topic}={count}" for topic, count in sorted(counts.items()))
            self.logger.warning(
                "%s: topics have different partition counts (%s); give them one count so each "
                "instrument's events of every topic go to the same consumer",
                self.what,
                listed,
            )

    async def _drop_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            await _quietly(admin.close())

    # -- reconnecting ---------------------------------------------------------------------------

    @property
    def reconnecting(self) -> bool:
        """Whether the broker looked unreachable and this link is trying to reach it again."""
        return self._recovery is not None

    async def recover(self, error: BaseException) -> None:
        """The broker looked unreachable (``error``): probe with backoff until it answers.

        Raises :class:`~tradeloom.backoff.ReconnectExhausted` when every attempt failed."""
        if self.exhausted is not None:
            raise self.exhausted
        if self._recovery is not None:
            await asyncio.shield(self._recovery)
            return
        self._recovery = asyncio.get_running_loop().create_future()
        try:
            await self._reconnect(error)
            self._recovery.set_result(None)
        except BaseException as exc:
            self._recovery.set_exception(exc)
            self._recovery.exception()  # retrieved: waiters re-raise their own copy
            raise
        finally:
            self._recovery = None

    async def _reconnect(self, error: BaseException) -> None:
        limit = self.reconnect.max_attempts
        unresolved = await self._unresolved_hosts()
        self._name_hint = (
            f"{', '.join(unresolved)} does not resolve to an address (a name known only inside "
            "a container network or a cluster?): check bootstrap_servers"
            if unresolved
            else ""
        )
        self.logger.warning(
            "%s: broker %s unreachable (%s)%s; reconnecting (%s)",
            self.what,
            self.options.describe(),
            describe_error(error),
            f"; {self._name_hint}" if self._name_hint else "",
            f"at most {limit} attempts" if limit else "until it answers",
        )
        since = datetime.now(UTC).isoformat(timespec="seconds")
        self._reconnecting[self.what] = f"broker unreachable since {since}: {describe_error(error)}"
        try:
            await self._reconnect_with_backoff(error)
        finally:
            self._reconnecting.pop(self.what, None)

    async def _reconnect_with_backoff(self, error: BaseException) -> None:
        limit = self.reconnect.max_attempts
        attempts = 0
        last: BaseException = error
        for delay in backoff_delays(self.reconnect):
            attempts += 1
            await asyncio.sleep(delay)
            try:
                await self.probe()
            except BrokerSetupError:
                raise
            except Exception as exc:  # every failure counts as an attempt
                last = exc
                self.logger.warning(
                    "%s: reconnection attempt %d%s failed: %s",
                    self.what,
                    attempts,
                    f"/{limit}" if limit else "",
                    describe_error(exc),
                )
                continue
            self.reconnections += 1
            self.logger.warning("%s: reconnected after %d attempt(s)", self.what, attempts)
            return
        self.exhausted = ReconnectExhausted(self.what, attempts, last)
        if self._name_hint:
            self.exhausted.add_note(self._name_hint)
        raise self.exhausted

    async def _unresolved_hosts(self) -> list[str]:
        """The broker hosts that do not resolve (DNS says no such name): retrying helps only
        when the name is about to appear, so the messages say so."""
        servers = self.options.bootstrap_servers
        listed = servers.split(",") if isinstance(servers, str) else servers
        unresolved = []
        loop = asyncio.get_running_loop()
        for server in listed:
            host, _, port = server.strip().rpartition(":")
            try:
                async with asyncio.timeout(self.options.operation_timeout_seconds):
                    await loop.getaddrinfo(host.strip("[]"), int(port))
            except socket.gaierror:
                unresolved.append(host)
            except (TimeoutError, OSError, ValueError):
                continue  # no answer is not "no such name"
        return unresolved

    async def watch(self) -> None:
        """Probe every ``probe_interval_seconds`` until cancelled; recover when a probe fails.
        Raises :class:`~tradeloom.backoff.ReconnectExhausted` when recovery gives up."""
        while True:
            await asyncio.sleep(self.options.probe_interval_seconds)
            try:
                await self._probe_on_time()
            except BrokerSetupError:
                raise
            except Exception as exc:  # recovery decides
                await self.recover(exc)

    async def _probe_on_time(self) -> None:
        """:meth:`probe`, once more at once when it timed out: this process's event loop may
        have been blocked past the deadline (a stage in a long computation) while the
        broker's answer waited in the socket. An outage times out twice."""
        try:
            await self.probe()
        except TimeoutError:
            self.logger.debug(
                "%s: a probe timed out (the event loop may have been blocked); probing again",
                self.what,
            )
            await self.probe()

    async def close(self) -> None:
        await self._drop_admin()


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    errors = []
    for entry in getattr(response, "topic_errors", []):
        topic, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        errors.append((topic, code, message))
    return errors


async def _quietly(awaitable: Awaitable[object]) -> None:
    await close_bounded(awaitable, None)


async def close_bounded(
    awaitable: Awaitable[object], seconds: float | None
) -> BaseException | None:
    """Await a client's close or stop for at most ``seconds``; return what it raised.

    aiokafka clients closed during an outage can raise the CancelledError of one of their own
    internal tasks; that is swallowed unless this task itself is being cancelled."""
    try:
        async with asyncio.timeout(seconds):
            await awaitable
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        return exc
    except Exception as exc:  # closing anyway
        return exc
    return None
