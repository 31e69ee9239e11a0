"""The ``healthlake`` command: generate a synthetic region, run the pipeline stages, show the lake's status.

Every user error prints one line ``healthlake: error: …`` to stderr and exits 2; an unexpected failure
prints one line and exits 1 (``-v`` shows its traceback). Logs go to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from healthlake import __version__
from healthlake.config import Config, is_uri, load_config
from healthlake.errors import HealthlakeError, UsageError
from healthlake.logs import configure_logging, output, progress

logger = logging.getLogger("healthlake.cli")  # not __name__: also run as __main__

PROG = "healthlake"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
STATUS_COLUMNS = ("layer", "table", "version", "rows", "last_operation", "last_time")
MANIFEST_COLUMNS = ("files", "records", "malformed", "duplicates")
COMMAND_LINE = "command line"


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises UsageError instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        """Raise the argparse error as a one-line UsageError."""
        raise UsageError(message)


def main(argv: list[str] | None = None) -> int:
    """Run the ``healthlake`` command.

    Args:
        argv: Arguments without the program name; default ``sys.argv[1:]``.

    Returns:
        The exit code: 0 on success, 2 on a user error, 1 on an unexpected failure.
    """
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        return _error(exc)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    verbose = getattr(args, "verbose", 0)
    configure_logging(verbose)
    try:
        return int(args.func(args))
    except HealthlakeError as exc:
        return _error(exc)
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except Exception as exc:
        if verbose:
            raise
        sys.stderr.write(f"{PROG}: failed: {describe_failure(exc)}\n")
        return EXIT_FAILURE


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``healthlake`` command and its subcommands."""
    parser = _Parser(prog=PROG, description="Generate a synthetic region, run the pipeline, show the lake.")
    _verbose_argument(parser, default=0)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    generate = commands.add_parser("generate", help="write a synthetic region's feeds to a landing zone")
    generate.add_argument(
        "--landing", required=True, metavar="DIR", help="landing zone to write the feeds to"
    )
    generate.add_argument("--truth", required=True, metavar="DIR", help="where the ground truth goes")
    generate.add_argument("--people", type=int, metavar="N", help="residents (synth.people)")
    generate.add_argument("--days", type=int, metavar="D", help="days of activity (synth.days)")
    generate.add_argument("--start", type=parse_date, metavar="YYYY-MM-DD", help="first day (synth.start)")
    generate.add_argument("--seed", type=int, metavar="S", help="random seed (synth.seed)")
    generate.add_argument(
        "--followup-history-days",
        type=int,
        metavar="D",
        help="chronic follow-up history before the first day, sent on day one (synth.followup_history_days)",
    )
    generate.add_argument(
        "--inpatient-history-days",
        type=int,
        metavar="D",
        help="inpatient stays before the first day, sent on day one (synth.inpatient_history_days)",
    )
    generate.add_argument(
        "--visit-history-days",
        type=int,
        metavar="D",
        help="outpatient and emergency visits before day one, sent on day one (synth.visit_history_days)",
    )
    _conf_argument(generate)
    _verbose_argument(generate)
    generate.set_defaults(func=cmd_generate)

    for name, func, text in (
        ("ingest", cmd_ingest, "landing zone → bronze, each new file exactly once"),
        ("run", cmd_run, "run every pipeline stage in order, then status"),
    ):
        verb = commands.add_parser(name, help=text)
        _conf_argument(verb)
        verb.add_argument("--landing", metavar="DIR", help="landing zone to ingest (landing_root)")
        verb.add_argument("--lake", metavar="DIR", help="lake root (lake_root)")
        _verbose_argument(verb)
        verb.set_defaults(func=func)

    conform = commands.add_parser("conform", help="bronze → silver (+ quarantine, vault), new rows only")
    _conf_argument(conform)
    conform.add_argument("--lake", metavar="DIR", help="lake root (lake_root)")
    _verbose_argument(conform)
    conform.set_defaults(func=cmd_conform)

    link = commands.add_parser("link", help="EMPI: link source patient records to persons (silver.person*)")
    _conf_argument(link)
    link.add_argument("--lake", metavar="DIR", help="lake root (lake_root)")
    link.add_argument("--full", action="store_true", help="retrain the model and link every record again")
    link.add_argument(
        "--accept",
        action="append",
        default=[],
        metavar="REVIEW_ID",
        help="a silver.empi_review pair is one person",
    )
    link.add_argument(
        "--reject",
        action="append",
        default=[],
        metavar="REVIEW_ID",
        help="a silver.empi_review pair is two persons",
    )
    _verbose_argument(link)
    link.set_defaults(func=cmd_link)

    publish = commands.add_parser(
        "publish",
        help="silver → gold (changes only after the first run); research.* and omop.* releases",
    )
    _conf_argument(publish)
    publish.add_argument("--lake", metavar="DIR", help="lake root (lake_root)")
    publish.add_argument(
        "--full", action="store_true", help="rebuild every table, not only what silver changed"
    )
    publish.add_argument(
        "--extracts",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=(
            "rebuild (or with --no-extracts, keep) the research zone and OMOP export; by default they are "
            "rebuilt on the first and on full runs and when research.release changes"
        ),
    )
    _verbose_argument(publish)
    publish.set_defaults(func=cmd_publish)

    epidemic = commands.add_parser(
        "epidemic",
        help="silver + gold → epidemic control: cases, contacts, risk persons, codes (docs/epidemic.md)",
    )
    _conf_argument(epidemic)
    epidemic.add_argument(
        "action",
        nargs="?",
        choices=("run", "export", "import"),
        default="run",
        help=(
            "run (default): update the tables; export: write the risk persons last seen in --to-region to "
            "--out; import FILE: land a list received from --from-region and ingest it"
        ),
    )
    epidemic.add_argument("file", nargs="?", metavar="FILE", help="import: the list another region sent")
    epidemic.add_argument("--to-region", metavar="CODE", help="export: the receiving region's GB/T 2260 code")
    epidemic.add_argument("--from-region", metavar="CODE", help="import: the sending region's GB/T 2260 code")
    epidemic.add_argument("--out", metavar="FILE", help="export: the list file to write (must not exist)")
    epidemic.add_argument("--format", choices=("csv", "parquet"), default="csv", help="export: file format")
    epidemic.add_argument("--landing", metavar="DIR", help="import: landing root (landing_root)")
    epidemic.add_argument("--lake", metavar="DIR", help="lake root (lake_root)")
    epidemic.add_argument(
        "--as-of",
        type=parse_date,
        metavar="YYYY-MM-DD",
        help="the local day the tables run up to (default: the last day of testing or vaccination)",
    )
    epidemic.add_argument("--full", action="store_true", help="rebuild every table, not only what changed")
    _verbose_argument(epidemic)
    epidemic.set_defaults(func=cmd_epidemic)

    features = commands.add_parser(
        "features", help="gold + silver → the models' point-in-time feature tables (docs/models.md)"
    )
    _conf_argument(features)
    features.add_argument("--lake", metavar="DIR", help="lake root (lake_root)")
    features.add_argument("--full", action="store_true", help="rebuild every table, whatever the log says")
    _verbose_argument(features)
    features.set_defaults(func=cmd_features)

    train = commands.add_parser(
        "train", help="train MODEL on its feature table, track it in MLflow, promote it if it is better"
    )
    train.add_argument("model", metavar="MODEL", help="readmission (docs/models.md)")
    _conf_argument(train)
    train.add_argument("--lake", metavar="DIR", help="lake root (lake_root)")
    train.add_argument(
        "--estimator",
        metavar="NAME",
        help="auto (the default: the better on the latest training months), logistic_regression or "
        "gradient_boosting",
    )
    train.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an estimator parameter (repeatable), e.g. --param C=0.5",
    )
    train.add_argument("--inputs", metavar="A,B,…", help="train on these inputs only (default: all)")
    train.add_argument("--run-name", metavar="NAME", help="the MLflow run's name")
    _verbose_argument(train)
    train.set_defaults(func=cmd_train)

    score = commands.add_parser(
        "score", help="score the region with MODEL's champion (spark_udf) → gold.predictions_MODEL"
    )
    score.add_argument("model", metavar="MODEL", help="readmission (docs/models.md)")
    _conf_argument(score)
    score.add_argument("--lake", metavar="DIR", help="lake root (lake_root)")
    _verbose_argument(score)
    score.set_defaults(func=cmd_score)

    status = commands.add_parser("status", help="each table: version, rows, last operation")
    status.add_argument("--lake", metavar="DIR", help="lake root (lake_root)")
    _conf_argument(status)
    _verbose_argument(status)
    status.set_defaults(func=cmd_status)
    return parser


def cmd_generate(args: argparse.Namespace) -> int:
    """``healthlake generate``: write the synthetic region's feeds and ground truth, print a summary."""
    overrides = {
        "landing_root": args.landing,
        "truth_root": args.truth,
        "synth": {
            "people": args.people,
            "days": args.days,
            "start": args.start,
            "seed": args.seed,
            "followup_history_days": args.followup_history_days,
            "inpatient_history_days": args.inpatient_history_days,
            "visit_history_days": args.visit_history_days,
        },
    }
    cfg = load_config(args.conf, overrides, overrides_source=COMMAND_LINE)
    from healthlake.spark import get_spark
    from healthlake.synth import check_paths, generate_region

    check_paths(cfg.landing_root, cfg.truth_root)  # before the JVM starts: a user error answers at once

    spark = get_spark("generate", cfg)
    started = time.monotonic()
    manifest = generate_region(spark, cfg.synth, cfg.landing_root, cfg.truth_root)
    seconds = time.monotonic() - started
    synth = cfg.synth
    output(
        f"generated {synth.people} people, {synth.days} days from {synth.start.isoformat()} "
        f"(seed {synth.seed}) in {seconds:.1f}s: landing {cfg.landing_root}, truth {cfg.truth_root}"
    )
    output(format_manifest(manifest))
    return EXIT_OK


def cmd_ingest(args: argparse.Namespace) -> int:
    """``healthlake ingest``: take every new landing file into bronze and print what each feed took."""
    cfg = _pipeline_config(args)
    from healthlake.pipelines import ingest
    from healthlake.spark import get_spark

    results = ingest.run(get_spark("ingest", cfg), cfg)
    output(
        format_table(
            ("feed", "files", "records", "quarantined", "seconds"),
            [(r.feed, r.files, r.records, r.quarantined, f"{r.seconds:.1f}") for r in results],
        )
    )
    return EXIT_OK


def cmd_conform(args: argparse.Namespace) -> int:
    """``healthlake conform``: conform new bronze rows into silver and print what each bronze table gave."""
    cfg = load_config(args.conf, {"lake_root": args.lake}, overrides_source=COMMAND_LINE)
    if not is_uri(cfg.lake_root) and not Path(cfg.lake_root).is_dir():
        raise UsageError(f"lake root {cfg.lake_root} does not exist (run ingest first or pass --lake)")
    from healthlake.pipelines import conform
    from healthlake.privacy.tokens import load_key
    from healthlake.spark import get_spark

    load_key()  # a missing key is a one-line error before the JVM starts
    results = conform.run(get_spark("conform", cfg), cfg)
    output(
        format_table(
            (
                "bronze table",
                "versions",
                "rows",
                "conformed",
                "superseded",
                "quarantined",
                "duplicates",
                "not modelled",
                "seconds",
            ),
            [
                (
                    r.bronze_table,
                    f"{r.start_version}-{r.end_version}",
                    r.bronze_rows,
                    r.conformed,
                    r.superseded,
                    r.quarantined,
                    r.duplicates,
                    r.not_modelled,
                    f"{r.seconds:.1f}",
                )
                for r in results
            ],
        )
    )
    return EXIT_OK


def cmd_link(args: argparse.Namespace) -> int:
    """``healthlake link``: apply review decisions, link new and changed patient records, print a summary."""
    cfg = load_config(args.conf, {"lake_root": args.lake}, overrides_source=COMMAND_LINE)
    if not is_uri(cfg.lake_root) and not Path(cfg.lake_root).is_dir():
        raise UsageError(f"lake root {cfg.lake_root} does not exist (run conform first or pass --lake)")
    from healthlake.pipelines import link
    from healthlake.spark import get_spark

    result = link.run(get_spark("link", cfg), cfg, full=args.full, accept=args.accept, reject=args.reject)
    output(
        format_table(
            ("mode", "records", "linked", "persons", "created", "merged", "split", "to review", "seconds"),
            [
                (
                    result.mode,
                    result.records,
                    result.linked,
                    result.persons,
                    result.created,
                    result.merged,
                    result.split,
                    result.review,
                    f"{result.seconds:.1f}",
                )
            ],
        )
    )
    return EXIT_OK


def cmd_publish(args: argparse.Namespace) -> int:
    """``healthlake publish``: bring gold, research and OMOP up to date, register them, print their rows."""
    cfg = load_config(args.conf, {"lake_root": args.lake}, overrides_source=COMMAND_LINE)
    if not is_uri(cfg.lake_root) and not Path(cfg.lake_root).is_dir():
        raise UsageError(f"lake root {cfg.lake_root} does not exist (run link first or pass --lake)")
    from healthlake import io
    from healthlake.pipelines import publish
    from healthlake.spark import get_spark

    spark = get_spark("publish", cfg)
    result = publish.run(spark, cfg, full=args.full, extracts=args.extracts)
    io.register_tables(spark, cfg.lake_root)  # SELECT … FROM gold.x, research.x, omop.x
    output(format_table(("table", "rows"), sorted(result.tables.items())))
    return EXIT_OK


def cmd_epidemic(args: argparse.Namespace) -> int:
    """``healthlake epidemic``: bring the epidemic-control tables up to date, print their rows."""
    cfg = load_config(args.conf, {"lake_root": args.lake}, overrides_source=COMMAND_LINE)
    if not is_uri(cfg.lake_root) and not Path(cfg.lake_root).is_dir():
        raise UsageError(f"lake root {cfg.lake_root} does not exist (run publish first or pass --lake)")
    if args.action != "run":
        return _cmd_exchange(args, cfg)
    from healthlake import io
    from healthlake.pipelines import epidemic
    from healthlake.spark import get_spark

    spark = get_spark("epidemic", cfg)
    result = epidemic.run(spark, cfg, as_of=args.as_of, full=args.full)
    io.register_tables(spark, cfg.lake_root)
    output(f"epidemic {result.mode} run as of {result.as_of}")
    output(format_table(("table", "rows"), sorted(result.tables.items())))
    return EXIT_OK


def _lake_config(args: argparse.Namespace, before: str) -> Config:
    """Config for a verb that reads an existing lake (one-line error when the folder is missing)."""
    cfg = load_config(args.conf, {"lake_root": args.lake}, overrides_source=COMMAND_LINE)
    if not is_uri(cfg.lake_root) and not Path(cfg.lake_root).is_dir():
        raise UsageError(f"lake root {cfg.lake_root} does not exist (run {before} first or pass --lake)")
    return cfg


def cmd_features(args: argparse.Namespace) -> int:
    """``healthlake features``: bring the models' feature tables up to date, print their rows."""
    cfg = _lake_config(args, "publish")
    from healthlake import io
    from healthlake.pipelines import features
    from healthlake.spark import get_spark

    spark = get_spark("features", cfg)
    result = features.run(spark, cfg, full=args.full)
    io.register_tables(spark, cfg.lake_root)
    output(f"features {result.mode} run as of {result.as_of}")
    output(format_table(("table", "rows"), sorted(result.tables.items())))
    return EXIT_OK


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` estimator parameters, each value read as an int, a float, true/false/none or text.

    Raises:
        UsageError: For an item without ``=``.
    """
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param {pair!r}: expected KEY=VALUE, e.g. --param C=0.5")
        value: Any = text
        lowered = text.strip().lower()
        if lowered in ("true", "false"):
            value = lowered == "true"
        elif lowered == "none":
            value = None
        else:
            for kind in (int, float):
                try:
                    value = kind(text)
                    break
                except ValueError:
                    continue
        params[key.strip()] = value
    return params


def cmd_train(args: argparse.Namespace) -> int:
    """``healthlake train MODEL``: one tracked training; prints the version and whether it was promoted."""
    from healthlake.ml.models import model_spec

    model_spec(args.model)  # an unknown name answers before the JVM starts
    params = parse_params(args.param)
    inputs = tuple(c.strip() for c in args.inputs.split(",") if c.strip()) if args.inputs else None
    cfg = _lake_config(args, "features")
    from healthlake.ml.train import train
    from healthlake.spark import get_spark

    spark = get_spark("train", cfg)
    result = train(
        spark, cfg, args.model, estimator=args.estimator, params=params, inputs=inputs, run_name=args.run_name
    )
    metric = model_spec(args.model).champion_metric
    output(
        f"healthlake-{result.model} version {result.version} (run {result.run_id}): hold-out {metric} "
        f"{result.metrics.get(metric, float('nan')):.4f} on {result.holdout_rows:,} rows; {result.reason}"
    )
    return EXIT_OK


def cmd_score(args: argparse.Namespace) -> int:
    """``healthlake score MODEL``: score the region with the champion; prints what it wrote."""
    from healthlake.ml.models import model_spec

    model_spec(args.model)
    cfg = _lake_config(args, "features")
    from healthlake import io
    from healthlake.ml.score import score
    from healthlake.spark import get_spark

    spark = get_spark("score", cfg)
    result = score(spark, cfg, args.model)
    io.register_tables(spark, cfg.lake_root)
    output(
        f"scored {result.rows:,} rows with healthlake-{result.model} version {result.version} into "
        f"{result.table} ({result.score_date})"
    )
    return EXIT_OK


def _cmd_exchange(args: argparse.Namespace, cfg: Config) -> int:
    """``healthlake epidemic export|import``: risk-person lists to and from neighbouring regions."""
    from healthlake.pipelines import exchange
    from healthlake.spark import get_spark

    if args.action == "export":
        if not args.to_region or not args.out:
            raise UsageError("epidemic export needs --to-region CODE and --out FILE")
        result = exchange.export_list(
            get_spark("epidemic-export", cfg), cfg, to_region=args.to_region, out=args.out, fmt=args.format
        )
        output(f"exported {result.persons:,} risk persons last seen in {args.to_region} to {result.path}")
        return EXIT_OK
    if not args.file or not args.from_region:
        raise UsageError("epidemic import needs the list FILE and --from-region CODE")
    if args.landing:
        cfg = cfg.model_copy(update={"landing_root": args.landing})
    landed = exchange.import_list(
        get_spark("epidemic-import", cfg), cfg, args.file, from_region=args.from_region
    )
    output(f"imported the list from {args.from_region}: landed as {landed}, ingested into bronze.csv_records")
    return EXIT_OK


def _pipeline_config(args: argparse.Namespace) -> Config:
    """Config for a pipeline verb, with a one-line error for a landing zone that does not exist."""
    cfg = load_config(
        args.conf, {"landing_root": args.landing, "lake_root": args.lake}, overrides_source=COMMAND_LINE
    )
    if not is_uri(cfg.landing_root) and not Path(cfg.landing_root).is_dir():
        raise UsageError(f"landing root {cfg.landing_root} does not exist (generate one or pass --landing)")
    if not is_uri(cfg.lake_root):
        Path(cfg.lake_root).mkdir(parents=True, exist_ok=True)
    return cfg


def cmd_run(args: argparse.Namespace) -> int:
    """``healthlake run``: every registered stage in order, then register the tables and print status."""
    cfg = _pipeline_config(args)

    from healthlake import io
    from healthlake.pipelines import STAGES
    from healthlake.privacy.tokens import load_key
    from healthlake.spark import get_spark

    load_key()  # conform needs it: say so before hours of ingest, not after
    spark = get_spark("run", cfg)
    if not STAGES:
        logger.info("no pipeline stages registered yet")
    for stage in STAGES:
        started = time.monotonic()
        logger.debug("stage %s started", stage.name)
        result = stage.run(spark, cfg)
        records, detail = stage_summary(result)
        progress(logger, stage.name, records, time.monotonic() - started, detail)
    io.register_tables(spark, cfg.lake_root)
    return _print_status(cfg, spark)


def stage_summary(result: object) -> tuple[int | None, str]:
    """The records a stage took and a few words on what it did, from the result its ``run`` returned.

    Args:
        result: ingest's feed results, conform's range results, link's or publish's result, or None for a
            stage that had nothing to do.

    Returns:
        ``(records, detail)``; records is None when the result counts none.
    """
    if result is None:
        return None, "nothing to do"
    if isinstance(result, list):
        if result and hasattr(result[0], "bronze_rows"):  # conform: one per bronze version range
            names = ("conformed", "superseded", "quarantined", "duplicates", "not_modelled")
            detail = ", ".join(
                f"{sum(getattr(r, name) for r in result):,} {name.replace('_', ' ')}" for name in names
            )
            return sum(r.bronze_rows for r in result), detail
        files = sum(getattr(r, "files", 0) for r in result)  # ingest: one per feed
        quarantined = sum(getattr(r, "quarantined", 0) for r in result)
        return sum(getattr(r, "records", 0) for r in result), f"{files:,} files, {quarantined:,} quarantined"
    if hasattr(result, "linked") and hasattr(result, "mode"):  # link
        counts = ", ".join(
            f"{getattr(result, name):,} {label}"
            for name, label in (
                ("persons", "persons"),
                ("created", "created"),
                ("merged", "merged"),
                ("split", "split"),
                ("review", "to review"),
            )
        )
        return result.linked, f"{result.mode} run, {counts}"
    tables = getattr(result, "tables", None)
    if isinstance(tables, dict):  # publish: the published tables and their rows
        return sum(tables.values()), f"{getattr(result, 'mode', '')} run, {len(tables)} tables".strip()
    return None, ""


def cmd_status(args: argparse.Namespace) -> int:
    """``healthlake status``: one line per table with its version, rows and last operation."""
    cfg = load_config(args.conf, {"lake_root": args.lake}, overrides_source=COMMAND_LINE)
    return _print_status(cfg, None)


def _print_status(cfg: Config, spark: Any) -> int:
    """Print the status table of the lake.

    A local lake's (a folder or ``file:`` URI) is read from the Delta logs without Spark
    (``tables.lake_status``: no JVM, a second or two); a remote lake's is listed through Hadoop's
    FileSystem, with ``spark`` or a session started for it.
    """
    if is_uri(cfg.lake_root) and not cfg.lake_root.startswith("file:"):
        from healthlake import io
        from healthlake.spark import get_spark

        rows = io.table_status(spark if spark is not None else get_spark("status", cfg), cfg.lake_root)
    else:
        from healthlake.tables import lake_status

        rows = lake_status(cfg.lake_root)
    if not rows:
        output(f"no tables in lake {cfg.lake_root}")
        return EXIT_OK
    output(format_table(STATUS_COLUMNS, [(*row[:5], _utc_text(row.last_time)) for row in rows]))
    return EXIT_OK


def format_manifest(manifest: dict[str, Any]) -> str:
    """The generator's manifest as a table: one line per feed and a total.

    Args:
        manifest: ``{"feeds": {feed: {"files": n, "records": n, "malformed": n, "duplicates": n}}, …}``.

    Returns:
        A fixed-width table.
    """
    feeds = manifest.get("feeds", {}) or {}
    rows: list[list[object]] = []
    totals = dict.fromkeys(MANIFEST_COLUMNS, 0)
    for feed, counts in sorted(feeds.items()):
        values = [int((counts or {}).get(column, 0) or 0) for column in MANIFEST_COLUMNS]
        rows.append([feed, *values])
        for column, value in zip(MANIFEST_COLUMNS, values, strict=True):
            totals[column] += value
    rows.append(["total", *totals.values()])
    return format_table(("feed", *MANIFEST_COLUMNS), rows)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A fixed-width text table: numbers right-aligned, text left-aligned, two spaces between columns.

    Args:
        headers: Column titles.
        rows: Rows of cells.

    Returns:
        The table, one line per row after the header line, without trailing spaces.
    """
    cells = [[str(value) for value in row] for row in rows]
    widths = [max([len(header), *(len(row[i]) for row in cells)]) for i, header in enumerate(headers)]
    numeric = [
        bool(rows) and all(isinstance(row[i], int | float) and not isinstance(row[i], bool) for row in rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        padded = [
            value.rjust(width) if is_number else value.ljust(width)
            for value, width, is_number in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line(list(headers)), *(line(row) for row in cells)])


def parse_date(text: str) -> dt.date:
    """Parse ``YYYY-MM-DD`` for argparse.

    Args:
        text: The option's value.

    Returns:
        The date.

    Raises:
        argparse.ArgumentTypeError: When the text is not a valid date.
    """
    try:
        value = dt.date.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or len(text) != len("YYYY-MM-DD"):
        raise argparse.ArgumentTypeError(f"bad date {text!r}: expected YYYY-MM-DD")
    return value


def _verbose_argument(parser: argparse.ArgumentParser, default: Any = argparse.SUPPRESS) -> None:
    """Add ``-v``; subcommands use SUPPRESS so that a ``-v`` before the subcommand is kept."""
    parser.add_argument(
        "-v", "--verbose", action="count", default=default, help="debug logs and tracebacks of failures"
    )


def _conf_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conf", metavar="FILE", help="YAML configuration (default conf/local.yaml)")


def _utc_text(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _first_line(text: object) -> str:
    lines = str(text).strip().splitlines()
    return lines[0].strip() if lines else ""


def describe_failure(exc: BaseException) -> str:
    """An unexpected failure in one line: its root cause and, for causes a user can act on, what to try.

    For a failure in Spark's JVM (a py4j ``Py4JJavaError``, or the exception pyspark made of one) the
    root cause is the last Java exception of its cause chain, named by its class (``FileNotFoundException:
    File file:/lake/… does not exist``) rather than by the Python call that met it ("An error occurred
    while calling o6208.save"). Other failures are named by their own class.

    Args:
        exc: The exception.

    Returns:
        ``<class>: <first line of its message> (<hint>; -v shows the traceback)``.
    """
    root = java_root_cause(exc)
    name, message, classes = root if root is not None else (type(exc).__name__, str(exc), ())
    hint = _hint(message, classes)
    line = _first_line(message)
    return f"{name}{': ' + line if line else ''} ({hint + '; ' if hint else ''}-v shows the traceback)"


_MAX_CAUSES = 64


def java_root_cause(exc: BaseException) -> tuple[str, str, tuple[str, ...]] | None:
    """The Java exception at the bottom of a JVM failure's cause chain, or None for a Python failure.

    Looks through ``exc`` and the exceptions it was raised from (``__cause__``, ``__context__``) for one
    that carries a Java throwable: py4j's ``Py4JJavaError.java_exception``, or ``_origin`` of the
    exceptions pyspark converts (``AnalysisException``, ``StreamingQueryException``, …). Then follows
    ``getCause()`` down to the last cause.

    Returns:
        ``(simple class name, its message, names of its class and superclasses)``; None when no Java
        exception is found, or the JVM can no longer be asked (it has exited).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        throwable = getattr(current, "java_exception", None) or getattr(current, "_origin", None)
        if throwable is not None:
            try:
                return _bottom_of(throwable)
            except Exception:  # the JVM is gone (py4j cannot reach it): describe the Python side
                return None
        current = current.__cause__ or current.__context__
    return None


def _bottom_of(throwable: Any) -> tuple[str, str, tuple[str, ...]]:
    """Follow a Java throwable's ``getCause()`` to its end: its name, message and class names."""
    for _ in range(_MAX_CAUSES):
        cause = throwable.getCause()
        if cause is None or cause.equals(throwable):
            break
        throwable = cause
    classes: list[str] = []
    java_class = throwable.getClass()
    while java_class is not None and len(classes) < _MAX_CAUSES:
        classes.append(str(java_class.getName()))
        java_class = java_class.getSuperclass()
    name = str(throwable.getClass().getSimpleName()) or classes[0]
    return name, str(throwable.getMessage() or ""), tuple(classes)


_HINTS = (
    (
        ("java.lang.OutOfMemoryError",),
        ("UNABLE_TO_ACQUIRE_MEMORY", "SparkOutOfMemoryError", "java.lang.OutOfMemoryError"),
        "Spark ran out of memory: raise spark.driver.memory (or spark.executor.memory on a cluster) under "
        "spark.conf in the config, e.g. HEALTHLAKE_SPARK__CONF='{spark.driver.memory: 8g}', or lower "
        "ingest.max_bytes_per_trigger; re-running resumes where it stopped",
    ),
    (
        (
            "io.delta.exceptions.DeltaConcurrentModificationException",
            "org.apache.spark.sql.delta.DeltaConcurrentModificationException",
        ),
        ("DELTA_CONCURRENT_",),
        "another job changed the same Delta table at the same time: run the command again (each stage "
        "resumes where it stopped), and run one healthlake command per lake at a time",
    ),
    (
        ("java.io.FileNotFoundException", "java.nio.file.NoSuchFileException"),
        ("FILE_NOT_EXIST", "PATH_NOT_FOUND"),
        "a file Spark needed is gone: was the lake or landing zone changed or cleaned while the command "
        "ran? Run it again; if a Delta table's data files were deleted, restore them",
    ),
    (
        ("java.lang.ClassNotFoundException", "java.lang.NoClassDefFoundError"),
        (),
        "a jar Spark needs is not on its classpath (for s3a:// the hadoop-aws connector): add it to "
        "spark.jars.packages under spark.conf in the config, or pass --packages to spark-submit",
    ),
    (
        (),
        ("No space left on device",),
        "a disk is full: free space where the lake is, and where Spark spills (spark.local.dir, by "
        "default /tmp)",
    ),
)
"""(Java classes, message markers, hint) for the failure causes a user can act on."""


def _hint(message: str, classes: Sequence[str] = ()) -> str:
    """What to try for a failure whose root class (or an ancestor) or message is one of ``_HINTS``."""
    for hint_classes, markers, hint in _HINTS:
        if any(name in hint_classes for name in classes) or any(marker in message for marker in markers):
            return hint
    return ""


def _error(exc: BaseException) -> int:
    """Print a user error as one line and return the usage exit code."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
