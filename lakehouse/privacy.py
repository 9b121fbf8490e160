"""PII policy from the catalog, applied before anything reaches silver.

Classes (``conf/events/*.yaml``, ``pii:``):
- ``hash``: keyed HMAC-SHA256, prefixed with the key id (``k1:…``) so keys can rotate;
- ``tokenize``: a stable token (``tok_…``, HMAC under a key derived for tokens) usable as a
  join key across sources;
- ``redact``: the value is dropped;
- ``forbidden``: must never be stored: a record carrying it is refused (quarantined in silver,
  rejected at the collector).

HMAC is built from Spark's native ``sha2`` so the policy runs inside the JVM at full speed:
HMAC(K, m) = H((K ⊕ opad) ‖ H((K ⊕ ipad) ‖ m)).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DataType

BLOCK_SIZE = 64  # SHA-256 block size in bytes
TOKEN_PREFIX = "tok_"


def derive_key(master_key: bytes, purpose: str) -> bytes:
    """A sub-key per purpose, so a hash and a token of the same value never coincide."""
    return hmac.new(master_key, purpose.encode(), hashlib.sha256).digest()


def hmac_hex(key: bytes, value: str) -> str:
    """HMAC-SHA256 of ``value`` as hex: the Python twin of :func:`hmac_column`."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def _padded_key(key: bytes) -> bytes:
    if len(key) > BLOCK_SIZE:
        key = hashlib.sha256(key).digest()
    return key.ljust(BLOCK_SIZE, b"\0")


def hmac_column(value: Column, key: bytes) -> Column:
    """HMAC-SHA256 (hex) of a string column, computed with native Spark expressions."""
    padded = _padded_key(key)
    inner_pad = bytes(b ^ 0x36 for b in padded)
    outer_pad = bytes(b ^ 0x5C for b in padded)
    inner = F.unhex(F.sha2(F.concat(F.lit(inner_pad), F.encode(value, "UTF-8")), 256))
    return F.when(value.isNotNull(), F.sha2(F.concat(F.lit(outer_pad), inner), 256))


def pseudonymise(value: str, pii_class: str, master_key: bytes, key_id: str) -> str | None:
    """The protected form of one value (what silver stores), computed in Python."""
    if pii_class == "hash":
        return f"{key_id}:{hmac_hex(derive_key(master_key, 'hash'), value)}"
    if pii_class == "tokenize":
        return TOKEN_PREFIX + hmac_hex(derive_key(master_key, "token"), value)[:32]
    if pii_class in ("redact", "forbidden"):
        return None
    return value


def protected_column(column: Column, pii_class: str, master_key: bytes, key_id: str) -> Column:
    """The Spark twin of :func:`pseudonymise`."""
    if pii_class == "hash":
        digest = hmac_column(column, derive_key(master_key, "hash"))
        return F.when(column.isNotNull(), F.concat(F.lit(f"{key_id}:"), digest))
    if pii_class == "tokenize":
        digest = hmac_column(column, derive_key(master_key, "token"))
        return F.when(column.isNotNull(), F.concat(F.lit(TOKEN_PREFIX), F.substring(digest, 1, 32)))
    if pii_class in ("redact", "forbidden"):
        return F.lit(None)
    return column


def apply_pii_policy(
    df: DataFrame, pii_classes: Mapping[str, str], master_key: bytes, key_id: str
) -> DataFrame:
    """Replace every protected column of ``df`` by its protected form (types are kept)."""
    for name, pii_class in pii_classes.items():
        if name not in df.columns:
            continue
        df = df.withColumn(name, protected_field(name, df.schema[name].dataType, pii_class, master_key, key_id))
    return df


def protected_field(name: str, dtype: DataType, pii_class: str, master_key: bytes, key_id: str) -> Column:
    """Column ``name`` of type ``dtype`` in its protected form, keeping its type and name."""
    return protected_column(F.col(name), pii_class, master_key, key_id).cast(dtype).alias(name)


# --- Python-side policy, key rotation and the token vault (collector, SDK, CDC, tooling) ---
#
# Everything below is additive: the functions above keep their signatures and behaviour.

import os  # noqa: E402
import re  # noqa: E402
import sqlite3  # noqa: E402
import threading  # noqa: E402
from collections.abc import Iterable  # noqa: E402
from collections.abc import Mapping as _Mapping  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from pydantic import SecretStr  # noqa: E402

VAULT_KEY_VARIABLE = "TRIVAS_PRIVACY__VAULT_KEY"  # 32 bytes as 64 hex chars; distinct from every hash key


def protect_record(
    payload: _Mapping[str, Any], pii_classes: _Mapping[str, str], master_key: bytes, key_id: str
) -> dict[str, Any]:
    """The Python twin of :func:`apply_pii_policy` on one payload dict.

    ``hash``/``tokenize`` fields are pseudonymised (non-strings are stringified first),
    ``redact`` fields become None and ``forbidden`` fields are removed altogether.
    """
    protected: dict[str, Any] = {}
    for name, value in payload.items():
        pii_class = pii_classes.get(name, "none")
        if pii_class == "forbidden":
            continue
        if pii_class == "none" or value is None:
            protected[name] = value
        elif pii_class == "redact":
            protected[name] = None
        else:
            protected[name] = pseudonymise(str(value), pii_class, master_key, key_id)
    return protected


# Free-text patterns for defence in depth (error details, log lines): structured fields are
# protected by their catalog class; these catch values that leak into text anyway.
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
_IPV4 = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])")
_HEX4 = r"[0-9A-Fa-f]{1,4}"
_IPV6 = re.compile(
    rf"(?<![0-9A-Fa-f:])(?:(?:{_HEX4}:){{7}}{_HEX4}"
    rf"|(?:{_HEX4}(?::{_HEX4}){{0,6}})?::(?:{_HEX4}(?::{_HEX4}){{0,6}})?)(?![0-9A-Fa-f:])"
)
# Card numbers as they are written: 4×4 groups, Amex 4-6-5, or 13–19 contiguous digits.
_CARD = re.compile(r"(?<![\d-])(?:\d{4}[ \-]){3}\d{4}(?![\d-])|(?<!\d)\d{4}[ \-]\d{6}[ \-]\d{5}(?!\d)|(?<!\d)\d{13,19}(?!\d)")
_PHONE = re.compile(r"(?<![\w+])\+\d[\d \-().]{6,18}\d(?!\d)")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# Issuer prefixes (IIN) and the lengths each network issues, from the networks' published
# ranges: a Luhn-valid run of digits is a card number only if a network could have issued it.
# Without this a millisecond timestamp or a 13-digit order id passes Luhn one time in ten.
_CARD_RANGES: tuple[tuple[str, str, frozenset[int]], ...] = (
    ("4", "4", frozenset({13, 16, 19})),  # Visa
    ("51", "55", frozenset({16})),  # Mastercard
    ("2221", "2720", frozenset({16})),  # Mastercard 2-series
    ("34", "34", frozenset({15})),  # American Express
    ("37", "37", frozenset({15})),
    ("300", "305", frozenset({14})),  # Diners Club
    ("36", "36", frozenset({14})),
    ("38", "39", frozenset({14, 16})),
    ("6011", "6011", frozenset({16, 19})),  # Discover
    ("644", "649", frozenset({16, 19})),
    ("65", "65", frozenset({16, 19})),
    ("3528", "3589", frozenset({16, 17, 18, 19})),  # JCB
    ("62", "62", frozenset({16, 17, 18, 19})),  # UnionPay
    ("5018", "5018", frozenset({12, 13, 14, 15, 16, 17, 18, 19})),  # Maestro
    ("5020", "5020", frozenset({12, 13, 14, 15, 16, 17, 18, 19})),
    ("5038", "5038", frozenset({12, 13, 14, 15, 16, 17, 18, 19})),
    ("6304", "6304", frozenset({12, 13, 14, 15, 16, 17, 18, 19})),
    ("6759", "6759", frozenset({12, 13, 14, 15, 16, 17, 18, 19})),
    ("2200", "2204", frozenset({16, 17, 18, 19})),  # Mir
)


def looks_like_card(digits: str, identifier: bool = False) -> bool:
    """True when ``digits`` (digits only) could be a payment card number.

    Luhn-valid, 13–19 digits, in a range and length a card network issues. ``identifier``
    says the digits are the whole value of an id-like field (``order_id``, ``id``…) written
    without separators: there a 13-digit Visa-range number, the one length real ids collide
    with, is taken for the id it claims to be (13-digit Visa numbers are no longer issued).
    """
    n = len(digits)
    if not 13 <= n <= 19 or not digits.isdigit() or not _luhn_ok(digits):
        return False
    if identifier and n == 13:
        return False
    return any(lo <= digits[: len(lo)] <= hi and n in lengths for lo, hi, lengths in _CARD_RANGES)


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[card]" if looks_like_card(digits) else match.group(0)


def mask_pii_patterns(text: str) -> str:
    """Mask e-mail addresses, IP addresses, card numbers (Luhn) and E.164 phones in free text."""
    text = _EMAIL.sub("[email]", text)
    text = _IPV4.sub("[ip]", text)
    text = _IPV6.sub(lambda m: "[ip]" if m.group(0) != "::" else m.group(0), text)
    text = _CARD.sub(_mask_card, text)
    return _PHONE.sub("[phone]", text)


@dataclass(frozen=True)
class KeyRing:
    """Several hashing keys by id: the current one writes, all of them verify.

    ``hash`` values carry their key id (``k2:…``), so a value hashed before a rotation is still
    recognised (:meth:`verify_hash`) and can be re-hashed when convenient. Tokens carry no key
    id: they are join keys and follow the current key, like silver's Spark policy; the vault
    keeps old tokens reversible across a rotation.
    """

    keys: _Mapping[str, bytes]
    current_id: str

    def current(self) -> tuple[str, bytes]:
        """``(key_id, key)`` used to write."""
        return self.current_id, self.keys[self.current_id]

    def hash_value(self, value: str) -> str:
        """The ``hash`` form of ``value`` under the current key."""
        return pseudonymise(value, "hash", self.keys[self.current_id], self.current_id)  # type: ignore[return-value]

    def token(self, value: str) -> str:
        """The ``tokenize`` form of ``value`` under the current key."""
        return pseudonymise(value, "tokenize", self.keys[self.current_id], self.current_id)  # type: ignore[return-value]

    def verify_hash(self, value: str, stored: str) -> bool:
        """True if ``stored`` is the hash of ``value`` under the key its prefix names."""
        key_id, sep, _ = stored.partition(":")
        if not sep or key_id not in self.keys:
            return False
        expected = pseudonymise(value, "hash", self.keys[key_id], key_id) or ""
        return hmac.compare_digest(expected, stored)

    def needs_rehash(self, stored: str) -> bool:
        """True if ``stored`` was written under an older key."""
        return not stored.startswith(f"{self.current_id}:")


def parse_keys(text: str, separator: str) -> dict[str, bytes]:
    """``"k1<sep>secret"`` items (comma- or newline-separated) → ``{"k1": b"secret"}``."""
    keys: dict[str, bytes] = {}
    for item in re.split(r"[,\n]", text):
        item = item.strip()
        if not item or item.startswith("#"):
            continue
        key_id, sep, secret = item.partition(separator)
        if not sep or not key_id.strip() or not secret.strip():
            raise ValueError("PII key entries must look like '<key id>" + separator + "<secret>'")
        keys[key_id.strip()] = secret.strip().encode()
    return keys


def load_key_ring(settings: Any) -> KeyRing:
    """The key ring: the settings' key (current, written by silver too) plus retired keys.

    Rotation: give the new key through the settings (``TRIVAS_PRIVACY__HASH_KEY_ID=k2`` and
    ``TRIVAS_PRIVACY__HASH_KEY``/``…__HASH_KEY_FILE``) and keep the old ones in
    ``privacy.retired_keys`` (``TRIVAS_PRIVACY__RETIRED_KEYS="k1:<secret>"``) or the file named
    by ``privacy.retired_keys_file`` (``k1=<secret>`` per line) so that hashes written before
    the rotation still verify.
    """
    from lakehouse.config import hash_key

    privacy = settings.privacy
    keys = parse_keys(privacy.retired_keys.get_secret_value() if privacy.retired_keys else "", ":")
    if privacy.retired_keys_file:
        keys.update(parse_keys(settings.path(privacy.retired_keys_file).read_text(), "="))
    current_id = privacy.hash_key_id
    keys[current_id] = hash_key(settings)
    return KeyRing(keys=keys, current_id=current_id)


class VaultLockedError(PermissionError):
    """Raised when the vault is read without its key."""


def load_vault_key(configured: SecretStr | None, key_file: Path | None = None) -> bytes | None:
    """The vault key (32 bytes) from the settings (``privacy.vault_key``, hex) or a key file (hex)."""
    raw = configured.get_secret_value().strip() if configured is not None else ""
    if not raw and key_file is not None and key_file.exists():
        raw = key_file.read_text().strip()
    if not raw:
        return None
    key = bytes.fromhex(raw)
    if len(key) != 32:
        raise ValueError("the vault key must be 32 bytes (64 hex characters)")
    return key


class PiiVault:
    """Access-controlled reversal of tokens: ``token → AES-256-GCM(value)`` in SQLite.

    Writers (the collector, for every ``tokenize`` field it accepts) and readers both need the
    vault key, which is distinct from the hashing keys: holding the lake and the hash key does
    not reveal tokenized values. Ciphertexts are bound to their token (AEAD associated data),
    the file is created 0600, and every :meth:`reveal` is recorded in ``access_log`` with the
    actor and the purpose. SQLite because this is a point-lookup key/value store written in
    small transactions; it is not a lake table and no Spark job reads it.
    """

    def __init__(self, path: Path, vault_key: bytes | None) -> None:
        self.path = Path(path)
        self._key = vault_key
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if new:
            self.path.chmod(0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS vault (token TEXT PRIMARY KEY, key_id TEXT NOT NULL, "
            "nonce BLOB NOT NULL, ciphertext BLOB NOT NULL, created_at TEXT NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS access_log (at TEXT NOT NULL, actor TEXT NOT NULL, "
            "token TEXT NOT NULL, purpose TEXT NOT NULL, found INTEGER NOT NULL)"
        )

    def _aead(self):  # noqa: ANN202
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if self._key is None:
            raise VaultLockedError(f"the PII vault needs its key (${VAULT_KEY_VARIABLE})")
        return AESGCM(self._key)

    def store(self, entries: Iterable[tuple[str, str, str]]) -> int:
        """Store ``(token, clear value, key id)`` triples not stored yet; returns how many."""
        aead = self._aead()
        now = datetime.now(UTC).isoformat()
        rows = []
        for token, value, key_id in entries:
            nonce = os.urandom(12)
            rows.append((token, key_id, nonce, aead.encrypt(nonce, value.encode(), token.encode()), now))
        if not rows:
            return 0
        with self._lock:
            before = self._db.total_changes
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO vault VALUES (?, ?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")
            return self._db.total_changes - before

    def reveal(self, token: str, actor: str, purpose: str) -> str | None:
        """The clear value behind ``token`` (None if unknown); the access is logged."""
        aead = self._aead()
        with self._lock:
            row = self._db.execute(
                "SELECT nonce, ciphertext FROM vault WHERE token = ?", (token,)
            ).fetchone()
            self._db.execute(
                "INSERT INTO access_log VALUES (?, ?, ?, ?, ?)",
                (datetime.now(UTC).isoformat(), actor, token, purpose, int(row is not None)),
            )
        if row is None:
            return None
        return aead.decrypt(row[0], row[1], token.encode()).decode()

    def __contains__(self, token: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM vault WHERE token = ?", (token,)).fetchone() is not None

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()


def scrub_raw_json(raw: Column, field_names: list[str]) -> Column:
    """Blank the values of ``field_names`` in raw JSON text (for quarantined records).

    A quarantined record is kept for replay, but it may carry PII that the policy never got
    to protect (the record was refused): its string and number values are replaced by
    ``"[scrubbed]"`` wherever the field appears, at any depth.
    """
    scrubbed = raw
    for name in field_names:
        scrubbed = F.regexp_replace(
            scrubbed,
            # Unrolled-loop string pattern with possessive quantifiers: linear time and no
            # deep recursion in Java's regex engine, however long the value.
            rf'("{name}"\s*+:\s*+)("[^"\\]*+(?:\\.[^"\\]*+)*+"|-?[0-9][0-9.eE+-]*+)',
            r'$1"[scrubbed]"',
        )
    return scrubbed
