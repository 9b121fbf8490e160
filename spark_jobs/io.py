"""Readers and writers of the streaming jobs: the only place that touches stream I/O.

Transforms never call ``readStream``/``writeStream``; they receive and return DataFrames.
Every sink here is exactly-once: ``foreachBatch`` writers commit Delta's ``txn`` action
(``txnAppId``/``txnVersion`` through Spark, app transactions through delta-rs in
:class:`DriverAppends`) so that a micro-batch replayed after a crash is skipped instead of
written twice.

The ``txnAppId`` of a writer is :class:`WriterIdentity`: the query's name plus the id Spark
keeps in the query's checkpoint. A reset (deleted) checkpoint or a renamed query gets a new
id, so its batch ids — counting from 0 again — are never mistaken for replays of the old
ones (which would make Delta skip every write until the ids passed the old ones).

Views of :mod:`lakehouse.registry` (``silver.orders`` over ``silver.events``) are read like
tables, stream or batch; writing to a view is refused.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import DataStreamWriter, StreamingQuery

from lakehouse.config import Settings
from lakehouse.kafka_security import python_client_config, spark_kafka_options
from lakehouse.registry import view_of
from lakehouse.tables import checkpoint_location, delta_table, table_location, table_path


def read_kafka(spark: SparkSession, settings: Settings, topics: Sequence[str]) -> DataFrame:
    """A Kafka source over ``topics`` with a per-trigger offset limit (burst attenuation)."""
    return (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka_bootstrap())
        .options(**spark_kafka_options(settings))
        .option("subscribe", ",".join(topics))
        .option("startingOffsets", settings.streaming.starting_offsets)
        .option("maxOffsetsPerTrigger", settings.streaming.max_offsets_per_trigger)
        .option("includeHeaders", "false")
        # A task reads a bounded offset range per partition, and its last fetch asks for
        # records the broker may not hold yet: with Kafka's default 500 ms wait, every
        # partition of every micro-batch cost half a second (18 partitions: 5 s per batch
        # here). Also take a partition's range in one poll, not 500 records at a time.
        .option("kafka.fetch.max.wait.ms", 10)
        .option("kafka.max.poll.records", 100_000)
        .option("kafka.max.partition.fetch.bytes", 16 * 1024 * 1024)
        .load()
    )


def read_delta_stream(spark: SparkSession, settings: Settings, logical: str) -> DataFrame:
    """A streaming read of a Delta table's appends (or of a row-wise view over one)."""
    view = view_of(logical)
    if view is not None:
        return view.over(read_delta_stream(spark, settings, view.base))
    location = table_location(settings, logical)
    reader = spark.readStream.format("delta").option("maxFilesPerTrigger", 1000)
    if settings.tables.binding == "catalog":
        return reader.table(location)
    return reader.load(location)


class WriterIdentity:
    """The ``txnAppId`` of a ``foreachBatch`` query: ``<query name>:<checkpoint's query id>``.

    Resolved on the first micro-batch (Spark has written the checkpoint's ``metadata`` by
    then) through Spark's file system, so ``dbfs:/`` and object-store checkpoints work.
    """

    def __init__(self, settings: Settings, query_name: str) -> None:
        self.query_name = query_name
        self.checkpoint = checkpoint_location(settings, query_name)
        self._app_id: str | None = None
        self._lock = threading.Lock()

    def app_id(self, spark: SparkSession) -> str:
        with self._lock:
            if self._app_id is None:
                text = spark.read.text(f"{self.checkpoint}/metadata").first()
                if text is None:
                    raise RuntimeError(f"no query id in {self.checkpoint}/metadata")
                self._app_id = f"{self.query_name}:{json.loads(text[0])['id']}"
            return self._app_id


def committed_batch(spark: SparkSession, settings: Settings, logical: str, app_id: str) -> int | None:
    """The last ``txnVersion`` writer ``app_id`` committed to a table (None if it never did):
    how a writer with driver-side state knows which batches its table already holds."""
    log = delta_table(spark, settings, logical)._jdt.deltaLog()
    versions = log.unsafeVolatileSnapshot().transactions()
    found = versions.get(app_id)
    return int(found.get()) if found.isDefined() else None


def committed_version(spark: SparkSession, settings: Settings, logical: str) -> int:
    """The newest commit version this JVM has seen of a table (no Spark job: lineage stamps)."""
    return int(delta_table(spark, settings, logical)._jdt.deltaLog().unsafeVolatileSnapshot().version())


def append_idempotent(df: DataFrame, settings: Settings, logical: str, app_id: str, batch_id: int) -> None:
    """Append ``df`` as micro-batch ``batch_id`` of writer ``app_id``; a replay is a no-op."""
    if view_of(logical) is not None:
        raise ValueError(f"{logical} is a view of {view_of(logical).base}; write the table")  # type: ignore[union-attr]
    writer = (
        df.write.format("delta")
        .mode("append")
        .option("txnAppId", app_id)
        .option("txnVersion", batch_id)
    )
    location = table_location(settings, logical)
    if settings.tables.binding == "catalog":
        writer.saveAsTable(location)
    else:
        writer.save(location)


class DriverAppends:
    """Appends of Arrow tables held by the driver: the hot path's writes.

    A micro-batch's rows reach the driver once (one Spark job); writing them back through
    Spark would cost a Spark job and a Spark commit per table, a second or more each on a
    small machine. Path-bound tables are appended with delta-rs instead (tens of
    milliseconds); catalog-bound ones (Unity Catalog) through Spark, the only writer a
    catalog accepts. Either way the commit carries Delta's ``txn`` action (``app_id``,
    ``batch_id``), the same one Spark's ``txnAppId``/``txnVersion`` write, so a replayed
    batch is a no-op and :func:`committed_batch` reads both alike. Log checkpoints stay with
    the pipeline's maintenance thread (none is written inline).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._tables: dict[str, object] = {}
        self._lock = threading.Lock()

    def _delta(self, logical: str):  # noqa: ANN202 - deltalake.DeltaTable
        from deltalake import DeltaTable

        with self._lock:
            if logical not in self._tables:
                self._tables[logical] = DeltaTable(table_path(self.settings, logical))
            table = self._tables[logical]
        table.update_incremental()
        return table

    def committed_batch(self, spark: SparkSession, logical: str, app_id: str) -> int | None:
        """The last batch of writer ``app_id`` the table holds (None if none)."""
        if self.settings.tables.binding == "catalog":
            return committed_batch(spark, self.settings, logical, app_id)
        return self._delta(logical).transaction_version(app_id)

    def version(self, spark: SparkSession, logical: str) -> int:
        """The table's newest commit version."""
        if self.settings.tables.binding == "catalog":
            return committed_version(spark, self.settings, logical)
        return self._delta(logical).version()

    def append(
        self, spark: SparkSession, logical: str, rows: pa.Table, app_id: str, batch_id: int
    ) -> int | None:
        """Append ``rows`` as batch ``batch_id`` of ``app_id``; the table's version after the
        commit, or None when the table already held that batch (a replay)."""
        if view_of(logical) is not None:
            raise ValueError(f"{logical} is a view of {view_of(logical).base}; write the table")  # type: ignore[union-attr]
        if self.settings.tables.binding == "catalog":
            append_idempotent(spark.createDataFrame(rows), self.settings, logical, app_id, batch_id)
            return committed_version(spark, self.settings, logical)
        from deltalake import (
            CommitProperties,
            PostCommitHookProperties,
            Transaction,
            write_deltalake,
        )

        table = self._delta(logical)
        held = table.transaction_version(app_id)
        if held is not None and held >= batch_id:
            return None
        schema = pa.schema(table.schema().to_arrow())
        write_deltalake(
            table,
            with_table_columns(rows, schema),
            mode="append",
            partition_by=table.metadata().partition_columns or None,
            commit_properties=CommitProperties(
                app_transactions=[Transaction(app_id=app_id, version=batch_id)]
            ),
            post_commithook_properties=PostCommitHookProperties(
                create_checkpoint=False, cleanup_expired_logs=False
            ),
        )
        table.update_incremental()
        return table.version()


def with_table_columns(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """``rows`` in the table's columns and types. A column the table gained while this writer
    runs (``trivas contracts migrate`` adds nullable ones) is null in its rows, as Spark's
    Delta appends fill it: a writer on the previous contract keeps running."""
    for name in schema.names:
        if name not in rows.column_names:
            rows = rows.append_column(name, pa.nulls(rows.num_rows, schema.field(name).type))
    return rows.select(schema.names).cast(schema)


_BACKGROUND = ThreadPoolExecutor(max_workers=8, thread_name_prefix="trivas-write")


def in_background(fn: Callable[..., object], *args: object):  # noqa: ANN201 - a Future
    """Run ``fn`` on a writer thread in the caller's FAIR scheduler pool (Spark's local
    properties are per thread and a plain Python thread would not inherit them)."""
    from pyspark import SparkContext

    context = SparkContext._active_spark_context
    pool = context.getLocalProperty("spark.scheduler.pool") if context else None

    def call() -> object:
        if context is not None and pool:
            context.setLocalProperty("spark.scheduler.pool", pool)
        return fn(*args)

    return _BACKGROUND.submit(call)


_PRODUCERS: dict[str, object] = {}
_PRODUCERS_LOCK = threading.Lock()


def publish_records(settings: Settings, topic: str, records: Sequence[tuple[str, str]]) -> None:
    """Send ``(key, value)`` text records from the driver and wait for the broker's acks
    (at-least-once: after a crash a record may be sent twice, and consumers dedup by key)."""
    if not records:
        return
    from kafka import KafkaProducer

    bootstrap = settings.kafka_bootstrap()
    with _PRODUCERS_LOCK:
        producer = _PRODUCERS.get(bootstrap)
        if producer is None:
            producer = _PRODUCERS[bootstrap] = KafkaProducer(
                bootstrap_servers=bootstrap, acks="all", linger_ms=5, **python_client_config(settings)
            )
    futures = [producer.send(topic, key=k.encode(), value=v.encode()) for k, v in records]  # type: ignore[attr-defined]
    producer.flush()  # type: ignore[attr-defined]
    for future in futures:
        future.get()  # raises the broker's error, if any


def _in_own_pool(df: DataFrame, query_name: str) -> None:
    """Give the query its own FAIR scheduler pool (inherited by its stream thread), so a short
    bronze batch is not queued behind a long MERGE of another query in the same application."""
    df.sparkSession.sparkContext.setLocalProperty("spark.scheduler.pool", query_name)


def _with_trigger(writer: DataStreamWriter, seconds: float, available_now: bool) -> DataStreamWriter:
    if available_now:
        return writer.trigger(availableNow=True)
    return writer.trigger(processingTime=f"{int(seconds * 1000)} milliseconds")


def start_foreach_batch(
    df: DataFrame,
    settings: Settings,
    query_name: str,
    write_batch: Callable[[DataFrame, int], None],
    trigger_seconds: float,
    available_now: bool = False,
    output_mode: str = "append",
) -> StreamingQuery:
    """Start a query whose micro-batches are written by ``write_batch(batch_df, batch_id)``."""
    _in_own_pool(df, query_name)
    writer = (
        df.writeStream.queryName(query_name)
        .outputMode(output_mode)
        .option("checkpointLocation", checkpoint_location(settings, query_name))
        .foreachBatch(write_batch)
    )
    return _with_trigger(writer, trigger_seconds, available_now).start()
