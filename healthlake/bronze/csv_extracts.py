"""CSV feeds → ``bronze.csv_records`` (grassroots extracts, public-health files, reference data) and
``bronze.location_pings``.

Each row keeps its exact text and a ``record`` map of header → value, so a column an institution adds
later (schema drift) is kept, not dropped. A file's charset is the configured one that decodes most of its
lines (UTF-8 first, then GBK): one broken line cannot flip a whole file to the wrong charset. A quoted
field may hold line breaks (RFC 4180): its record stays one row.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from healthlake.bronze.common import (
    LATIN1,
    PROVENANCE_COLUMNS,
    bytes_as_latin1,
    decode_as,
    is_valid_utf8,
    latin1_bytes,
    split_lines,
    undecodable,
    utf8_text,
    without_cr,
)

CSV_COLUMNS = ["extract", "header", "record", "raw"]
PING_FIELDS = ("phone", "ts", "lat", "lon", "accuracy_m")
PING_COLUMNS = [*PING_FIELDS, "raw"]

_CONTEXT = [*PROVENANCE_COLUMNS[:3], "_batch_id", "_ingested_at", "_landing_day"]
_SPLIT_OUTSIDE_QUOTES = ',(?=(?:[^"]*"[^"]*")*[^"]*$)'
_NUL = "\u0000"
# Stands in for a line break inside a quoted field while a file is split into lines: a Unicode
# noncharacter, which no CSV text holds (a file that does is read line by line).
_QUOTED_BREAK = "\ufdd0"


def _fields(line: Column) -> Column:
    """Split a CSV line on commas outside double quotes and unquote each field (RFC 4180).

    Most lines hold no quote at all: they take a plain split, which is much cheaper. A quoted line has its
    separating commas turned into NUL, its fields' enclosing quotes dropped and doubled quotes undoubled,
    then is split on NUL: built-ins only, no lambda, so the whole parse stays in one generated-code stage.
    (A line that itself holds a NUL byte gets an extra field, so its field count flags it.)
    """
    separated = F.regexp_replace(line, _SPLIT_OUTSIDE_QUOTES, _NUL)
    unquoted = F.regexp_replace(separated, f'(^|{_NUL})"((?:[^"]|"")*)"(?={_NUL}|$)', "$1$2")
    quoted = F.split(F.regexp_replace(unquoted, '""', '"'), _NUL, -1)
    return F.when(F.instr(line, '"') > 0, quoted).otherwise(F.split(line, ",", -1))


def _quotes_pair_up(content: Column) -> Column:
    """True when a file's bytes hold quotes, an even number of them, and no ``_QUOTED_BREAK``.

    Only then can a line break inside a quoted field be told from one between records: with a stray
    quote (``5" tall``), the file is read line by line and only the broken lines are rejected, instead of
    the rest of the file becoming one record. Checked on the bytes (a quote byte is never part of a UTF-8,
    GBK or GB18030 character), so most files, which hold no quote, cost one scan and no decoding.
    """
    # `contains` on binary is a plain byte loop; `instr` on text steps through characters, ~1 s more
    # for 7.6 M pings.
    n_parts = F.size(F.split(content.cast("string"), '"', -1))
    no_stand_in = ~F.contains(content, F.lit(bytearray(_QUOTED_BREAK.encode())))
    return F.contains(content, F.lit(bytearray(b'"'))) & (n_parts % 2 == 1) & no_stand_in


def _quoted_breaks_hidden(text: Column) -> Column:
    """``text`` with every ``\\n`` inside a quoted field replaced by ``_QUOTED_BREAK``.

    Split on ``"``, the parts at odd places are inside quotes (a doubled quote gives an empty part, which
    keeps the count right); the text is joined back with the same quotes. One pass, built-ins only.
    """

    def hidden(part: Column, place: Column) -> Column:
        return F.when(place % 2 == 1, F.replace(part, F.lit("\n"), F.lit(_QUOTED_BREAK))).otherwise(part)

    return F.array_join(F.transform(F.split(text, '"', -1), hidden), '"')


def _quoted_breaks_restored(line: Column) -> Column:
    """A line of a file whose quoted line breaks were hidden, with them back (``_quoted_breaks`` rows)."""
    restored = F.replace(line, F.lit(_QUOTED_BREAK), F.when(F.col("_cr_only"), "\r").otherwise("\n"))
    return F.when(F.col("_quoted_breaks"), restored).otherwise(line)


def _has_cr_line_breaks_only(content: Column) -> Column:
    """True for a file whose lines end in a lone ``\\r`` (classic Mac; Excel for Mac's CSV export).

    Such a file holds no ``\\n`` at all, and would otherwise be one long header line with no records.
    A usual file has its first ``\\n`` within its first line, so the check stops there.
    """
    return ~F.contains(content, F.lit(bytearray(b"\n"))) & F.contains(content, F.lit(bytearray(b"\r")))


def _with_lf_line_breaks(content: Column) -> Column:
    """A ``_cr_only`` file's bytes with each ``\\r`` made ``\\n``; any other file's bytes as they are.

    Done once on the bytes (seen as ISO-8859-1, so exact), before anything splits the file into lines.
    A ``\\r`` inside a quoted field is put back by ``_quoted_breaks_restored``.
    """
    as_lf = latin1_bytes(F.replace(F.decode(content, LATIN1), F.lit("\r"), F.lit("\n")))
    return F.when(F.col("_cr_only"), as_lf).otherwise(content)


def _line_text(line: Column) -> Column:
    """A line's text: as is when its file was decoded whole, else its bytes decoded with ``_charset``."""
    return F.when(F.col("_decoded"), line).otherwise(decode_as(latin1_bytes(line), F.col("_charset")))


def _extract_name(file_name: Column) -> Column:
    """The extract a file holds: its name less extension and date suffix (``visits_20260105_s0001``)."""
    stem = F.regexp_replace(file_name, r"\.[^.]*$", "")
    return F.regexp_replace(stem, r"_\d{8}.*$", "")


def parse_csv(files: DataFrame, *, encodings: tuple[str, ...] = ("UTF-8", "GBK")) -> DataFrame:
    """Split CSV files into rows keyed by their header; rejected rows carry ``_reject_reason``.

    Args:
        files: Landing files with provenance, ``_batch_id`` and ``_ingested_at``.
        encodings: Charsets to choose from, in order; the first is preferred when lines decode with both.
    """
    rows = _csv_rows(files, encodings)
    reason = F.col("_reject_reason")
    return rows.select(
        *_CONTEXT,
        "_record_offset",
        "extract",
        "header",
        F.when(reason.isNull(), F.map_from_arrays("_names", "_values")).alias("record"),
        F.col("_text").alias("raw"),
        reason,
        _raw_of_rejects(reason),
    )


def _raw_of_rejects(reason: Column) -> Column:
    """A rejected line's exact bytes (NULL for accepted lines: only quarantine keeps bytes)."""
    line = F.col("_line")
    raw = F.when(F.col("_decoded"), F.encode(line, "UTF-8")).otherwise(latin1_bytes(line))
    return F.when(reason.isNotNull(), raw).alias("_raw")


def _csv_rows(files: DataFrame, encodings: tuple[str, ...], positions: tuple[str, ...] = ()) -> DataFrame:
    """One row per non-blank data line: its text, file header and ``_reject_reason``.

    ``_values`` holds the fields of accepted lines. Each line is split once (``_split``) and the reason
    counts the fields of that split (Spark's plans for the parse and for ``accepted`` each hold one
    split). ``positions`` adds ``_at_<name>``, that name's 1-based place in the header (0: none),
    computed once per file.
    """
    utf8 = encodings[0].upper().replace("UTF8", "UTF-8") == "UTF-8"
    fallback = encodings[1].upper() if len(encodings) > 1 else encodings[0].upper()
    lines = split_lines(bytes_as_latin1(F.col("content")))
    # A file that is valid UTF-8 as a whole is UTF-8 (one check, the common case). Otherwise only lines
    # with non-ASCII bytes tell charsets apart: the file is UTF-8 unless most of them are not valid UTF-8.
    telling = F.filter(lines, lambda ln: F.octet_length(ln) != F.length(ln))  # has a byte >= 0x80
    n_utf8 = F.size(F.filter(telling, lambda ln: is_valid_utf8(latin1_bytes(ln))))
    if len(encodings) == 1:
        charset = F.lit(encodings[0].upper())
    elif utf8:
        charset = (
            F.when(is_valid_utf8(F.col("content")), F.lit("UTF-8"))
            .when(n_utf8 * 2 >= F.size(telling), F.lit("UTF-8"))
            .otherwise(F.lit(fallback))
        )
    else:
        charset = F.lit(encodings[0].upper())
    # A UTF-8 file that decodes cleanly is decoded once as a whole and split into lines; any other file
    # is split on its bytes (seen as ISO-8859-1) and each line decoded with the file's charset.
    decoded = (F.col("_charset") == "UTF-8") & is_valid_utf8(F.col("content"))

    def records(text: Column) -> Column:
        return F.when(F.col("_quoted_breaks"), _quoted_breaks_hidden(text)).otherwise(text)

    # The header is taken from each file's own first line (no join): every row knows its file's columns.
    rows = (
        files.select(
            *_CONTEXT,
            "content",
            _extract_name(F.col("_file_name")).alias("extract"),
            _has_cr_line_breaks_only(F.col("content")).alias("_cr_only"),
        )
        .withColumn("content", _with_lf_line_breaks(F.col("content")))
        .withColumns({"_charset": charset, "_quoted_breaks": _quotes_pair_up(F.col("content"))})
        .withColumn("_decoded", decoded)
        .select(
            *_CONTEXT,
            "extract",
            "_charset",
            "_decoded",
            "_cr_only",
            "_quoted_breaks",
            F.when(F.col("_decoded"), split_lines(records(utf8_text(F.col("content")))))
            .otherwise(split_lines(records(bytes_as_latin1(F.col("content")))))
            .alias("_lines"),
        )
        .withColumn(
            "header",
            _line_text(without_cr(_quoted_breaks_restored(F.try_element_at("_lines", F.lit(1))))),
        )
        .withColumn("_names", _fields(F.col("header")))
        .withColumn("_duplicate_names", F.size(F.array_distinct("_names")) != F.size("_names"))
        .withColumns({f"_at_{n}": F.array_position("_names", n).cast("int") for n in positions})
        .select(
            *_CONTEXT,
            "extract",
            "_charset",
            "_decoded",
            "_cr_only",
            "_quoted_breaks",
            "header",
            "_names",
            "_duplicate_names",
            *[f"_at_{n}" for n in positions],
            # outer: an inner explode makes Spark add a filter on `_lines` that splits every file twice
            F.posexplode_outer("_lines").alias("_record_offset", "_line"),
        )
        .withColumn("_line", without_cr(_quoted_breaks_restored(F.col("_line"))))
        .where((F.col("_record_offset") > 0) & (F.trim(F.col("_line")) != ""))
        .withColumn("_text", _line_text(F.col("_line")))
        .withColumn("_split", _fields(F.col("_text")))
    )
    text = F.col("_text")
    n_fields = F.size("_split")
    reason = (
        F.when(undecodable(text), F.concat(F.lit("undecodable: bytes invalid in "), "_charset"))
        .when(
            n_fields != F.size("_names"),
            F.format_string("csv: %d fields, header has %d", n_fields, F.size("_names")),
        )
        .when(F.col("_duplicate_names"), F.lit("csv: duplicate names in header"))
    )
    return rows.withColumn("_reject_reason", reason).withColumn(
        "_values", F.when(F.col("_reject_reason").isNull(), F.col("_split"))
    )


def parse_pings(files: DataFrame) -> DataFrame:
    """Location pings: CSV rows with ``phone, ts, lat, lon, accuracy_m`` kept as sent (strings)."""
    rows = _csv_rows(files, ("UTF-8",), PING_FIELDS)
    reason = F.coalesce(
        F.col("_reject_reason"),
        F.when(F.col(f"_at_{PING_FIELDS[0]}") == 0, F.lit("location: header has no phone column")),
    )
    values = F.col("_values")
    # Fields by their place in the file's header: cheaper than a map per row, same result.
    fields = [
        F.when(reason.isNull() & (F.col(f"_at_{f}") > 0), F.element_at(values, F.col(f"_at_{f}"))).alias(f)
        for f in PING_FIELDS
    ]
    return rows.select(
        *_CONTEXT,
        "_record_offset",
        *fields,
        F.col("_text").alias("raw"),
        reason.alias("_reject_reason"),
        _raw_of_rejects(reason),
    )
