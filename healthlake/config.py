"""Typed, frozen configuration loaded from YAML, ``HEALTHLAKE_*`` environment variables and overrides.

Precedence, lowest first: built-in defaults < the YAML file (``conf/local.yaml`` of the repository unless
another file is named) < ``HEALTHLAKE_*`` environment variables < overrides (command-line flags).

Environment variables name a key in upper case with ``__`` between levels: ``HEALTHLAKE_LAKE_ROOT`` sets
``lake_root``, ``HEALTHLAKE_SPARK__MASTER`` sets ``spark.master`` and
``HEALTHLAKE_SYNTH__RATES__NAME_TYPO=0.1`` sets ``synth.rates.name_typo``. A value that starts with ``[`` or
``{`` is read as YAML (``HEALTHLAKE_FEEDS__CSV__ENCODINGS='[utf-8, gbk]'``), ``null`` as no value; an empty
value is ignored.
"""

from __future__ import annotations

import codecs
import datetime as dt
import difflib
import functools
import logging
import os
import types
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from healthlake.errors import ConfigError

logger = logging.getLogger(__name__)

ENV_PREFIX = "HEALTHLAKE_"
"""Prefix of environment variables that set configuration keys."""
ENV_NESTING = "__"
"""Separator between key levels in an environment variable name."""
NON_CONFIG_ENV_VARS = frozenset(
    {"HEALTHLAKE_IVY_DIR", "HEALTHLAKE_FAULT", "HEALTHLAKE_HMAC_KEY", "HEALTHLAKE_HMAC_KEY_FILE"}
)
"""``HEALTHLAKE_*`` variables that are not configuration keys (read by other modules)."""

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG_FILE = Path("conf") / "local.yaml"
REPO_ROOT: Path | None = PACKAGE_DIR.parent if (PACKAGE_DIR.parent / DEFAULT_CONFIG_FILE).is_file() else None
"""The source checkout holding ``conf/``, or None when the package is installed elsewhere."""

DEFAULT_LAKE_ROOT = "./lake"
DEFAULT_LANDING_ROOT = "./landing"
DEFAULT_TRUTH_ROOT = "./truth"

Rate = Annotated[float, Field(ge=0.0, le=1.0)]


class _Settings(BaseModel):
    """Base of every configuration model: unknown keys are errors and values cannot be reassigned."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


LOCAL_SPARK_CONF: dict[str, str] = {
    # Local mode runs everything in the driver's JVM: 1 GiB runs out on a 10-million-record ingest.
    "spark.driver.memory": "4g",
    # List input files in the driver rather than in a Spark job of one task per path (what Spark does
    # past 32 paths, as every ingest micro-batch has): seconds per batch saved on one machine.
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "1000000",
    # Delta rebuilds a table's state with this many partitions (default 50) whenever a write checks its
    # idempotent-write id (txnAppId/txnVersion), as every ingest write does: 50 tasks on 2 cores cost
    # ~2 s per write, 4 cost ~0.8 s.
    "spark.databricks.delta.snapshotPartitions": "4",
    # Spark's 200 shuffle partitions make every join, window and MERGE of conform pay 200 tiny tasks on
    # a few cores: 20 Synthea bundles conformed in 183 s with 200, in 43 s with 8.
    "spark.sql.shuffle.partitions": "8",
}
"""Extra Spark settings of the default (one-machine) configuration; conf/local.yaml lists the same."""


class SparkSettings(_Settings):
    """How the SparkSession is built (see ``healthlake.spark``).

    Attributes:
        master: Master URL used when not launched by ``spark-submit`` (whose ``--master`` wins).
        app_name: Application name prefix.
        conf: Extra Spark configuration; wins over healthlake's defaults, loses to ``spark-submit --conf``.
    """

    master: str = "local[*]"
    app_name: str = "healthlake"
    # Local mode runs in the driver's JVM, whose 1 GiB default runs out on large ingests.
    conf: dict[str, str] = Field(default_factory=lambda: dict(LOCAL_SPARK_CONF))


class FeedSettings(_Settings):
    """Settings of one landing feed.

    Attributes:
        enabled: Whether ingest reads this feed.
        encodings: Text encodings to try, in order, when decoding files of this feed.
    """

    enabled: bool = True
    encodings: list[str] = Field(default_factory=lambda: ["utf-8"], min_length=1)

    @field_validator("encodings")
    @classmethod
    def _known_codecs(cls, value: list[str]) -> list[str]:
        for name in value:
            try:
                codecs.lookup(name)
            except LookupError:
                raise ValueError(f"unknown encoding {name!r}") from None
        return value


class FeedsSettings(_Settings):
    """Settings of each landing feed."""

    fhir: FeedSettings = FeedSettings()
    hl7v2: FeedSettings = FeedSettings(encodings=["utf-8", "gbk", "gb18030"])
    csv: FeedSettings = FeedSettings(encodings=["utf-8", "gbk"])
    public_health: FeedSettings = FeedSettings(encodings=["utf-8", "gbk"])
    location: FeedSettings = FeedSettings()


class DefectRates(_Settings):
    """Shares of records, files or sites that the synthetic generator spoils on purpose (each 0..1)."""

    duplicate: Rate = 0.01
    update: Rate = 0.02
    cancel: Rate = 0.005
    name_typo: Rate = 0.02
    homophone: Rate = 0.02
    id_transposed: Rate = 0.01
    id_missing: Rate = 0.05
    icd_no_dot: Rate = 0.3
    icd_lower: Rate = 0.05
    late_file: Rate = 0.03
    malformed: Rate = 0.002
    glucose_mgdl_sites: Rate = 0.3
    local_lab_code_sites: Rate = 0.4
    gbk_share: Rate = 0.3
    mllp_share: Rate = 0.2
    lf_separator_share: Rate = 0.2
    ping_no_phone: Rate = 0.0005
    test_no_person: Rate = 0.002
    pool_size_zero: Rate = 0.02


class SynthSettings(_Settings):
    """Size and shape of the synthetic region written by ``healthlake generate``.

    Attributes:
        people: Residents in the region.
        days: Days of activity to generate.
        start: First day generated.
        seed: Random seed; the same settings and seed give the same files.
        persons_per_shard: Residents generated per Spark task.
        ping_share: Share of phone owners whose phones send location pings (the tracked residents).
        ping_interval_minutes: Range (min, max) of a phone's usual time between pings; each phone draws its
            own interval and phase, pings less often at night and now and then not at all for a while.
        second_phone_share: Share of phone owners who carry a second phone (it pings too).
        allergy_share: Share of residents with a drug or food allergy, which each hospital they visit
            records (hospital patients report drug allergies at 10-20 %).
        rates: Defect rates.
        followup_history_days: Days of chronic-disease follow-up history before ``start``, sent with the
            first day's follow-up extract as a go-live backfill (0: none). A year or more gives the
            12-month standardised-management rate something to count.
        inpatient_history_days: Days of inpatient stays (with their readmissions) before ``start``, sent
            with the first day's feeds as a go-live backfill of the discharge records (0: none). Gives the
            readmission model labelled stays without generating years of every other activity.
        visit_history_days: Days of outpatient and emergency visits before ``start``, sent with the first
            day's feeds (0: none): the daily history the demand model learns from.
    """

    people: int = Field(default=1000, ge=10)
    days: int = Field(default=7, ge=1, le=366)
    start: dt.date = dt.date(2026, 1, 5)
    seed: int = Field(default=42, ge=0)
    persons_per_shard: int = Field(default=2000, ge=100)
    ping_share: Rate = 0.3
    allergy_share: Rate = 0.15
    ping_interval_minutes: tuple[float, float] = (2.0, 10.0)
    second_phone_share: Rate = 0.05
    rates: DefectRates = DefectRates()
    followup_history_days: int = Field(default=0, ge=0, le=1100)
    inpatient_history_days: int = Field(default=0, ge=0, le=1100)
    visit_history_days: int = Field(default=0, ge=0, le=1100)

    @field_validator("start", mode="before")
    @classmethod
    def _date_not_number(cls, value: Any) -> Any:
        if isinstance(value, bool | int | float):
            raise ValueError("expected a date")
        return value

    @field_validator("ping_interval_minutes")
    @classmethod
    def _interval_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0.5 <= value[0] <= value[1]:
            raise ValueError("expected [min, max] minutes with 0.5 <= min <= max")
        return value


class IngestSettings(_Settings):
    """How ``healthlake ingest`` reads the landing zone.

    Attributes:
        max_bytes_per_trigger: Landing bytes per micro-batch (about; a batch takes at least one file).
            Bounded batches bound memory; every batch commits on its own, so fewer, larger batches pay
            the fixed cost per batch (planning, four Delta commits) less often.
        max_files_per_trigger: Files per micro-batch instead (set ``max_bytes_per_trigger`` to None).
            Both None: all new files in one batch.
        concurrent_feeds: How many feeds' streams run at once. Each holds one cached batch, so this
            times ``max_bytes_per_trigger`` (times the parse's growth) bounds ingest's memory.
        max_file_age_days: How far, in days of modification time behind the newest file a feed has
            taken, its stream remembers the files it took (Spark's ``maxFileAge``); None: forever. Bounds
            the paths each stream holds in the driver. ``bronze.ingest_log`` decides what was taken, so a
            forgotten file that shows up again is not taken twice; but a file whose modification time is
            already that far behind when it lands is not seen at all (touch it to have it taken).
    """

    max_bytes_per_trigger: int | None = Field(default=256 * 1024 * 1024, ge=1)
    max_files_per_trigger: int | None = Field(default=None, ge=1)
    concurrent_feeds: int = Field(default=2, ge=1)
    max_file_age_days: int | None = Field(default=30, ge=1)

    @model_validator(mode="after")
    def _one_limit(self) -> IngestSettings:
        if self.max_bytes_per_trigger is not None and self.max_files_per_trigger is not None:
            raise ValueError(
                "set only one of ingest.max_bytes_per_trigger and ingest.max_files_per_trigger "
                "(the other to null)"
            )
        return self


class ConformSettings(_Settings):
    """How ``healthlake conform`` maps codes and units.

    Attributes:
        code_maps_dir: Folder of the code maps (``lab_codes.csv``, ``units.csv``,
            ``observation_ranges.csv``); a relative path is taken from the checkout, else the working dir.
        future_tolerance_minutes: How far after its arrival a source time may lie before the record is
            quarantined (``time_not_after_arrival``): a mistyped year must not move ``as_of``.
        max_stay_days: The longest plausible stay; longer ones are quarantined (``stay_length_plausible``),
            and an open stay is counted in censuses for at most this many days.
    """

    code_maps_dir: str = "conf/code_maps"
    future_tolerance_minutes: int = Field(default=60, ge=0)
    max_stay_days: int = Field(default=365, ge=1)

    def code_maps_path(self) -> Path:
        """The code-map folder as a path."""
        path = Path(self.code_maps_dir).expanduser()
        if not path.is_absolute() and REPO_ROOT is not None and (REPO_ROOT / path).is_dir():
            return REPO_ROOT / path
        return path


class EmpiSettings(_Settings):
    """How ``healthlake link`` links source patient records into persons.

    Attributes:
        match_probability: Scored pairs at or above it are linked.
        review_probability: Pairs from it up to ``match_probability`` that end in two persons go to
            ``silver.empi_review`` for a person to decide.
        max_u_pairs: Random record pairs sampled to estimate u values when the model is trained.
        max_train_records: The model is trained on a fixed sample of about this many records when the
            lake holds more (the estimates stay those of the whole; training time stops growing).
        checkpoint_dir: Where linking writes intermediate tables; null means ``<lake_root>/_tmp/empi``.
    """

    match_probability: float = Field(default=0.9, gt=0.0, le=1.0)
    review_probability: float = Field(default=0.5, gt=0.0, le=1.0)
    max_u_pairs: int = Field(default=1_000_000, ge=1000)
    max_train_records: int = Field(default=100_000, ge=1000)
    checkpoint_dir: str | None = None

    @model_validator(mode="after")
    def _review_below_match(self) -> EmpiSettings:
        if self.review_probability > self.match_probability:
            raise ValueError("empi.review_probability must not exceed empi.match_probability")
        return self


class ResearchSettings(_Settings):
    """How ``healthlake publish`` builds the de-identified research zone (``research.*``).

    Attributes:
        release: Name of the research release: person keys are re-tokenised per release, so two releases
            cannot be joined on them, while the tables of one release join to each other.
        min_cell: Aggregate cells counting fewer people or events than this (but more than 0) are
            suppressed.
        k: The k of the k-anonymity report on each extract's quasi-identifiers.
    """

    release: str = Field(default="release-1", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    min_cell: int = Field(default=5, ge=1)
    k: int = Field(default=5, ge=2)


class MlSettings(_Settings):
    """Models on gold (``healthlake features``, ``train``, ``score``; ``docs/models.md``).

    Attributes:
        tracking_uri: MLflow tracking store. None: ``MLFLOW_TRACKING_URI`` when set, else the embedded
            default, a SQLite file and an artifact folder under ``<lake_root>/mlflow`` (a local lake) or
            ``./mlflow`` (a lake on object storage).
        holdout_months: The latest local months of labelled rows held out of training: every model is
            evaluated on them, and a new version is compared with the champion on the same months.
        min_training_rows: Fewer labelled rows than this in the training window is an error.
        max_training_rows: Training pulls at most this many rows to the driver (a uniform sample of the
            training months above it; the hold-out is always whole).
        outcome_days: A scoring run judges the predictions of the last this many days whose outcomes were
            unknown when scored and are known now (each key by its latest such prediction); older scoring
            days are not read, so the run's cost does not grow with the predictions' history.
    """

    tracking_uri: str | None = None
    holdout_months: int = Field(default=3, ge=1, le=36)
    min_training_rows: int = Field(default=50, ge=1)
    max_training_rows: int = Field(default=2_000_000, ge=1_000)
    outcome_days: int = Field(default=90, ge=1, le=3660)


class PublishSettings(_Settings):
    """How ``healthlake publish`` brings gold up to date.

    Attributes:
        incremental_min_rows: A run recomputes only what silver changed when silver's event tables hold at
            least this many rows; under it, it rebuilds gold in full. Each incremental step runs a fixed
            set of small Spark jobs (change feeds, touched sets, comparisons, MERGEs), so on a small lake
            rebuilding costs less (``BENCHMARKS.md``). 0: always incremental when the log allows it.
    """

    incremental_min_rows: int = Field(default=20_000_000, ge=0)


class ContactSettings(_Settings):
    """How ``gold.close_contacts`` finds spatiotemporal companions (``docs/epidemic.md``).

    Attributes:
        preset: ``close`` (a few tens of metres for 15 minutes or more) or ``companion`` (the 2021 rule:
            the same 800 m x 800 m cell for more than 10 minutes within 14 days). The keys below, when
            set, override the preset's value.
        distance_m: Distance within which two people are together (``match: distance``).
        cell_m: Side of the square cell (``match: cell``), metres.
        min_minutes: Shortest exposure that makes a contact.
        window_days_before: Days before the first positive sample (or onset) the infectious window opens.
        step_minutes: Time grid phones' pings are put on.
        max_gap_minutes: Longest gap between two pings across which the phone is still placed.
        interpolate_minutes: Longest gap between two pings a position is interpolated across in a
            straight line; across a longer one each time takes the nearer ping's position.
        still_speed_m_s: Travel, then stay: across a gap the phone travels at the faster of its paces just
            before and after the gap, when above this, and waits the rest of it at the slower side. 0: off.
        max_accuracy_m: Pings reporting a worse accuracy are not used.
        depth: 1 (contacts of cases) or 2 (also contacts of contacts).
    """

    preset: Literal["close", "companion"] = "close"
    distance_m: float | None = Field(default=None, gt=0)
    cell_m: float | None = Field(default=None, gt=0)
    min_minutes: float | None = Field(default=None, ge=0)
    window_days_before: int | None = Field(default=None, ge=0, le=60)
    step_minutes: int | None = Field(default=None, ge=1, le=60)
    max_gap_minutes: int | None = Field(default=None, ge=1)
    interpolate_minutes: int | None = Field(default=None, ge=0)
    still_speed_m_s: float | None = Field(default=None, ge=0)
    max_accuracy_m: float | None = Field(default=None, gt=0)
    depth: int | None = Field(default=None, ge=1, le=2)


HealthCodeRule = Literal["active_case", "in_isolation", "retest_due", "close_contact", "risk_area"]
DEFAULT_HEALTH_CODE_RULES: dict[HealthCodeRule, Literal["red", "yellow"]] = {
    "active_case": "red",
    "in_isolation": "yellow",
    "retest_due": "yellow",
    "close_contact": "yellow",
    "risk_area": "yellow",
}
"""The health-code rules and the codes they give, in the order tried (``healthlake.epidemic.health_code``)."""


class EpidemicSettings(_Settings):
    """How ``healthlake epidemic`` builds the epidemic-control tables (``docs/epidemic.md``).

    Attributes:
        disease_codes: ICD-10 codes (or their prefixes) of the outbreak disease: the first such diagnosis
            of a person is their symptom onset.
        case_active_days: A case counts as active from its report until released from isolation; without
            a known release, for this many days.
        moving_days: Width of the moving figures of ``gold.epidemic_daily`` (days, ending on the day).
        vaccine_codes: The outbreak vaccine's codes in ``silver.immunization`` (any of them counts).
        full_series_doses: Doses that complete the primary series.
        booster_dose: The dose number from which a dose is a booster.
        quarantine_days: Days after the last contact a close contact's health code stays yellow.
        risk_area_days: Days a reported case keeps its home township a risk area (``gold.risk_area_daily``).
        high_risk_cases: Cases in those days from which a township is a high-risk area (one: medium).
        health_code_rules: Each health-code rule and the code it gives, in the order they are tried
            (``docs/epidemic.md``); a rule left out is not applied.
        contacts: Close-contact detection.
    """

    disease_codes: tuple[str, ...] = ("U07.1",)
    case_active_days: int = Field(default=14, ge=1, le=365)
    moving_days: int = Field(default=7, ge=1, le=60)
    vaccine_codes: tuple[str, ...] = ("COVID19",)
    full_series_doses: int = Field(default=2, ge=1, le=10)
    booster_dose: int = Field(default=3, ge=2, le=10)
    quarantine_days: int = Field(default=14, ge=1, le=60)
    risk_area_days: int = Field(default=14, ge=1, le=60)
    high_risk_cases: int = Field(default=3, ge=2, le=100_000)
    health_code_rules: dict[HealthCodeRule, Literal["red", "yellow"]] = Field(
        default_factory=lambda: dict(DEFAULT_HEALTH_CODE_RULES)
    )
    contacts: ContactSettings = ContactSettings()

    @model_validator(mode="after")
    def _booster_after_series(self) -> EpidemicSettings:
        if self.booster_dose <= self.full_series_doses:
            raise ValueError("epidemic.booster_dose must be greater than epidemic.full_series_doses")
        return self


DEFAULT_ZONE = "Asia/Shanghai"
"""The region's time zone unless ``region.timezone`` says otherwise (China Standard Time, UTC+8)."""


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_zone(name: str) -> str:
    """``name`` when it is an IANA time zone name (``Asia/Shanghai``, ``UTC``), else ValueError.

    The names are those of the tz database, which Python's ``zoneinfo`` and Java (Spark) both read.
    """
    names = _zone_names()
    if name not in names:
        close = difflib.get_close_matches(name, sorted(names), n=1)
        hint = f", did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown time zone {name!r}{hint}")
    return name


class RegionSettings(_Settings):
    """The region the lake serves.

    Attributes:
        timezone: The region's time zone (an IANA name). Instants are stored in UTC; every calendar
            quantity publish derives (a date, a month, an age, a 30-day or 12-month window, a census at
            midnight, a day partition, ``as_of``) is taken in this zone (``healthlake.localtime``).
            Conform reads a time without offset, or a date alone, as ``DEFAULT_ZONE`` wall clock.
        code: The region's GB/T 2260 area code (the generated region's ``360000`` by default), written
            on the risk-person lists it hands to neighbouring regions (``healthlake epidemic export``).
    """

    # The description is what a config error says the key expects.
    timezone: str = Field(default=DEFAULT_ZONE, description="an IANA time zone name such as 'Asia/Shanghai'")
    code: str | None = Field(
        default="360000", pattern=r"^\d{6}$", description="a 6-digit GB/T 2260 area code such as '360000'"
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return check_zone(value)


class Config(_Settings):
    """The whole healthlake configuration.

    Attributes:
        lake_root: Root folder or URI of the lake (``<root>/<layer>/<table>``).
        landing_root: Root of the landing zone (``<landing>/<feed>/<institution>/<yyyy-mm-dd>/<file>``).
        truth_root: Where the synthetic generator writes its ground truth.
        region: The region (its time zone).
        spark: SparkSession settings.
        feeds: Per-feed settings.
        synth: Synthetic generator settings.
        ingest: Landing → bronze settings.
        conform: Bronze → silver settings.
        empi: Linking settings (the master patient index).
        publish: Silver → gold settings.
        research: The research zone (de-identified extracts).
        epidemic: Epidemic control (``healthlake epidemic``).
        ml: Models on gold (``healthlake features``, ``train``, ``score``).
    """

    lake_root: str = DEFAULT_LAKE_ROOT
    landing_root: str = DEFAULT_LANDING_ROOT
    truth_root: str = DEFAULT_TRUTH_ROOT
    region: RegionSettings = RegionSettings()
    spark: SparkSettings = SparkSettings()
    feeds: FeedsSettings = FeedsSettings()
    synth: SynthSettings = SynthSettings()
    ingest: IngestSettings = IngestSettings()
    conform: ConformSettings = ConformSettings()
    empi: EmpiSettings = EmpiSettings()
    publish: PublishSettings = PublishSettings()
    research: ResearchSettings = ResearchSettings()
    ml: MlSettings = MlSettings()
    epidemic: EpidemicSettings = EpidemicSettings()


def is_uri(path: str) -> bool:
    """True when ``path`` has a URI scheme such as ``s3a://`` or ``file:``, not a plain local path."""
    scheme, sep, _ = path.partition(":")
    return bool(sep) and len(scheme) > 1 and scheme.replace("+", "").replace("-", "").isalnum()


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    overrides_source: str = "overrides",
) -> Config:
    """Load the configuration from a YAML file, ``HEALTHLAKE_*`` variables and overrides.

    Args:
        path: YAML file; a relative path is tried from the working directory, then from the repository.
            None means the repository's ``conf/local.yaml``, or built-in defaults when the package is
            installed without its repository.
        overrides: Highest-precedence values, as nested mappings or dotted keys (``{"synth.people": 50}``);
            None values are ignored so that unset command-line flags can be passed as they are.
        overrides_source: How error messages name the overrides (the CLI says "command line").

    Returns:
        The validated, frozen configuration.

    Raises:
        ConfigError: With a one-line message naming the file or key and what is expected.
    """
    merged: dict[str, Any] = Config().model_dump()
    sources: dict[tuple[str, ...], str] = {}

    file, label = _resolve_file(path)
    if file is not None:
        _merge(merged, _read_yaml(file, label), label, sources, ())
        logger.debug("configuration file %s", label)
    for name, value in sorted(os.environ.items()):
        if name.startswith(ENV_PREFIX) and name not in NON_CONFIG_ENV_VARS and value != "":
            keys = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split(ENV_NESTING))
            _merge(
                merged,
                _nest(keys, _parse_env_value(name, value)),
                f"environment variable {name}",
                sources,
                (),
            )
    if overrides:
        _merge(merged, _expand_overrides(overrides), overrides_source, sources, ())

    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_error_message(exc, sources)) from None


def _resolve_file(path: str | os.PathLike[str] | None) -> tuple[Path | None, str]:
    """Find the YAML file to read and the label used for it in messages."""
    if path is None:
        if REPO_ROOT is None:
            return None, "built-in defaults"
        file = REPO_ROOT / DEFAULT_CONFIG_FILE
        return file, _display(file)
    given = Path(path).expanduser()
    if given.is_file():
        return given, str(path)
    if not given.is_absolute() and REPO_ROOT is not None and (REPO_ROOT / given).is_file():
        return REPO_ROOT / given, str(path)
    if given.exists():
        raise ConfigError(f"config file '{path}' is not a file")
    raise ConfigError(f"config file '{path}' not found")


def _display(file: Path) -> str:
    """A path relative to the working directory when it is below it, else absolute."""
    try:
        return str(file.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(file)


def _read_yaml(file: Path, label: str) -> dict[str, Any]:
    """Read a YAML mapping, turning every failure into a one-line ConfigError."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file '{label}' cannot be read: {_one_line(exc)}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file '{label}' is not valid YAML: {_yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{label}': expected a mapping of keys, got {type(data).__name__}")
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Describe a YAML error as ``problem at line L, column C``."""
    problem = getattr(exc, "problem", None) or _one_line(exc)
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return str(problem)


def _parse_env_value(name: str, value: str) -> Any:
    """Keep a scalar as text (validation converts it); ``null`` is None; ``[...]``/``{...}`` are YAML."""
    if value.strip() in ("null", "~"):
        return None
    if value.lstrip()[:1] not in ("[", "{"):
        return value
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ConfigError(f"environment variable {name} is not valid YAML: {_yaml_problem(exc)}") from None


def _nest(keys: tuple[str, ...], value: Any) -> dict[str, Any]:
    """Turn ``("a", "b"), v`` into ``{"a": {"b": v}}``."""
    nested: Any = value
    for key in reversed(keys):
        nested = {key: nested}
    return nested


FREE_FORM_MAPPINGS = (("spark", "conf"),)
"""Settings whose keys are names of their own (``spark.driver.memory``): never split on dots."""


def _expand_overrides(overrides: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    """Expand dotted keys into nested dicts and drop None values at every level."""
    expanded: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        keys = _split_key(prefix, str(key))
        if isinstance(value, Mapping):
            value = _expand_overrides(value, (*prefix, *keys))
            if not value:
                continue
        _merge(expanded, _nest(keys, value), "", {}, ())
    return expanded


def _split_key(prefix: tuple[str, ...], key: str) -> tuple[str, ...]:
    """``a.b.c`` → ``("a", "b", "c")``, except inside a free-form mapping, whose keys stay whole."""
    if prefix in FREE_FORM_MAPPINGS:
        return (key,)
    parts = key.split(".")
    for mapping in FREE_FORM_MAPPINGS:
        depth = len(mapping) - len(prefix)
        if depth > 0 and (*prefix, *parts[:depth]) == mapping and len(parts) > depth:
            return (*parts[:depth], ".".join(parts[depth:]))
    return tuple(parts)


def _merge(
    base: dict[str, Any],
    new: Mapping[Any, Any],
    source: str,
    sources: dict[tuple[str, ...], str],
    prefix: tuple[str, ...],
) -> None:
    """Deep-merge ``new`` into ``base``, recording which source set each key."""
    for raw_key, value in new.items():
        key = str(raw_key)
        here = (*prefix, key)
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            sources.setdefault(here, source)
            _merge(base[key], value, source, sources, here)
        else:
            base[key] = dict(value) if isinstance(value, Mapping) else value
            sources[here] = source


def _error_message(exc: ValidationError, sources: Mapping[tuple[str, ...], str]) -> str:
    """One line naming the first invalid key, what it expects, the value given and where it came from."""
    error = exc.errors()[0]
    loc: tuple[Any, ...] = tuple(error["loc"])  # field names and list indexes
    source = next((sources[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in sources), "defaults")
    key = _key_name(loc)
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"expected one of: {', '.join(allowed)}"
        return f"config key '{key}': unknown key, {hint} ({source})"
    expected = _expectation(loc)
    reason = ""
    if error["type"] == "value_error":
        detail = str(error.get("ctx", {}).get("error", error["msg"]))
        reason = "" if detail.startswith("expected") else f" ({detail})"
    got = _short_repr(error.get("input"))
    return f"config key '{key}': expected {expected}, got {got}{reason} ({source})"


def _key_name(loc: tuple[Any, ...]) -> str:
    """Dotted key for model fields, then ``[i]`` or ``['k']`` below a list or mapping value."""
    parts: list[str] = []
    model: Any = Config
    for part in loc:
        if isinstance(model, type) and issubclass(model, BaseModel):
            parts.append(("." if parts else "") + str(part))
            field = model.model_fields.get(str(part))
            model = field.annotation if field is not None else None
        else:
            parts.append(f"[{part}]")
            model = None
    return "".join(parts)


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The field names of the model found at ``loc``."""
    model: Any = Config
    for part in loc:
        model = model.model_fields[part].annotation
    return list(model.model_fields)


def _expectation(loc: tuple[Any, ...]) -> str:
    """Describe what the field at ``loc`` accepts, e.g. ``a number between 0 and 1``."""
    model: Any = Config
    annotation: Any = Config
    metadata: list[Any] = []
    described: str | None = None
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel) and part in model.model_fields):
            break
        info = model.model_fields[part]
        annotation, metadata, described = info.annotation, info.metadata, info.description
        model = annotation
    return described or _describe(annotation, metadata)


def _describe(annotation: Any, metadata: list[Any]) -> str:
    """Plain-words description of a field type and its bounds."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"a mapping with keys {', '.join(annotation.model_fields)}"
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType) and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return f"{_describe(inner[0], metadata)} or null" if len(inner) == 1 else "a value or null"
    if origin is list:
        return f"a non-empty list of {_plural(args[0])}" if _bound(metadata, "min_length") else "a list"
    if origin is dict:
        return f"a mapping of {_plural(args[0])} to {_plural(args[1])}"
    if annotation is bool:
        return "true or false"
    if annotation is dt.date:
        return "a date YYYY-MM-DD"
    if annotation is str:
        return "a string"
    if annotation in (int, float):
        base = "an integer" if annotation is int else "a number"
        low, high = _bound(metadata, "ge"), _bound(metadata, "le")
        if low is not None and high is not None:
            return f"{base} between {low:g} and {high:g}"
        if low is not None:
            return f"{base} >= {low:g}"
        return base
    return "a valid value"


def _plural(annotation: Any) -> str:
    """Plural noun for an element type."""
    return {str: "strings", int: "integers", float: "numbers", bool: "booleans"}.get(annotation, "values")


def _bound(metadata: list[Any], name: str) -> Any:
    """The value of constraint ``name`` (``ge``, ``le``, ``min_length``) in a field's metadata, if any."""
    return next((getattr(m, name) for m in metadata if getattr(m, name, None) is not None), None)


def _short_repr(value: Any, limit: int = 60) -> str:
    """``repr`` cut to ``limit`` characters and kept on one line."""
    text = _one_line(repr(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(value: object) -> str:
    """The text of ``value`` with line breaks folded into spaces."""
    return " ".join(str(value).split())
