"""``trivas quarantine list|replay``: look at refused records and replay fixed ones once.

Sources of refused records:
- ``silver.quarantine`` (written by silver; read here with delta-rs, no JVM): the raw record as
  bronze received it, a reason code, the contract version, the source and the Kafka position;
- the Kafka dlq topic (``--include-dlq``): what the collector refused at the edge. Those
  entries are PII-scrubbed, so they can only be replayed with a full fixed record supplied by
  the operator (never re-validated as they are: their hashed values would be hashed twice).

A replay starts from the record as bronze received it (silver.quarantine's ``raw_value`` is
PII-scrubbed; bronze still holds the original at the same Kafka coordinates, which the
quarantine id names) and goes through the normal path: the fixed record is validated against the current
catalog (the same edge validator as the collector) and produced to its raw topic by the same
idempotent producer, keeping the original ``event_id`` (silver deduplicates by it) and, for
silver rows, the original Kafka timestamp (lateness is judged as at first arrival). Each replay
is recorded in the ledger ``ops.quarantine_replays`` (a Delta table written only by this
command) once the broker acknowledged it; a record already in the ledger is never replayed
again, so a second run is a no-op. A crash between the acknowledgement and the ledger commit
can re-send a record on the next run; silver's event_id dedup absorbs that.

Fix file (``--fixes``): JSON lines, one per quarantined record::

    {"quarantine_id": "…", "patch": {"payload": {"currency": "EUR"}}}   # merged into raw_value
    {"quarantine_id": "…", "record": {…a whole envelope record…}}        # replaces it

``--revalidate`` replays, without a fix, every silver quarantined record that now passes the
current contract (e.g. after a backward-compatible contract change).
"""

from __future__ import annotations

import fcntl
import getpass
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from lakehouse.catalog import Catalog
from lakehouse.config import Settings
from lakehouse.ingest.settings import CollectorSettings
from lakehouse.ingest.validation import EventValidator
from lakehouse.kafka_security import python_client_config
from lakehouse.tables import has_commits, table_path

QUARANTINE_TABLE = "silver.quarantine"
LEDGER_TABLE = "ops.quarantine_replays"


@dataclass(frozen=True)
class QuarantinedRecord:
    """One refused record, from silver.quarantine or the dlq topic."""

    quarantine_id: str
    reason: str
    detail: str | None
    event_type: str | None
    event_id: str | None
    contract_version: int | None
    source: str | None
    raw_value: str | None
    kafka_timestamp: datetime | None
    quarantined_at: str | None
    origin: str  # "silver" or "dlq"
    kafka_topic: str | None = None
    kafka_partition: int | None = None
    kafka_offset: int | None = None


@dataclass
class ReplayReport:
    """What a replay did, per quarantine id."""

    replayed: list[str] = field(default_factory=list)
    already_replayed: list[str] = field(default_factory=list)
    still_invalid: dict[str, str] = field(default_factory=dict)
    not_selected: int = 0
    unknown_fixes: list[str] = field(default_factory=list)


def _utc(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def read_quarantine(settings: Settings) -> list[QuarantinedRecord]:
    """Rows of ``silver.quarantine`` (empty if silver has not created it yet)."""
    from deltalake import DeltaTable

    path = table_path(settings, QUARANTINE_TABLE)
    if not has_commits(path):
        return []
    rows = DeltaTable(path).to_pyarrow_table().to_pylist()
    return [
        QuarantinedRecord(
            quarantine_id=str(row["quarantine_id"]),
            reason=str(row.get("reason")),
            detail=row.get("detail"),
            event_type=row.get("event_type"),
            event_id=row.get("event_id"),
            contract_version=row.get("contract_version"),
            source=row.get("source"),
            raw_value=row.get("raw_value"),
            kafka_timestamp=_utc(row.get("kafka_timestamp")),
            quarantined_at=str(row.get("quarantined_at")),
            origin="silver",
            kafka_topic=row.get("kafka_topic"),
            kafka_partition=row.get("kafka_partition"),
            kafka_offset=row.get("kafka_offset"),
        )
        for row in rows
    ]


def read_bronze_originals(
    settings: Settings, records: Iterable[QuarantinedRecord]
) -> dict[str, str]:
    """The original raw values of quarantined silver records, from ``bronze.events``.

    silver.quarantine keeps a PII-scrubbed copy; the record as received is still in bronze at
    the same Kafka coordinates, and that is what a replay must start from.
    """
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    wanted = {
        (r.kafka_topic, r.kafka_partition, r.kafka_offset): r.quarantine_id
        for r in records
        if r.origin == "silver" and r.kafka_offset is not None
    }
    path = table_path(settings, "bronze.events")
    if not wanted or not has_commits(path):
        return {}
    dataset = DeltaTable(path).to_pyarrow_dataset()
    offsets = sorted({offset for _, _, offset in wanted})
    table = dataset.to_table(
        columns=["topic", "partition", "offset", "value"],
        filter=pc.field("offset").isin(offsets),
    )
    originals: dict[str, str] = {}
    for row in table.to_pylist():
        qid = wanted.get((row["topic"], row["partition"], row["offset"]))
        if qid is not None and row["value"] is not None:
            originals[qid] = row["value"]
    return originals


def read_dead_letters(settings: Settings, timeout_s: float = 10.0) -> list[QuarantinedRecord]:
    """Every entry of the dlq topic, from the beginning up to its current end."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap(),
        enable_auto_commit=False,
        group_id=None,
        **python_client_config(settings),
    )
    try:
        partitions = consumer.partitions_for_topic(settings.kafka.dlq_topic) or set()
        tps = [TopicPartition(settings.kafka.dlq_topic, p) for p in partitions]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        entries: list[QuarantinedRecord] = []
        deadline = datetime.now(UTC).timestamp() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if datetime.now(UTC).timestamp() > deadline:
                raise TimeoutError("could not read the dlq topic to its end in time")
            for records in consumer.poll(timeout_ms=500).values():
                for message in records:
                    entries.append(_dead_letter(message.value, message.timestamp))
        return entries
    finally:
        consumer.close()


def _dead_letter(value: bytes, timestamp_ms: int) -> QuarantinedRecord:
    entry = orjson.loads(value)
    return QuarantinedRecord(
        quarantine_id=str(entry.get("quarantine_id")),
        reason=str(entry.get("reason")),
        detail=entry.get("detail"),
        event_type=entry.get("event_type"),
        event_id=entry.get("event_id"),
        contract_version=entry.get("contract_version"),
        source=entry.get("source"),
        raw_value=entry.get("raw_value"),
        kafka_timestamp=datetime.fromtimestamp(timestamp_ms / 1000, UTC),
        quarantined_at=entry.get("quarantined_at"),
        origin="dlq",
    )


def list_quarantined(settings: Settings, include_dlq: bool = False) -> list[QuarantinedRecord]:
    """Silver's quarantine, plus the collector's dead letters if asked, newest last."""
    records = read_quarantine(settings)
    if include_dlq:
        seen = {r.quarantine_id for r in records}
        records += [r for r in read_dead_letters(settings) if r.quarantine_id not in seen]
    return records


def replayed_ids(settings: Settings) -> set[str]:
    """Quarantine ids already in the ledger."""
    from deltalake import DeltaTable

    path = table_path(settings, LEDGER_TABLE)
    if not has_commits(path):
        return set()
    table = DeltaTable(path).to_pyarrow_table(columns=["quarantine_id"])
    return set(table.column("quarantine_id").to_pylist())


def _append_ledger(settings: Settings, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    from deltalake import write_deltalake

    schema = pa.schema(
        [
            ("quarantine_id", pa.string()),
            ("event_id", pa.string()),
            ("event_type", pa.string()),
            ("origin", pa.string()),
            ("fix", pa.string()),
            ("topic", pa.string()),
            ("partition", pa.int32()),
            ("offset", pa.int64()),
            ("replayed_by", pa.string()),
            ("replayed_at", pa.timestamp("us", tz="UTC")),
        ]
    )
    write_deltalake(
        table_path(settings, LEDGER_TABLE), pa.Table.from_pylist(rows, schema=schema), mode="append"
    )


@contextmanager
def _ledger_lock(settings: Settings) -> Iterator[None]:
    """One replay at a time per deployment (two at once could both miss the other's rows)."""
    lock_file = settings.path(settings.paths.var) / "quarantine" / "replay.lock"  # the ledger may be in an object store
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_fixes(path: Path) -> dict[str, dict[str, Any]]:
    """The operator's fix file: quarantine id → ``{"record": …}`` or ``{"patch": …}``."""
    fixes: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fix = orjson.loads(line)
        if not isinstance(fix, dict) or "quarantine_id" not in fix:
            raise ValueError(f"{path}:{number}: each line needs a quarantine_id")
        if ("record" in fix) == ("patch" in fix):
            raise ValueError(f"{path}:{number}: give exactly one of record or patch")
        fixes[str(fix["quarantine_id"])] = fix
    return fixes


def apply_fix(
    record: QuarantinedRecord, fix: Mapping[str, Any] | None, original: str | None = None
) -> dict[str, Any] | None:
    """The record to replay (None if it cannot be rebuilt), with the original event id.

    ``original`` is the raw value from bronze; without it the (scrubbed) ``raw_value`` is used.
    """
    if fix is not None and "record" in fix:
        fixed = dict(fix["record"])
    else:
        base = original if original is not None else record.raw_value
        if record.origin != "silver" or base is None:
            return None
        try:
            fixed = orjson.loads(base)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(fixed, dict):
            return None
        if fix is not None:
            for name, value in fix["patch"].items():
                if name == "payload" and isinstance(value, dict) and isinstance(fixed.get("payload"), dict):
                    fixed["payload"] = {**fixed["payload"], **value}
                else:
                    fixed[name] = value
    if record.event_id:
        fixed["event_id"] = record.event_id
    if fixed.get("sent_at") is None:
        fixed["sent_at"] = datetime.now(UTC).isoformat()
    return fixed


def replay(
    settings: Settings,
    catalog: Catalog,
    collector: CollectorSettings,
    fixes: Mapping[str, Mapping[str, Any]] | None = None,
    revalidate: bool = False,
    only_ids: Iterable[str] | None = None,
    include_dlq: bool = False,
    dry_run: bool = False,
) -> ReplayReport:
    """Replay the selected quarantined records once each (see the module docstring)."""
    fixes = dict(fixes or {})
    wanted = set(only_ids) if only_ids else None
    validator = EventValidator(catalog)
    report = ReplayReport()
    with _ledger_lock(settings):
        records = list_quarantined(settings, include_dlq=include_dlq)
        known = {r.quarantine_id for r in records}
        report.unknown_fixes = sorted(set(fixes) - known)
        done = replayed_ids(settings)
        selected: list[QuarantinedRecord] = []
        for record in records:
            qid = record.quarantine_id
            chosen = (qid in fixes or (revalidate and record.origin == "silver")) and (
                wanted is None or qid in wanted
            )
            if not chosen:
                report.not_selected += 1
            elif qid in done:
                report.already_replayed.append(qid)
            else:
                selected.append(record)
        originals = read_bronze_originals(settings, selected)
        plan: list[tuple[QuarantinedRecord, dict[str, Any], str]] = []
        for record in selected:
            qid = record.quarantine_id
            fix = fixes.get(qid)
            fixed = apply_fix(record, fix, originals.get(qid))
            if fixed is None:
                report.still_invalid[qid] = "unreadable: supply a whole record"
                continue
            rejection = validator.check(fixed)
            if rejection is not None:
                report.still_invalid[qid] = f"{rejection.reason}: {rejection.detail}"
                continue
            plan.append((record, validator.canonical(fixed), "operator" if fix is not None else "revalidated"))
        if dry_run or not plan:
            report.replayed = [r.quarantine_id for r, _, _ in plan] if dry_run else []
            return report
        _publish(settings, catalog, collector, plan, report)
    return report


def _publish(
    settings: Settings,
    catalog: Catalog,
    collector: CollectorSettings,
    plan: list[tuple[QuarantinedRecord, dict[str, Any], str]],
    report: ReplayReport,
) -> None:
    from lakehouse.ingest.producer import EventProducer

    producer = EventProducer(settings, catalog, collector.producer, client_id="trivas-replay")
    try:
        futures = []
        for record, fixed, _ in plan:
            ts = record.kafka_timestamp if record.origin == "silver" else None
            timestamp_ms = int(ts.timestamp() * 1000) if ts is not None else None
            futures.append(producer.send_event(fixed, timestamp_ms=timestamp_ms))
        producer.kafka.flush()
        user = getpass.getuser()
        now = datetime.now(UTC)
        rows = []
        failures: dict[str, str] = {}
        for (record, fixed, how), future in zip(plan, futures, strict=True):
            try:
                metadata = future.get(timeout=collector.producer.ack_timeout_seconds)
            except Exception as exc:  # noqa: BLE001 - recorded, and retried by the next run
                failures[record.quarantine_id] = type(exc).__name__
                continue
            rows.append(
                {
                    "quarantine_id": record.quarantine_id,
                    "event_id": fixed["event_id"],
                    "event_type": fixed["event_type"],
                    "origin": record.origin,
                    "fix": how,
                    "topic": metadata.topic,
                    "partition": metadata.partition,
                    "offset": metadata.offset,
                    "replayed_by": user,
                    "replayed_at": now,
                }
            )
        if rows:
            _append_ledger(settings, rows)
        report.replayed = [row["quarantine_id"] for row in rows]
        if failures:
            raise RuntimeError(f"Kafka did not acknowledge {len(failures)} replays: {failures}")
    finally:
        producer.close()
