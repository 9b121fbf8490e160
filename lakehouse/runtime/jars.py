"""Resolve the JVM jars trivas needs, once, into a project-local cache.

Apache Ivy (shipped inside pyspark) resolves Maven coordinates with their dependencies; the
result is kept in ``<jar_cache>/<bundle>/`` and reused offline by every later start. For the
Spark bundle only jars that pyspark does not already ship are kept, so a cluster classpath
never receives a second copy of Spark's own libraries.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pyspark

DELTA_VERSION = "4.3.1"
SPARK_VERSION = "4.1.1"
BUNDLES: dict[str, tuple[str, ...]] = {
    # Delta Lake for Spark 4.1 and Spark's Kafka source/sink.
    "spark": (
        f"io.delta:delta-spark_4.1_2.13:{DELTA_VERSION}",
        f"org.apache.spark:spark-sql-kafka-0-10_2.13:{SPARK_VERSION}",
    ),
    # A single-node KRaft broker; the slf4j binding routes its logs into log4j2.
    "kafka": (
        "org.apache.kafka:kafka_2.13:4.1.1",
        "org.apache.logging.log4j:log4j-slf4j-impl:2.24.3",
    ),
}
_VERSIONED_JAR = re.compile(r"^(?P<artifact>.+?)-\d[\w.\-]*\.jar$")


class JavaMissingError(RuntimeError):
    """Raised when no Java runtime is on PATH."""


def java_executable() -> str:
    """Path of ``java``; a single clear error when Java 17 is not installed."""
    java = shutil.which("java")
    if java is None:
        raise JavaMissingError(
            "Java not found: install a Java 17 runtime (Debian: apt-get install openjdk-17-jre-headless)"
        )
    return java


def spark_home() -> Path:
    """The Spark installation: ``$SPARK_HOME`` when it holds Spark's jars, else the pip
    pyspark package. (Under ``spark-submit`` pyspark is imported from a zip inside it.)"""
    home = os.environ.get("SPARK_HOME")
    if home and (Path(home) / "jars").is_dir():
        return Path(home)
    return Path(pyspark.__file__).parent


def pyspark_jars_dir() -> Path:
    """Folder of the jars pyspark ships (Spark's own classpath)."""
    return spark_home() / "jars"


def artifact_name(jar: Path) -> str:
    """``kafka-clients-3.9.1.jar`` → ``kafka-clients`` (the name without its version)."""
    match = _VERSIONED_JAR.match(jar.name)
    return match.group("artifact") if match else jar.stem


def ivy_module(coordinates: tuple[str, ...]) -> str:
    """An ivy.xml that depends on every ``group:artifact:version`` of ``coordinates``."""
    lines = []
    for coordinate in coordinates:
        org, name, rev = coordinate.split(":")
        lines.append(
            f"<dependency org={quoteattr(org)} name={quoteattr(name)} rev={quoteattr(rev)} "
            'conf="default->default,master,runtime"/>'
        )
    body = "\n    ".join(lines)
    return (
        '<ivy-module version="2.0">\n'
        '  <info organisation="trivas" module="jars"/>\n'
        '  <configurations><conf name="default"/></configurations>\n'
        f"  <dependencies>\n    {body}\n  </dependencies>\n</ivy-module>\n"
    )


def resolve_coordinates(
    name: str, coordinates: Sequence[str], cache_dir: Path, exclude: Iterable[str] = ()
) -> list[Path]:
    """Jars of ``coordinates`` with their dependencies, resolved by Ivy into ``cache_dir/name``.

    Resolution happens once (a marker records what was resolved); artifacts named in
    ``exclude`` (names without versions) are left out.
    """
    excluded = sorted(set(exclude))
    target = cache_dir / name
    marker = target / ".resolved"
    signature = "\n".join([*coordinates, "exclude:", *excluded])
    if marker.exists() and marker.read_text() == signature:
        return sorted(target.glob("*.jar"))
    ivy_jar = next(pyspark_jars_dir().glob("ivy-*.jar"))
    with tempfile.TemporaryDirectory() as work:
        module = Path(work) / "ivy.xml"
        module.write_text(ivy_module(tuple(coordinates)))
        staging = Path(work) / "jars"
        command = [
            java_executable(), "-jar", str(ivy_jar),
            "-ivy", str(module),
            "-cache", str(cache_dir / ".ivy-cache"),
            "-retrieve", f"{staging}/[artifact]-[revision](-[classifier]).[ext]",
            "-types", "jar", "bundle",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"resolving {name} jars failed:\n{result.stdout[-3000:]}")
        jars = [j for j in staging.glob("*.jar") if artifact_name(j) not in excluded]
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for jar in jars:
            shutil.copy2(jar, target / jar.name)
    marker.write_text(signature)
    return sorted(target.glob("*.jar"))


def resolve_bundle(name: str, cache_dir: Path) -> list[Path]:
    """Jars of bundle ``name``; for Spark, only those pyspark does not already ship."""
    shipped = {artifact_name(j) for j in pyspark_jars_dir().glob("*.jar")} if name == "spark" else set()
    return resolve_coordinates(name, BUNDLES[name], cache_dir, exclude=shipped)


def main() -> None:
    """Resolve every bundle (used by ``make`` to warm the cache)."""
    from lakehouse.config import settings

    cache = settings().path(settings().paths.jar_cache)
    for bundle in BUNDLES:
        jars = resolve_bundle(bundle, cache)
        print(f"{bundle}: {len(jars)} jars in {cache / bundle}")


if __name__ == "__main__":
    main()
