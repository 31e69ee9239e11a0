"""Helpers shared by the silver entity modules: HL7 v2 field access, times, provenance, tokens.

HL7 v2 is parsed with Spark built-ins: a segment's fields come from ``regexp_extract`` + ``split`` on the
message text (segments separated by ``\\r``, as bronze stores them), components on ``^``, repetitions on
``~``, and escape sequences (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``) are decoded after splitting, each read
once from left to right. The accessors assume the standard delimiters ``|^~\\&``: a parser first rewrites
a message that declares others in its MSH-1/MSH-2 with ``with_standard_hl7_delimiters``.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from healthlake.localtime import local_instant, local_midnight, source_zone

SOURCE_COLUMNS = (
    "institution_id",
    "source_record_id",
    "_event_time",
    "_source_feed",
    "_bronze_table",
    "_bronze_version",
    "_source_file",
    "_record_offset",
    "_ingested_at",
)
"""Key, event time and provenance every silver row carries (back to its bronze row)."""


def hl7_segment(message: Column, name: str) -> Column:
    """The fields of the first ``name`` segment (``PID``, ``PV1`` …) as an array; element n is field n.

    Element 0 is the segment name, so ``try_element_at(fields, n + 1)`` is field n (MSH differs: use
    ``hl7_msh``)."""
    body = F.regexp_extract(message, rf"(?:^|\r){name}(\|[^\r]*)", 1)
    return F.when(body != "", F.split(F.concat(F.lit(name), body), r"\|", -1))


def each_hl7_segment(messages: DataFrame, name: str, alias: str) -> DataFrame:
    """One row per ``name`` segment of each message (every ``DG1``, every ``OBX``): its position in
    ``_n`` (0-based) and its field array in ``alias`` (indexed as in ``hl7_segment``)."""
    bodies = F.regexp_extract_all(F.col("raw"), F.lit(rf"(?:^|\r)({name}\|[^\r]*)"), 1)
    return messages.select("*", F.posexplode(bodies).alias("_n", "_segment_text")).withColumn(
        alias, F.split("_segment_text", r"\|", -1)
    )


def hl7_segment_record_id(parent: Column, name: str, fields: Column) -> Column:
    """The id of one repeated segment of an ``each_hl7_segment`` row: ``<parent>-<name>-<set id>``.

    The set id is field 1 (``DG1-1``, ``OBX-1``); a sender that leaves it empty gets the segment's
    1-based position instead, so the id stays stable when the same message is re-sent.
    """
    set_id = F.coalesce(hl7_field(fields, 1), (F.col("_n") + 1).cast("string"))
    return F.concat_ws("-", parent, F.lit(name), set_id)


def hl7_trigger() -> Column:
    """The trigger event of a message (``A01`` of ``ADT^A01``), from bronze's ``message_type``."""
    return F.regexp_extract(F.col("message_type"), r"\^(\w+)", 1)


def hl7_field(fields: Column, n: int) -> Column:
    """Field ``n`` of a segment's field array (NULL when absent or empty)."""
    value = F.try_element_at(fields, F.lit(n + 1))
    return F.when(value != "", value)


def hl7_component(field: Column, n: int, repetition: int = 1) -> Column:
    """Component ``n`` (1-based) of repetition ``repetition`` of a field, read by ``hl7_value``."""
    rep = F.try_element_at(F.split(field, "~", -1), F.lit(repetition))
    return hl7_value(F.try_element_at(F.split(rep, r"\^", -1), F.lit(n)))


def hl7_value(component: Column) -> Column:
    """The text of a component: its first subcomponent, escape sequences decoded; NULL when empty.

    A composite component reads as its first part (the surname of a family name ``EVERYMAN&&&&Aniston``,
    whose other parts are prefixes and a partner's surname). It is split on ``&`` before decoding, so an
    escaped ``\\T\\`` stays a literal ``&``.
    """
    # nullif, not when(x != "", x): the component's expression (split after split of the message) is
    # then evaluated once, not once per mention.
    return F.nullif(hl7_unescape(F.substring_index(component, "&", 1)), F.lit(""))


HL7_DELIMITERS = "|^~\\&"
"""The standard delimiters, in MSH-1/MSH-2 order: field, component, repetition, escape, subcomponent."""

# The escape sequence of each delimiter, by its place in ``HL7_DELIMITERS`` (HL7 v2 chapter 2.7):
# \F\ field separator, \S\ component, \R\ repetition, \E\ escape, \T\ subcomponent.
_ESCAPE_CODES = "FSRET"
# A value read as tokens, left to right: an escape sequence (an escape character, anything but a
# delimiter or a segment end, an escape character), a stretch of text, or a lone escape character. So
# ``\E\F\E\`` is ``\E\`` + ``F`` + ``\E\``, never ``\F\`` in the middle.
_TOKEN = r"\\[^|^~\\&\r]*\\|[^\\]+|\\"
# A message declaring other delimiters has them swapped for these private-use characters first (they do
# not occur in clinical text), so that its literal ``|^~\&`` and its delimiters can be told apart.
_MASKS = "\ue000\ue001\ue002\ue003\ue004"
_MASKED_ESCAPE = _MASKS[3]
_MASKED_TOKEN = (
    f"{_MASKED_ESCAPE}[^{_MASKS[0]}-{_MASKS[4]}\r]*{_MASKED_ESCAPE}|[^{_MASKED_ESCAPE}]+|{_MASKED_ESCAPE}"
)


def hl7_unescape(text: Column) -> Column:
    """Decode HL7 escape sequences: ``\\F\\``→``|``, ``\\S\\``→``^``, ``\\T\\``→``&``, ``\\R\\``→``~``,
    ``\\E\\``→``\\``, each read once, left to right (``\\E\\F\\E\\`` → ``\\F\\``).

    Other sequences (highlighting ``\\H\\``, hex ``\\X..\\``, formatting ``\\.br\\``) and an escape
    character without its closing one are kept as they are.
    """
    decoded = F.create_map(
        *[F.lit(x) for c, d in zip(_ESCAPE_CODES, HL7_DELIMITERS, strict=True) for x in (f"\\{c}\\", d)]
    )
    # One mention of ``text``, no shortcut for values without escapes: ``text`` is usually a deep
    # expression (split after split of the message), and each mention would evaluate it again.
    tokens = F.regexp_extract_all(text, F.lit(_TOKEN), 0)
    return F.array_join(F.transform(tokens, lambda t: F.coalesce(decoded[t], t)), "")


def _escaped(text: Column) -> Column:
    """Literal text written with the standard delimiters: ``|^~\\&`` become escape sequences."""
    out = F.replace(text, F.lit("\\"), F.lit("\\E\\"))  # first, so the added escapes stay as they are
    for char, code in zip(HL7_DELIMITERS, _ESCAPE_CODES, strict=True):
        if char != "\\":
            out = F.replace(out, F.lit(char), F.lit(f"\\{code}\\"))
    return out


def hl7_declared_delimiters(message: Column) -> Column:
    """The delimiters a message declares in MSH-1 and MSH-2, in the order of ``HL7_DELIMITERS``.

    An encoding character MSH-2 leaves out takes its standard value (as python-hl7 does); a fifth one (the
    truncation character of v2.7) is not a delimiter. A message whose start is no MSH declaration gets the
    standard ones.
    """
    declaration = r"^MSH([^\w\s])([^\w\s]*?)\1"
    separator = F.regexp_extract(message, declaration, 1)
    encoding = F.regexp_extract(message, declaration, 2)
    declared = [separator] + [
        F.coalesce(F.nullif(F.substr(encoding, F.lit(n), F.lit(1)), F.lit("")), F.lit(default))
        for n, default in enumerate(HL7_DELIMITERS[1:], start=1)
    ]
    return F.when(separator == "", F.lit(HL7_DELIMITERS)).otherwise(F.concat(*declared))


def hl7_standard_delimiters(message: Column) -> Column:
    """``message`` rewritten with the standard delimiters ``|^~\\&`` when its MSH-1/MSH-2 declare others.

    Each declared delimiter becomes the standard one; a literal ``|^~\\&`` in the text becomes its escape
    sequence; an escape sequence for a delimiter (``\\F\\`` with the declared escape character) becomes the
    character it stands for in that message (the declared field separator, written as an escape sequence if
    it is one of ``|^~\\&``); other sequences keep their text. A message with the standard delimiters comes
    back unchanged.
    """
    declared = hl7_declared_delimiters(message)

    def standard(token: Column) -> Column:
        code = F.substr(token, F.lit(2), F.length(token) - 2)  # F of \F\
        place = F.instr(F.lit(_ESCAPE_CODES), code)
        return (
            F.when(token == _MASKED_ESCAPE, _escaped(F.substr(declared, F.lit(4), F.lit(1))))  # lone: text
            .when(
                ~F.startswith(token, F.lit(_MASKED_ESCAPE)),
                F.translate(_escaped(token), _MASKS, HL7_DELIMITERS),
            )
            .when((F.length(code) == 1) & (place > 0), _escaped(F.substr(declared, place, F.lit(1))))
            .otherwise(F.concat(F.lit("\\"), code, F.lit("\\")))
        )

    masked = F.call_function("translate", message, declared, F.lit(_MASKS))
    rewritten = F.array_join(F.transform(F.regexp_extract_all(masked, F.lit(_MASKED_TOKEN), 0), standard), "")
    # Nearly every message starts with the standard declaration: it is not looked at further.
    is_standard = F.startswith(message, F.lit(f"MSH{HL7_DELIMITERS}")) | (declared == HL7_DELIMITERS)
    return F.when(is_standard, message).otherwise(rewritten)


def with_standard_hl7_delimiters(messages: DataFrame) -> DataFrame:
    """Bronze HL7 rows with ``raw`` rewritten by ``hl7_standard_delimiters``, for the accessors here."""
    return messages.withColumn("raw", hl7_standard_delimiters(F.col("raw")))


def hl7_repetition_with(field: Column, component: int, value: str) -> Column:
    """The first repetition of ``field`` whose component ``component`` equals ``value`` (e.g. PID-3 type
    ``NI``), as a component array."""
    reps = F.transform(F.split(field, "~", -1), lambda r: F.split(r, r"\^", -1))
    return F.try_element_at(
        F.filter(reps, lambda c: F.try_element_at(c, F.lit(component)) == value), F.lit(1)
    )


def hl7_patient_number(message: Column) -> Column:
    """The institution's patient number: the ``PID-3`` repetition typed ``MR`` (else the first one)."""
    ids = hl7_field(hl7_segment(message, "PID"), 3)
    mrn = F.try_element_at(hl7_repetition_with(ids, 5, "MR"), F.lit(1))
    return F.coalesce(hl7_value(mrn), hl7_component(ids, 1))


def hl7_visit_number(message: Column) -> Column:
    """The visit (encounter) number, ``PV1-19``."""
    return hl7_component(hl7_field(hl7_segment(message, "PV1"), 19), 1)


def hl7_time(value: Column, zone: str | None = None) -> Column:
    """An HL7 TS (``yyyyMMddHHmm[ss][+hhmm]``) as a timestamp; without an offset it is ``zone``'s wall
    clock (a date alone, its local midnight); ``zone`` defaults to ``source_zone()``."""
    zone = zone or source_zone()
    v = F.regexp_replace(value, r"\.\d+", "")  # fractional seconds
    with_offset = F.coalesce(
        F.try_to_timestamp(v, F.lit("yyyyMMddHHmmssZ")),
        F.try_to_timestamp(v, F.lit("yyyyMMddHHmmZ")),
    )
    local = F.coalesce(
        F.try_to_timestamp(v, F.lit("yyyyMMddHHmmss")),
        F.try_to_timestamp(v, F.lit("yyyyMMddHHmm")),
        F.try_to_timestamp(v, F.lit("yyyyMMdd")),
    )
    return F.coalesce(with_offset, local_instant(local, zone))


def hl7_date(value: Column) -> Column:
    """An HL7 DT/TS as a date (its first eight digits)."""
    return F.try_to_date(F.substring(value, 1, 8), "yyyyMMdd")


def local_time(value: Column, zone: str | None = None) -> Column:
    """A ``yyyy-MM-dd HH:mm[:ss]`` wall-clock time of ``zone`` (CSV extracts) as a timestamp; a date alone
    is its local midnight; ``zone`` defaults to ``source_zone()``."""
    zone = zone or source_zone()
    ts = F.coalesce(
        F.try_to_timestamp(value, F.lit("yyyy-MM-dd HH:mm:ss")),
        F.try_to_timestamp(value, F.lit("yyyy-MM-dd HH:mm")),
        F.try_to_timestamp(value, F.lit("yyyy-MM-dd")),
    )
    return local_instant(ts, zone)


def fhir_time(value: Column, zone: str | None = None) -> Column:
    """A FHIR dateTime/instant (ISO 8601) as a timestamp.

    With an offset (``Z``, ``+08:00``) it is the instant named. A date alone (``2026-01-05``, ``2026-01``,
    ``2026``) means that day (month, year) in the region: the instant of its local midnight in ``zone``;
    a time without offset (which FHIR forbids, but senders write) is ``zone``'s wall clock. ``zone``
    defaults to ``source_zone()``.
    """
    zone = zone or source_zone()
    v = F.trim(value)
    instant = F.coalesce(F.try_to_timestamp(v), F.try_to_timestamp(v, F.lit("yyyy-MM-dd'T'HH:mm:ssXXX")))
    has_offset = v.rlike(r"T.*(Z|[+-]\d{2}:?\d{2})$")
    date_only = v.rlike(r"^\d{4}(-\d{2}){0,2}$")
    day = F.coalesce(F.try_to_date(v, "yyyy-MM-dd"), F.try_to_date(v, "yyyy-MM"), F.try_to_date(v, "yyyy"))
    return (
        F.when(date_only, local_midnight(day, zone))
        .when(has_offset, instant)
        .otherwise(local_instant(instant, zone))
    )


def fhir_reference_id(reference: Column) -> Column:
    """The id a FHIR reference points to.

    A ``urn:uuid:…`` (or any full URL) of an entry of the same Bundle resolves to that entry's resource
    id through ``_bundle_refs`` (see ``with_bundle_references``); otherwise the id is the reference's last
    part: ``Patient/123`` → ``123``, ``http://x/fhir/Patient/123/_history/2`` → ``123``.
    """
    relative = F.regexp_extract(F.regexp_replace(reference, r"/_history/[^/]+$", ""), r"([^/:]+)$", 1)
    return F.coalesce(F.col("_bundle_refs")[reference], F.nullif(relative, F.lit("")))


def with_bundle_references(resources: DataFrame) -> DataFrame:
    """Add ``_bundle_refs``: for a Bundle entry, its Bundle's map of entry ``fullUrl`` → resource id.

    Transaction Bundles reference each other's entries by ``urn:uuid:`` full URLs, which only the Bundle
    itself can resolve. All entries of a Bundle come from one file, ingested in one bronze commit, so the
    map is built per file from the rows at hand. Rows outside a Bundle get NULL.

    Only the entries that need it are in the map: a full URL whose last part is the resource id itself
    (Synthea's ``urn:uuid:<id>``, a server's ``…/Patient/<id>``) resolves without it in
    ``fhir_reference_id``. Why it matters: every row of a Bundle carries the map, so a map of all
    entries grows with the square of the Bundle's size (a real 300-entry Bundle: 90,000 map entries),
    and that ran conform out of memory on the public Synthea sample.
    """
    full_url, resource_id = F.col("entry_full_url"), F.col("resource_id")
    tail = F.regexp_extract(F.regexp_replace(full_url, r"/_history/[^/]+$", ""), r"([^/:]+)$", 1)
    refs = (
        resources.where(full_url.isNotNull() & resource_id.isNotNull() & (tail != resource_id))
        .groupBy("_source_file")
        .agg(
            F.map_from_entries(F.collect_list(F.struct("entry_full_url", "resource_id"))).alias(
                "_bundle_refs"
            )
        )
    )
    return resources.join(refs, "_source_file", "left")


def csv_value(name: str) -> Column:
    """A CSV field by header name from bronze's ``record`` map, trimmed; empty → NULL."""
    value = F.trim(F.col("record")[name])
    return F.when(value != "", value)


def case_of(column: Column, values: Mapping[str, Column]) -> Column:
    """``values[v]`` where ``column`` is ``v`` (NULL for any other value): one CASE, in ``values`` order.

    Lets one projection read sources whose rows differ by a kind column (a CSV row's ``extract``) where a
    union of one projection per kind would have Spark plan, generate and JIT-compile every expression
    above it once per branch.
    """
    chosen: Column | None = None
    for value, then in values.items():
        chosen = F.when(column == value, then) if chosen is None else chosen.when(column == value, then)
    if chosen is None:
        raise ValueError("case_of needs at least one value")
    return chosen


def bronze_provenance(bronze_table: str) -> list[Column]:
    """Provenance columns taken from a bronze change-feed row."""
    return [
        F.col("_source_feed"),
        F.lit(bronze_table).alias("_bronze_table"),
        F.col("_commit_version").alias("_bronze_version"),
        F.col("_source_file"),
        F.col("_record_offset"),
        F.col("_ingested_at"),
    ]
