"""Keyed tokens for direct identifiers: HMAC-SHA-256 with a key from the environment.

The key comes from ``HEALTHLAKE_HMAC_KEY`` or from the file ``HEALTHLAKE_HMAC_KEY_FILE`` names; never from
the repository, the configuration or the lake. The same value of the same kind gives the same token with
the same key, across runs and institutions; without the key a token cannot be reversed or recomputed.

Tokens are computed in a pandas UDF, not with Spark's ``sha2`` on key-derived literals: a literal would put
the key (as its HMAC pads) into every query plan, and plans are logged, shown in the Spark UI and kept in
event logs. The UDF keeps the key inside the function shipped to the executors.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F

from healthlake.errors import HealthlakeError

KEY_ENV = "HEALTHLAKE_HMAC_KEY"
KEY_FILE_ENV = "HEALTHLAKE_HMAC_KEY_FILE"
MIN_KEY_BYTES = 16
TOKEN_KINDS = ("resident_id", "name", "phone", "address", "insurance_no", "patient_id")
"""What a token stands for; part of the HMAC input, so equal text of two kinds gives unrelated tokens."""

EXTRACT_KIND_PREFIX = "extract:"
_EXTRACT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""Extract names: no ``:`` (so ``kind:value`` stays unambiguous), no spaces, at most 64 characters."""


def extract_kind(extract: str) -> str:
    """The token kind of a research extract's person keys: ``extract:<name>``.

    Each extract is its own kind, so the same person gets unrelated tokens in two extracts, and the
    same extract re-run with the same key gives the same tokens. Kinds of ``TOKEN_KINDS`` never start
    with ``extract:``, so an extract token cannot equal a lake identifier token.

    Raises:
        ValueError: When ``extract`` is not 1-64 letters, digits, ``_``, ``.`` or ``-`` (first a letter
            or digit).
    """
    if not isinstance(extract, str) or not _EXTRACT_NAME.fullmatch(extract):
        raise ValueError(
            f"bad extract name {extract!r}: 1-64 letters, digits, '_', '.' or '-', starting with a letter "
            "or digit"
        )
    return EXTRACT_KIND_PREFIX + extract


def is_token_kind(kind: str) -> bool:
    """True for a kind of ``TOKEN_KINDS`` or an extract kind (``extract_kind``)."""
    if kind in TOKEN_KINDS:
        return True
    return kind.startswith(EXTRACT_KIND_PREFIX) and bool(
        _EXTRACT_NAME.fullmatch(kind[len(EXTRACT_KIND_PREFIX) :])
    )


class TokenKeyError(HealthlakeError):
    """The tokenisation key is missing or unusable."""


def load_key() -> bytes:
    """The tokenisation key from ``HEALTHLAKE_HMAC_KEY`` or the file named by ``HEALTHLAKE_HMAC_KEY_FILE``.

    Raises:
        TokenKeyError: When neither is set, the file cannot be read, or the key is shorter than 16 bytes.
    """
    how = (
        f"set {KEY_ENV} (e.g. export {KEY_ENV}=$(openssl rand -hex 32)) or {KEY_FILE_ENV}=<file holding "
        "the key>; keep the key out of the repository, the configuration and the lake"
    )
    value = os.environ.get(KEY_ENV, "")
    path = os.environ.get(KEY_FILE_ENV, "")
    if value:
        key = value.encode("utf-8")
    elif path:
        try:
            key = Path(path).expanduser().read_bytes().strip()
        except OSError as exc:
            raise TokenKeyError(
                f"cannot read the tokenisation key file {path} ({exc.strerror}): {how}"
            ) from None
    else:
        raise TokenKeyError(f"no tokenisation key: {how}")
    if len(key) < MIN_KEY_BYTES:
        raise TokenKeyError(f"the tokenisation key is {len(key)} bytes; use at least {MIN_KEY_BYTES}: {how}")
    return key


def token_of(key: bytes, kind: str, value: str | None) -> str | None:
    """The token of one (already normalised) value: hex HMAC-SHA-256 of ``kind:value``. Python, for tests."""
    if value is None or value == "":
        return None
    return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def tokenizer(key: bytes, kind: str) -> Callable[[Column], Column]:
    """A function turning a string column into its tokens (NULL and empty stay NULL).

    Args:
        key: The key from ``load_key``.
        kind: One of ``TOKEN_KINDS``, or ``extract:<name>`` (``extract_kind``) for a research extract.
    """
    if not is_token_kind(kind):
        raise ValueError(f"unknown token kind {kind!r}; one of {', '.join(TOKEN_KINDS)} or extract:<name>")
    # pyspark's stubs lack the overload of the type-hinted form (no functionType), which Spark 3+ recommends.
    udf = F.pandas_udf(_batch_tokens(key, f"{kind}:".encode()), "string")  # type: ignore[call-overload]

    def apply(col: Column) -> Column:
        return udf(col)

    return apply


def _batch_tokens(key: bytes, prefix: bytes) -> Callable[[pd.Series], pd.Series]:
    """The pandas function of ``tokenizer``: hex HMAC-SHA-256 (RFC 2104) of ``prefix + value`` per value.

    What ``hmac.new(key, prefix + value, "sha256").hexdigest()`` gives (the tests compare them on short,
    block-long and long keys) at under half its cost per value: the key's inner and outer hash states
    (and the prefix) are hashed once per batch and each value costs two copies of a hash state, where
    ``hmac.new`` keys a new context every time. And each distinct value of a batch once: a phone pings
    many times a day. Tokens are the one per-row Python step of a ping (``benchmarks/tokens.py``).

    The function is nested, so Spark ships it by value: executors need no healthlake installed for it.
    """
    block = 64  # SHA-256's block size
    padded = (hashlib.sha256(key).digest() if len(key) > block else key).ljust(block, b"\0")
    inner_pad = bytes(b ^ 0x36 for b in padded)
    outer_pad = bytes(b ^ 0x5C for b in padded)

    def tokens(values: pd.Series) -> pd.Series:
        inner = hashlib.sha256(inner_pad + prefix)  # per batch, in the worker: hash states do not pickle
        outer = hashlib.sha256(outer_pad)

        def mac(message: bytes) -> str:
            digest = inner.copy()
            digest.update(message)
            result = outer.copy()
            result.update(digest.digest())
            return result.hexdigest()

        codes, distinct = pd.factorize(values)  # None and NaN: code -1
        macs = [None if v == "" else mac(str(v).encode("utf-8")) for v in distinct]
        macs.append(None)  # what code -1 picks
        return pd.Series(np.asarray(macs, dtype=object)[codes], index=values.index)

    return tokens
