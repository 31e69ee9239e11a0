"""A plain-Python reader of a generated landing zone, written independently of the generator.

Tests use it to check the generator's files against the standards (FHIR JSON, HL7 v2 ER7, CSV) and
its manifest against what is really on disk.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

HL7_CHARSETS = {"UNICODE UTF-8": "utf-8", "GBK": "gbk", "GB 18030-2000": "gb18030"}
_MSG_SPLIT = re.compile(rb"(?:\r\n|\r|\n)(?=MSH\|)")
_SEG_SPLIT = re.compile(r"\r\n|\r|\n")


@dataclass
class LandingFile:
    """One landing file: where it sits and what records it holds."""

    path: Path
    feed: str
    institution_id: str
    day: str
    records: list[bytes] = field(default_factory=list)  # raw bytes of each record
    parsed: list[object | None] = field(default_factory=list)  # parsed record, None when malformed
    encoding: str = "utf-8"
    mllp: bool = False
    separators: set[str] = field(default_factory=set)
    header: list[str] | None = None


def _csv_file(f: LandingFile, raw: bytes) -> None:
    for enc in ("utf-8", "gbk"):
        try:
            header = raw.split(b"\n", 1)[0].decode(enc)
            f.encoding = enc
            break
        except UnicodeDecodeError:
            continue
    lines = raw.rstrip(b"\n").split(b"\n")
    # A GBK file decodes its ASCII header as UTF-8 too: pick the codec that decodes most rows.
    ok = {enc: sum(1 for ln in lines[1:] if _decodes(ln, enc)) for enc in ("utf-8", "gbk")}
    f.encoding = max(ok, key=lambda e: (ok[e], e == "utf-8"))
    f.header = header.split(",")
    for line in lines[1:]:
        f.records.append(line)
        try:
            cells = line.decode(f.encoding).split(",")
        except UnicodeDecodeError:
            f.parsed.append(None)
            continue
        f.parsed.append(dict(zip(f.header, cells, strict=True)) if len(cells) == len(f.header) else None)


def _decodes(raw: bytes, enc: str) -> bool:
    try:
        raw.decode(enc)
        return True
    except UnicodeDecodeError:
        return False


def _hl7_file(f: LandingFile, raw: bytes) -> None:
    import hl7

    f.mllp = raw.startswith(b"\x0b")
    body = raw.replace(b"\x0b", b"").replace(b"\x1c\r", b"")
    if b"\r\n" in body:
        f.separators.add("\r\n")
    rest = body.replace(b"\r\n", b"")
    f.separators |= {sep for sep in ("\r", "\n") if sep.encode() in rest}
    for part in _MSG_SPLIT.split(body.strip(b"\r\n")):
        part = part.strip(b"\r\n")
        f.records.append(part)
        first = _SEG_SPLIT.split(part.decode("latin-1"), maxsplit=1)[0].split("|")
        enc = HL7_CHARSETS.get(first[17] if len(first) > 17 else "", "utf-8")
        f.encoding = enc
        try:
            text = part.decode(enc)
            msg = hl7.parse("\r".join(_SEG_SPLIT.split(text)))
            if len(first) < 12 or not str(msg.segment("MSH")[9]):
                raise ValueError("MSH without message type")
            f.parsed.append(msg)
        except (UnicodeDecodeError, ValueError, KeyError, IndexError):
            f.parsed.append(None)


def _json_file(f: LandingFile, raw: bytes) -> None:
    if f.path.suffix == ".json":
        bundle = json.loads(raw.decode("utf-8"))
        for entry in bundle["entry"]:
            f.records.append(json.dumps(entry["resource"]).encode())
            f.parsed.append(entry["resource"])
        f.header = ["bundle"]
        return
    for line in raw.rstrip(b"\n").split(b"\n"):
        f.records.append(line)
        try:
            f.parsed.append(json.loads(line.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError):
            f.parsed.append(None)


def read_landing(landing: str | Path) -> list[LandingFile]:
    """Read every file of a landing zone (``<feed>/<institution>/<day>/<file>``)."""
    out = []
    for path in sorted(Path(landing).glob("*/*/*/*")):
        feed, inst, day = path.parts[-4:-1]
        f = LandingFile(path, feed, inst, day)
        raw = path.read_bytes()
        if feed == "fhir":
            _json_file(f, raw)
        elif feed == "hl7v2":
            _hl7_file(f, raw)
        else:
            _csv_file(f, raw)
        out.append(f)
    return out


def feed_counts(files: list[LandingFile]) -> dict[str, Counter[str]]:
    """Per feed: files, records, malformed (unparseable) and duplicates.

    A duplicate is an exact repeat of a well-formed record the same institution already sent on the
    same feed, in the same file or in another (a re-send), whatever the order the files are read in.
    """
    counts: dict[str, Counter[str]] = {}
    seen: dict[tuple[str, str], set[bytes]] = {}
    for f in files:
        c = counts.setdefault(f.feed, Counter())
        c["files"] += 1
        c["records"] += len(f.records)
        c["malformed"] += sum(p is None for p in f.parsed)
        if f.header != ["bundle"]:
            sent = seen.setdefault((f.feed, f.institution_id), set())
            for rec, parsed in zip(f.records, f.parsed, strict=True):
                if parsed is not None and rec in sent:
                    c["duplicates"] += 1
                sent.add(rec)
    return counts
