"""The Spark session factory: Delta + Kafka jars, RocksDB state store, small-machine defaults."""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

from lakehouse.config import Settings
from lakehouse.runtime.jars import java_executable, resolve_bundle

# Settings of the Spark application itself, for when trivas starts it (laptop, `spark-submit`):
# Delta's extension and catalog, the FAIR scheduler, and workarounds of pip's Spark 4.1.1. A
# provided runtime (Databricks) has its own and takes none of them.
APPLICATION_DEFAULTS = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # Offset, commit and state-store files through Hadoop's FileSystem API rather than its
    # FileContext API: FileContext creates each file with an explicit permission, which
    # Hadoop's local file system applies by forking `chmod` when native Hadoop libraries are
    # absent (they are, on pip's pyspark): ~25 ms a file idle, ~180 ms on a loaded 2-core box,
    # several files per micro-batch per query (docs/performance.md). Writes stay
    # write-temp-then-rename; a checkpoint still has one writer (Spark refuses a second run).
    "spark.sql.streaming.checkpointFileManagerClass": (
        "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"
    ),
    "spark.ui.showConsoleProgress": "false",
    # Many queries share one application: FAIR pools (one per query) interleave their jobs.
    "spark.scheduler.mode": "FAIR",
    # Spark 4.1.1's V2 Kafka micro-batch stream throws a NullPointerException while reporting
    # the progress of the first batch after a restart from a checkpoint (SPARK-55271 /
    # SPARK-57438, unfixed in 4.1.1); the V1 Kafka source has the same semantics without it.
    "spark.sql.streaming.disabledV2MicroBatchReaders": (
        "org.apache.spark.sql.kafka010.KafkaSourceProvider"
    ),
}

# Delta and state-store settings that matter for seconds-level latency (measured in
# STACK.md): snapshot reconstruction in one task, no per-file stats on the hot path, RocksDB
# state with changelog checkpointing so a commit uploads deltas only. They are SQL session
# settings, so a provided runtime's session takes them too.
SESSION_DEFAULTS = {
    "spark.sql.streaming.stateStore.providerClass": (
        "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
    ),
    "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
    "spark.sql.streaming.noDataMicroBatches.enabled": "true",
    "spark.databricks.delta.snapshotPartitions": "1",
    "spark.databricks.delta.properties.defaults.checkpointInterval": "100",
    "spark.databricks.delta.optimizeWrite.enabled": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.adaptive.enabled": "false",
    "spark.sql.streaming.metricsEnabled": "true",
    # No per-file column statistics on the hot path: nothing here prunes files by them, and
    # collecting them costs a pass over every written row.
    "spark.databricks.delta.stats.collect": "false",
    # A micro-batch is cached for a few seconds and read twice: compressing its columns cost
    # more than it saved (the cache build was the hot path's longest task).
    "spark.sql.inMemoryColumnarStorage.compressed": "false",
}


def session_conf(settings: Settings) -> dict[str, str]:
    """The SQL session settings trivas sets, for this deployment (any runtime)."""
    return {**SESSION_DEFAULTS, "spark.sql.shuffle.partitions": str(settings.spark.shuffle_partitions)}


def spark_conf(settings: Settings) -> dict[str, str]:
    """Every Spark configuration value of an application trivas starts itself."""
    jars = resolve_bundle("spark", settings.path(settings.paths.jar_cache))
    conf = {**APPLICATION_DEFAULTS, **session_conf(settings)}
    conf.update(
        {
            "spark.jars": ",".join(str(j) for j in jars),
            "spark.driver.memory": settings.spark.driver_memory,
            "spark.ui.enabled": str(settings.spark.ui_enabled).lower(),
            "spark.sql.warehouse.dir": str(settings.path(settings.paths.var) / "warehouse"),
            "spark.scheduler.allocation.file": str(settings.conf_file("fairscheduler.xml")),
            # Contract checks compile to large generated methods; HotSpot leaves methods over
            # 8 kB of bytecode interpreted unless told otherwise (10x slower filters here).
            "spark.driver.extraJavaOptions": (
                f"-Dderby.system.home={settings.path(settings.paths.var)} -XX:-DontCompileHugeMethods"
            ),
            # The same for executors in JVMs of their own (a cluster; local mode has none).
            "spark.executor.extraJavaOptions": "-XX:-DontCompileHugeMethods",
        }
    )
    conf.update(settings.spark.extra_conf)
    return conf


def get_spark(settings: Settings, app_name: str | None = None) -> SparkSession:
    """A SparkSession with Delta, Kafka and RocksDB state configured for ``settings``.

    With ``spark.runtime: provided`` (Databricks) the runtime's own session is used as it is:
    its Delta, Kafka and cluster settings stay, no jar is resolved, and only the SQL session
    settings (:func:`session_conf`, then ``spark.extra_conf``) are set on it."""
    if settings.spark.runtime == "provided":
        spark = SparkSession.builder.getOrCreate()
        for key, value in {**session_conf(settings), **settings.spark.extra_conf}.items():
            spark.conf.set(key, value)
        return spark
    java_executable()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name or settings.spark.app_name)
    if settings.spark.master:
        builder = builder.master(settings.spark.master)
    for key, value in spark_conf(settings).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
