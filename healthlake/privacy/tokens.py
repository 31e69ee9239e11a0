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
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F

from healthlake.errors import HealthlakeError

KEY_ENV = "HEALTHLAKE_HMAC_KEY"
KEY_FILE_ENV = "HEALTHLAKE_HMAC_KEY_FILE"
MIN_KEY_BYTES = 16
TOKEN_KINDS = ("resident_id", "name", "phone", "address", "insurance_no", "patient_id")
"""What a token stands for; part of the HMAC input, so equal text of two kinds gives unrelated tokens."""


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
        kind: One of ``TOKEN_KINDS``.
    """
    if kind not in TOKEN_KINDS:
        raise ValueError(f"unknown token kind {kind!r}; one of {', '.join(TOKEN_KINDS)}")
    prefix = f"{kind}:".encode()

    def tokens(values: pd.Series) -> pd.Series:
        def one(v: object) -> str | None:
            if v is None or v != v or v == "":  # None or NaN
                return None
            return hmac.new(key, prefix + str(v).encode("utf-8"), hashlib.sha256).hexdigest()

        return values.map(one)

    udf = F.pandas_udf(tokens, "string")  # type: ignore[call-overload]

    def apply(col: Column) -> Column:
        return udf(col)

    return apply
