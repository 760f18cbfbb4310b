from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tradeloom.api import make_settings
from tradeloom.errors import ConfigError
from tradeloom.settings import load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tradeloom.toml"
    path.write_text(text)
    return path


def test_toml_floats_are_exact_decimals_and_env_overrides_nested_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        """
[portfolio]
starting_cash = 2500.10
[reconnect]
max_attempts = 3
base_delay_seconds = 0.25
[[strategies]]
name = "sma_cross"
id = "fast"
params = { quantity = 0.1 }
""",
    )
    monkeypatch.setenv("TRADELOOM_RECONNECT__MAX_ATTEMPTS", "7")
    monkeypatch.setenv("TRADELOOM_PIPELINE__TRANSPORT", "redpanda")
    settings = load_settings(path)
    assert settings.portfolio.starting_cash == Decimal("2500.10")
    assert settings.strategies[0].params["quantity"] == Decimal("0.1")
    assert settings.strategies[0].strategy_id == "fast"
    assert settings.reconnect.max_attempts == 7  # environment wins
    assert settings.reconnect.base_delay_seconds == 0.25  # the rest of the table stays
    assert settings.pipeline.transport == "redpanda"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[portfolio]\nstarting_cash = -5\n",
            "portfolio.starting_cash: must be greater than zero",
        ),
        ("[reconnect]\nmax_attempts = 'many'\n", "reconnect.max_attempts: Input should be a valid"),
        (
            "[reconnect]\nmax_attempts = true\n",
            "reconnect.max_attempts: true is a boolean; it takes",
        ),
        (
            "[portfolio]\nsnapshot_interval_seconds = false\n",
            "portfolio.snapshot_interval_seconds: false is a boolean; it takes float",
        ),
        (
            "[pipeline]\ntransprt = 'memory'\n",
            "pipeline.transprt: not a known key; did you mean 'transport'? (known: transport, ",
        ),
        (
            "[[strategies]]\nname = 'sma_cross'\nparms = { fast = 3 }\n",
            "strategies.0.parms: not a known key; did you mean 'params'? "
            "(known: name, params, id, instruments)",
        ),
        ("[monitorin]\nlog_json = true\n", "monitorin: not a known key; did you mean 'monitoring'"),
        (
            "[pending]\nmax_wait_seconds = inf\n",
            "pending.max_wait_seconds: Input should be a finite",
        ),
        (
            "[pending]\nmax_wait_seconds = nan\n",
            "pending.max_wait_seconds: Input should be a finite",
        ),
        (
            "[pending]\nmax_wait_seconds = 1e20\n",
            "pending.max_wait_seconds: Input should be less than or equal to 1000000000",
        ),
        ("[reconnect]\nmax_delay_seconds = inf\n", "reconnect.max_delay_seconds: Input should be"),
        (
            "[portfolio]\nsnapshot_interval_seconds = 1e300\n",
            "portfolio.snapshot_interval_seconds: Input should be less than or equal to",
        ),
        ("[portfolio\n", "invalid TOML"),
        (
            "[[strategies]]\nname='a'\n[[strategies]]\nname='a'\n",
            "two strategies share the id 'a'",
        ),
    ],
)
def test_bad_configuration_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_file_and_bad_environment_are_config_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_settings(tmp_path / "nope.toml")
    monkeypatch.setenv("TRADELOOM_PENDING__MAX_WAIT_SECONDS", "soon")
    with pytest.raises(ConfigError, match=r"pending\.max_wait_seconds"):
        load_settings(write(tmp_path, ""))


@pytest.mark.parametrize(
    ("variable", "whole"),
    [
        ("TRADELOOM_STRATEGIES__0__PARAMS__FAST", """'[{"name": "...", "params": {...}}]'"""),
        ("TRADELOOM_HEALTH__CHECKS__1__NAME", """'[{"name": "...", "params": {...}}]'"""),
        ("TRADELOOM_PLUGINS__MODULES__0", """'["...", "..."]'"""),
    ],
)
def test_an_item_of_a_list_set_by_index_from_the_environment_says_to_give_the_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, whole: str
) -> None:
    monkeypatch.setenv(variable, "3")
    path = write(tmp_path, "[[strategies]]\nname = 'sma_cross'\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    listed = variable.split("__")
    prefix = "__".join(listed[: next(n for n, part in enumerate(listed) if part.isdigit())])
    assert str(caught.value).startswith(f"{prefix}__")
    assert str(caught.value).endswith(
        f"cannot be set one by one from the environment; give the whole list as JSON, as in "
        f"{prefix}={whole}"
    )


def test_an_empty_table_for_a_list_from_the_environment_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADELOOM_STRATEGIES", "{}")
    with pytest.raises(ConfigError, match="strategies"):
        load_settings(write(tmp_path, ""))


def test_overrides_win_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADELOOM_PORTFOLIO__STARTING_CASH", "7000")
    path = write(tmp_path, "[portfolio]\nstarting_cash = 5\n")
    assert load_settings(path).portfolio.starting_cash == 7000
    settings = load_settings(path, {"portfolio": {"starting_cash": "1"}})
    assert settings.portfolio.starting_cash == 1


def test_an_environment_key_that_differs_only_in_case_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "[feed]\nname = 'replay'\nparams = { paths = { ORCL = 'a.csv' } }\n")
    monkeypatch.setenv("TRADELOOM_FEED__PARAMS__PATHS__ORCL", "b.csv")
    with pytest.raises(ConfigError, match=r"feed\.params\.paths\.orcl: set by an environment"):
        load_settings(path)


def test_tables_and_lists_of_component_params_are_given_as_json_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As the sections' typed settings are: params is a free-form table, whose values
    # pydantic-settings left as text ("paths: '[...]' is not a valid list").
    path = write(tmp_path, "[feed]\nname = 'replay'\nparams = { instrument = 'X' }\n")
    monkeypatch.setenv("TRADELOOM_FEED__PARAMS__PATHS", '["a.csv", "b.csv"]')
    monkeypatch.setenv("TRADELOOM_FEED__PARAMS__COLUMNS", '{"ts": 0, "last_price": 2.50}')
    monkeypatch.setenv("TRADELOOM_FEED__PARAMS__NOTE", "[not json")
    params = load_settings(path).feed.params  # type: ignore[union-attr]
    assert params["paths"] == ["a.csv", "b.csv"]
    assert params["columns"] == {"ts": 0, "last_price": Decimal("2.50")}  # exact, as in TOML
    assert params["note"] == "[not json"  # left as it is: the component says what it wants
    assert params["instrument"] == "X"


def test_money_settings_refuse_floats_and_non_positive_amounts() -> None:
    with pytest.raises(ConfigError, match=r"float 1\.5 is not accepted"):
        make_settings({"portfolio": {"starting_cash": 1.5}})
    with pytest.raises(ConfigError, match=r"starting_cash_by_portfolio\.a: .*greater than zero"):
        make_settings({"portfolio": {"starting_cash_by_portfolio": {"a": "-5"}}})


def test_secret_looking_params_are_hidden_in_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADELOOM_FEED__PARAMS__ACCESS_TOKEN", "abc123secret")
    settings = make_settings({"feed": {"name": "kite", "params": {"api_key": "k-visible?"}}})
    assert "abc123secret" not in repr(settings) and "k-visible?" not in repr(settings)
    assert settings.feed is not None
    assert settings.feed.params["access_token"].get_secret_value() == "abc123secret"


def test_an_environment_variable_that_is_not_json_names_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRADELOOM_PLUGINS__BLOCK", "paper")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith("invalid environment variable TRADELOOM_PLUGINS__BLOCK='paper'")
    assert "written as JSON" in message


def test_a_typo_in_an_environment_variable_is_not_blamed_on_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "tradeloom.toml"
    config.write_text('[portfolio]\nstarting_cash = "1000"\n')
    monkeypatch.setenv("TRADELOOM_PORTFOLIO__STARTNG_CASH", "5")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert str(caught.value).splitlines() == [
        f"{config} with environment TRADELOOM_PORTFOLIO__STARTNG_CASH: invalid configuration",
        "  portfolio.startng_cash: not a known key; did you mean 'starting_cash'? (known: "
        "starting_cash, starting_cash_by_portfolio, snapshot_interval_seconds, "
        "equity_curve_points)",
    ]


@pytest.mark.parametrize(
    ("variable", "hint"),
    [
        ("TRADELOOM_PORTFOLI__STARTING_CASH", "; did you mean TRADELOOM_PORTFOLIO__...?"),
        ("tradeloom_reconect__max_attempts", "; did you mean TRADELOOM_RECONNECT__...?"),
        ("TRADELOOM_STARTING__CASH", ""),
    ],
)
def test_an_environment_variable_of_no_section_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, hint: str
) -> None:
    # pydantic-settings ignores it: the setting meant would keep its value, silently
    monkeypatch.setenv(variable, "5")
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, ""))
    section = variable[len("TRADELOOM_") :].lower().split("__")[0]
    assert str(caught.value) == (
        f"environment variable {variable} sets no setting: {section!r} is not a section "
        "(sections: pipeline, feed, strategies, validators, executor, persistence, transport, "
        f"portfolio, pending, reconnect, plugins, health, monitoring){hint}"
    )
    # the plugin manager's own variables are not settings and are let through, and so are
    # names without "__" that may be someone else's (Kubernetes service links, say)
    monkeypatch.delenv(variable)
    monkeypatch.setenv("TRADELOOM_BLOCK_PLUGINS", "kite")
    monkeypatch.setenv("TRADELOOM_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("TRADELOOM_PORT_9100_TCP_ADDR", "10.0.0.1")
    assert make_settings({}).portfolio.starting_cash == Decimal("100000")


def test_a_configuration_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    # Notepad and other Windows editors start UTF-8 files with one; TOML has none.
    path = tmp_path / "tradeloom.toml"
    path.write_bytes(b'\xef\xbb\xbf[portfolio]\nstarting_cash = "250"\n')
    assert load_settings(path).portfolio.starting_cash == Decimal(250)


def test_a_configuration_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "tradeloom.toml"
    path.write_bytes(b'[feed]\nname = "caf\xe9"\n')  # Latin-1, as an old editor may save it
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value) == (
        f"{path}: invalid TOML: not UTF-8 text (invalid byte at offset 18)"
    )


def test_an_override_naming_another_component_replaces_its_section(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[persistence]\nname = "sqlite"\nparams = { path = "state.sqlite" }\n'
        '[executor]\nname = "paper"\nparams = { commission_bps = 10 }\n',
    )
    settings = make_settings(
        path,
        {"persistence": {"name": "memory"}, "executor": {"params": {"slippage_bps": 2}}},
    )
    # another component: the file's params (sqlite's path) do not carry over
    assert (settings.persistence.name, settings.persistence.params) == ("memory", {})
    # the same component: merged key by key, as before
    assert settings.executor.params == {"commission_bps": Decimal(10), "slippage_bps": 2}


def test_a_section_giving_only_params_configures_the_default_component(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # From the file, from the environment, and as the Python API's override of a file that
    # has no [executor] section: the paper trader's params, memory persistence's.
    path = write(tmp_path, "[executor]\nparams = { commission_bps = 10 }\n")
    assert load_settings(path).executor.name == "paper"
    settings = make_settings(write(tmp_path, ""), {"executor": {"params": {"fill_at": "last"}}})
    assert (settings.executor.name, settings.executor.params) == ("paper", {"fill_at": "last"})
    monkeypatch.setenv("TRADELOOM_PERSISTENCE__PARAMS__FLUSH", "1")
    assert load_settings().persistence.name == "memory"


def test_an_override_naming_the_default_component_merges_with_a_section_of_params(
    tmp_path: Path,
) -> None:
    # The file's [executor] is the paper trader's (no name: the default), so an override
    # naming "paper" is the same component and merges, keeping the file's commission.
    path = write(tmp_path, "[executor]\nparams = { commission_bps = 10 }\n")
    settings = make_settings(path, {"executor": {"name": "paper", "params": {"fill_at": "last"}}})
    assert settings.executor.params == {"commission_bps": Decimal(10), "fill_at": "last"}


ORCL = Path(__file__).resolve().parents[1] / "data" / "orcl-1995-2014.txt"


def orcl_config(tmp_path: Path) -> Path:
    config = tmp_path / "tradeloom.toml"
    config.write_text(
        f"""
[feed]
name = "replay"
params = {{ path = "{ORCL}", format = "yahoo", instrument = "ORCL" }}

[[strategies]]
name = "sma_cross"
""",
        encoding="utf-8",
    )
    return config


def test_a_component_refused_for_a_value_of_the_environment_names_its_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file has no speed: the error must say where the 0 came from. A variable of another
    # section (reconnect) is not named.
    from tradeloom import Pipeline

    monkeypatch.setenv("TRADELOOM_FEED__PARAMS__SPEED", "0")
    monkeypatch.setenv("TRADELOOM_RECONNECT__MAX_ATTEMPTS", "3")
    settings = load_settings(orcl_config(tmp_path))
    with pytest.raises(ConfigError) as refused:
        Pipeline(settings, mode="live")
    assert str(refused.value).startswith(
        "feed 'replay' (plugin 'replay'): speed must be a finite number"
    )
    assert refused.value.__notes__ == [
        "values set from the environment here: TRADELOOM_FEED__PARAMS__SPEED"
    ]


def test_an_unknown_component_from_the_environment_keeps_its_error_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tradeloom import Pipeline
    from tradeloom.errors import UnknownComponentError

    monkeypatch.setenv("TRADELOOM_EXECUTOR__NAME", "papr")
    settings = load_settings(orcl_config(tmp_path))
    with pytest.raises(UnknownComponentError) as refused:
        Pipeline(settings, mode="backtest")
    assert "unknown executor 'papr'" in str(refused.value)
    assert refused.value.__notes__ == [
        "values set from the environment here: TRADELOOM_EXECUTOR__NAME"
    ]


def test_errors_of_the_file_alone_name_no_variable(tmp_path: Path) -> None:
    from tradeloom import Pipeline

    settings = load_settings(orcl_config(tmp_path))
    settings.feed.params["speed"] = 0  # type: ignore[union-attr]
    with pytest.raises(ConfigError) as refused:
        Pipeline(settings, mode="live")
    assert not getattr(refused.value, "__notes__", [])
