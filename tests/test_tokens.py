"""Keyed tokens: the UDF gives exactly the HMAC-SHA-256 of ``kind:value``, whatever the key's length."""

from __future__ import annotations

import hashlib
import hmac

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from healthlake.privacy.tokens import _batch_tokens, token_of, tokenizer

VALUES = ["13800001111", "张三", "110101199003071234", "a" * 200, " ", "x:y", "13800001111"]


@pytest.mark.parametrize("key_bytes", [16, 63, 64, 65, 100])
def test_the_batch_tokens_are_rfc_2104_hmac_sha_256(key_bytes: int) -> None:
    key = bytes(range(7, 7 + key_bytes))  # longer than a block: the key is hashed first
    tokens = _batch_tokens(key, b"phone:")(pd.Series([*VALUES, "", None], dtype=object))
    expected = [hmac.new(key, b"phone:" + v.encode("utf-8"), hashlib.sha256).hexdigest() for v in VALUES]
    assert tokens.tolist() == [*expected, None, None]


def test_the_udf_tokenises_each_value_and_keeps_null_and_empty_null(spark: SparkSession) -> None:
    key = b"healthlake-tests-only-key-0123456789"
    values = [*VALUES, "", None, "张三"]
    frame = spark.createDataFrame(pd.DataFrame({"v": values}, dtype=object)).repartition(3)
    rows = frame.select("v", tokenizer(key, "name")(frame["v"]).alias("t")).collect()
    assert len(rows) == len(values)
    for row in rows:
        assert row["t"] == token_of(key, "name", row["v"])
    assert {row["v"] for row in rows if row["t"] is None} == {"", None}
