"""``silver.observation``: labs and vital signs with a LOINC code, a numeric value and one canonical unit.

Sources: FHIR ``Observation`` resources with ``valueQuantity`` (and each numeric ``component``, e.g. the
two pressures of a blood-pressure panel); numeric ``OBX`` segments of HL7 v2 ``ORU^R01`` messages; the
blood pressure and glucose columns of CSV ``visits`` and ``followups``. Local lab codes are mapped to LOINC
and units converted through the code maps in ``conf/code_maps`` (``CodeMaps``); the value and unit as
sent are kept in ``value_original`` and ``unit_original``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from healthlake.catalog import BRONZE_CSV_RECORDS, BRONZE_FHIR_RESOURCES, BRONZE_HL7V2_MESSAGES
from healthlake.errors import ConfigError
from healthlake.silver.common import (
    SOURCE_COLUMNS,
    bronze_provenance,
    case_of,
    csv_value,
    each_hl7_segment,
    fhir_reference_id,
    fhir_time,
    hl7_component,
    hl7_field,
    hl7_patient_number,
    hl7_segment,
    hl7_segment_record_id,
    hl7_time,
    hl7_visit_number,
    local_time,
    with_standard_hl7_delimiters,
)

LOINC_SYSTEM = "http://loinc.org"
CATEGORY_BY_LOINC = {
    "8480-6": "vital-signs",
    "8462-4": "vital-signs",
    "8867-4": "vital-signs",
    "8310-5": "vital-signs",
}


@dataclass(frozen=True)
class CodeMaps:
    """The code maps of ``conf/code_maps``, read once on the driver (they are small)."""

    lab_codes: dict[str, str]  # "<institution or *>|<local code>" → LOINC
    units: dict[str, tuple[str, float, str]]  # "<LOINC>|<unit>" → (canonical unit, factor, canonical LOINC)
    ranges: dict[str, tuple[float, float]]  # LOINC → (low, high) in the canonical unit

    @classmethod
    def load(cls, folder: Path) -> CodeMaps:
        """Read ``lab_codes.csv``, ``units.csv`` and ``observation_ranges.csv`` from ``folder``.

        Raises:
            ConfigError: When a file is missing or a row is malformed (one line naming file and row).
        """

        def rows(name: str, columns: tuple[str, ...]) -> list[dict[str, str]]:
            path = folder / name
            try:
                with path.open(encoding="utf-8", newline="") as f:
                    found = list(csv.DictReader(f))
            except OSError as exc:
                raise ConfigError(f"code map {path}: {exc.strerror} (set conform.code_maps_dir)") from None
            for n, row in enumerate(found, start=2):
                if any(not (row.get(c) or "").strip() for c in columns):
                    raise ConfigError(f"code map {path} line {n}: needs {', '.join(columns)}")
            return found

        try:
            return cls(
                lab_codes={
                    f"{r['institution_id'].strip()}|{r['local_code'].strip().upper()}": r["loinc"].strip()
                    for r in rows("lab_codes.csv", ("institution_id", "local_code", "loinc"))
                },
                units={
                    f"{r['loinc'].strip()}|{r['unit'].strip()}": (
                        r["canonical_unit"].strip(),
                        float(r["factor"]),
                        # optional column: a map without it keeps every code as sent
                        (r.get("canonical_loinc") or "").strip() or r["loinc"].strip(),
                    )
                    for r in rows("units.csv", ("loinc", "unit", "canonical_unit", "factor"))
                },
                ranges={
                    r["loinc"].strip(): (float(r["low"]), float(r["high"]))
                    for r in rows("observation_ranges.csv", ("loinc", "low", "high"))
                },
            )
        except ValueError as exc:
            raise ConfigError(f"code maps in {folder}: a number is not a number ({exc})") from None


def _literal_map(pairs: dict) -> Column:
    if not pairs:
        return F.create_map().cast("map<string,string>")
    return F.create_map(*[F.lit(x) for kv in pairs.items() for x in kv])


def standardize_observations(parsed: DataFrame, maps: CodeMaps) -> DataFrame:
    """Map codes to LOINC and values to the canonical unit of their LOINC code.

    The code as sent is the code itself for LOINC codings, else the code map's entry for the institution
    (or ``*``). Units the map knows for that code are converted (``value = value_original × factor``),
    and ``loinc`` becomes the code of the quantity in the canonical unit (``units.csv``'s
    ``canonical_loinc``): LOINC codes the property, so glucose sent as 2345-7 in mg/dL (mass/volume) is
    stored as 14749-6 in mmol/L (moles/volume), and 2345-7 sent with mmol/L, a common mislabel, as well.
    A LOINC code the map does not list keeps its code, value and unit as sent. ``unit_known`` is False
    when the map lists the code but not the unit (the code is then kept); ``value_in_range`` compares
    with the plausible range of the canonical code.
    """
    lab = _literal_map(maps.lab_codes)
    canonical = _literal_map({k: v[0] for k, v in maps.units.items()})
    factor = _literal_map({k: str(v[1]) for k, v in maps.units.items()})
    canonical_code = _literal_map({k: v[2] for k, v in maps.units.items()})
    listed = _literal_map({k.split("|")[0]: "1" for k in maps.units})
    low = _literal_map({k: str(v[0]) for k, v in maps.ranges.items()})
    high = _literal_map({k: str(v[1]) for k, v in maps.ranges.items()})
    code = F.upper(F.trim("code"))
    loinc = F.when(F.col("code_system") == "LOINC", F.trim("code")).otherwise(
        F.coalesce(lab[F.concat_ws("|", "institution_id", code)], lab[F.concat(F.lit("*|"), code)])
    )
    unit_key = F.concat_ws("|", F.col("loinc"), F.trim("unit_original"))
    is_listed = listed[F.col("loinc")].isNotNull()
    return (
        parsed.withColumn("loinc", loinc)
        .withColumn("unit_known", ~is_listed | canonical[unit_key].isNotNull())
        .withColumn(
            "value",
            F.when(~is_listed, F.col("value_original")).otherwise(
                F.col("value_original") * factor[unit_key].cast("double")
            ),
        )
        .withColumn("unit", F.when(~is_listed, F.col("unit_original")).otherwise(canonical[unit_key]))
        .withColumn("loinc", F.coalesce(canonical_code[unit_key], F.col("loinc")))
        .withColumn(
            "value_in_range",
            F.when(low[F.col("loinc")].isNull(), F.lit(True)).otherwise(
                F.col("value").between(
                    low[F.col("loinc")].cast("double"), high[F.col("loinc")].cast("double")
                )
            ),
        )
        .withColumn(
            "category",
            F.coalesce("category", _literal_map(CATEGORY_BY_LOINC)[F.col("loinc")], F.lit("laboratory")),
        )
    )


def _system(system: Column) -> Column:
    return F.when(system.isin(LOINC_SYSTEM, "LN"), F.lit("LOINC")).otherwise(system)


FHIR_OBSERVATION_SCHEMA = (
    "id string, status string, meta struct<lastUpdated: string>, "
    "category array<struct<coding: array<struct<code: string>>>>, "
    "code struct<coding: array<struct<system: string, code: string, display: string>>, text: string>, "
    "subject struct<reference: string>, encounter struct<reference: string>, "
    "effectiveDateTime string, issued string, "
    "valueQuantity struct<value: double, unit: string, code: string>, "
    "component array<struct<"
    "code: struct<coding: array<struct<system: string, code: string, display: string>>>, "
    "valueQuantity: struct<value: double, unit: string, code: string>>>"
)


def from_fhir(resources: DataFrame) -> DataFrame:
    """Observations with a numeric value from ``bronze.fhir_resources`` change rows."""
    o = F.col("_o")
    parts = F.concat(
        F.array(
            F.struct(
                F.lit(None).cast("string").alias("suffix"),
                o["code"]["coding"].alias("coding"),
                o["valueQuantity"].alias("q"),
            )
        ),
        F.coalesce(
            F.transform(
                o["component"],
                lambda c, i: F.struct(
                    (i + 1).cast("string").alias("suffix"),
                    c["code"]["coding"].alias("coding"),
                    c["valueQuantity"].alias("q"),
                ),
            ),
            F.array(),
        ),
    )
    p = F.col("_part")
    coding = F.try_element_at(p["coding"], F.lit(1))
    category = F.try_element_at(F.try_element_at(o["category"], F.lit(1))["coding"], F.lit(1))["code"]
    return (
        resources.where(F.col("resource_type") == "Observation")
        .withColumn("_o", F.from_json("raw", FHIR_OBSERVATION_SCHEMA))
        .select("*", F.explode(parts).alias("_part"))
        .where(p["q"]["value"].isNotNull())
        .select(
            F.col("_institution_id").alias("institution_id"),
            F.concat_ws("#", o["id"], p["suffix"]).alias("source_record_id"),
            fhir_reference_id(o["subject"]["reference"]).alias("source_patient_id"),
            fhir_reference_id(o["encounter"]["reference"]).alias("source_encounter_id"),
            _system(coding["system"]).alias("code_system"),
            coding["code"].alias("code"),
            F.coalesce(coding["display"], o["code"]["text"]).alias("display"),
            p["q"]["value"].alias("value_original"),
            F.coalesce(p["q"]["code"], p["q"]["unit"]).alias("unit_original"),
            fhir_time(F.coalesce(o["effectiveDateTime"], o["issued"])).alias("observation_time"),
            F.when(category.isin("vital-signs", "laboratory"), category).alias("category"),
            (F.coalesce(o["status"], F.lit("")) == "entered-in-error").alias("is_cancelled"),
            F.coalesce(fhir_time(o["meta"]["lastUpdated"]), F.col("_ingested_at")).alias("_event_time"),
            *bronze_provenance(BRONZE_FHIR_RESOURCES),
        )
    )


def from_hl7v2(messages: DataFrame) -> DataFrame:
    """Numeric results (``OBX-2 = NM``) of ``ORU^R01`` messages; key: ``OBR-2`` (or visit) and ``OBX-1``."""
    obx = F.col("_obx")
    visit = hl7_visit_number(F.col("raw"))
    order = F.coalesce(hl7_component(hl7_field(hl7_segment(F.col("raw"), "OBR"), 2), 1), visit)
    # NM is a number; SN (structured numeric) is comparator^number, e.g. ">^182" or "^182".
    raw_value = F.when(
        hl7_field(obx, 2) == "SN", F.try_element_at(F.split(hl7_field(obx, 5), r"\^"), F.lit(2))
    ).otherwise(hl7_field(obx, 5))
    value = F.regexp_replace(raw_value, r"^\s+|\s+$", "")
    return (
        messages.where(F.col("message_type").startswith("ORU^"))
        .transform(with_standard_hl7_delimiters)
        .transform(lambda df: each_hl7_segment(df, "OBX", "_obx"))
        .where(hl7_field(obx, 2).isin("NM", "SN"))
        .select(
            F.col("_institution_id").alias("institution_id"),
            hl7_segment_record_id(order, "OBX", obx).alias("source_record_id"),
            hl7_patient_number(F.col("raw")).alias("source_patient_id"),
            visit.alias("source_encounter_id"),
            _system(hl7_component(hl7_field(obx, 3), 3)).alias("code_system"),
            hl7_component(hl7_field(obx, 3), 1).alias("code"),
            hl7_component(hl7_field(obx, 3), 2).alias("display"),
            value.try_cast("double").alias("value_original"),
            hl7_component(hl7_field(obx, 6), 1).alias("unit_original"),
            F.coalesce(hl7_time(hl7_field(obx, 14)), hl7_time(F.col("message_time"))).alias(
                "observation_time"
            ),
            F.lit(None).cast("string").alias("category"),
            (F.coalesce(hl7_field(obx, 11), F.lit("")) == "W").alias("is_cancelled"),  # W: wrong, withdrawn
            F.coalesce(hl7_time(F.col("message_time")), F.col("_ingested_at")).alias("_event_time"),
            *bronze_provenance(BRONZE_HL7V2_MESSAGES),
        )
    )


# (extract, id column, time column, patient column, [(value column, unit column or fixed unit, local code)])
_CSV_MEASURES = (
    (
        "visits",
        "visit_id",
        "visit_time",
        [("sbp", "mm[Hg]", "SBP"), ("dbp", "mm[Hg]", "DBP"), ("glucose", "@glucose_unit", "GLU")],
    ),
    (
        "followups",
        "followup_id",
        "followup_date",
        [("sbp", "mm[Hg]", "SBP"), ("dbp", "mm[Hg]", "DBP"), ("fasting_glucose", "@glucose_unit", "FBG")],
    ),
)


def from_csv(records: DataFrame) -> DataFrame:
    """Blood pressures and glucose from CSV ``visits`` and ``followups`` rows (one row per measure).

    One projection and one ``inline`` of each row's measures, not a union of one projection per
    (extract, measure): the standardisation and rules after it would be planned, generated and
    JIT-compiled once per branch of a union.
    """
    extract = F.col("extract")
    measures = case_of(
        extract,
        {
            name: F.array(
                *(
                    F.struct(
                        F.lit(value_col).alias("_measure"),
                        csv_value(value_col).alias("_value"),
                        (csv_value(unit[1:]) if unit.startswith("@") else F.lit(unit)).alias("_unit"),
                        F.lit(local).alias("_code"),
                    )
                    for value_col, unit, local in measure_list
                )
            )
            for name, _, _, measure_list in _CSV_MEASURES
        },
    )
    record_id = case_of(extract, {name: csv_value(id_col) for name, id_col, _, _ in _CSV_MEASURES})
    when = case_of(extract, {name: local_time(csv_value(time_col)) for name, _, time_col, _ in _CSV_MEASURES})
    is_visit = extract == "visits"
    status = F.when(is_visit, F.coalesce(F.lower(csv_value("record_status")), F.lit(""))).otherwise("")
    rows = records.where(extract.isin(*(m[0] for m in _CSV_MEASURES))).select(
        F.col("_institution_id").alias("institution_id"),
        record_id.alias("_record_id"),
        csv_value("patient_no").alias("source_patient_id"),
        F.when(is_visit, record_id).alias("source_encounter_id"),
        when.alias("observation_time"),
        (status == "cancelled").alias("is_cancelled"),
        F.coalesce(F.when(is_visit, local_time(csv_value("updated_at"))), when, F.col("_ingested_at")).alias(
            "_event_time"
        ),
        *bronze_provenance(BRONZE_CSV_RECORDS),
        F.inline(measures),
    )
    return rows.where(F.col("_value").isNotNull()).select(
        "institution_id",
        F.concat(F.col("_record_id"), F.lit("-"), F.col("_measure")).alias("source_record_id"),
        "source_patient_id",
        "source_encounter_id",
        F.lit("local").alias("code_system"),
        F.col("_code").alias("code"),
        F.col("_measure").alias("display"),
        F.col("_value").try_cast("double").alias("value_original"),
        F.col("_unit").alias("unit_original"),
        "observation_time",
        F.lit(None).cast("string").alias("category"),
        "is_cancelled",
        *SOURCE_COLUMNS[2:],  # event time and provenance
    )
