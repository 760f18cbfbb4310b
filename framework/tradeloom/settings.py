"""Configuration: one TOML file plus ``TRADELOOM_*`` environment variables.

Environment variables override the file; ``__`` separates nested keys, e.g.
``TRADELOOM_RECONNECT__MAX_ATTEMPTS=5`` or ``TRADELOOM_PIPELINE__TRANSPORT=redpanda``.
TOML floats are read as :class:`~decimal.Decimal`, so ``commission_bps = 0.5`` stays exact.
"""

from __future__ import annotations

import codecs
import json
import os
import tomllib
import typing
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from tradeloom.errors import ConfigError
from tradeloom.events import Price
from tradeloom.params import ParamsModel, problem_message
from tradeloom.plugins import BLOCK_ENV, DISABLE_AUTOLOAD_ENV
from tradeloom.suggestions import closest_name

ENV_PREFIX = "TRADELOOM_"

DEFAULT_CONFIG_FILE = "tradeloom.toml"


class _Section(ParamsModel):
    # No inf or nan: a float setting is a duration or a fraction, and timedelta(inf) fails.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


MAX_SECONDS = 1_000_000_000
"""The longest duration a setting takes (about 31 years): longer ones are no limit at all, and
overflow the time arithmetic."""


SECRET_PARAM_WORDS = ("password", "secret", "token", "api_key", "apikey", "credential")


def _is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SECRET_PARAM_WORDS)


class ComponentSettings(_Section):
    """Picks a component by name; ``params`` go to its factory as keyword arguments.

    Parameters whose names look like secrets (password, token, secret, api_key, credential)
    are kept as :class:`~pydantic.SecretStr`, so they never show in reprs or logs; the factory
    gets the plain value unless it asks for a ``SecretStr``.
    """

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("params")
    @classmethod
    def _hide_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        return hide_secret_params(value)


def hide_secret_params(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with secret-looking string values wrapped in SecretStr."""
    return {
        key: SecretStr(item) if isinstance(item, str) and _is_secret_name(key) else item
        for key, item in params.items()
    }


class StrategySettings(ComponentSettings):
    id: str | None = Field(
        default=None, description="Strategy (and portfolio) id; defaults to the name."
    )
    instruments: list[str] | None = Field(
        default=None, description="Only these instruments reach the strategy; all when unset."
    )

    @property
    def strategy_id(self) -> str:
        return self.id or self.name


class PipelineSettings(_Section):
    transport: str = "memory"
    codec: str = "decimal"
    id_generator: str = "uuid7"
    clock: Literal["auto", "simulated", "wall"] = Field(
        default="auto", description="auto: simulated for backtests, wall clock for runs."
    )
    dedupe_window: int = Field(default=100_000, ge=0, description="Event ids remembered per stage.")
    dead_letter_file: str | None = Field(
        default=None,
        description="Also append every dead letter to this JSON-lines file (reason and raw input).",
    )
    max_ahead_seconds: float = Field(
        default=60.0,
        gt=0,
        le=MAX_SECONDS,
        description="A live run's market event stamped further ahead of the wall clock is bad "
        "input.",
    )


class PendingSettings(_Section):
    """Signals for an instrument with no price yet wait for its first price, within bounds."""

    max_signals: int = Field(default=1000, ge=0, description="Per instrument.")
    max_wait_seconds: float = Field(default=60.0, ge=0, le=MAX_SECONDS)


class ReconnectSettings(_Section):
    max_attempts: int = Field(default=10, ge=0, description="0 means: never give up.")
    base_delay_seconds: float = Field(default=0.5, gt=0, le=MAX_SECONDS)
    max_delay_seconds: float = Field(default=30.0, gt=0, le=MAX_SECONDS)
    jitter: float = Field(
        default=0.5, ge=0, le=1, description="Fraction of a delay drawn at random."
    )


class PortfolioSettings(_Section):
    starting_cash: Price = Decimal("100000")
    starting_cash_by_portfolio: dict[str, Price] = Field(default_factory=dict)
    snapshot_interval_seconds: float = Field(default=5.0, gt=0, le=MAX_SECONDS)
    equity_curve_points: int = Field(default=5000, ge=10)

    def starting_cash_for(self, portfolio_id: str) -> Decimal:
        return self.starting_cash_by_portfolio.get(portfolio_id, self.starting_cash)


class PluginSettings(_Section):
    autoload: bool = Field(default=True, description="Load plugins from entry points.")
    enable: list[str] = Field(
        default_factory=list, description="Entry points loaded even when autoload is off."
    )
    block: list[str] = Field(default_factory=list, description="Plugin names never loaded.")
    modules: list[str] = Field(default_factory=list, description="Modules registered as plugins.")


class HealthSettings(_Section):
    checks: list[ComponentSettings] = Field(default_factory=list)


class MonitoringSettings(_Section):
    """The /health and /metrics HTTP endpoints of a running pipeline, and the log format."""

    http_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Serve /health and /metrics on this port (0: any free port); unset: off.",
    )
    host: str = Field(default="127.0.0.1", description="Address to bind: loopback by default.")
    auth_token: SecretStr | None = Field(
        default=None, description="When set, requests need 'Authorization: Bearer <token>'."
    )
    log_json: bool = Field(default=False, description="Log one JSON object per line.")


_OVERRIDES: ContextVar[dict[str, Any] | None] = ContextVar(
    "tradeloom_settings_overrides", default=None
)


class _OverridesSource(PydanticBaseSettingsSource):
    """Overrides given from code (``load_settings(path, overrides)``): they win over the
    environment."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_OVERRIDES.get() or {})


class _EnvironmentSource(PydanticBaseSettingsSource):
    """The environment, as pydantic-settings reads it, with the tables and lists of a
    component's ``params`` given as JSON (``TRADELOOM_FEED__PARAMS__PATHS='["a.csv"]'``)
    decoded as the sections' typed settings are: ``params`` is a free-form table, whose values
    pydantic-settings leaves as the text it found."""

    def __init__(self, settings_cls: type[BaseSettings], inner: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self._inner = inner

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        decoded: dict[str, Any] = _decoded_params(self._inner())
        _refuse_indexed_lists(self.settings_cls, decoded)
        return decoded


def _refuse_indexed_lists(
    model: type[BaseModel], values: Mapping[str, Any], path: str = ""
) -> None:
    """A list (``[[strategies]]``) addressed by index from the environment
    (``TRADELOOM_STRATEGIES__0__PARAMS__FAST``) reads as a table, which pydantic refuses with
    "Input should be a valid list": say what to do instead."""
    for name, field in model.model_fields.items():
        value = values.get(name)
        if not isinstance(value, Mapping):
            continue
        where = f"{path}{name}"
        origin = typing.get_origin(field.annotation)
        if origin is list and value and all(str(key).isdigit() for key in value):
            variable = f"{ENV_PREFIX}{where.replace('.', '__').upper()}"
            (item,) = typing.get_args(field.annotation) or (Any,)
            example = (
                '[{"name": "...", "params": {...}}]'
                if isinstance(item, type) and issubclass(item, BaseModel)
                else '["...", "..."]'
            )
            raise ConfigError(
                f"{variable}__{next(iter(value))}__...: the items of a list ({where}) cannot be "
                f"set one by one from the environment; give the whole list as JSON, as in "
                f"{variable}='{example}'"
            )
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            _refuse_indexed_lists(section, value, f"{where}.")


def _decoded_params(value: Any, in_params: bool = False) -> Any:
    if isinstance(value, dict):
        return {
            key: _decoded_params(item, in_params or key == "params") for key, item in value.items()
        }
    if isinstance(value, list):
        return [_decoded_params(item, in_params) for item in value]
    if in_params and isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(value, parse_float=Decimal)  # exact, as the file's numbers
        except ValueError:
            return value  # not JSON after all: the component says what it expected
    return value


_DEFAULT_COMPONENTS = {"executor": "paper", "persistence": "memory"}


class Settings(BaseSettings):
    """The whole configuration of a pipeline."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    feed: ComponentSettings | None = None
    strategies: list[StrategySettings] = Field(default_factory=list)
    validators: list[ComponentSettings] = Field(default_factory=list)
    executor: ComponentSettings = Field(
        default_factory=lambda: ComponentSettings(name=_DEFAULT_COMPONENTS["executor"])
    )
    persistence: ComponentSettings = Field(
        default_factory=lambda: ComponentSettings(name=_DEFAULT_COMPONENTS["persistence"])
    )
    transport: dict[str, Any] = Field(
        default_factory=dict, description="Parameters of the configured transport."
    )
    portfolio: PortfolioSettings = Field(default_factory=PortfolioSettings)
    pending: PendingSettings = Field(default_factory=PendingSettings)
    reconnect: ReconnectSettings = Field(default_factory=ReconnectSettings)
    plugins: PluginSettings = Field(default_factory=PluginSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)

    @field_validator("executor", "persistence", mode="before")
    @classmethod
    def _default_component(cls, value: Any, info: ValidationInfo) -> Any:
        # A section (or variable, or override) giving only params configures the default
        # component: [executor] params = { commission_bps = 10 } is the paper trader's.
        if isinstance(value, dict) and "name" not in value:
            return {"name": _DEFAULT_COMPONENTS[info.field_name or ""], **value}
        return value

    @field_validator("transport")
    @classmethod
    def _hide_transport_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        return hide_secret_params(value)

    @field_validator("strategies")
    @classmethod
    def _unique_strategy_ids(cls, value: list[StrategySettings]) -> list[StrategySettings]:
        seen: set[str] = set()
        for entry in value:
            if entry.strategy_id in seen:
                raise ValueError(f"two strategies share the id {entry.strategy_id!r}; set `id`")
            seen.add(entry.strategy_id)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest priority first: explicit overrides, the environment, then the file (which
        # arrives as init arguments).
        return (
            _OverridesSource(settings_cls),
            _EnvironmentSource(settings_cls, env_settings),
            init_settings,
        )


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file with floats as Decimal; raise ConfigError naming the file and line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        # TOML has no byte-order mark, but editors on Windows write one: read past it.
        text = raw.removeprefix(codecs.BOM_UTF8).decode("utf-8")
        return tomllib.loads(text, parse_float=Decimal)
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"configuration file {path} is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"configuration file {path}: cannot read it: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: invalid TOML: not UTF-8 text (invalid byte at offset {exc.start})"
        ) from None


def format_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"  {where}: {_unknown_key(item['loc'])}")
        else:
            lines.append(f"  {where}: {problem_message(item)}")
    return "\n".join(lines)


def _unknown_key(loc: tuple[Any, ...]) -> str:
    """What to say of a key no section has: the closest known key, and the known ones."""
    known = _keys_at(Settings, loc[:-1])
    if not known:
        return "not a known key"
    close = closest_name(str(loc[-1]), known)
    hint = f"; did you mean {close!r}?" if close else ""
    return f"not a known key{hint} (known: {', '.join(known)})"


def _keys_at(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """The keys of the section at ``path`` (list indexes skipped) below ``model``."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    """The model ``annotation`` holds: itself, or the one of ``list[M]`` or ``M | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def load_settings(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Build :class:`Settings` from a TOML file (optional), the environment and overrides.

    Raises :class:`ConfigError` with every problem listed by its dotted key.
    """
    data: dict[str, Any] = read_toml(path) if path is not None else {}
    source = str(path) if path is not None else "configuration"
    return build_settings(data, overrides, source)


def build_settings(
    data: dict[str, Any], overrides: dict[str, Any] | None = None, source: str = "configuration"
) -> Settings:
    """Settings from file data (a dict shaped like the TOML file), then the environment, then
    ``overrides`` (which win over both). Tables are merged key by key, except a component
    section (``[executor]``, ``[persistence]``, ``[feed]``) whose override names another
    component: that one replaces the file's section, whose ``params`` belong to the other."""
    _refuse_unknown_variables()
    data = {
        key: value
        for key, value in data.items()
        if not _names_another_component(value, (overrides or {}).get(key), key)
    }
    token = _OVERRIDES.set(overrides or {})
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, _with_environment(source))) from None
    except SettingsError as exc:  # an environment variable that is not the JSON it must be
        raise ConfigError(_environment_error(exc)) from None
    finally:
        _OVERRIDES.reset(token)
    _refuse_case_collisions(merge_tables(data, overrides or {}), settings.model_dump())
    return settings


def _names_another_component(given: Any, override: Any, section: str) -> bool:
    return (
        isinstance(given, dict)
        and isinstance(override, dict)
        and "name" in override
        and override["name"] != given.get("name", _DEFAULT_COMPONENTS.get(section))
    )


# Read by the plugin manager itself, not part of Settings.
_PLUGIN_MANAGER_ENV = {DISABLE_AUTOLOAD_ENV, BLOCK_ENV}


def _settings_variables() -> list[str]:
    return sorted(
        name
        for name in os.environ
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in _PLUGIN_MANAGER_ENV
    )


def environment_variables_of(*sections: str) -> list[str]:
    """The settings variables of the environment that set something in ``sections``
    (``"feed"``, ``"pipeline"``: ``TRADELOOM_FEED__PARAMS__SPEED``, ``TRADELOOM_FEED``)."""
    prefixes = [f"{ENV_PREFIX}{section.upper()}" for section in sections]
    return [
        name
        for name in _settings_variables()
        if any(name.upper() == p or name.upper().startswith(f"{p}__") for p in prefixes)
    ]


@contextmanager
def naming_environment(*sections: str) -> Iterator[None]:
    """A :class:`ConfigError` raised inside, about a value of ``sections``, gets a note naming
    the environment variables that set values there: the value at fault may be one of theirs,
    which the file does not show. The error itself (its class, message, cause) is untouched;
    the command line prints notes after the error."""
    try:
        yield
    except ConfigError as exc:
        variables = environment_variables_of(*sections)
        if variables:
            exc.add_note(f"values set from the environment here: {', '.join(variables)}")
        raise


def _refuse_unknown_variables() -> None:
    """pydantic-settings reads only the variables of known sections and ignores the rest, so a
    misspelled section (``TRADELOOM_PORTFOLI__STARTING_CASH``) would change nothing, silently.
    A name with ``__`` is meant as a nested setting: one whose section is unknown is refused.
    Other names may belong to someone else (Kubernetes service links such as
    ``TRADELOOM_SERVICE_HOST``) and are left alone. Keys inside a known section are checked by
    the sections themselves (extra="forbid")."""
    sections = list(Settings.model_fields)
    for name in _settings_variables():
        section, nested, _ = name[len(ENV_PREFIX) :].lower().partition("__")
        if not nested or section in sections:
            continue
        close = closest_name(section, sections)
        hint = f"; did you mean {ENV_PREFIX}{close.upper()}__...?" if close else ""
        raise ConfigError(
            f"environment variable {name} sets no setting: {section!r} is not a section "
            f"(sections: {', '.join(sections)}){hint}"
        )


def _with_environment(source: str) -> str:
    """The source of a validation error: the file, and any environment variables that also
    set values (a typo in one is reported by its dotted key, not blamed on the file)."""
    variables = _settings_variables()
    return f"{source} with environment {', '.join(variables)}" if variables else source


def _environment_error(exc: SettingsError) -> str:
    field = str(exc).split('"')[1] if str(exc).count('"') >= 2 else ""
    prefix = f"{ENV_PREFIX}{field.upper()}"
    variables = [name for name in _settings_variables() if name.upper().startswith(prefix)]
    detail = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
    named = ", ".join(f"{name}={os.environ[name]!r}" for name in variables) or str(exc)
    return (
        f"invalid environment variable {named}: cannot read its value{detail}; a list or "
        f"table must be written as JSON, e.g. {ENV_PREFIX}PLUGINS__BLOCK='[\"paper\"]'"
    )


def _refuse_case_collisions(given: Any, built: Any, where: str = "") -> None:
    """Environment variable names are case-insensitive, so keys they add to free-form tables
    (params, starting_cash_by_portfolio) arrive lowercased. Refuse the silent duplicate that
    results when the file has the same key in another case."""
    if isinstance(given, dict) and isinstance(built, dict):
        for key, value in built.items():
            if key not in given:
                twins = [k for k in given if isinstance(k, str) and k.lower() == str(key).lower()]
                if twins:
                    raise ConfigError(
                        f"{where}{key}: set by an environment variable (lowercased) while the "
                        f"file has {twins[0]!r}; give the whole table as JSON instead, e.g. "
                        f"TRADELOOM_{where.upper().replace('.', '__')}"
                        "='{...}'"
                    )
            else:
                _refuse_case_collisions(given[key], value, f"{where}{key}.")
    elif isinstance(given, list) and isinstance(built, list):
        for index, (a, b) in enumerate(zip(given, built, strict=False)):
            _refuse_case_collisions(a, b, f"{where}{index}.")


def merge_tables(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``extra``, nested tables merged key by key."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_tables(merged[key], value)
        else:
            merged[key] = value
    return merged
