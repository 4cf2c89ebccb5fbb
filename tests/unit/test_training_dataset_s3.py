"""s3:// sources against moto (mock_aws, in process): one object streamed, a prefix listed, Parquet
downloaded, sizes checked before reading, and every S3 failure a DatasetError naming the URI."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from tests.dataset_files import SCHEMA_HEADER, csv_text, house_rows, houses_table
from training.dataset import DatasetError, DataSpec, load_dataset

BUCKET = "user-data"


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def put_csv(client: Any, key: str, segments: dict[str, int]) -> None:
    rows = [row for name, n in segments.items() for row in house_rows(name, n)]
    client.put_object(Bucket=BUCKET, Key=key, Body=csv_text(SCHEMA_HEADER, rows).encode())


def put_parquet(client: Any, key: str, segments: dict[str, int]) -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.table(houses_table(segments)), buffer)
    client.put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())


def load(client: Any, source: str, **changes: object) -> Any:
    fields: dict = {"source": source, "segment_column": "segment", "price_column": "PRICE"}
    fields.update(changes)
    return load_dataset(DataSpec(**fields), s3_client=client)


def test_a_csv_object_is_read(s3: Any) -> None:
    # Given a CSV object with two segments / When loaded from s3:// / Then both segments
    put_csv(s3, "in/houses.csv", {"Austin": 40, "Boston": 40})
    dataset = load(s3, f"s3://{BUCKET}/in/houses.csv")
    assert [s.city for s in dataset.segments] == ["Austin", "Boston"]
    assert dataset.report.files == [f"s3://{BUCKET}/in/houses.csv"]


def test_a_parquet_object_reads_like_the_same_csv(s3: Any) -> None:
    # Given the same houses as CSV and Parquet objects / When loaded / Then the hashes agree
    put_csv(s3, "in/houses.csv", {"Austin": 40})
    put_parquet(s3, "pq/houses.parquet", {"Austin": 40})
    from_csv = load(s3, f"s3://{BUCKET}/in/houses.csv")
    from_parquet = load(s3, f"s3://{BUCKET}/pq/houses.parquet")
    assert from_parquet.segments[0].data_hash == from_csv.segments[0].data_hash


@pytest.mark.parametrize("source", [f"s3://{BUCKET}/in/", f"s3://{BUCKET}/in"])
def test_a_prefix_reads_its_files_in_key_order(s3: Any, source: str) -> None:
    # Given two files under a prefix, a marker object, and a file in a "subfolder" that is not part of it
    put_csv(s3, "in/part-1.csv", {"Boston": 40})
    put_csv(s3, "in/part-0.csv", {"Austin": 40})
    s3.put_object(Bucket=BUCKET, Key="in/_SUCCESS", Body=b"")
    put_csv(s3, "in/old/part-0.csv", {"Chicago": 40})
    # When the prefix is loaded (with or without its trailing slash)
    dataset = load(s3, source)
    # Then both files, in key order, and nothing else
    assert dataset.report.files == [f"s3://{BUCKET}/in/part-0.csv", f"s3://{BUCKET}/in/part-1.csv"]
    assert [s.city for s in dataset.segments] == ["Austin", "Boston"]


def test_a_prefix_of_parquet_files_is_read(s3: Any) -> None:
    # Given two Parquet objects under a prefix / When loaded / Then both, downloaded one at a time
    put_parquet(s3, "pq/a.parquet", {"Austin": 40})
    put_parquet(s3, "pq/b.parquet", {"Boston": 40})
    assert [s.city for s in load(s3, f"s3://{BUCKET}/pq/").segments] == ["Austin", "Boston"]


def test_an_oversized_object_is_refused_by_its_head(s3: Any) -> None:
    # Given an object one byte over the limit / When loaded / Then refused by its HEAD size
    put_csv(s3, "in/houses.csv", {"Austin": 40})
    size = s3.head_object(Bucket=BUCKET, Key="in/houses.csv")["ContentLength"]
    with pytest.raises(DatasetError, match=rf"\({size:,} bytes\), over the limit of .* --max-bytes"):
        load(s3, f"s3://{BUCKET}/in/houses.csv", max_bytes=size - 1)


def test_an_oversized_prefix_is_refused_by_its_listing(s3: Any) -> None:
    # Given two objects whose sum is over the limit / When loaded / Then refused by the listing's sizes
    put_csv(s3, "in/a.csv", {"Austin": 40})
    put_csv(s3, "in/b.csv", {"Boston": 40})
    one = s3.head_object(Bucket=BUCKET, Key="in/a.csv")["ContentLength"]
    with pytest.raises(DatasetError, match=r"over the limit"):
        load(s3, f"s3://{BUCKET}/in/", max_bytes=one + 1)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("s3://no-such-bucket/houses.csv", r"s3://no-such-bucket/.*the bucket does not exist"),
        (f"s3://{BUCKET}/missing.csv", r"missing\.csv: no such object, and no \*\.csv or \*\.parquet files under"),
        (f"s3://{BUCKET}/empty/", r"no such object, and no \*\.csv or \*\.parquet files under s3://user-data/empty/"),
        ("s3:///houses.csv", r"names no bucket"),
    ],
)
def test_missing_buckets_keys_and_prefixes_are_named(s3: Any, source: str, message: str) -> None:
    # Given a missing bucket, key or empty prefix / When loaded / Then the URI is named
    with pytest.raises(DatasetError, match=message):
        load(s3, source)


def test_a_non_utf8_object_is_refused_like_a_file(s3: Any) -> None:
    # Given a Latin-1 byte in an object / When loaded / Then the same UTF-8 error as a local file
    text = csv_text(SCHEMA_HEADER, house_rows("Montreal", 40)).replace("Montreal", "Montr\udce9al", 1)
    s3.put_object(Bucket=BUCKET, Key="in/latin1.csv", Body=text.encode("utf-8", "surrogateescape"))
    with pytest.raises(DatasetError, match=r"s3://user-data/in/latin1\.csv is not UTF-8 text in column 'segment'"):
        load(s3, f"s3://{BUCKET}/in/latin1.csv")


class _BrokenBody:
    """A GetObject body whose connection drops once ``first`` has been read (reads honour ``size``, as botocore's)."""

    def __init__(self, first: bytes) -> None:
        self._left = first

    def read(self, size: int | None = None) -> bytes:
        from urllib3.exceptions import ProtocolError

        if not self._left:
            raise ProtocolError("Connection broken: reset by peer")
        size = len(self._left) if size is None else size
        chunk, self._left = self._left[:size], self._left[size:]
        return chunk

    def close(self) -> None:
        pass


class _DroppingClient:
    """Just enough of an S3 client: HEAD answers, GET streams a body that breaks."""

    def __init__(self, first: bytes) -> None:
        self._first = first

    def head_object(self, Bucket: str, Key: str) -> dict:  # noqa: N803 (boto3's names)
        return {"ContentLength": 10_000}

    def get_object(self, Bucket: str, Key: str) -> dict:  # noqa: N803
        return {"Body": _BrokenBody(self._first)}


def test_a_connection_dropped_mid_object_is_a_dataset_error() -> None:
    # Given an object whose stream breaks after its header line / When loaded
    client = _DroppingClient(",".join(SCHEMA_HEADER).encode() + b"\n")
    # Then the failure names the object, as a DatasetError, not a urllib3 traceback
    with pytest.raises(DatasetError, match=r"s3://user-data/houses\.csv cannot be read: reading .* failed: .*reset"):
        load(client, f"s3://{BUCKET}/houses.csv")


class _GreedyBody:
    """A body that answers its first read with the whole object, whatever size was asked."""

    def __init__(self, content: bytes) -> None:
        self._left = content

    def read(self, size: int | None = None) -> bytes:
        content, self._left = self._left, b""
        return content

    def close(self) -> None:
        pass


class _GreedyClient(_DroppingClient):
    def get_object(self, Bucket: str, Key: str) -> dict:  # noqa: N803
        return {"Body": _GreedyBody(self._first)}


def test_a_body_answering_more_than_asked_is_read_whole_and_safely() -> None:
    # Given a stub body that ignores read sizes (pyarrow would copy past its buffer)
    text = csv_text(SCHEMA_HEADER, house_rows("Austin", 40)).encode()
    # When loaded / Then the same houses as from a well-behaved object
    dataset = load(_GreedyClient(text), f"s3://{BUCKET}/houses.csv")
    assert dataset.segments[0].data.rows.shape == (40, 7)
    assert dataset.report.rows_read == 40
