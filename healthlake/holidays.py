"""China's public holidays (法定节假日): the days off the State Council's yearly notice fixes.

The days people stay away from clinics, so visit volumes fall (the generator plants it; the demand
features carry it). Weekend days moved to make up a holiday (调休) are working days and are not listed.
Extend ``PUBLIC_HOLIDAYS`` with each year's notice.
"""

from __future__ import annotations

import datetime as dt


def _days(first: str, last: str, name: str) -> dict[dt.date, str]:
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return {start + dt.timedelta(days=i): name for i in range((end - start).days + 1)}


PUBLIC_HOLIDAYS: dict[dt.date, str] = {
    **_days("2024-01-01", "2024-01-01", "元旦"),
    **_days("2024-02-10", "2024-02-17", "春节"),
    **_days("2024-04-04", "2024-04-06", "清明节"),
    **_days("2024-05-01", "2024-05-05", "劳动节"),
    **_days("2024-06-10", "2024-06-10", "端午节"),
    **_days("2024-09-15", "2024-09-17", "中秋节"),
    **_days("2024-10-01", "2024-10-07", "国庆节"),
    **_days("2025-01-01", "2025-01-01", "元旦"),
    **_days("2025-01-28", "2025-02-04", "春节"),
    **_days("2025-04-04", "2025-04-06", "清明节"),
    **_days("2025-05-01", "2025-05-05", "劳动节"),
    **_days("2025-05-31", "2025-06-02", "端午节"),
    **_days("2025-10-01", "2025-10-08", "国庆节、中秋节"),
    **_days("2026-01-01", "2026-01-03", "元旦"),
    **_days("2026-02-15", "2026-02-23", "春节"),
    **_days("2026-04-04", "2026-04-06", "清明节"),
    **_days("2026-05-01", "2026-05-05", "劳动节"),
    **_days("2026-06-19", "2026-06-21", "端午节"),
    **_days("2026-09-25", "2026-09-27", "中秋节"),
    **_days("2026-10-01", "2026-10-07", "国庆节"),
}
"""Date → holiday name, 2024–2026."""


def is_public_holiday(day: dt.date) -> bool:
    """Whether ``day`` is a public holiday day off."""
    return day in PUBLIC_HOLIDAYS
