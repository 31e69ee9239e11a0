"""HL7 v2 escape sequences and declared delimiters: silver reads what python-hl7 reads.

Every expected value here comes from python-hl7 (``hl7.parse`` and its accessors, which decode escape
sequences with the delimiters the message declares), never from healthlake's own helpers.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import hl7
import pytest
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from healthlake import io
from healthlake.config import load_config
from healthlake.pipelines import ingest
from healthlake.silver import allergy, diagnosis, encounter, observation, patient_record, procedure
from healthlake.silver.common import hl7_unescape

REAL = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "hl7v2"
BRONZE = "bronze.hl7v2_messages"


def _msh(message_type: str, control: str, declaration: str = "|^~\\&", version: str = "2.5") -> str:
    """An MSH segment with the field separator and encoding characters of ``declaration``."""
    fs = declaration[0]
    fields = ["HIS", "HH", "HL", "REGION", "20260105094000+0800", "", message_type, control, "P", version]
    return fs.join(["MSH" + declaration, *fields, "", "", "AL", "NE", "CHN", "UNICODE UTF-8"])


def _pv1(visit: str, fs: str = "|") -> str:
    return "PV1" + fs + "1" + fs + "O" + fs * 17 + visit  # 17 separators later comes PV1-19


# Component values with escape sequences. `\E\F\E\` is an escaped escape, F, an escaped escape: `\F\`.
ESCAPED = [
    "\\E\\F\\E\\",
    "A\\F\\B",
    "A\\S\\B",
    "A\\T\\B",
    "A\\R\\B",
    "A\\E\\B",
    "\\E\\\\E\\",
    "\\E\\S\\E\\T\\E\\",
    "\\F\\\\S\\\\T\\\\R\\\\E\\",
    "O\\E\\\\T\\Brien",
    "no escape",
]

# Hand-made messages, one file each unless named together. Standard delimiters with every escape
# sequence; then messages declaring other delimiters: `#` fields, `$` components, `%` repetitions,
# `*` escapes, `@` subcomponents (a literal `|` or `\` in them is plain text); component and repetition
# swapped; `!` fields; and a v2.7 truncation character (a fifth encoding character, not a delimiter).
MESSAGES = {
    "std_a01.hl7": [
        _msh("ADT^A01^ADT_A01", "m1"),
        # A family name with subcomponents: an escaped & is text, a plain one separates the partner's surname.
        "PID|1||X\\E\\F\\E\\Y^^^HH^MR~110101\\S\\1^^^CHN^NI||O\\T\\Brien\\E\\&&&&Aniston^Jo\\F\\hn||19800101|M",
        _pv1("V\\R\\1"),
        "DG1|1||I10^Hypertension^I10||20260105090000",
        "AL1|1|FA^Food allergy^HL70127|12345^Peanut\\T\\tree nut^L|SV|Hives\\F\\wheeze~Rash|20200301",
        "AL1||DA|70618^Penicillin^RXNORM|MO|^Anaphylaxis^SCT",
        "PR1|1||0UT90ZZ^Resection\\S\\repair^I10P||20260105093000",
        "PR1|||71045^^C4|Chest \\T\\ ribs|202601050940+0100" + "|" * 15 + "D",
    ],
    "std_a08.hl7": [
        _msh("ADT^A08^ADT_A01", "m2"),
        "PID|1||A\\E\\F\\E\\1^^^HH^PI||张\\E\\^伟\\S\\||19800101|M",  # no MR: the first id is the number
        _pv1("\\E\\\\E\\V2"),
        "DG1|1||E11^Diabetes^I10||20260105090000",
    ],
    "std_a04.hl7": [
        _msh("ADT^A04^ADT_A01", "m3"),
        "PID|1||\\F\\\\S\\\\T\\\\R\\\\E\\^^^HH^MR||\\E\\T\\E\\^\\E\\R\\E\\||19800101|F",
        _pv1("V\\E\\S\\E\\3"),
    ],
    "std_r01.hl7": [
        _msh("ORU^R01^ORU_R01", "m4"),
        "PID|1||R\\E\\E\\E\\4^^^HH^MR",
        _pv1("V\\T\\4"),
        "OBR|1|O4||LAB",
        "OBX|1|NM|GLU^Glucose^99LOC||5.5|mmol/L|||||F",
    ],
    "custom.hl7": [
        _msh("ADT$A01$ADT_A01", "m5", "#$%*@"),
        "PID#1##X*F*Y$$$HH$MR%Z1$$$HH$NI##Fa|m*S*ily$Gi*E*ven*E*F*E*##19800101#M",
        _pv1("V\\F\\5*T*", "#"),
        "DG1#1##I10$Hypertension$I10##20260105090000",
        "",  # the next message of the file
        _msh("ORU^R01^ORU_R01", "m8", "!^~\\&"),
        "PID!1!!M|8^^^HH^MR",
        _pv1("V8\\F\\x", "!"),
        "OBX!1!NM!GLU^Glucose^99LOC!!5.5!mmol/L!!!!!F",
    ],
    "swapped.hl7": [
        _msh("ADT~A01~ADT_A01", "m6", "|~^\\&"),
        "PID|1||P6~~~HH~MR^Q6~~~HH~NI||Wang~Fang\\R\\x||19800101|M",
        _pv1("V6\\S\\a"),
        "PR1|1||P1~Biopsy\\R\\x~SCT||20260105093000+0800",
        "AL1|1|DA|RX1~Peni\\S\\cillin~RXNORM|MI|Rash^Itch|20200301",
    ],
    "truncation.hl7": [
        _msh("ADT^A01^ADT_A01", "m7", "|^~\\&#", "2.7"),
        "PID|1||T7#\\E\\F\\E\\^^^HH^MR||Li^Lei#\\T\\||19800101|M",
        _pv1("V7#"),
    ],
}

_MESSAGE_START = re.compile(r"[\r\n]+(?=MSH[^A-Za-z0-9\s])")


def _python_hl7_messages(path: Path) -> list[tuple[int, hl7.Message]]:
    """The messages of a file as python-hl7 parses them, with their place in the file."""
    text = path.read_bytes().decode("utf-8-sig")
    parts = _MESSAGE_START.split(text)
    return [
        (n, hl7.parse("\r".join(re.split(r"\r\n|\r|\n", part.strip("\r\n")))))
        for n, part in enumerate(parts)
        if part.strip("\r\n")
    ]


def _value(msg: hl7.Message, path: str) -> str | None:
    """python-hl7's decoded value at ``path`` (``PID.F3.R1.C1``); None when absent or empty."""
    try:
        value = msg[path]
    except (IndexError, KeyError):
        return None
    return str(value) or None


def _has(msg: hl7.Message, segment: str) -> bool:
    return any(str(s[0]) == segment for s in msg)


def _patient_number(msg: hl7.Message) -> str | None:
    """The id of PID-3's first repetition typed MR, else of its first repetition (component 1, decoded)."""
    repetitions = len(msg.segment("PID")(3)) if isinstance(msg.segment("PID")(3)[0], hl7.Repetition) else 1
    typed = [r for r in range(1, repetitions + 1) if _value(msg, f"PID.F3.R{r}.C5") == "MR"]
    return (_value(msg, f"PID.F3.R{typed[0]}.C1") if typed else None) or _value(msg, "PID.F3.R1.C1")


def _name(msg: hl7.Message) -> str | None:
    family, given = _value(msg, "PID.F5.R1.C1"), _value(msg, "PID.F5.R1.C2")
    if family and re.match(r"[\u3400-\u9fff]", family):
        return family + (given or "")
    return " ".join(p for p in (given, family) if p) or None


@dataclass
class Expected:
    """What python-hl7 reads from the landed files, as rows keyed by file name and place in the file."""

    bronze: list[tuple]
    patients: list[tuple]
    encounters: list[tuple]
    diagnoses: list[tuple]
    observations: list[tuple]
    procedures: list[tuple]
    allergies: list[tuple]


# HL7 table 0396 coding systems, with the short names of docs/silver.md.
CODING_SYSTEMS = {"SCT": "SNOMED CT", "I10P": "ICD-10-PCS", "C4": "CPT", "RXNORM": "RxNorm"}
# docs/silver.md: AL1-2 allergen types (table 0127) as FHIR categories, AL1-4 severities (table 0128).
ALLERGEN_CATEGORIES = {"DA": "medication", "FA": "food", "EA": "environment", "AA": "environment"}
SEVERITIES = {"MI": "mild", "MO": "moderate", "SV": "severe"}


def _instant(ts: str | None) -> str | None:
    """An HL7 TS as the UTC time Spark shows; without an offset the wall clock of Asia/Shanghai."""
    if not ts:
        return None
    date, clock, offset = re.fullmatch(r"(\d{8})(\d{4,6})?(?:\.\d+)?([+-]\d{4})?", ts).groups()
    local = dt.datetime.strptime(date + (clock or "").ljust(6, "0"), "%Y%m%d%H%M%S")
    zone = dt.datetime.strptime(offset, "%z").tzinfo if offset else ZoneInfo("Asia/Shanghai")
    return local.replace(tzinfo=zone).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _segments(msg: hl7.Message, name: str) -> list[str]:
    """Accessor prefixes of every ``name`` segment of a message (``PR11``, ``PR12`` …)."""
    return [f"{name}{k}" for k in range(1, sum(str(s[0]) == name for s in msg) + 1)]


def _coded(msg: hl7.Message, field: str) -> tuple[str | None, str | None, str | None]:
    """Code, text and coding system (its short name) of a coded field."""
    system = _value(msg, f"{field}.R1.C3")
    return _value(msg, f"{field}.R1.C1"), _value(msg, f"{field}.R1.C2"), CODING_SYSTEMS.get(system, system)


def _procedures(path: Path, n: int, msg: hl7.Message, patient: str | None, visit: str | None) -> list[tuple]:
    cancelled = _value(msg, "MSH.F9.R1.C2") == "A11"
    out = []
    for k, seg in enumerate(_segments(msg, "PR1"), start=1):
        key = f"{visit}-PR1-{_value(msg, f'{seg}.F1') or k}" if visit else None
        code, text, system = _coded(msg, f"{seg}.F3")
        when = _instant(_value(msg, f"{seg}.F5"))
        deleted = cancelled or _value(msg, f"{seg}.F20") == "D"
        out.append(
            (
                path.name,
                n,
                key,
                patient,
                visit,
                code,
                text or _value(msg, f"{seg}.F4"),
                system,
                when,
                str(deleted),
            )
        )
    return out


def _allergies(path: Path, n: int, msg: hl7.Message, patient: str | None) -> list[tuple]:
    out = []
    for k, seg in enumerate(_segments(msg, "AL1"), start=1):
        key = f"{patient}-AL1-{_value(msg, f'{seg}.F1') or k}" if patient else None
        code, text, system = _coded(msg, f"{seg}.F3")
        category = ALLERGEN_CATEGORIES.get(_value(msg, f"{seg}.F2.R1.C1") or "")
        severity = SEVERITIES.get(_value(msg, f"{seg}.F4.R1.C1") or "")
        reaction = _value(msg, f"{seg}.F5.R1.C2") or _value(msg, f"{seg}.F5.R1.C1")
        onset = _instant(_value(msg, f"{seg}.F6"))
        out.append((path.name, n, key, patient, code, text, system, category, severity, reaction, onset))
    return out


def _expected(files: list[Path]) -> Expected:
    out = Expected([], [], [], [], [], [], [])
    for path in files:
        for n, msg in _python_hl7_messages(path):
            kind, trigger = _value(msg, "MSH.F9.R1.C1"), _value(msg, "MSH.F9.R1.C2")
            out.bronze.append((path.name, n, f"{kind}^{trigger}", _value(msg, "MSH.F10")))
            visit = _value(msg, "PV1.F19.R1.C1") if _has(msg, "PV1") else None
            patient = _patient_number(msg) if _has(msg, "PID") else None
            if kind == "ADT" and _has(msg, "PID"):
                out.patients.append((path.name, n, patient, _name(msg)))
            if kind == "ADT" and _has(msg, "PV1"):
                out.encounters.append((path.name, n, visit, patient))
            if kind == "ADT" and _has(msg, "DG1"):
                out.diagnoses.append((path.name, n, patient, visit))
            if kind == "ADT":
                out.procedures += _procedures(path, n, msg, patient, visit)
                out.allergies += _allergies(path, n, msg, patient)
            numeric = [s for s in msg if str(s[0]) == "OBX" and len(s) > 2 and str(s[2]) in ("NM", "SN")]
            if kind == "ORU" and numeric:
                out.observations.append((path.name, n, patient, visit))
    return out


@dataclass
class Landed:
    """Files landed and ingested: the bronze change rows and python-hl7's reading of the same files."""

    changes: DataFrame
    hand_made: Expected
    real: Expected | None


@pytest.fixture(scope="module")
def landed(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Landed:
    root = tmp_path_factory.mktemp("hl7_encoding")
    hand = root / "landing" / "hl7v2" / "HH" / "2026-01-05"
    hand.mkdir(parents=True)
    for name, lines in MESSAGES.items():
        (hand / name).write_bytes(("\r".join(lines) + "\r").encode("utf-8"))
    real = root / "landing" / "hl7v2" / "REAL" / "2026-01-05"
    if REAL.is_dir():
        shutil.copytree(REAL, real)
    cfg = load_config(overrides={"landing_root": str(root / "landing"), "lake_root": str(root / "lake")})
    ingest.run(spark, cfg)
    latest = io.latest_version(spark, cfg.lake_root, BRONZE)
    changes = io.read_changes(spark, cfg.lake_root, BRONZE, 0, latest).where(
        F.col("_change_type") == "insert"
    )
    return Landed(
        changes,
        _expected(sorted(hand.iterdir())),
        _expected(sorted(real.iterdir())) if REAL.is_dir() else None,
    )


def _where(df: DataFrame, institution: str) -> DataFrame:
    return df.where(F.col("_institution_id") == institution)


def _at(df: DataFrame, *columns: str) -> DataFrame:
    """Parser output keyed like ``Expected``: the file's name, the place in the file, then ``columns``."""
    return df.select(
        F.element_at(F.split("_source_file", "/"), -1).alias("file"),
        F.col("_record_offset").cast("long").alias("_record_offset"),
        *columns,
    ).distinct()


def _assert_read_as_python_hl7(spark: SparkSession, changes: DataFrame, expected: Expected) -> None:
    def frame(rows: list[tuple], *columns: str) -> DataFrame:
        schema = ", ".join(["file string", "_record_offset long", *(f"{c} string" for c in columns)])
        return spark.createDataFrame(rows, schema)

    assertDataFrameEqual(
        _at(changes, "message_type", "control_id"), frame(expected.bronze, "message_type", "control_id")
    )
    assertDataFrameEqual(
        _at(patient_record.from_hl7v2(changes), "source_record_id", "name"),
        frame(expected.patients, "source_record_id", "name"),
    )
    assertDataFrameEqual(
        _at(encounter.from_hl7v2(changes), "source_record_id", "source_patient_id"),
        frame(expected.encounters, "source_record_id", "source_patient_id"),
    )
    assertDataFrameEqual(
        _at(diagnosis.from_hl7v2(changes), "source_patient_id", "source_encounter_id"),
        frame(expected.diagnoses, "source_patient_id", "source_encounter_id"),
    )
    assertDataFrameEqual(
        _at(observation.from_hl7v2(changes), "source_patient_id", "source_encounter_id"),
        frame(expected.observations, "source_patient_id", "source_encounter_id"),
    )
    procedure_columns = ("source_record_id", "source_patient_id", "source_encounter_id", "code", "display")
    procedure_columns += ("code_system", "performed_time", "is_cancelled")
    procedures = procedure.from_hl7v2(changes).withColumns(
        {
            "performed_time": F.col("performed_time").cast("string"),
            "is_cancelled": _python_bool("is_cancelled"),
        }
    )
    assertDataFrameEqual(_at(procedures, *procedure_columns), frame(expected.procedures, *procedure_columns))
    allergy_columns = ("source_record_id", "source_patient_id", "code", "display", "code_system", "category")
    allergy_columns += ("severity", "reaction", "onset_time")
    allergies = allergy.from_hl7v2(changes).withColumn("onset_time", F.col("onset_time").cast("string"))
    assertDataFrameEqual(_at(allergies, *allergy_columns), frame(expected.allergies, *allergy_columns))


def _python_bool(column: str) -> Column:
    """A boolean column as Python writes it (``True``/``False``)."""
    return F.when(F.col(column), F.lit("True")).when(~F.col(column), F.lit("False"))


def test_escape_sequences_are_each_decoded_once_left_to_right(spark: SparkSession) -> None:
    msh = _msh("ADT^A01^ADT_A01", "1")
    # python-hl7 decodes a field's value when it is read.
    cases = [(value, _value(hl7.parse(f"{msh}\rNTE|1||{value}"), "NTE.F3")) for value in ESCAPED]
    assert cases[0] == ("\\E\\F\\E\\", "\\F\\")
    # python-hl7 turns highlighting into "_" and drops a lone escape character; silver keeps both as sent.
    cases += [("x\\H\\y\\N\\", "x\\H\\y\\N\\"), ("a\\b", "a\\b"), ("\\X41\\", "\\X41\\")]
    df = spark.createDataFrame(cases, "value string, decoded string")
    assertDataFrameEqual(df.select("value", hl7_unescape(F.col("value")).alias("decoded")), df)


def test_hand_made_messages_read_as_python_hl7_reads_them(spark: SparkSession, landed: Landed) -> None:
    changes = _where(landed.changes, "HH")
    assert changes.count() == len(landed.hand_made.bronze) == 8
    assert len(landed.hand_made.procedures) == len(landed.hand_made.allergies) == 3
    _assert_read_as_python_hl7(spark, changes, landed.hand_made)
    # A message declaring other delimiters is stored as it came.
    (raw,) = changes.where(F.col("control_id") == "m5").select("raw").first()
    assert raw == "\r".join(MESSAGES["custom.hl7"][:4])


def test_real_messages_read_as_python_hl7_reads_them(spark: SparkSession, landed: Landed) -> None:
    if landed.real is None:
        pytest.skip("../shared/testdata is not beside the project")
    assert len(landed.real.patients) > 20 and len(landed.real.observations) > 0
    assert len(landed.real.procedures) >= 10 and len(landed.real.allergies) >= 10  # PR1, AL1 of ADT
    _assert_read_as_python_hl7(spark, _where(landed.changes, "REAL"), landed.real)
