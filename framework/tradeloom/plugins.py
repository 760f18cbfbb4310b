"""Plugin discovery and the component registry.

Plugins come from three places, in this order:

1. entry points of the ``tradeloom`` group (the stock plugins and every installed third-party
   package), unless autoload is off (``TRADELOOM_DISABLE_PLUGIN_AUTOLOAD=1`` or
   ``[plugins] autoload = false``), in which case only the entry points named in
   ``[plugins] enable`` load;
2. modules named in ``[plugins] modules``;
3. objects passed from code (``PluginManager.register`` or ``plugins=`` arguments).

A plugin named in ``[plugins] block`` (or ``TRADELOOM_BLOCK_PLUGINS``, comma-separated) is never
loaded. A plugin that fails to import is recorded with its distribution and the error and
reported by ``tradeloom plugins``; it takes nothing else down, though a pipeline that needs a
component only that plugin provides fails with the import error in the message.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import re
import sysconfig
import traceback
import types
import typing
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import importlib_metadata
import pluggy
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, create_model

from tradeloom import hookspecs
from tradeloom.errors import (
    ConfigError,
    DuplicateComponentError,
    PluginError,
    TradeloomError,
    UnknownComponentError,
)
from tradeloom.params import ParamsModel, problem_message, type_name
from tradeloom.suggestions import closest_name

ENTRY_POINT_GROUP = "tradeloom"
DISABLE_AUTOLOAD_ENV = "TRADELOOM_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_ENV = "TRADELOOM_BLOCK_PLUGINS"

COMPONENT_KINDS: dict[str, str] = {
    "feed": "tradeloom_register_feeds",
    "strategy": "tradeloom_register_strategies",
    "executor": "tradeloom_register_executors",
    "validator": "tradeloom_register_validators",
    "health_check": "tradeloom_register_health_checks",
    "persistence": "tradeloom_register_persistence",
    "codec": "tradeloom_register_codecs",
    "id_generator": "tradeloom_register_id_generators",
    "transport": "tradeloom_register_transports",
}


@attrs.define
class PluginInfo:
    """One plugin as ``tradeloom plugins`` shows it."""

    name: str
    distribution: str | None = None
    version: str | None = None
    source: str = "entry point"  # "entry point", "module", "code"
    error: str | None = None
    blocked: bool = False
    registers: dict[str, list[str]] = attrs.Factory(dict)
    warning: str | None = None
    """Loaded, but something about it is likely a mistake (a module that registers nothing)."""

    @property
    def loaded(self) -> bool:
        return self.error is None and not self.blocked


@attrs.define(frozen=True)
class Registration:
    kind: str
    name: str
    factory: Any
    """The factory, or a ``"package.module:Name"`` reference to it, imported when built."""
    plugin: str

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name!r} (plugin {self.plugin!r})"

    def resolve(self) -> Any:
        """The factory itself: a reference is imported (once; Python caches the module)."""
        if not isinstance(self.factory, str):
            return self.factory
        module_name, _, attribute = self.factory.partition(":")
        try:
            module = importlib.import_module(module_name)
        except PluginError:
            raise  # the module explains itself (a missing extra, say)
        except (Exception, SystemExit) as exc:
            raise PluginError(
                f"{self.label}: cannot import {module_name!r}: {_describe_error(exc)}"
            ) from exc
        try:
            return getattr(module, attribute)
        except AttributeError:
            raise PluginError(
                f"{self.label}: module {module_name!r} has no {attribute!r} "
                f"(registered as {self.factory!r})"
            ) from None


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


class PluginManager:
    """A pluggy plugin manager that knows where plugins come from and what they register."""

    def __init__(self) -> None:
        self.hook_manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.hook_manager.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self._registry: dict[str, dict[str, Registration]] | None = None
        self._conflicts: dict[tuple[str, str], str] = {}
        self.unknown_names: list[str] = []
        """One message per name in ``block`` or ``enable`` that no plugin has (a typo, most
        likely: the plugin meant to be blocked still loads). Pipelines log them as warnings
        and ``tradeloom plugins`` prints them."""

    @property
    def hook(self) -> Any:
        return self.hook_manager.hook

    # -- loading -------------------------------------------------------------------------

    def load(
        self,
        *,
        autoload: bool = True,
        enable: Iterable[str] = (),
        block: Iterable[str] = (),
        modules: Iterable[str] = (),
        plugins: Iterable[Any] = (),
    ) -> PluginManager:
        """Load plugins from entry points, module names and objects. Returns ``self``."""
        blocked = set(block) | {
            name.strip() for name in os.environ.get(BLOCK_ENV, "").split(",") if name.strip()
        }
        for name in blocked:
            self.hook_manager.set_blocked(name)
        if _truthy(os.environ.get(DISABLE_AUTOLOAD_ENV)):
            autoload = False
        self._load_entry_points(autoload=autoload, enable=set(enable), blocked=blocked)
        for module_name in modules:
            self._load_module(module_name, blocked)
        for plugin in plugins:
            self.register(plugin)
        self.unknown_names = self._unknown_names(blocked, set(enable))
        return self

    def _unknown_names(self, blocked: set[str], enable: set[str]) -> list[str]:
        known = sorted(name for name in self.infos if " " not in name)  # not "name (dist)"
        from_entry_points = [name for name in known if self.infos[name].source == "entry point"]
        messages = []
        for what, names, candidates in (
            ("blocked", blocked, known),
            ("enabled", enable, from_entry_points),
        ):
            for name in sorted(names - set(candidates)):
                close = closest_name(name, candidates)
                hint = f" (did you mean {close!r}?)" if close else ""
                messages.append(
                    f"{what} plugin {name!r} matches no installed plugin{hint}; "
                    f"installed: {', '.join(candidates) or 'none'}"
                )
        return messages

    def _load_entry_points(self, *, autoload: bool, enable: set[str], blocked: set[str]) -> None:
        seen: dict[str, str | None] = {}
        found = importlib_metadata.entry_points(group=ENTRY_POINT_GROUP)
        # Each name or version read parses the distribution's METADATA file again: read them
        # once per distribution (its entry points share one Distribution object).
        identities: dict[int, tuple[str | None, str | None]] = {}

        def identity(entry_point: Any) -> tuple[str | None, str | None]:
            dist = entry_point.dist
            if dist is None:
                return None, None
            if id(dist) not in identities:
                metadata = dist.metadata
                identities[id(dist)] = (metadata.get("Name"), metadata.get("Version"))
            return identities[id(dist)]

        # The stock plugins come first, so a third-party entry point of the same name cannot
        # shadow one; it is reported instead (replace a stock plugin by blocking it).
        ordered = sorted(found, key=lambda ep: identity(ep)[0] != "tradeloom")
        # Of two distributions using one name, the one whose name sorts first is loaded (not
        # the first found, which depends on sys.path); the others keep their order.
        chosen: dict[str, str] = {}
        for entry_point in ordered:
            normal = _normal_name(identity(entry_point)[0])
            if entry_point.name not in chosen or (
                chosen[entry_point.name] != "tradeloom" and normal < chosen[entry_point.name]
            ):
                chosen[entry_point.name] = normal
        ordered.sort(key=lambda ep: _normal_name(identity(ep)[0]) != chosen[ep.name])
        for entry_point in ordered:
            dist_name, dist_version = identity(entry_point)
            if entry_point.name in seen:
                if seen[entry_point.name] == dist_name:
                    continue  # the same distribution found twice on sys.path
                # Another distribution uses the same plugin name: never shadow silently.
                clash = PluginInfo(
                    name=f"{entry_point.name} ({dist_name})",
                    distribution=dist_name,
                    version=dist_version,
                    error=f"plugin name {entry_point.name!r} is already used by distribution "
                    f"{seen[entry_point.name]!r}; this one is not loaded (uninstall one of the "
                    "two, or give this entry point another name)",
                )
                self.infos[clash.name] = clash
                continue
            seen[entry_point.name] = dist_name
            info = PluginInfo(name=entry_point.name, distribution=dist_name, version=dist_version)
            self.infos[entry_point.name] = info
            if entry_point.name in blocked:
                info.blocked = True
                continue
            if not autoload and entry_point.name not in enable:
                info.error = "not loaded: plugin autoload is disabled"
                continue
            try:
                plugin = entry_point.load()
            except (Exception, SystemExit) as exc:  # a plugin's exit() is its failure too
                info.error = _describe_error(exc)
                continue
            self._register_reporting(plugin, info)
            if info.error is None and not self.hook_manager.get_hookcallers(plugin):
                # Installed as a plugin, it would seem loaded and do nothing.
                self.hook_manager.unregister(plugin)
                info.error = (
                    f"{entry_point.value} ({_what_it_is(plugin)}) implements no tradeloom "
                    "hook: the entry point names the module that holds the "
                    "@tradeloom.hookimpl functions (the template's package.plugin)"
                )

    def _load_module(self, module_name: str, blocked: set[str]) -> None:
        listed = self.infos.get(module_name)
        if listed is not None and (listed.source == "module" or listed.blocked):
            return  # named twice (-p m -p m, [plugins] modules and -p m): once is enough
        info = PluginInfo(name=module_name, source="module")
        if module_name in blocked:
            info.blocked = True
            self.infos[module_name] = info
            return
        dist = _distribution_of_module(module_name)  # found without importing: named on failure
        if dist is not None:
            info.distribution, info.version = dist
        module, info.error = _import_plugin_module(module_name)
        if module is not None and self.hook_manager.is_registered(module):
            # Installed too (an entry point, `my_strategies = "my_strategies"`) or registered
            # from code: it keeps the listing it has, with its distribution.
            return
        self.infos[module_name] = info
        if module is not None:
            self._register_reporting(module, info)
            if info.error is None and not self.hook_manager.get_hookcallers(module):
                # Imported (a module may be given for what importing it does), but it
                # registers nothing: said, with what was imported when a local file of that
                # name was meant.
                info.warning = f"module {module_name} implements no tradeloom hook" + (
                    _shadowed_file(module_name, module)
                    or ": it was imported, and registers nothing (a plugin module holds "
                    "@tradeloom.hookimpl functions)"
                )

    def _register_reporting(self, plugin: Any, info: PluginInfo) -> None:
        """Register a discovered plugin; an invalid one is reported, not raised."""
        try:
            self._register(plugin, info.name)
        except PluginError as exc:
            info.error = str(exc)

    def register(self, plugin: Any, name: str | None = None) -> str:
        """Register a plugin object (module, class instance) from code. One registered already
        (a module that is also installed, say) is left as it is; its name is returned."""
        if self.hook_manager.is_registered(plugin):
            return str(self.hook_manager.get_name(plugin))
        name = name or getattr(plugin, "__name__", None) or f"{type(plugin).__name__}-{id(plugin)}"
        if name not in self.infos:
            self.infos[name] = PluginInfo(name=name, source="code")
        self._register(plugin, name)
        return name

    def _register(self, plugin: Any, name: str) -> None:
        undecorated = self._undecorated_hooks(plugin)
        if undecorated:
            raise PluginError(
                f"plugin {name!r} defines {', '.join(undecorated)} without @hookimpl, so "
                "nothing would call it: decorate it with @tradeloom.hookimpl"
            )
        try:
            self.hook_manager.register(plugin, name=name)
        except ValueError as exc:
            raise PluginError(f"plugin {name!r} cannot be registered: {exc}") from exc
        except pluggy.PluginValidationError as exc:
            # pluggy says it on several lines: one, for the listing's layout and for logs.
            problem = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            raise PluginError(f"plugin {name!r} is invalid: {problem}") from exc
        unknown = sorted(
            caller.name
            for caller in self.hook_manager.get_hookcallers(plugin) or []
            if caller.spec is None
        )
        if unknown:
            self.hook_manager.unregister(plugin)
            hooks = self._hook_names()
            described = []
            for hook in unknown:
                close = closest_name(hook, hooks)
                described.append(f"{hook} (did you mean {close}?)" if close else hook)
            raise PluginError(
                f"plugin {name!r} implements unknown hook(s) {', '.join(described)} "
                "(see the hook reference for the tradeloom_* hooks)"
            )
        self._registry = None

    def _undecorated_hooks(self, plugin: Any) -> list[str]:
        """Functions named like hooks (or nearly: a misspelt one) that are not marked as
        implementations: pluggy passes over them in silence, and the plugin would seem loaded
        but do nothing. Other ``tradeloom_*`` functions are the plugin's own helpers."""
        hooks = self._hook_names()
        found = []
        for attribute in dir(plugin):
            if not attribute.startswith("tradeloom_"):
                continue
            close = None
            if attribute not in hooks:
                # Compared without the prefix every hook shares, which makes any two alike.
                close = closest_name(
                    attribute.removeprefix("tradeloom_"),
                    [hook.removeprefix("tradeloom_") for hook in hooks],
                    cutoff=0.8,
                )
                if close is None:
                    continue
            value = getattr(plugin, attribute, None)
            if (
                callable(value)
                and not isinstance(value, type)
                and self.hook_manager.parse_hookimpl_opts(plugin, attribute) is None
            ):
                found.append(
                    f"{attribute} (did you mean tradeloom_{close}?)" if close else attribute
                )
        return found

    def _hook_names(self) -> list[str]:
        return [
            hook
            for hook, caller in vars(self.hook).items()
            if getattr(caller, "spec", None) is not None
        ]

    # -- registry ------------------------------------------------------------------------

    def registrations(self) -> dict[str, dict[str, Registration]]:
        """Every registered component by kind and name.

        A plugin whose registration hook fails or returns something other than a mapping is
        marked failed (its error shows in the listing) and contributes nothing. A name
        registered by two plugins is left out: :meth:`factory` refuses it with a
        :class:`DuplicateComponentError` naming both plugins, and :attr:`conflicts` lists
        every such name, while the other components stay usable.
        """
        if self._registry is None:
            self._registry, self._conflicts = self._collect_registrations()
        return self._registry

    @property
    def conflicts(self) -> list[str]:
        """One message per component name that two plugins register."""
        self.registrations()
        return list(self._conflicts.values())

    def _collect_registrations(
        self,
    ) -> tuple[dict[str, dict[str, Registration]], dict[tuple[str, str], str]]:
        # First every registration hook of every plugin, one implementation at a time so each
        # result is attributed to its plugin; then the registry, from the plugins none of
        # whose hooks failed (a plugin that is half registered would be hard to reason about).
        returned: list[tuple[str, str, Mapping[str, Any]]] = []
        failed: set[str] = set()
        for kind, hook_name in COMPONENT_KINDS.items():
            for impl in reversed(getattr(self.hook, hook_name).get_hookimpls()):
                error: Exception | None = None
                try:
                    result = impl.function()
                except Exception as exc:
                    error, problem = exc, f"{hook_name} failed: {_describe_error(exc)}"
                    if isinstance(exc, TypeError) and inspect.isclass(impl.plugin):
                        problem += " (register an instance of the class, not the class)"
                else:
                    try:
                        _check_registrations(result)
                    except TypeError as exc:  # what it returned: no line of its code to show
                        error, problem = exc, f"{hook_name} failed: {type(exc).__name__}: {exc}"
                if error is not None:
                    owner = self.infos.get(impl.plugin_name)
                    if owner is None or owner.source == "code":
                        # Passed in by the caller (``plugins=[...]``): as loud as ``-p``.
                        raise PluginError(f"plugin {impl.plugin_name!r}: {problem}") from error
                    owner.error = f"{owner.error}; {problem}" if owner.error else problem
                    failed.add(impl.plugin_name)
                    continue
                returned.append((kind, impl.plugin_name, result or {}))
        registry: dict[str, dict[str, Registration]] = {kind: {} for kind in COMPONENT_KINDS}
        conflicts: dict[tuple[str, str], str] = {}
        for info in self.infos.values():
            info.registers = {}
        for kind, plugin_name, factories in returned:
            if plugin_name in failed:
                continue
            owner = self.infos.get(plugin_name)
            for name, factory in factories.items():
                # The listing shows what each plugin registers, a name in conflict too.
                if owner is not None:
                    owner.registers.setdefault(kind, []).append(name)
                existing = registry[kind].get(name)
                if existing is not None:
                    conflicts[kind, name] = (
                        f"{kind} {name!r} is registered by two plugins: "
                        f"{existing.plugin!r} and {plugin_name!r}"
                    )
                    continue
                registry[kind][name] = Registration(kind, name, factory, plugin_name)
        for kind, name in conflicts:  # neither plugin's: refused by factory() when asked for
            registry[kind].pop(name, None)
        return registry, conflicts

    def factory(self, kind: str, name: str) -> Registration:
        """The registration of component ``name`` of ``kind``, or a ConfigError saying what
        exists and which plugins failed to load."""
        available = self.registrations()[kind]
        if name in available:
            return available[name]
        conflict = self._conflicts.get((kind, name))
        if conflict is not None:
            raise DuplicateComponentError(
                f"{conflict}; block one of them ([plugins] block = [...] or -p no:NAME)"
            )
        known = ", ".join(sorted(available)) or "none"
        close = closest_name(name, available)
        hint = f" (did you mean {close!r}?)" if close else ""
        message = (
            f"unknown {kind} {name!r}{hint}; registered {_PLURALS.get(kind, kind + 's')}: {known}"
        )
        failed = [
            info for info in self.infos.values() if info.error and "autoload" not in info.error
        ]
        if failed:
            message += "\nplugins that failed to load: " + "; ".join(
                f"{info.name} ({info.distribution or 'no distribution'}): {info.error}"
                for info in failed
            )
        blocked = [info.name for info in self.infos.values() if info.blocked]
        if blocked:
            message += "\nblocked plugins: " + ", ".join(blocked)
        not_loaded = sorted(
            info.name for info in self.infos.values() if info.error and "autoload" in info.error
        )
        if not_loaded:
            message += (
                "\nplugin autoload is disabled, so these installed plugins were not loaded: "
                + ", ".join(not_loaded)
                + "; add the one that registers it to [plugins] enable"
            )
        raise UnknownComponentError(message)

    def create(self, kind: str, name: str, params: Mapping[str, Any] | None = None) -> Any:
        """Build component ``name`` of ``kind`` with ``params`` checked against its signature."""
        registration = self.factory(kind, name)
        return build_component(registration, dict(params or {}))

    def plugin_list(self) -> list[PluginInfo]:
        with contextlib.suppress(PluginError):  # the listing must still show every plugin
            self.registrations()
        return sorted(self.infos.values(), key=lambda info: info.name)

    def failed_modules(self, names: Iterable[str]) -> list[str]:
        """Why each of the plugin modules ``names`` (asked for by name: ``-p MODULE``, ``[plugins]
        modules``) could not be loaded; empty when all of them were (or are blocked)."""
        infos = {info.name: info for info in self.plugin_list()}  # registration errors too
        return [
            f"plugin module {name!r} cannot be loaded: {infos[name].error}"
            for name in dict.fromkeys(names)
            if name in infos and infos[name].error and not infos[name].blocked
        ]

    def problems(self) -> list[str]:
        """What a run should warn about: names in block or enable that no plugin has,
        plugins that failed to load (and contribute nothing), plugins loaded with a warning,
        and names two plugins register (refused only when used)."""
        failed = [
            f"plugin {info.name!r} ({info.distribution or 'no distribution'}) failed to load "
            f"and is not used: {info.error}"
            for info in self.plugin_list()
            if info.error and not info.blocked and "autoload" not in info.error
        ]
        warned = [
            f"plugin {info.name!r}: {info.warning}" for info in self.plugin_list() if info.warning
        ]
        return [*self.unknown_names, *failed, *warned, *self.conflicts]


_PLURALS = {"strategy": "strategies", "persistence": "persistence back ends"}


def _check_registrations(result: Any) -> None:
    """What a registration hook returned: nothing, or a mapping of names to factories (each
    a callable or a ``"package.module:Name"`` reference)."""
    if result is None:
        return
    if not isinstance(result, Mapping):
        raise TypeError(f"must return a mapping of name to factory, not {type(result).__name__}")
    for name, factory in result.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"component names must be non-empty strings, not {name!r}")
        if (isinstance(factory, str) and _reference(factory)) or callable(factory):
            continue
        raise TypeError(
            f"factory {factory!r} of {name!r} is neither callable nor a "
            "'package.module:Name' reference"
        )


def _reference(text: str) -> bool:
    module_name, colon, attribute = text.partition(":")
    names = [*module_name.split("."), attribute]
    return bool(colon) and all(part.isidentifier() for part in names)


def build_component(registration: Registration, params: dict[str, Any]) -> Any:
    """Call a factory with keyword parameters validated against its signature and type hints;
    a ConfigError names the component, its plugin and every mistake."""
    factory = registration.resolve()
    label = registration.label
    model = _parameters_model(factory)
    params = _prepare_parameters(params, model, label)
    if model is not None:
        try:
            checked = model(**params)
        except ValidationError as exc:
            problems = "; ".join(_parameter_problems(model, params, exc))
            accepted = ", ".join(model.model_fields) or "none"
            raise ConfigError(
                f"{label}: invalid parameters: {problems} (accepted: {accepted})"
            ) from None
        params = {name: getattr(checked, name) for name in params if name in model.model_fields}
    try:
        built = factory(**params)
    except TradeloomError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{label}: {exc}") from exc
    except Exception as exc:  # the component's own code failed: name it, keep where it raised
        raise ConfigError(f"{label}: {type(exc).__name__}: {exc}") from exc
    _check_built(registration, built)
    return built


def _check_built(registration: Registration, built: Any) -> None:
    """Refuse what cannot be a component of the registration's kind (None, or an object
    without the methods its kind must have): it would fail later, far from the factory, with an
    AttributeError on some method the runtime calls. For a kind whose base class has abstract
    methods (or the id generator's protocol), an object that does not subclass it but has
    them is a component too; a strategy must subclass :class:`~tradeloom.strategy.Strategy`."""
    expected = _component_types().get(registration.kind)
    if expected is None or isinstance(built, expected):
        return
    required = sorted(getattr(expected, "__abstractmethods__", ()))
    if registration.kind == "id_generator":
        required = ["new_id"]
    missing = [name for name in required if not callable(getattr(built, name, None))]
    if built is not None and required and not missing:
        return
    lacking = ""
    if missing and built is not None:
        lacking = f" (it has no {', '.join(f'{name}()' for name in missing)})"
    raise ConfigError(
        f"{registration.label}: its factory returned {_described(built)}{lacking}, not a "
        f"{expected.__module__}.{expected.__qualname__}"
    )


def _component_types() -> dict[str, type]:
    # Imported here: these modules import this one's neighbours, not the other way round.
    from tradeloom.components import (
        Codec,
        Executor,
        Feed,
        HealthCheck,
        IdGenerator,
        Persistence,
        Validator,
    )
    from tradeloom.runtime.transport import Transport
    from tradeloom.strategy import Strategy

    return {
        "feed": Feed,
        "strategy": Strategy,
        "executor": Executor,
        "validator": Validator,
        "health_check": HealthCheck,
        "persistence": Persistence,
        "codec": Codec,
        "id_generator": IdGenerator,  # a runtime-checkable protocol: new_id()
        "transport": Transport,
    }


def _described(value: Any) -> str:
    if value is None:
        return "None"
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{text} (a {type(value).__module__}.{type(value).__qualname__})"


def _parameter_problems(
    model: type[BaseModel], params: dict[str, Any], exc: ValidationError
) -> list[str]:
    """Each mistake by its dotted key (``columns.ts``). A value that fits no member of a union
    gets one error per member from pydantic, located by its internal schema names
    (``path.lax-or-strict[...]``): such a parameter gets one problem saying what it accepts."""
    problems: list[str] = []
    unions: set[str] = set()
    for err in exc.errors():
        loc = err["loc"]
        name = str(loc[0]) if loc else "(parameters)"
        if err["type"] == "extra_forbidden":
            problems.append(f"{name}: unknown parameter")
        elif len(loc) > 1 and err["type"] != "missing" and not _holds(params.get(name), loc[1]):
            if name not in unions:
                unions.add(name)
                accepted = type_name(model.model_fields[name].annotation)
                problems.append(f"{name}: {params.get(name)!r} is not a valid {accepted}")
        else:
            problems.append(f"{'.'.join(str(part) for part in loc)}: {problem_message(err)}")
    return problems


def _holds(value: Any, key: Any) -> bool:
    """Whether ``key`` is a key or index in ``value`` (else it names a union member)."""
    if isinstance(value, Mapping):
        return key in value
    return isinstance(value, list | tuple) and isinstance(key, int) and 0 <= key < len(value)


def _prepare_parameters(
    params: dict[str, Any], model: type[BaseModel] | None, label: str
) -> dict[str, Any]:
    """Refuse floats where the factory wants a Decimal, and reveal secret parameters (kept
    as SecretStr by the settings) to factories that declare a plain ``str``."""
    prepared = {}
    for name, value in params.items():
        field = model.model_fields.get(name) if model is not None else None
        annotation = repr(field.annotation) if field is not None else ""
        if isinstance(value, float) and "Decimal" in annotation:
            raise ConfigError(
                f"{label}: parameter {name}: float {value!r} is not accepted for a Decimal; "
                "write it as a string or an exact TOML number"
            )
        if (
            isinstance(value, Decimal)
            and value.is_finite()
            and value != value.to_integral_value()
            and re.search(r"\bint\b", annotation)
            and not re.search(r"\b(Decimal|float)\b", annotation)
        ):
            # A TOML number with a fraction where whole numbers are taken: pydantic would
            # make a timedelta of it (a bar_interval of 1.5 seconds) or another surprise.
            raise ConfigError(
                f"{label}: parameter {name}: {value} is not a whole number "
                f"(it takes {type_name(field.annotation) if field is not None else 'int'})"
            )
        if isinstance(value, SecretStr) and field is not None and "SecretStr" not in annotation:
            value = value.get_secret_value()
        prepared[name] = value
    return prepared


def _parameters_model(factory: Any) -> type[BaseModel] | None:
    """A pydantic model of the factory's keyword parameters, or None when it takes **kwargs
    or its signature cannot be read."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    parameters = [p for p in signature.parameters.values() if p.name != "self"]
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    target = factory.__init__ if inspect.isclass(factory) else factory
    hints = _type_hints(target)
    fields: dict[str, Any] = {}
    for parameter in parameters:
        if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            continue
        annotation = hints.get(parameter.name, Any)
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (annotation, default)
    return create_model(
        f"{getattr(factory, '__name__', 'Factory')}Parameters",
        __base__=_FactoryParameters,
        **fields,
    )


def _type_hints(function: Any) -> dict[str, Any]:
    """The function's annotations as types. One that cannot be resolved (a name imported
    only under ``TYPE_CHECKING``) is left out, so its parameter takes any value; the others
    are still checked."""
    try:
        return typing.get_type_hints(function, include_extras=True)
    except Exception:
        pass
    annotations = getattr(function, "__annotations__", None)
    if not isinstance(annotations, Mapping):
        return {}
    namespace = getattr(function, "__globals__", None)
    hints: dict[str, Any] = {}
    for name, annotation in annotations.items():
        one = types.SimpleNamespace(__annotations__={name: annotation})
        try:
            hints.update(typing.get_type_hints(one, globalns=namespace, include_extras=True))
        except Exception:
            continue
    return hints


class _FactoryParameters(ParamsModel):
    """The base of the model made of a factory's signature: no unknown parameter, any type,
    no boolean for a number."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


def _import_plugin_module(module_name: str) -> tuple[Any, str | None]:
    """The module, or None and why it cannot be imported. Reported, never raised: a failing
    plugin does not take the listing (or the other plugins) down; a run that needs what it
    registers says it failed (factory())."""
    try:
        return importlib.import_module(module_name), None
    except PluginError as exc:
        return None, str(exc)  # the module explains itself (a missing extra, say)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            # The module itself (or its package) is nowhere to be found.
            return None, (
                f"no module named {missing!r} in the current directory, PYTHONPATH or the "
                "installed packages"
            )
        return None, _describe_error(exc)
    except (Exception, SystemExit) as exc:  # a plugin's exit() is its failure too
        return None, _describe_error(exc)


def _shadowed_file(module_name: str, module: Any) -> str:
    """When ``module_name.py`` in the current directory is not the module imported (one of
    the standard library or an installed package has the name, and comes first), a clause
    that says so; else ``""``."""
    local = Path.cwd() / (module_name.replace(".", os.sep) + ".py")
    imported = getattr(module, "__file__", None)
    if not local.is_file() or (imported and Path(imported).resolve() == local.resolve()):
        return ""
    where = imported or "built into Python"
    return (
        f": {local.name} in the current directory is not what was imported ({where}: the "
        "standard library and installed packages come first); rename the file"
    )


def _normal_name(distribution: str | None) -> str:
    """A distribution's name as compared (PEP 503): ``Foo_Bar`` is ``foo-bar``."""
    return re.sub(r"[-_.]+", "-", distribution or "").lower()


def _what_it_is(plugin: Any) -> str:
    if inspect.ismodule(plugin):
        return f"module {plugin.__name__}"
    if inspect.isclass(plugin):
        return f"class {plugin.__module__}.{plugin.__qualname__}"
    return f"a {type(plugin).__module__}.{type(plugin).__qualname__} object"


def _describe_error(exc: BaseException) -> str:
    # Where the plugin's own code raised: the innermost frame below tradeloom's call (the
    # first frame) that is neither the import machinery nor the standard library; a missing
    # module or attribute of an entry point has none (the message says it all).
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)[1:]
        if not _not_the_plugins(frame.filename)
    ]
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r}) while being imported{where}"
    return f"{type(exc).__name__}: {exc}{where}"


_IMPORTLIB_METADATA = str(Path(str(importlib_metadata.__file__)).parent) + os.sep
_STANDARD_LIBRARY = tuple(
    str(Path(sysconfig.get_paths()[name])) + os.sep for name in ("stdlib", "platstdlib")
)


def _not_the_plugins(filename: str) -> bool:
    """Code that imports a plugin and looks up its entry point's attribute (importlib, frozen
    or not, and importlib_metadata), or other code of the standard library (json, say; not
    what is installed under it): not where a plugin's author looks first."""
    if filename.startswith(("<frozen ", _IMPORTLIB_METADATA)):
        return True
    return filename.startswith(_STANDARD_LIBRARY) and not any(
        folder in filename for folder in ("site-packages", "dist-packages")
    )


def _distribution_of_module(module_name: str) -> tuple[str, str] | None:
    top_level = module_name.split(".")[0]
    for dist_name in importlib_metadata.packages_distributions().get(top_level, []):
        try:
            return dist_name, importlib_metadata.version(dist_name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return None


def load_plugin_manager(settings: Any = None, plugins: Iterable[Any] = ()) -> PluginManager:
    """A plugin manager loaded according to ``settings.plugins`` (or defaults)."""
    manager = PluginManager()
    plugin_settings = getattr(settings, "plugins", None)
    if plugin_settings is None:
        return manager.load(plugins=plugins)
    return manager.load(
        autoload=plugin_settings.autoload,
        enable=plugin_settings.enable,
        block=plugin_settings.block,
        modules=plugin_settings.modules,
        plugins=plugins,
    )
