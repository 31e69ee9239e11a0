"""Feed parsers on hand-made files: charsets, framing, separators, malformed records."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from pyspark.sql import DataFrame, SparkSession

from healthlake.bronze.common import landing_batch, quarantine_rows
from healthlake.bronze.csv_extracts import parse_csv, parse_pings
from healthlake.bronze.fhir import fhir_bundles, parse_fhir
from healthlake.bronze.hl7v2 import parse_hl7v2


def landing_files(spark: SparkSession, files: dict[str, bytes]) -> DataFrame:
    """Landing files as the binaryFile source gives them, with the batch columns ingest adds."""
    rows = [
        (f"file:/landing/{path}", dt.datetime(2026, 1, 5), len(content), bytearray(content))
        for path, content in files.items()
    ]
    df = spark.createDataFrame(rows, "path string, modificationTime timestamp, length long, content binary")
    return landing_batch(df, "test-0")


def msh(charset: str, control: str, msg_type: str = "ADT^A01^ADT_A01") -> str:
    return f"MSH|^~\\&|HIS|H1|HL|REG|20260105080000||{msg_type}|{control}|P|2.5|||AL|NE|CHN|{charset}"


def hl7(charset: str, control: str, name: str) -> str:
    return "\r".join(
        [msh(charset, control), "EVN|A01|20260105080000", f"PID|1||M1^^^H1^MR||{name}||19800101|M"]
    )


def test_hl7_framing_separators_bom_and_charsets(spark: SparkSession) -> None:
    utf8 = hl7("UNICODE UTF-8", "1", "张^伟").replace("\r", "\n").encode("utf-8")
    gbk = hl7("GBK", "2", "王^芳").encode("gbk")
    gb18030 = hl7("GB 18030-2000", "3", "李^䶮").replace("\r", "\r\n").encode("gb18030")
    files = {
        "hl7v2/H1/2026-01-05/a.hl7": b"\xef\xbb\xbf" + utf8 + b"\n" + gbk + b"\r",
        "hl7v2/H2/2026-01-05/b.hl7": b"\x0b" + gb18030 + b"\r\n\x1c\r" + b"\x0b" + gbk + b"\r\x1c\r",
    }
    rows = parse_hl7v2(landing_files(spark, files)).orderBy("_source_file", "_record_offset").collect()
    assert [r["_reject_reason"] for r in rows] == [None] * 4
    assert [(r["_institution_id"], r["_record_offset"], r["control_id"]) for r in rows] == [
        ("H1", 0, "1"),
        ("H1", 1, "2"),
        ("H2", 0, "3"),
        ("H2", 1, "2"),
    ]
    assert [r["raw"].split("\r")[2].split("|")[5] for r in rows] == ["张^伟", "王^芳", "李^䶮", "王^芳"]
    assert all("\n" not in r["raw"] and "\x0b" not in r["raw"] and "\x1c" not in r["raw"] for r in rows)
    assert rows[0]["message_type"] == "ADT^A01" and rows[0]["version_id"] == "2.5"
    assert rows[2]["declared_charset"] == "GB 18030-2000"


def test_hl7_malformed_messages_are_quarantined_with_their_bytes(spark: SparkSession) -> None:
    good = hl7("UNICODE UTF-8", "1", "张^伟").encode()
    truncated = b"MSH|^~\\&|HIS|H1|HEAL"
    broken = hl7("GBK", "3", "王^芳").encode("gbk").replace(b"PID|1", b"PID|\xff\xfe1")
    not_hl7 = b"hello world"
    content = b"\r".join([not_hl7, good, truncated, broken]) + b"\r"
    parsed = parse_hl7v2(landing_files(spark, {"hl7v2/H1/2026-01-05/x.hl7": content}))
    reasons = [r["_reject_reason"] for r in parsed.orderBy("_record_offset").collect()]
    assert reasons == [
        "hl7: no MSH segment at the start (not a message)",
        None,
        "hl7: MSH-9 message type missing",
        "undecodable: bytes invalid in GBK",
    ]
    quarantined = quarantine_rows(parsed).orderBy("_record_offset").collect()
    assert [base64.b64decode(r["raw_base64"]) for r in quarantined] == [not_hl7, truncated, broken]


def test_fhir_ndjson_bundles_and_single_resources(spark: SparkSession) -> None:
    patient = {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "2", "lastUpdated": "2026-01-05"}}
    bundle = {
        "resourceType": "Bundle",
        "id": "b1",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "id": "p2"}},
            {"fullUrl": "urn:uuid:2", "resource": {"resourceType": "Encounter", "id": "e1", "x": 1.5}},
            {"fullUrl": "urn:uuid:3", "request": {"method": "DELETE", "url": "Patient/p9"}},
        ],
    }
    ndjson = "\n".join(
        [json.dumps(patient), '{"resourceType":"Patient","id":"p3","na', '{"exportId": "x"}', ""]
    )
    files = {
        "fhir/H1/2026-01-05/Patient.ndjson": ndjson.encode(),
        "fhir/H1/2026-01-05/bundle.json": json.dumps(bundle, ensure_ascii=False).encode(),
        "fhir/H1/2026-01-05/one.json": b"\xef\xbb\xbf" + json.dumps(patient).encode(),
        "fhir/H1/2026-01-05/bad.json": b'{"resourceType": "Bundle", "entry": [',
        "fhir/H1/2026-01-05/gbk.ndjson": json.dumps(
            {"resourceType": "Patient", "id": "张"}, ensure_ascii=False
        ).encode("gbk"),
    }
    rows = parse_fhir(landing_files(spark, files)).collect()
    got = sorted(
        (r["_source_file"].split("/")[-1], r["_record_offset"], r["resource_type"], r["_reject_reason"])
        for r in rows
    )
    assert got == [
        ("Patient.ndjson", 0, "Patient", None),
        ("Patient.ndjson", 1, None, "fhir: invalid JSON"),
        ("Patient.ndjson", 2, None, "fhir: no resourceType (not a FHIR resource)"),
        ("bad.json", 0, None, "fhir: invalid JSON"),
        ("bundle.json", 0, "Patient", None),
        ("bundle.json", 1, "Encounter", None),
        ("bundle.json", 2, None, "fhir: bundle entry without a resource"),
        ("gbk.ndjson", 0, "Patient", "undecodable: not valid UTF-8"),
        ("one.json", 0, "Patient", None),
    ]
    entries = [r for r in rows if r["bundle_id"] == "b1" and r["_reject_reason"] is None]
    assert {r["entry_full_url"] for r in entries} == {"urn:uuid:1", "urn:uuid:2"}
    assert json.loads(next(r for r in entries if r["resource_id"] == "e1")["raw"])["x"] == 1.5
    version = next(
        r for r in rows if r["_source_file"].endswith("Patient.ndjson") and r["_reject_reason"] is None
    )
    assert (version["version_id"], version["last_updated"]) == ("2", "2026-01-05")
    landed = landing_files(spark, files)
    (kept,) = fhir_bundles(parse_fhir(landed), landed).collect()
    assert (kept["bundle_id"], kept["entries"], json.loads(kept["raw"])) == ("b1", 3, bundle)


@pytest.mark.parametrize("charset", ["utf-8", "gbk"])
def test_csv_quotes_drift_charsets_and_broken_rows(spark: SparkSession, charset: str) -> None:
    lines = [
        "visit_id,name,address,remark",
        'V1,张伟,"东湖区, 建设路 ""1""号",',
        "V2,王芳,青石镇,新列",
        "V3,李娜",
    ]
    content = "\r\n".join(lines).encode(charset) + b"\r\n"
    broken = "V4,赵敏,南塘村,".encode(charset).replace(b"V4", b"V4\xff")
    files = {"csv/C1/2026-01-05/visits_20260105_s0001.csv": b"\xef\xbb\xbf" + content + broken + b"\n"}
    rows = parse_csv(landing_files(spark, files)).orderBy("_record_offset").collect()
    assert [(r["_record_offset"], r["_reject_reason"]) for r in rows] == [
        (1, None),
        (2, None),
        (3, "csv: 2 fields, header has 4"),
        (4, f"undecodable: bytes invalid in {charset.upper().replace('UTF-8', 'UTF-8')}"),
    ]
    assert rows[0]["extract"] == "visits"
    assert rows[0]["record"] == {
        "visit_id": "V1",
        "name": "张伟",
        "address": '东湖区, 建设路 "1"号',
        "remark": "",
    }
    assert rows[1]["record"]["remark"] == "新列"


def test_csv_quoted_fields_follow_rfc_4180(spark: SparkSession) -> None:
    lines = [
        '"id","note, with comma",tail',
        '1,"",""""',  # an empty quoted field; a field holding one quote
        '"2","a ""b"", c",""""""',  # doubled quotes inside; a field holding two quotes
        '3,"x,y"',  # two fields where the header has three
    ]
    files = {"csv/C1/2026-01-05/notes_20260105.csv": "\n".join(lines).encode()}
    rows = parse_csv(landing_files(spark, files)).orderBy("_record_offset").collect()
    header = ["id", "note, with comma", "tail"]
    assert [r["record"] for r in rows[:2]] == [
        dict(zip(header, ["1", "", '"'], strict=True)),
        dict(zip(header, ["2", 'a "b", c', '""'], strict=True)),
    ]
    assert (rows[2]["record"], rows[2]["_reject_reason"]) == (None, "csv: 2 fields, header has 3")


@pytest.mark.parametrize("charset", ["utf-8", "gbk"])
def test_csv_line_breaks_inside_quoted_fields_stay_in_their_record(spark: SparkSession, charset: str) -> None:
    records = [
        "visit_id,remark,doctor",
        'V1,"咳嗽三天\r\n伴发热",李医生',  # a CRLF inside a quoted field (a cell edited in a spreadsheet)
        'V2,"第一行\n第二行\n""引号""",王医生',  # two LFs and doubled quotes
        "V3,无,张医生",
        'V4,"多行\r\n备注"',  # two fields where the header has three
    ]
    content = "\r\n".join(records).encode(charset) + b"\r\n"
    parsed = parse_csv(landing_files(spark, {"csv/C1/2026-01-05/visits_20260105.csv": content}))
    rows = parsed.orderBy("_record_offset").collect()
    # A record spanning lines is one record: offsets count records, not lines.
    assert [(r["_record_offset"], r["_reject_reason"]) for r in rows] == [
        (1, None),
        (2, None),
        (3, None),
        (4, "csv: 2 fields, header has 3"),
    ]
    assert [r["record"]["remark"] for r in rows[:3]] == ["咳嗽三天\r\n伴发热", '第一行\n第二行\n"引号"', "无"]
    assert [r["raw"] for r in rows] == records[1:]
    (rejected,) = quarantine_rows(parsed).collect()
    assert base64.b64decode(rejected["raw_base64"]) == records[4].encode(charset)


def test_csv_with_carriage_returns_only_is_split_into_its_records(spark: SparkSession) -> None:
    # Old Mac line endings (Excel for Mac's CSV export): a file with no \n at all.
    records = ["id,note", "1,甲", '2,"乙\r丙"', "3,丁,多"]
    content = "\r".join(records).encode("gbk") + b"\r"
    parsed = parse_csv(landing_files(spark, {"csv/C1/2026-01-05/notes_20260105.csv": content}))
    rows = parsed.orderBy("_record_offset").collect()
    assert [(r["_record_offset"], r["_reject_reason"]) for r in rows] == [
        (1, None),
        (2, None),
        (3, "csv: 3 fields, header has 2"),
    ]
    assert [r["record"]["note"] for r in rows[:2]] == ["甲", "乙\r丙"]
    assert [r["raw"] for r in rows] == records[1:]
    (rejected,) = quarantine_rows(parsed).collect()
    assert base64.b64decode(rejected["raw_base64"]) == records[3].encode("gbk")


def test_csv_stray_quote_rejects_only_its_own_lines(spark: SparkSession) -> None:
    # An odd number of quotes in a file: quoted line breaks cannot be told from a stray quote, so the
    # file is read line by line and the broken lines are quarantined one by one.
    lines = ["id,size,unit", 'S1,5" tall,in', "S2,6,cm", 'S3,"a', 'b",cm', "S4,7,cm"]
    files = {"csv/C1/2026-01-05/sizes_20260105.csv": "\n".join(lines).encode()}
    rows = parse_csv(landing_files(spark, files)).orderBy("_record_offset").collect()
    assert [(r["_record_offset"], r["_reject_reason"]) for r in rows] == [
        (1, "csv: 2 fields, header has 3"),
        (2, None),
        (3, "csv: 1 fields, header has 3"),
        (4, "csv: 2 fields, header has 3"),
        (5, None),
    ]
    assert [r["raw"] for r in rows] == lines[1:]


def test_pings_need_their_columns(spark: SparkSession) -> None:
    files = {
        "location/T1/2026-01-05/pings_1.csv": b"phone,ts,lat,lon,accuracy_m\n"
        b"13800000000,2026-01-05 08:00:00,28.1,116.2,20\n",
        "location/T1/2026-01-05/other.csv": b"mobile,ts\n13800000000,2026-01-05 08:00:00\n",
        # Columns in another order, and one the feed does not know: fields are taken by name.
        "location/T1/2026-01-05/pings_2.csv": b"ts,lon,lat,phone,accuracy_m,extra\n"
        b"2026-01-05 09:00:00,116.3,28.2,13900000000,15,x\n",
    }
    rows = parse_pings(landing_files(spark, files)).orderBy("_source_file").collect()
    assert [(r["phone"], r["lat"], r["lon"], r["_reject_reason"]) for r in rows] == [
        (None, None, None, "location: header has no phone column"),
        ("13800000000", "28.1", "116.2", None),
        ("13900000000", "28.2", "116.3", None),
    ]
