"""Real FHIR at size: ~600 Synthea R4 bundles (~650 MB) through ``healthlake ingest`` and ``conform``.

The public Synthea R4 sample (587 bundles, 657 MB, 182,416 resources) is not in ``../shared/testdata``;
its 20 bundles are. Each bundle made here joins ``--per-bundle`` of them on average (4.5 by default:
600 bundles come to ~650 MB, indented as Synthea writes them, and ~260,000 resources, more than the
sample's 182,416) with every UUID replaced by a fresh one (resource ids, ``urn:uuid:``
full URLs and the references to them stay consistent within a bundle, and no two bundles share an id).

Each stage runs as its own ``healthlake`` command, as a user runs it, with the default local settings
(``conf/local.yaml``: ``local[*]``, 4 GiB driver), timed wall-clock with the peak resident memory of its
process tree. Same-run yardsticks on the same files, in one Spark session of the same settings: the
whole files copied into Delta (one row per file), and each bundle turned into one row per entry with
``from_json`` + ``posexplode`` into Delta (parse only: no resource fields, provenance or quarantine).

    HEALTHLAKE_HMAC_KEY=... python benchmarks/fhir_scale.py --bundles 600 [--work DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

SYNTHEA = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "fhir" / "synthea-r4-bundles"
ROOT = Path(__file__).resolve().parents[1]
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
NAMESPACE = uuid.UUID("0c6f6a0e-6a55-4d2b-9a43-3d1f1b0b9a51")


def make_bundles(out: Path, n: int, per_bundle: float, seed: int = 29) -> tuple[int, int]:
    """Write ``n`` bundles of ``per_bundle`` sample bundles each, fresh UUIDs; returns (bytes, entries).

    Written indented, as Synthea writes them (the sample's 657 MB are indented JSON too).
    """
    sources = sorted(SYNTHEA.glob("*.json"))
    if not sources:
        raise SystemExit(f"no Synthea bundles in {SYNTHEA}")
    texts = [p.read_text(encoding="utf-8") for p in sources]
    rng = random.Random(seed)
    folder = out / "fhir" / "SYNTHEA" / "2026-01-01"
    folder.mkdir(parents=True, exist_ok=True)
    total_bytes = total_entries = 0
    for i in range(n):
        entries = []
        # A fractional count: that share of bundles joins one more sample bundle.
        k = int(per_bundle) + (rng.random() < per_bundle - int(per_bundle))
        for j, text in enumerate(rng.sample(texts, k)):
            fresh = _UUID.sub(lambda m, k=f"{i}/{j}": str(uuid.uuid5(NAMESPACE, f"{k}/{m.group(0)}")), text)
            entries += json.loads(fresh)["entry"]
        bundle = {
            "resourceType": "Bundle",
            "id": str(uuid.uuid5(NAMESPACE, f"bundle/{i}")),
            "type": "transaction",
            "entry": entries,
        }
        data = json.dumps(bundle, ensure_ascii=False, indent=2).encode("utf-8")
        (folder / f"bundle_{i:05d}.json").write_bytes(data)
        total_bytes += len(data)
        total_entries += len(entries)
    return total_bytes, total_entries


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Run a command; return (seconds, peak RSS of its process tree in GiB, exit code)."""
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak[0] = max(peak[0], sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    seconds = time.perf_counter() - started
    sampler.join()
    if proc.returncode:
        print(output[-4000:], file=sys.stderr)
    return seconds, peak[0] / 2**30, proc.returncode


_YARDSTICKS = r"""
import sys, time
from pyspark.sql import functions as F
from healthlake.config import load_config
from healthlake.spark import get_spark
landing, out = sys.argv[1], sys.argv[2]
spark = get_spark("fhir-yardsticks", load_config())
files = spark.read.format("binaryFile").load(landing + "/fhir/*/*/*.json")
started = time.perf_counter()
files.write.format("delta").mode("overwrite").save(out + "/copy")
copy = time.perf_counter() - started
schema = "struct<entry: array<struct<fullUrl: string, resource: string>>>"
started = time.perf_counter()
bundles = files.select("path", F.from_json(F.decode("content", "UTF-8"), schema).alias("b"))
entries = bundles.select("path", F.posexplode("b.entry").alias("pos", "e")).select(
    "path", "pos", "e.fullUrl", "e.resource"
)
entries.write.format("delta").mode("overwrite").save(out + "/entries")
parse = time.perf_counter() - started
rows = spark.read.format("delta").load(out + "/entries").count()
print(f"{copy:.1f} {parse:.1f} {rows}")
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundles", type=int, default=600)
    parser.add_argument("--per-bundle", type=float, default=4.5, help="sample bundles joined per bundle")
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--no-yardsticks", action="store_true")
    args = parser.parse_args(argv)
    if not os.environ.get("HEALTHLAKE_HMAC_KEY"):
        raise SystemExit("set HEALTHLAKE_HMAC_KEY (any 32+ characters for a benchmark)")
    work = args.work or Path(tempfile.mkdtemp(prefix="fhir-scale-"))
    landing, lake = work / "landing", work / "lake"
    try:
        if not landing.is_dir():
            started = time.perf_counter()
            size, entries = make_bundles(landing, args.bundles, args.per_bundle)
            print(
                f"made {args.bundles} bundles, {size / 1e6:.0f} MB, {entries:,} resources "
                f"in {time.perf_counter() - started:.0f} s",
                flush=True,
            )
        shutil.rmtree(lake, ignore_errors=True)
        cli = [str(Path(sys.executable).with_name("healthlake"))]
        env = dict(os.environ)
        rows = []
        for stage, extra in (("ingest", ["--landing", str(landing)]), ("conform", [])):
            seconds, peak, code = _timed([*cli, stage, "--lake", str(lake), *extra], env)
            rows.append((stage, seconds, peak, code))
            print(f"{stage:<10} {seconds:7.1f} s  peak {peak:4.1f} GiB  exit {code}", flush=True)
            if code:
                break
        if not args.no_yardsticks:
            out = work / "yardsticks"
            shutil.rmtree(out, ignore_errors=True)
            result = subprocess.run(
                [sys.executable, "-c", _YARDSTICKS, str(landing), str(out)],
                env={**env, "PYTHONPATH": str(ROOT)},
                capture_output=True,
                text=True,
            )
            if result.returncode:
                print(result.stderr[-3000:], file=sys.stderr)
            else:
                copy, parse, entries = result.stdout.split()[-3:]
                print(f"yardsticks: file copy {copy} s, bundle -> entries {parse} s ({int(entries):,} rows)")
        total = sum(s for _, s, _, _ in rows)
        print(f"bronze + silver: {total:.1f} s")
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
