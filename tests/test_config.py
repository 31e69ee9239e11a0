"""Configuration: defaults, precedence (file < environment < overrides) and one-line errors."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from healthlake.config import REPO_ROOT, Config, ConfigError, load_config
from healthlake.errors import HealthlakeError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("HEALTHLAKE_"):
            monkeypatch.delenv(name)


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "conf.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def _keys(value: Any, prefix: str = "") -> set[str]:
    if isinstance(value, dict) and not prefix.endswith("spark.conf"):
        return {k for key, v in value.items() for k in _keys(v, f"{prefix}.{key}" if prefix else key)}
    return {prefix}


def test_defaults_load_and_match_local_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEALTHLAKE_PUBLISH__INCREMENTAL_MIN_ROWS", raising=False)  # tests/conftest.py's
    cfg = load_config()
    assert cfg == Config()
    assert cfg.lake_root == "./lake"
    assert cfg.spark.master == "local[*]"
    assert cfg.synth.start == dt.date(2026, 1, 5)
    assert cfg.synth.rates.name_typo == 0.02
    assert cfg.feeds.hl7v2.encodings == ["utf-8", "gbk", "gb18030"]
    assert cfg.feeds.csv.encodings == ["utf-8", "gbk"]
    assert cfg.feeds.fhir.encodings == ["utf-8"]


def test_local_yaml_lists_every_key() -> None:
    assert REPO_ROOT is not None
    documented = yaml.safe_load((REPO_ROOT / "conf" / "local.yaml").read_text(encoding="utf-8"))
    assert _keys(documented) == _keys(Config().model_dump())


def test_cluster_yaml_loads() -> None:
    cfg = load_config("conf/cluster.yaml")
    assert cfg.lake_root.startswith("s3a://")
    assert cfg.landing_root.startswith("s3a://")
    assert cfg.feeds.hl7v2.encodings == ["utf-8", "gbk", "gb18030"]


def test_config_is_frozen() -> None:
    cfg = load_config()
    with pytest.raises(pydantic.ValidationError):
        cfg.lake_root = "/elsewhere"  # type: ignore[misc]


def test_environment_overrides_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHLAKE_LAKE_ROOT", "/data/lake")
    monkeypatch.setenv("HEALTHLAKE_SPARK__MASTER", "local[2]")
    monkeypatch.setenv("HEALTHLAKE_SYNTH__RATES__NAME_TYPO", "0.1")
    monkeypatch.setenv("HEALTHLAKE_SYNTH__PEOPLE", "500")
    monkeypatch.setenv("HEALTHLAKE_FEEDS__CSV__ENCODINGS", "[utf-8, gb18030]")
    monkeypatch.setenv("HEALTHLAKE_FEEDS__FHIR__ENABLED", "false")
    monkeypatch.setenv("HEALTHLAKE_IVY_DIR", "/not/a/config/key")
    cfg = load_config()
    assert cfg.lake_root == "/data/lake"
    assert cfg.spark.master == "local[2]"
    assert cfg.synth.rates.name_typo == 0.1
    assert cfg.synth.rates.homophone == 0.02
    assert cfg.synth.people == 500
    assert cfg.feeds.csv.encodings == ["utf-8", "gb18030"]
    assert cfg.feeds.fhir.enabled is False


def test_environment_null_clears_a_key_and_ingest_takes_one_batch_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HEALTHLAKE_INGEST__MAX_FILES_PER_TRIGGER", "4")
    with pytest.raises(ConfigError, match="set only one of ingest.max_bytes_per_trigger") as err:
        load_config()
    assert "\n" not in str(err.value)
    monkeypatch.setenv("HEALTHLAKE_INGEST__MAX_BYTES_PER_TRIGGER", "null")
    cfg = load_config()
    assert (cfg.ingest.max_files_per_trigger, cfg.ingest.max_bytes_per_trigger) == (4, None)


def test_overrides_beat_environment_and_none_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHLAKE_LAKE_ROOT", "/from/env")
    monkeypatch.setenv("HEALTHLAKE_SYNTH__PEOPLE", "500")
    cfg = load_config(
        overrides={"lake_root": "/from/flag", "synth": {"people": 50, "days": None}, "synth.seed": 7}
    )
    assert cfg.lake_root == "/from/flag"
    assert cfg.synth.people == 50
    assert cfg.synth.days == 7
    assert cfg.synth.seed == 7
    assert load_config(overrides={"lake_root": None}).lake_root == "/from/env"


def test_spark_conf_override_keys_keep_their_dots() -> None:
    nested = load_config(overrides={"spark": {"conf": {"spark.driver.memory": "8g"}}})
    dotted = load_config(overrides={"spark.conf.spark.driver.memory": "9g"})
    one_level = load_config(overrides={"spark.conf": {"spark.sql.shuffle.partitions": "3"}})
    assert nested.spark.conf["spark.driver.memory"] == "8g"
    assert dotted.spark.conf["spark.driver.memory"] == "9g"
    assert one_level.spark.conf["spark.sql.shuffle.partitions"] == "3"
    # The file's other Spark settings stay.
    assert "spark.databricks.delta.snapshotPartitions" in nested.spark.conf


def test_file_overrides_defaults_and_partial_feed_keeps_its_defaults(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "lake_root: /x\nfeeds:\n  hl7v2:\n    enabled: false\nsynth:\n  start: 2026-03-01\n"
    )
    cfg = load_config(path)
    assert cfg.lake_root == "/x"
    assert cfg.feeds.hl7v2.enabled is False
    assert cfg.feeds.hl7v2.encodings == ["utf-8", "gbk", "gb18030"]
    assert cfg.synth.start == dt.date(2026, 3, 1)


def _error(path: str | None = None, overrides: dict[str, Any] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    assert isinstance(info.value, HealthlakeError)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_key_names_the_key_and_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "synth:\n  rates:\n    name_typos: 0.1\n")
    message = _error(path)
    assert message.startswith("config key 'synth.rates.name_typos': unknown key")
    assert "did you mean 'name_typo'?" in message
    assert message.endswith(f"({path})")


def test_wrong_type_says_what_is_expected(tmp_path: Path) -> None:
    path = _write(tmp_path, "synth:\n  rates:\n    name_typo: abc\n")
    assert (
        _error(path)
        == f"config key 'synth.rates.name_typo': expected a number between 0 and 1, got 'abc' ({path})"
    )
    path = _write(tmp_path, "synth:\n  people: 5\n")
    assert _error(path) == f"config key 'synth.people': expected an integer >= 10, got 5 ({path})"
    path = _write(tmp_path, "feeds:\n  csv:\n    encodings: [utf-8, utf-99]\n")
    assert "unknown encoding 'utf-99'" in _error(path)


def test_environment_error_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHLAKE_SYNTH__RATES__NAME_TYPO", "abc")
    assert _error() == (
        "config key 'synth.rates.name_typo': expected a number between 0 and 1, got 'abc' "
        "(environment variable HEALTHLAKE_SYNTH__RATES__NAME_TYPO)"
    )
    monkeypatch.delenv("HEALTHLAKE_SYNTH__RATES__NAME_TYPO")
    monkeypatch.setenv("HEALTHLAKE_LAKEROOT", "/x")
    assert "config key 'lakeroot': unknown key" in _error()


def test_override_error_names_overrides() -> None:
    assert _error(overrides={"synth.days": 400}) == (
        "config key 'synth.days': expected an integer between 1 and 366, got 400 (overrides)"
    )


def test_missing_file() -> None:
    assert _error("no/such/file.yaml") == "config file 'no/such/file.yaml' not found"


def test_bad_yaml(tmp_path: Path) -> None:
    path = _write(tmp_path, "synth:\n  people: [1, 2\n")
    message = _error(path)
    assert message.startswith(f"config file '{path}' is not valid YAML:")
    assert "line" in message


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = _write(tmp_path, "- a\n- b\n")
    assert _error(path) == f"config file '{path}': expected a mapping of keys, got list"


def test_region_time_zone_defaults_to_shanghai_and_an_unknown_zone_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_config().region.timezone == "Asia/Shanghai"
    assert load_config(overrides={"region.timezone": "Asia/Urumqi"}).region.timezone == "Asia/Urumqi"
    monkeypatch.setenv("HEALTHLAKE_REGION__TIMEZONE", "UTC")
    assert load_config().region.timezone == "UTC"
    monkeypatch.delenv("HEALTHLAKE_REGION__TIMEZONE")
    path = _write(tmp_path, "region:\n  timezone: Asia/Shangai\n")
    assert _error(path) == (
        "config key 'region.timezone': expected an IANA time zone name such as 'Asia/Shanghai', got "
        f"'Asia/Shangai' (unknown time zone 'Asia/Shangai', did you mean 'Asia/Shanghai'?) ({path})"
    )
    for bad in ("Mars/Olympus", "+08:00", "CST-8x", ""):
        message = _error(overrides={"region.timezone": bad})
        assert "\n" not in message
        assert message.startswith("config key 'region.timezone': expected an IANA time zone name")
        assert f"(unknown time zone {bad!r}" in message
