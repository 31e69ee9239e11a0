"""Silver master data: the area hierarchy (``silver.area``) and the institution register
(``silver.institution``).

Source: the reference feed's CSV files (``areas.csv``, ``institutions.csv``) in ``bronze.csv_records``.
Gold rolls institutions up through these tables (institution → township → county → city → province), so
they are conformed like any other feed: checked by rules, upserted, a newer file superseding an older one.
A reference row's event time is the day its file landed, so the latest register wins a MERGE.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from healthlake.catalog import BRONZE_CSV_RECORDS
from healthlake.silver.common import bronze_provenance, csv_value

AREA_LEVELS = ("province", "city", "county", "township")
"""GB/T 2260 levels from the top; a township code has 9 digits, the others 6."""


def _landing_time() -> Column:
    return F.coalesce(F.to_timestamp("_landing_day"), F.col("_ingested_at"))


def areas_from_csv(records: DataFrame) -> DataFrame:
    """Areas from the reference feed's ``areas`` rows (key: the publisher and the area code)."""
    code = csv_value("area_code")
    return records.where(F.col("extract") == "areas").select(
        F.col("_institution_id").alias("institution_id"),
        code.alias("source_record_id"),
        code.alias("area_code"),
        csv_value("name").alias("name"),
        F.lower(csv_value("level")).alias("level"),
        csv_value("parent_code").alias("parent_code"),
        csv_value("lat").try_cast("double").alias("lat"),
        csv_value("lon").try_cast("double").alias("lon"),
        _landing_time().alias("_event_time"),
        *bronze_provenance(BRONZE_CSV_RECORDS),
    )


def institutions_from_csv(records: DataFrame) -> DataFrame:
    """Institutions from the reference feed's ``institutions`` rows (key: the institution's own id).

    ``area_code`` is where the institution sits (a township, a county, or a city for city-level
    hospitals and centres); ``county_code`` is NULL for institutions administered directly by a city.
    """
    iid = csv_value("institution_id")
    return records.where(F.col("extract") == "institutions").select(
        iid.alias("institution_id"),
        iid.alias("source_record_id"),
        csv_value("name").alias("name"),
        csv_value("kind").alias("kind"),
        csv_value("level").alias("level"),
        csv_value("area_code").alias("area_code"),
        csv_value("county_code").alias("county_code"),
        csv_value("city_code").alias("city_code"),
        csv_value("feed").alias("feed"),
        _landing_time().alias("_event_time"),
        *bronze_provenance(BRONZE_CSV_RECORDS),
    )
