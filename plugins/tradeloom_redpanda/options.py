"""Parameters of the redpanda transport and feed, checked before anything connects.

Both take the connection options of :class:`ConnectionOptions` (brokers, security, timeouts)
plus their own. Secrets are :class:`~pydantic.SecretStr`: they never appear in reprs, logs or
error messages.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from tradeloom.params import ParamsModel, parameters_problem
from tradeloom.runtime.transport import Topics

_Options = TypeVar("_Options", bound="ConnectionOptions")

REPLAY_POSITIONS = "replay_positions"
"""The topic (after ``topic_prefix``, or as named in ``topics``) where the transport keeps the
positions of replays published through it (see :mod:`tradeloom.runtime.replay_position`)."""


class ConnectionOptions(ParamsModel):
    """How to reach the brokers, and how patiently."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bootstrap_servers: str | list[str] = Field(
        default="localhost:9092", description="host:port, or several (list or comma-separated)."
    )
    client_id: str = "tradeloom"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = Field(default=None, description="CA bundle (PEM) to trust.")
    ssl_certfile: str | None = Field(default=None, description="Client certificate (mutual TLS).")
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True

    request_timeout_ms: int = Field(default=30_000, ge=100)
    session_timeout_ms: int = Field(default=10_000, ge=100)
    heartbeat_interval_ms: int = Field(default=3_000, ge=10)
    fetch_max_wait_ms: int = Field(
        default=500, ge=0, description="Longest a fetch waits on the broker for new records."
    )
    poll_timeout_ms: int = Field(
        default=200, ge=1, description="Longest one poll waits; bounds how fast a stop is seen."
    )
    max_batch: int = Field(default=500, ge=1, description="Records handled per commit.")
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest", description="Where a consumer group without a position starts."
    )
    create_topics: bool = Field(default=True, description="Create missing topics.")
    partitions: int = Field(default=6, ge=1, description="Partitions of topics created.")
    replication_factor: int = Field(default=1, ge=1)
    probe_interval_seconds: float = Field(
        default=2.0, gt=0, description="How often the connection is checked (and topics)."
    )
    operation_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Bound on one probe, commit or flush."
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers(cls, value: str | list[str]) -> str | list[str]:
        servers = value.split(",") if isinstance(value, str) else value
        servers = [server.strip() for server in servers if server.strip()]
        if not servers:
            raise ValueError("at least one broker address (host:port) is needed")
        for server in servers:
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"broker address {server!r} is not host:port")
        return servers

    @model_validator(mode="after")
    def _security(self) -> ConnectionOptions:
        sasl = self.security_protocol.startswith("SASL_")
        if sasl:
            missing = [
                name
                for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(
                    f"security_protocol {self.security_protocol} needs {', '.join(missing)}"
                )
        elif self.sasl_mechanism or self.sasl_username or self.sasl_password:
            raise ValueError(
                "SASL options are set but security_protocol is "
                f"{self.security_protocol}; use SASL_SSL (or SASL_PLAINTEXT)"
            )
        tls = self.security_protocol in ("SSL", "SASL_SSL")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path is None:
                continue
            if not tls:
                raise ValueError(
                    f"{name} is set but security_protocol is {self.security_protocol}; "
                    "use SSL or SASL_SSL"
                )
            if not Path(path).is_file():
                raise ValueError(f"{name} {path!r} is not a readable file")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ValueError("ssl_keyfile needs ssl_certfile")
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError(
                f"heartbeat_interval_ms ({self.heartbeat_interval_ms}) must be below "
                f"session_timeout_ms ({self.session_timeout_ms})"
            )
        if self.request_timeout_ms <= self.session_timeout_ms:
            # Joining a group waits at the broker until every member rejoined or timed out:
            # a request given less time than a member's session times out, again and again.
            raise ValueError(
                f"request_timeout_ms ({self.request_timeout_ms}) must be above "
                f"session_timeout_ms ({self.session_timeout_ms}): joining a consumer group "
                "may wait that long for the other members"
            )
        return self

    @classmethod
    def from_params(cls: type[_Options], what: str, params: dict[str, Any]) -> _Options:
        """Validate ``params``; a ValueError lists every mistake by parameter name."""
        try:
            return cls(**params)
        except ValidationError as exc:
            raise ValueError(parameters_problem(what, exc, cls)) from None

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.security_protocol not in ("SSL", "SASL_SSL"):
            return None
        context = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.ssl_certfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        context.check_hostname = self.ssl_check_hostname
        return context

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments every aiokafka client (producer, consumer, admin) takes."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "request_timeout_ms": self.request_timeout_ms,
            "security_protocol": self.security_protocol,
        }
        context = self.ssl_context()
        if context is not None:
            kwargs["ssl_context"] = context
        if self.sasl_mechanism is not None:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            assert self.sasl_password is not None
            kwargs["sasl_plain_password"] = self.sasl_password.get_secret_value()
        return kwargs

    def consumer_kwargs(self) -> dict[str, Any]:
        return {
            **self.client_kwargs(),
            "enable_auto_commit": False,
            "auto_offset_reset": self.auto_offset_reset,
            "session_timeout_ms": self.session_timeout_ms,
            "heartbeat_interval_ms": self.heartbeat_interval_ms,
            "fetch_max_wait_ms": self.fetch_max_wait_ms,
            "max_poll_records": self.max_batch,
        }

    def describe(self) -> str:
        """Where this connects, for log lines (never credentials)."""
        servers = self.bootstrap_servers
        listed = servers if isinstance(servers, str) else ",".join(servers)
        user = f" as {self.sasl_username}" if self.sasl_username else ""
        return f"{listed} ({self.security_protocol}{user})"


class TransportOptions(ConnectionOptions):
    """Parameters of the ``redpanda`` transport (the ``[transport]`` table)."""

    topic_prefix: str = Field(default="tradeloom.", description="Prepended to every topic.")
    topics: dict[str, str] = Field(
        default_factory=dict,
        description="Topic names by stage boundary, replacing prefix + boundary name.",
    )
    group_prefix: str = Field(
        default="tradeloom.", description="Consumer group of a role: group_prefix + role."
    )
    acks: Literal["all", 1] = "all"
    linger_ms: int = Field(default=0, ge=0)
    compression_type: Literal["gzip"] | None = None
    on_handler_error: Literal["stop", "dead_letter"] = Field(
        default="stop",
        description="A stage raising on an event: stop the pipeline (after committing what was "
        "handled before it), or dead-letter the event and go on.",
    )
    dedupe_lookback: int = Field(
        default=1000,
        ge=0,
        description="Market records before a role's committed position, per partition, whose "
        "event ids it remembers when given the partition: a tick the feed published again "
        "after a crash is then skipped also by a role restarted since it handled the first. "
        "0: none.",
    )

    @field_validator("topics")
    @classmethod
    def _known_topics(cls, value: dict[str, str]) -> dict[str, str]:
        known = (*Topics.ALL, REPLAY_POSITIONS)
        for boundary, name in value.items():
            if boundary not in known:
                raise ValueError(f"unknown stage boundary {boundary!r}; known: {', '.join(known)}")
            if not name.strip():
                raise ValueError(f"empty topic name for {boundary!r}")
        return value

    def topic_name(self, boundary: str) -> str:
        return self.topics.get(boundary) or f"{self.topic_prefix}{boundary}"


TICK_FIELDS = (
    "instrument",
    "last_price",
    "last_quantity",
    "bid",
    "ask",
    "volume",
    "ts",
    "event_id",
)
DEFAULT_FIELDS = {
    "instrument": "symbol",
    "last_price": "price",
    "last_quantity": "qty",
    "bid": "bid",
    "ask": "ask",
    "volume": "volume",
    "ts": "ts",
}
"""JSON field of each tick field unless ``fields`` says otherwise. ``event_id`` has no default:
when it is not mapped, the id generator derives one from the record (see tradeloom.ids)."""


class FeedOptions(ConnectionOptions):
    """Parameters of the ``redpanda`` feed (``[feed.params]``)."""

    topic: str = Field(min_length=1, description="The topic ticks are read from.")
    group_id: str | None = Field(
        default=None,
        min_length=1,
        description="Consumer group; unset: the transport's group_prefix + 'feed' "
        "(tradeloom.feed with another transport).",
    )
    format: Literal["tradeloom", "json"] = Field(
        default="tradeloom",
        description="tradeloom: events in the pipeline codec's format; json: plain JSON ticks "
        "read through `fields`.",
    )
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="JSON field (dotted path for nested objects) of each tick field.",
    )
    ts_unit: Literal["auto", "s", "ms", "us", "ns"] = Field(
        default="auto",
        description="Numeric timestamps: auto = epoch milliseconds. Strings are ISO 8601.",
    )
    ts_source: Literal["field", "record"] = Field(
        default="field", description="record: use the Kafka record's timestamp instead."
    )

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        for name, path in value.items():
            if name not in TICK_FIELDS:
                raise ValueError(f"unknown tick field {name!r}; known: {', '.join(TICK_FIELDS)}")
            if not path.strip():
                raise ValueError(f"empty JSON field name for {name!r}")
        return value

    def field_paths(self) -> dict[str, tuple[str, ...]]:
        merged = {**DEFAULT_FIELDS, **self.fields}
        return {name: tuple(path.split(".")) for name, path in merged.items()}
