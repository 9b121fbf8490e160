"""The event catalog (``conf/events/``): the one place where event schemas are declared.

Everything else is derived from it: Spark schemas for bronze→silver parsing, a JSON Schema per
event type for producers and the collector, PII classes, allowed lateness and dedup horizons,
the Kafka topic and the silver table of each domain.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pyspark.sql import types as T

from lakehouse import conf_dir

CATALOG_IN_REPO = "conf/events"  # the catalog's path in git (contract diffs read it at a revision)
# TRIVAS_CATALOG_DIR points a process (a collector, a pipeline) at another catalog folder,
# e.g. a proposed version under test; the configuration folder's otherwise (lakehouse.conf_dir).
CATALOG_DIR = Path(os.environ.get("TRIVAS_CATALOG_DIR") or conf_dir() / "events")
ENVELOPE_FILE = "_envelope.yaml"

FieldType = Literal["string", "integer", "number", "boolean", "timestamp", "array"]
PiiClass = Literal["none", "hash", "tokenize", "redact", "forbidden"]

SPARK_TYPES: dict[str, T.DataType] = {
    "string": T.StringType(),
    "integer": T.LongType(),
    "number": T.DoubleType(),
    "boolean": T.BooleanType(),
    "timestamp": T.TimestampType(),
}
JSON_TYPES = {
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "timestamp": "string",
    "array": "array",
}
_DURATION = re.compile(r"^(\d+)\s*(ms|s|m|h|d)$")
_UNITS = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str | int) -> timedelta:
    """Parse ``"90s"``, ``"2m"``, ``"1h"`` (or a number of seconds) into a timedelta."""
    if isinstance(text, int):
        return timedelta(seconds=text)
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"invalid duration {text!r}: use e.g. 30s, 2m, 1h")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@dataclass(frozen=True)
class FieldSpec:
    """One field of the envelope or of a payload, with its contract."""

    name: str
    type: FieldType
    required: bool = False
    pii: PiiClass = "none"
    allowed: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    format: str | None = None
    description: str = ""
    items: tuple[FieldSpec, ...] = ()
    since: int = 1
    aliases: tuple[str, ...] = ()

    @classmethod
    def from_yaml(cls, raw: dict[str, Any]) -> FieldSpec:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"field {raw.get('name')!r}: unknown keys {sorted(unknown)}")
        if raw["type"] not in JSON_TYPES:
            raise ValueError(f"field {raw['name']!r}: unknown type {raw['type']!r}")
        items = tuple(cls.from_yaml(item) for item in raw.get("items", ()))
        if raw["type"] == "array" and not items:
            raise ValueError(f"array field {raw['name']!r} needs items")
        allowed = tuple(raw["allowed"]) if raw.get("allowed") is not None else None
        aliases = tuple(raw.get("aliases", ()))
        return cls(**{**raw, "items": items, "allowed": allowed, "aliases": aliases})

    def required_in(self, version: int) -> bool:
        """Whether a record of contract ``version`` must carry this field: a field added as
        required in a later version (``since``) is optional for older producers."""
        return self.required and self.since <= version

    def value_in(self, payload: dict[str, Any]) -> Any:
        """This field's value in ``payload``, under its name or, for a record written before a
        rename, under one of its ``aliases`` (None when absent)."""
        value = payload.get(self.name)
        if value is None:
            for alias in self.aliases:
                if payload.get(alias) is not None:
                    return payload[alias]
        return value

    def spark_type(self) -> T.DataType:
        """The Spark type of this field."""
        if self.type == "array":
            return T.ArrayType(
                T.StructType([T.StructField(i.name, i.spark_type(), True) for i in self.items])
            )
        return SPARK_TYPES[self.type]

    def json_schema(self) -> dict[str, Any] | bool:
        """The JSON Schema of this field (``false`` for forbidden fields: must be absent)."""
        if self.pii == "forbidden":
            return False
        schema: dict[str, Any] = {"type": JSON_TYPES[self.type]}
        if not self.required:
            schema["type"] = [schema["type"], "null"]
        if self.type == "timestamp":
            schema["format"] = "date-time"
        if self.format:
            schema["format"] = self.format
        if self.allowed is not None:
            schema["enum"] = list(self.allowed) + ([] if self.required else [None])
        if self.min is not None:
            schema["minimum"] = self.min
        if self.max is not None:
            schema["maximum"] = self.max
        if self.type == "array":
            schema["items"] = _object_schema(self.items, additional=True)
        if self.description:
            schema["description"] = self.description
        return schema


def _object_schema(fields: tuple[FieldSpec, ...], additional: bool) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {f.name: f.json_schema() for f in fields},
        "required": [f.name for f in fields if f.required],
        "additionalProperties": additional,
    }


@dataclass(frozen=True)
class EventType:
    """One event type's contract: payload fields, lateness, dedup horizon, ownership."""

    event_type: str
    version: int
    domain: str
    owner: str
    description: str
    key: str
    allowed_lateness: timedelta
    dedup_horizon: timedelta
    fields: tuple[FieldSpec, ...]
    oldest_accepted_version: int | None = None

    @property
    def accepted_versions(self) -> range:
        """The contract versions the collector and silver accept: the current one and, during
        a transition window, the older ones from ``oldest_accepted_version`` on."""
        oldest = self.version if self.oldest_accepted_version is None else self.oldest_accepted_version
        return range(oldest, self.version + 1)

    def field(self, name: str) -> FieldSpec:
        """The payload field called ``name``."""
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(f"{self.event_type} has no field {name!r}")

    @property
    def stored_fields(self) -> tuple[FieldSpec, ...]:
        """Payload fields that may be stored (forbidden ones never are)."""
        return tuple(f for f in self.fields if f.pii != "forbidden")


@dataclass(frozen=True)
class Domain:
    """A group of event types sharing one raw topic and one silver table."""

    name: str
    table: str
    description: str


@dataclass(frozen=True)
class Catalog:
    """The whole event catalog."""

    envelope: tuple[FieldSpec, ...]
    domains: dict[str, Domain]
    event_types: dict[str, EventType] = field(default_factory=dict)

    def event(self, event_type: str) -> EventType:
        """The contract of one event type."""
        try:
            return self.event_types[event_type]
        except KeyError:
            raise KeyError(f"unknown event type {event_type!r}") from None

    def events_of(self, domain: str) -> list[EventType]:
        """Event types of one domain, in name order."""
        return sorted(
            (e for e in self.event_types.values() if e.domain == domain),
            key=lambda e: e.event_type,
        )

    def domain_fields(self, domain: str) -> tuple[FieldSpec, ...]:
        """Union of the storable payload fields of a domain's event types (silver columns)."""
        merged: dict[str, FieldSpec] = {}
        for event in self.events_of(domain):
            for spec in event.stored_fields:
                merged.setdefault(spec.name, spec)
        return tuple(merged.values())

    def all_payload_fields(self, domain: str) -> tuple[FieldSpec, ...]:
        """Union of all payload fields of a domain, forbidden ones included (for parsing)."""
        merged: dict[str, FieldSpec] = {}
        for event in self.events_of(domain):
            for spec in event.fields:
                merged.setdefault(spec.name, spec)
        return tuple(merged.values())

    def payload_schema(self, domain: str) -> T.StructType:
        """Spark schema to parse any payload of ``domain`` (every field nullable)."""
        return T.StructType(
            [T.StructField(f.name, f.spark_type(), True) for f in self.all_payload_fields(domain)]
        )

    def envelope_schema(self) -> T.StructType:
        """Spark schema of the typed envelope (every field nullable: a refused record keeps
        what could be read of it)."""
        return T.StructType([T.StructField(f.name, f.spark_type(), True) for f in self.envelope])

    def silver_schema(self, domain: str) -> T.StructType:
        """Columns of the silver table of ``domain``: envelope + payload + lineage."""
        envelope = [T.StructField(f.name, f.spark_type(), not f.required) for f in self.envelope]
        payload = [
            T.StructField(f.name, f.spark_type(), True) for f in self.domain_fields(domain)
        ]
        lineage = [
            T.StructField("kafka_topic", T.StringType(), False),
            T.StructField("kafka_partition", T.IntegerType(), False),
            T.StructField("kafka_offset", T.LongType(), False),
            T.StructField("ingested_at", T.TimestampType(), False),
        ]
        return T.StructType(envelope + payload + lineage)

    def json_schema(self, event_type: str) -> dict[str, Any]:
        """JSON Schema (2020-12) of a whole record of ``event_type``, for producers."""
        event = self.event(event_type)
        schema = _object_schema(self.envelope, additional=False)
        schema["properties"]["event_type"] = {"const": event_type}
        schema["properties"]["schema_version"] = {"const": event.version}
        schema["properties"]["payload"] = _object_schema(event.fields, additional=True)
        schema["required"] = [*schema["required"], "payload"]
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"trivas:{event_type}:v{event.version}",
            "title": event_type,
            "description": event.description,
            **schema,
        }

    def pii_classes(self, domain: str) -> dict[str, PiiClass]:
        """PII class of every protected payload field of ``domain``."""
        return {f.name: f.pii for f in self.all_payload_fields(domain) if f.pii != "none"}

    def max_allowed_lateness(self) -> timedelta:
        """The longest allowed lateness of any event type (sizes gold's watermark)."""
        return max(e.allowed_lateness for e in self.event_types.values())

    def max_dedup_horizon(self) -> timedelta:
        """The longest dedup horizon of any event type (sizes silver's dedup state)."""
        return max(e.dedup_horizon for e in self.event_types.values())


def _check_domain_consistency(catalog: Catalog) -> None:
    """A field shared by event types of one domain must have one type (one silver column)."""
    for domain in catalog.domains:
        seen: dict[str, tuple[str, T.DataType]] = {}
        for event in catalog.events_of(domain):
            for spec in event.fields:
                previous = seen.setdefault(spec.name, (event.event_type, spec.spark_type()))
                if previous[1] != spec.spark_type():
                    raise ValueError(
                        f"domain {domain}: field {spec.name!r} is {previous[1].simpleString()} in "
                        f"{previous[0]} but {spec.spark_type().simpleString()} in {event.event_type}"
                    )


def _check_versions(file: str, version: int, oldest: int | None, fields: tuple[FieldSpec, ...]) -> None:
    """The transition window lies within 1..version, ``since`` within it, and an alias names
    no other field (a record could not say which one it meant)."""
    if oldest is not None and not 1 <= int(oldest) <= version:
        raise ValueError(f"{file}: oldest_accepted_version {oldest} must be within 1..{version}")
    names = {f.name for f in fields}
    for spec in fields:
        if not 1 <= spec.since <= version:
            raise ValueError(f"{file}: field {spec.name!r} since {spec.since} must be within 1..{version}")
        clash = names.intersection(spec.aliases)
        if clash:
            raise ValueError(f"{file}: alias {sorted(clash)[0]!r} of {spec.name!r} is also a field")


def load_catalog(directory: Path = CATALOG_DIR) -> Catalog:
    """Load and validate every ``<event_type>.yaml`` of ``directory``."""
    envelope_raw = yaml.safe_load((directory / ENVELOPE_FILE).read_text())
    envelope = tuple(FieldSpec.from_yaml(f) for f in envelope_raw["fields"])
    domains = {
        name: Domain(name=name, table=d["table"], description=d.get("description", ""))
        for name, d in envelope_raw["domains"].items()
    }
    event_types: dict[str, EventType] = {}
    for path in sorted(directory.glob("*.yaml")):
        if path.name.startswith("_"):
            continue
        raw = yaml.safe_load(path.read_text())
        if raw["event_type"] != path.stem:
            raise ValueError(f"{path.name}: event_type {raw['event_type']!r} must match the file name")
        if raw["domain"] not in domains:
            raise ValueError(f"{path.name}: unknown domain {raw['domain']!r}")
        fields = tuple(FieldSpec.from_yaml(f) for f in raw["fields"])
        if raw["key"] not in {f.name for f in fields}:
            raise ValueError(f"{path.name}: partition key {raw['key']!r} is not a field")
        _check_versions(path.name, int(raw["version"]), raw.get("oldest_accepted_version"), fields)
        event_types[path.stem] = EventType(
            event_type=path.stem,
            version=int(raw["version"]),
            domain=raw["domain"],
            owner=raw["owner"],
            description=raw["description"],
            key=raw["key"],
            allowed_lateness=parse_duration(raw["allowed_lateness"]),
            dedup_horizon=parse_duration(raw["dedup_horizon"]),
            fields=fields,
            oldest_accepted_version=raw.get("oldest_accepted_version"),
        )
    catalog = Catalog(envelope=envelope, domains=domains, event_types=event_types)
    _check_domain_consistency(catalog)
    return catalog


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    """The project's catalog, loaded once per process."""
    return load_catalog()


def topic_for(prefix: str, domain: str) -> str:
    """Kafka topic carrying the raw records of ``domain``."""
    return f"{prefix}.{domain}"
