"""The healthlake command: status output, run, and one-line errors with exit code 2."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from healthlake import cli, io


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(code: int, err: str) -> str:
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("healthlake: error: ")
    return lines[0]


def test_status_prints_each_table(spark: SparkSession, lake: str, capsys: pytest.CaptureFixture[str]) -> None:
    io.append(spark.range(3), lake, "bronze.fhir_resources")
    io.append(spark.range(2), lake, "bronze.fhir_resources")
    io.upsert(spark.range(4).withColumnRenamed("id", "k"), lake, "silver.person", ["k"])

    code, out, _ = _run(capsys, "status", "--lake", lake)

    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split() == ["layer", "table", "version", "rows", "last_operation", "last_time"]
    assert lines[1].split()[:5] == ["bronze", "fhir_resources", "1", "5", "WRITE"]
    assert lines[2].split()[:5] == ["silver", "person", "0", "4", "WRITE"]
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    assert lines[1].split()[5].startswith(today)
    end = lines[0].index("version") + len("version")
    assert [line[end - 1] for line in lines[1:]] == ["1", "0"]  # numbers right-aligned under the header


def test_status_of_empty_lake(lake: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "status", "--lake", lake)
    assert code == 0
    assert out.strip() == f"no tables in lake {lake}"


def test_status_of_missing_lake(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "nowhere")
    code, out, err = _run(capsys, "status", "--lake", missing)
    assert _one_line_error(code, err) == f"healthlake: error: lake root {missing} does not exist"
    assert out == ""


def test_run_without_stages_registers_and_prints_status(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    landing.mkdir()
    code, out, _ = _run(capsys, "run", "--landing", str(landing), "--lake", str(lake))
    assert code == 0
    assert lake.is_dir()
    assert out.strip() == f"no tables in lake {lake}"

    io.append(spark.range(2), str(lake), "bronze.fhir_bundles")
    code, out, _ = _run(capsys, "run", "--landing", str(landing), "--lake", str(lake))
    assert code == 0
    assert "bronze  fhir_bundles" in out
    assert spark.table("bronze.fhir_bundles").count() == 2


def test_run_with_missing_landing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "run", "--landing", str(tmp_path / "none"), "--lake", str(tmp_path / "lake"))
    assert "landing root" in _one_line_error(code, err)


def test_generate_truth_inside_landing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    landing = tmp_path / "landing"
    for truth in (landing / "truth", landing):
        code, _, err = _run(capsys, "generate", "--landing", str(landing), "--truth", str(truth))
        message = _one_line_error(code, err)
        assert message.startswith("healthlake: error: --truth") and "must not be inside --landing" in message
    assert not landing.exists()  # refused before anything was written


def test_generate_bad_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["generate", "--landing", str(tmp_path / "l"), "--truth", str(tmp_path / "t")]
    for bad in ("2026-13-01", "05/01/2026", "20260105"):
        code, _, err = _run(capsys, *args, "--start", bad)
        assert f"bad date '{bad}': expected YYYY-MM-DD" in _one_line_error(code, err)


def test_generate_missing_required_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "generate", "--landing", "x")
    assert "--truth" in _one_line_error(code, err)


def test_generate_bad_people_from_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(
        capsys, "generate", "--landing", str(tmp_path / "l"), "--truth", str(tmp_path / "t"), "--people", "3"
    )
    assert _one_line_error(code, err) == (
        "healthlake: error: config key 'synth.people': expected an integer >= 10, got 3 (command line)"
    )


def test_bad_config_key_in_conf_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "bad.yaml"
    conf.write_text("lake_root: ./lake\nsparky:\n  master: local[2]\n", encoding="utf-8")
    code, _, err = _run(capsys, "status", "--conf", str(conf), "--lake", str(tmp_path))
    line = _one_line_error(code, err)
    assert "config key 'sparky': unknown key" in line
    assert str(conf) in line


def test_missing_conf_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "status", "--conf", str(tmp_path / "none.yaml"))
    assert "not found" in _one_line_error(code, err)


def test_no_command_and_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    _one_line_error(*_run(capsys)[::2])
    _one_line_error(*_run(capsys, "fly")[::2])


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--help")
    assert code == 0
    assert "generate" in out and "status" in out and "run" in out


def test_format_table_aligns_numbers_right() -> None:
    table = cli.format_table(("name", "rows"), [("a", 5), ("bbb", 1234)])
    assert table.splitlines() == ["name  rows", "a        5", "bbb   1234"]


def test_format_manifest_totals_feeds() -> None:
    manifest = {
        "feeds": {
            "hl7v2": {"files": 3, "records": 100, "malformed": 1, "duplicates": 2},
            "fhir": {"files": 2, "records": 50},
        }
    }
    assert cli.format_manifest(manifest).splitlines() == [
        "feed   files  records  malformed  duplicates",
        "fhir       2       50          0           0",
        "hl7v2      3      100          1           2",
        "total      5      150          1           2",
    ]


def test_generate_writes_landing_truth_and_prints_the_manifest(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    landing, truth = tmp_path / "landing", tmp_path / "truth"
    argv = ["generate", "--landing", str(landing), "--truth", str(truth), "--people", "200", "--days", "2"]
    history = ["--followup-history-days", "200"]
    code, out, _ = _run(capsys, *argv, "--start", "2026-03-02", "--seed", "5", *history)
    assert code == 0
    manifest = (truth / "manifest.json").read_text(encoding="utf-8")
    assert '"seed": 5' in manifest and '"start": "2026-03-02"' in manifest
    followups = pd.read_parquet(truth / "followups.parquet").followup_time
    start = pd.Timestamp("2026-03-02")
    assert start - pd.Timedelta(days=200) <= followups.min() < start  # the history went out on day one
    assert {p.name for p in landing.iterdir()} == {
        "fhir",
        "hl7v2",
        "csv",
        "public_health",
        "location",
        "reference",
    }
    total = out.strip().splitlines()[-1].split()
    assert total[0] == "total" and int(total[2]) > 0
    assert sorted(p.name for p in truth.glob("*.parquet")) == [
        "contacts.parquet", "encounters.parquet", "followups.parquet", "patient_records.parquet",
        "persons.parquet", "readmissions.parquet",
    ]  # fmt: skip


def test_ingest_with_missing_landing_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "ingest", "--landing", str(tmp_path / "none"), "--lake", str(tmp_path / "l"))
    assert "landing root" in _one_line_error(code, err)


def test_ingest_prints_what_each_feed_took(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    landing = tmp_path / "landing" / "hl7v2" / "H1" / "2026-01-05"
    landing.mkdir(parents=True)
    msh = "MSH|^~\\&|HIS|H1|HL|REG|20260105080000||ADT^A04^ADT_A01|1|P|2.5|||AL|NE|CHN|UNICODE UTF-8"
    (landing / "a.hl7").write_bytes(f"{msh}\rPID|1||M1^^^H1^MR\r".encode() + b"MSH|broken\r")
    code, out, _ = _run(
        capsys, "ingest", "--landing", str(tmp_path / "landing"), "--lake", str(tmp_path / "lake")
    )
    assert code == 0
    assert out.splitlines()[1].split()[:4] == ["hl7v2", "1", "1", "1"]


def test_an_out_of_memory_failure_says_what_to_change() -> None:
    oom = RuntimeError(
        "[STREAM_FAILED] … SparkOutOfMemoryError: [UNABLE_TO_ACQUIRE_MEMORY] Unable to acquire"
    )
    assert "spark.driver.memory" in cli._hint(oom)
    assert "max_bytes_per_trigger" in cli._hint(oom)
    assert cli._hint(RuntimeError("[PATH_NOT_FOUND] Path does not exist")) == ""


def test_link_errors_are_one_line(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    code, _, err = _run(capsys, "link", "--lake", str(missing))
    assert "lake root" in _one_line_error(code, err) and "does not exist" in err
    lake = tmp_path / "lake"
    lake.mkdir()
    code, _, err = _run(capsys, "link", "--lake", str(lake))
    assert "silver.patient_record is not in the lake" in _one_line_error(code, err)
    code, _, err = _run(capsys, "link", "--lake", str(lake), "--accept", "r1", "--reject", "r1")
    assert "both accepted and rejected" in _one_line_error(code, err)
