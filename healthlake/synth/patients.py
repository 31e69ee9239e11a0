"""Synthetic source patient records with known truth, written straight to silver (no feeds).

For the EMPI's tests and benchmarks: people keyed at several institutions with the errors clerks make,
standardised and tokenised as conform does (clear values only in ``vault.identity``).
"""

from __future__ import annotations

import datetime as dt
import random

import pandas as pd
from faker import Faker
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from healthlake import io
from healthlake.catalog import SILVER_PATIENT_RECORD, VAULT_IDENTITY
from healthlake.privacy.tokens import load_key
from healthlake.silver.patient_record import standardize_patient_records
from healthlake.silver.pseudonymise import drop_clear, tokenize_columns, vault_rows
from healthlake.synth.identity import homophone_variant, make_phone, make_resident_id, transpose_digits

COUNTIES = ("330102", "330105", "330106", "330108")
IDENTIFIERS = {
    "resident_id": "resident_id",
    "name": "name",
    "phone": "phone",
    "address": "address",
    "insurance_no": "insurance_no",
}
INSTITUTIONS = ("H01", "H02", "C03", "C04", "C05")
DEFECTS = ("homophone", "swapped", "id_transposed", "id_missing", "phone_new", "none")


def synthetic_people(n: int, seed: int, prefix: str) -> list[dict]:
    """``n`` residents (Faker zh_CN names, valid resident IDs, phones, addresses, counties)."""
    rng, fake = random.Random(seed), Faker("zh_CN")
    fake.seed_instance(seed)
    people = []
    issued: set[tuple[str, dt.date, int]] = set()
    for p in range(n):
        sex = rng.choice("MF")
        birth = dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(365 * 65))
        county = rng.choice(COUNTIES)
        seq = rng.randrange(50, 999)
        seq += (seq % 2 == 0) == (sex == "M")  # odd sequence = male
        while (county, birth, seq % 1000) in issued:  # one resident ID number per resident
            seq += 2
        issued.add((county, birth, seq % 1000))
        people.append(
            {
                "person": f"{prefix}{p}",
                "name": fake.name_male() if sex == "M" else fake.name_female(),
                "sex": sex,
                "birth_date": birth,
                "resident_id": make_resident_id(county, birth, seq % 1000),
                "phone": make_phone(rng),
                "address": fake.street_address(),
                "insurance_no": None,
                "area_code": county,
            }
        )
    return people


def patient_records(people: list[dict], seed: int, day: dt.date, copies: tuple[int, ...]) -> list[dict]:
    """Each person seen at ``rng.choice(copies)`` institutions on ``day``; copies after the first carry a
    keying error, as clerks make them (``defect``; ``person`` is the truth)."""
    rng = random.Random(seed)
    rows: list[dict] = []
    for person in people:
        places = rng.sample(INSTITUTIONS, rng.choice(copies))
        for i, institution in enumerate(places):
            row = dict(person, institution_id=institution, defect="none")
            row["source_patient_id"] = f"{institution}-{person['person']}-{day:%m%d}"
            if i:
                defect = rng.choice(DEFECTS)
                row["defect"] = defect
                if defect == "homophone":
                    row["name"] = homophone_variant(row["name"], rng)
                elif defect == "swapped":
                    row["name"] = row["name"][1:] + row["name"][0]
                elif defect == "id_transposed":
                    row["resident_id"] = transpose_digits(row["resident_id"], rng)
                elif defect == "id_missing":
                    row["resident_id"] = None
                elif defect == "phone_new":
                    row["phone"] = make_phone(rng)
            row["event_time"] = dt.datetime.combine(day, dt.time(8)) + dt.timedelta(minutes=len(rows))
            rows.append(row)
    return rows


def write_patient_silver(spark: SparkSession, lake: str, rows: list[dict]) -> None:
    """Append patient records to silver.patient_record and their clear identifiers to vault.identity.

    As conform does: standardised, tokenised, clear values only in the vault. The rows go to Spark as one
    pandas frame (Arrow), so a million records take seconds, not minutes.
    """
    schema = (
        "institution_id string, source_patient_id string, resident_id string, name string, phone string, "
        "address string, insurance_no string, sex string, birth_date date, area_code string, "
        "event_time timestamp"
    )
    cols = [c.split()[0] for c in schema.split(", ")]
    frame = pd.DataFrame([tuple(r[c] for c in cols) for r in rows], columns=cols).astype(object)
    df = spark.createDataFrame(frame.where(frame.notna(), None), schema)
    df = (
        df.withColumnRenamed("event_time", "_event_time")
        .withColumn("source_record_id", F.col("source_patient_id"))
        .transform(standardize_patient_records)
        .transform(tokenize_columns, load_key(), IDENTIFIERS)
        .persist()
    )
    io.append(vault_rows(df, IDENTIFIERS), lake, VAULT_IDENTITY)
    io.append(drop_clear(df, IDENTIFIERS), lake, SILVER_PATIENT_RECORD)
    df.unpersist()
