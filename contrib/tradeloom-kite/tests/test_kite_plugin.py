"""The plugin is found through the ``tradeloom`` entry-point group and built from settings."""

from __future__ import annotations

from pathlib import Path

import pluggy
import pytest
import tradeloom.hookspecs
from tradeloom.errors import ConfigError
from tradeloom.plugins import load_plugin_manager
from tradeloom.settings import load_settings

from tradeloom_kite import KiteFeed

DOC_EXAMPLE = """
[feed]
name = "kite"
params = { api_key = "abc", instruments = { "408065" = "INFY" }, mode = "full" }
"""


def test_entry_point_registers_the_kite_feed() -> None:
    manager = pluggy.PluginManager("tradeloom")
    manager.add_hookspecs(tradeloom.hookspecs)
    assert manager.load_setuptools_entrypoints("tradeloom", name="kite") == 1
    registered = {
        name: factory
        for mapping in manager.hook.tradeloom_register_feeds()
        for name, factory in mapping.items()
    }
    # Registered by reference, imported only when a kite feed is built.
    assert registered["kite"] == "tradeloom_kite.feed:KiteFeed"
    assert load_plugin_manager(load_settings(None)).factory("feed", "kite").resolve() is KiteFeed


def test_feed_is_built_from_the_documented_toml_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "tradeloom.toml"
    config.write_text(DOC_EXAMPLE)
    monkeypatch.setenv("TRADELOOM_FEED__PARAMS__ACCESS_TOKEN", "from-env")
    settings = load_settings(config)
    assert settings.feed is not None and settings.feed.name == "kite"
    # Built as the runtime builds it: secrets stay SecretStr in the settings and reach the
    # feed as the types its signature asks for.
    feed = load_plugin_manager(settings).create("feed", "kite", settings.feed.params)
    assert isinstance(feed, KiteFeed)
    assert "from-env" not in repr(settings)
    assert feed.params.access_token.get_secret_value() == "from-env"
    assert feed.params.instruments == {408065: "INFY"}
    assert feed.params.mode == "full"
    assert feed.params.url == "wss://ws.kite.trade"
    assert feed.subscription_messages() == [
        '{"a": "subscribe", "v": [408065]}',
        '{"a": "mode", "v": ["full", [408065]]}',
    ]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"instruments": {}}, "instruments"),
        ({"instruments": {"-5": "X"}}, "instrument token '-5' is not a positive integer"),
        ({"instruments": {"408065": ""}}, "needs a non-empty symbol"),
        ({"mode": "depth"}, "mode"),
        ({"url": "http://ws.kite.trade"}, "is not a ws:// or wss:// URL"),
        ({"url": "wss://ws.kite.trade?access_token=x"}, "not in the url"),
        ({"url": "wss://ws.kite.trade/?ACCESS_TOKEN=secret1"}, "not in the url"),
        ({"url": "wss://user:secret1@ws.kite.trade/"}, "not in the url"),
        ({"instruments": {1: "A", "01": "B"}}, "instrument token 1 is given twice ('A' and 'B')"),
        ({"access_token": ""}, "access_token must not be empty"),
        ({"api_key": ""}, "api_key"),
        (
            {"instruments": {str(token): f"S{token}" for token in range(1, 3002)}},
            "3,001 instruments given; Kite allows at most 3,000 on one WebSocket connection",
        ),
    ],
)
def test_bad_params_are_refused_with_a_clear_error(params: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "api_key": "abc",
        "access_token": "tok",
        "instruments": {"408065": "INFY"},
    }
    with pytest.raises(ConfigError) as caught:
        KiteFeed(**{**base, **params})  # type: ignore[arg-type]
    assert str(caught.value).startswith("kite feed: invalid parameters:")
    assert message in str(caught.value)
    assert "secret1" not in str(caught.value)  # a credential in a refused url is not echoed


def test_up_to_3000_instruments_are_accepted() -> None:
    instruments = {str(token): f"S{token}" for token in range(1, 3001)}
    feed = KiteFeed(api_key="abc", access_token="tok", instruments=instruments)
    assert len(feed.params.instruments) == 3000


def test_runtime_plugin_manager_builds_the_feed_from_params() -> None:
    from tradeloom.plugins import load_plugin_manager

    manager = load_plugin_manager()
    feed = manager.create(
        "feed", "kite", {"api_key": "abc", "access_token": "tok", "instruments": {"1": "X"}}
    )
    assert isinstance(feed, KiteFeed)
    assert feed.params.instruments == {1: "X"}
    with pytest.raises(ConfigError) as caught:
        manager.create(
            "feed", "kite", {"api_key": "abc", "access_token": "tok", "instruments": {}, "x": 1}
        )
    assert "x: unknown parameter" in str(caught.value)
