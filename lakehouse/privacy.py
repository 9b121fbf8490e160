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
        dtype = df.schema[name].dataType
        df = df.withColumn(
            name, protected_column(F.col(name), pii_class, master_key, key_id).cast(dtype)
        )
    return df
