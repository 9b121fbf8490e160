"""Per-source API keys, stored only as SHA-256 hashes.

A key is ``trk_<source-slug>_<43 random url-safe chars>`` (256 bits of entropy). Because keys
are random and long, one SHA-256 is the right storage hash (as for GitHub or Stripe tokens):
a slow password hash would only cost latency on every request. The collector hashes the
presented key, looks the hash up, and compares with ``hmac.compare_digest``.

Storage: ``api_keys_file`` (JSON ``{"keys": [{"source": …, "sha256": …, "created_at": …}]}``,
mode 0600) and/or ``TRIVAS_COLLECTOR_API_KEYS="<source>:<sha256-hex>,…"``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

KEYS_ENV = "TRIVAS_COLLECTOR_API_KEYS"
_SOURCE = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,62}$")


def key_hash(api_key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_api_key(source: str) -> str:
    """A fresh random API key for ``source`` (shown once, never stored in clear)."""
    slug = re.sub(r"[^a-z0-9]", "", source.lower())[:12] or "src"
    return f"trk_{slug}_{secrets.token_urlsafe(32)}"


@dataclass(frozen=True)
class ApiKeyStore:
    """Hash → source lookup of the accepted API keys."""

    by_hash: Mapping[str, str]

    def source_for(self, api_key: str | None) -> str | None:
        """The source an API key belongs to, or None if the key is unknown."""
        if not api_key:
            return None
        presented = key_hash(api_key)
        # Compare against every stored hash in constant time (no early exit, no dict probe
        # whose timing depends on the presented value); a deployment has tens of keys.
        match = None
        for stored, source in self.by_hash.items():
            if hmac.compare_digest(stored, presented):
                match = source
        return match


def validate_source(source: str) -> str:
    """Source names are short slugs (they become ``sdk:<source>`` on every event)."""
    if not _SOURCE.match(source):
        raise ValueError(f"invalid source name {source!r}: use [a-z0-9_.-], at most 63 chars")
    return source


def read_key_file(path: Path) -> list[dict[str, str]]:
    """Entries of a key file (empty if the file does not exist)."""
    if not path.exists():
        return []
    return list(orjson.loads(path.read_bytes()).get("keys", []))


def load_key_store(path: Path, environ: Mapping[str, str] | None = None) -> ApiKeyStore:
    """Keys from the key file plus ``$TRIVAS_COLLECTOR_API_KEYS``."""
    environ = os.environ if environ is None else environ
    by_hash = {entry["sha256"]: entry["source"] for entry in read_key_file(path)}
    for item in environ.get(KEYS_ENV, "").split(","):
        if item.strip():
            source, _, digest = item.strip().partition(":")
            by_hash[digest.lower()] = validate_source(source)
    return ApiKeyStore(by_hash)


def add_key(path: Path, source: str) -> str:
    """Create a key for ``source``, store its hash in ``path``; returns the clear key once."""
    validate_source(source)
    api_key = new_api_key(source)
    entries = read_key_file(path)
    entries.append(
        {"source": source, "sha256": key_hash(api_key), "created_at": datetime.now(UTC).isoformat()}
    )
    _write_key_file(path, entries)
    return api_key


def revoke_source(path: Path, source: str) -> int:
    """Remove every key of ``source``; returns how many were removed."""
    entries = read_key_file(path)
    kept = [e for e in entries if e["source"] != source]
    _write_key_file(path, kept)
    return len(entries) - len(kept)


def _write_key_file(path: Path, entries: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps({"keys": entries}, option=orjson.OPT_INDENT_2))
    tmp.chmod(0o600)
    tmp.replace(path)
