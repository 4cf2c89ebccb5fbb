"""Hostile files: each gets one clear DatasetError (or, where the format allows it, a correct read), and
nothing is returned half-read."""

from __future__ import annotations

import gzip
import re
import time
from pathlib import Path

import pyarrow as pa
import pytest

from tests.dataset_files import (
    SCHEMA_HEADER,
    csv_text,
    house_rows,
    houses_table,
    wide_csv,
    write_bytes,
    write_csv,
    write_houses,
    write_parquet,
)
from training.dataset import Dataset, DatasetError, DataSpec, load_dataset


def load(path: Path, **changes: object) -> Dataset:
    fields: dict = {"source": str(path), "segment_column": "segment", "price_column": "PRICE"}
    fields.update(changes)
    return load_dataset(DataSpec(**fields))


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    # Given a 0-byte file / When loaded / Then it is called empty
    with pytest.raises(DatasetError, match=r"empty\.csv is empty"):
        load(write_bytes(tmp_path / "empty.csv", b""))


@pytest.mark.parametrize(
    "content", [csv_text(SCHEMA_HEADER, []), ",".join(SCHEMA_HEADER), csv_text(SCHEMA_HEADER, []) + "\n\n"]
)
def test_a_header_without_rows_is_refused(tmp_path: Path, content: str) -> None:
    # Given a header line (with or without its newline, or followed by blank lines) and no rows
    path = write_bytes(tmp_path / "header.csv", content.encode())
    # When loaded / Then it says there are no data rows
    with pytest.raises(DatasetError, match=r"no data rows"):
        load(path)


def test_a_utf8_bom_is_stripped(tmp_path: Path) -> None:
    # Given a file saved by Excel as "CSV UTF-8": a BOM before the first column name, "segment"
    text = csv_text(SCHEMA_HEADER, house_rows("Austin", 40))
    path = write_bytes(tmp_path / "excel.csv", b"\xef\xbb\xbf" + text.encode())
    # When loaded / Then the first column is still "segment" and every row is read
    dataset = load(path)
    assert dataset.report.columns[0] == "segment"
    assert dataset.segments[0].data.rows.shape == (40, 7)


def test_quoted_commas_and_newlines_stay_inside_their_field(tmp_path: Path) -> None:
    # Given segment values with a comma and a line break, quoted
    rows = house_rows("Portland, OR", 40) + house_rows("Salem\nOR", 40)
    path = write_csv(tmp_path / "quoted.csv", SCHEMA_HEADER, rows)
    # When loaded / Then two segments of 40 rows, named by the rule
    dataset = load(path)
    assert [(s.source_value, s.city, s.data.rows.shape[0]) for s in dataset.segments] == [
        ("Portland, OR", "Portland_OR", 40),
        ("Salem\nOR", "Salem_OR", 40),
    ]
    assert dataset.report.rows_read == 80


def test_non_utf8_bytes_in_a_used_column_are_refused_naming_it(tmp_path: Path) -> None:
    # Given a Latin-1 "é" in a segment value
    text = csv_text(SCHEMA_HEADER, house_rows("Montreal", 40))
    path = write_bytes(
        tmp_path / "latin1.csv", text.replace("Montreal", "Montr\udce9al", 1).encode("utf-8", "surrogateescape")
    )
    with pytest.raises(DatasetError, match=r"latin1\.csv is not UTF-8 text in column 'segment'"):
        load(path)


def test_non_utf8_bytes_in_the_header_are_refused(tmp_path: Path) -> None:
    # Given a Latin-1 byte in a column name / When loaded / Then a UTF-8 error, not a UnicodeDecodeError
    text = csv_text(["s\udce9gment", *SCHEMA_HEADER[1:]], house_rows("Montreal", 3))
    path = write_bytes(tmp_path / "latin1.csv", text.encode("utf-8", "surrogateescape"))
    with pytest.raises(DatasetError, match=r"latin1\.csv is not UTF-8 text .*in its header"):
        load(path)


def test_duplicate_column_names_are_refused_naming_them(tmp_path: Path) -> None:
    # Given PRICE and notes twice each / When loaded / Then both names and counts are in the error
    header = [*SCHEMA_HEADER, "PRICE", "notes", "notes"]
    path = write_csv(tmp_path / "dups.csv", header, [[*r, r[1], "", ""] for r in house_rows("Austin", 40)])
    with pytest.raises(DatasetError, match=r"duplicate column names: 'PRICE' \(2×\), 'notes' \(2×\)"):
        load(path)


def test_ten_thousand_columns_read_only_the_mapped_ones(tmp_path: Path) -> None:
    # Given 10,000 unused columns before the schema's
    path = wide_csv(tmp_path / "wide.csv", columns=10_000, rows=60)
    # When loaded / Then it works, quickly, and the report knows every column
    started = time.perf_counter()
    dataset = load(path)
    assert time.perf_counter() - started < 5
    assert len(dataset.report.columns) == 10_000 + len(SCHEMA_HEADER)
    assert dataset.segments[0].data.rows.shape == (60, 7)


def test_an_oversized_source_is_refused_before_reading(tmp_path: Path) -> None:
    # Given a file that would fail to parse (not UTF-8) and a limit below its size
    path = write_bytes(tmp_path / "big.csv", b"\xff" * 5000)
    # When loaded / Then the size is the error, naming the size and the flag: nothing was read
    with pytest.raises(DatasetError, match=r"big\.csv is 4\.9 KiB \(5,000 bytes\), over the limit of .*--max-bytes"):
        load(path, max_bytes=4096)


def test_a_folder_over_the_limit_counts_every_file(tmp_path: Path) -> None:
    # Given two files whose sum is one byte over the limit / When loaded / Then the sum is refused
    for name in ("a.csv", "b.csv"):
        write_houses(tmp_path / name, {"Austin": 40})
    size = sum(p.stat().st_size for p in tmp_path.iterdir())
    with pytest.raises(DatasetError, match=rf"\({size:,} bytes\), over the limit"):
        load(tmp_path, max_bytes=size - 1)


def test_rows_with_the_wrong_number_of_fields_are_skipped_and_counted(tmp_path: Path) -> None:
    # Given two rows with an extra field among 40 good ones
    text = csv_text(SCHEMA_HEADER, house_rows("Austin", 40)) + "Austin,1,2,3,4,5,6,7,8\nAustin,1\n"
    path = write_bytes(tmp_path / "ragged.csv", text.encode())
    # When loaded / Then they are counted, with an example, and the others train
    dataset = load(path)
    assert dataset.report.malformed_rows == 2
    assert any("2 rows have the wrong number of fields" in w and "Austin,1,2,3" in w for w in dataset.report.warnings)
    assert dataset.segments[0].data.rows.shape == (40, 7)
    # And --strict refuses them
    with pytest.raises(DatasetError, match=r"--strict: 2 rows would be dropped: .*wrong number of fields 2"):
        load(path, strict=True)


def test_a_missing_path_is_refused(tmp_path: Path) -> None:
    # Given a path that does not exist / When loaded / Then the path is named
    with pytest.raises(DatasetError, match=r"nope\.csv: no such file or folder"):
        load(tmp_path / "nope.csv")


def test_a_folder_reads_every_file_in_order(tmp_path: Path) -> None:
    # Given two CSVs and a Spark marker file
    write_houses(tmp_path / "part-1.csv", {"Austin": 40})
    write_houses(tmp_path / "part-0.csv", {"Boston": 40})
    write_bytes(tmp_path / "_SUCCESS", b"")
    dataset = load(tmp_path)
    assert dataset.report.files == [str(tmp_path / "part-0.csv"), str(tmp_path / "part-1.csv")]
    assert [s.city for s in dataset.segments] == ["Austin", "Boston"]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, r"the folder has no \*\.csv or \*\.parquet files"),
        ({"a.csv": "csv", "b.parquet": "parquet"}, r"mixes CSV and Parquet files \('a\.csv', 'b\.parquet'\)"),
        ({"a.csv": "csv", "b.csv": "no-price"}, r"b\.csv lacks column\(s\) 'PRICE' that .*a\.csv has"),
    ],
)
def test_bad_folders_are_refused(tmp_path: Path, files: dict[str, str], message: str) -> None:
    # Given a folder with no data files, mixed formats, or a file lacking a used column / Then one named error
    write_bytes(tmp_path / "notes.txt", b"not data")
    for name, kind in files.items():
        if kind == "parquet":
            write_parquet(tmp_path / name, houses_table({"Austin": 40}))
        elif kind == "no-price":
            write_csv(tmp_path / name, [h for h in SCHEMA_HEADER if h != "PRICE"], [])
        else:
            write_houses(tmp_path / name, {"Austin": 40})
    with pytest.raises(DatasetError, match=message):
        load(tmp_path)


def test_a_parquet_file_reads_like_the_csv(tmp_path: Path) -> None:
    # Given the same houses as CSV and Parquet / When both are loaded / Then their data hashes agree
    csv_set = load(write_houses(tmp_path / "houses.csv", {"Austin": 40, "Boston": 50}))
    parquet_set = load(write_parquet(tmp_path / "houses.parquet", houses_table({"Austin": 40, "Boston": 50})))
    assert [s.data_hash for s in parquet_set.segments] == [s.data_hash for s in csv_set.segments]


def test_a_parquet_string_price_is_checked_per_row(tmp_path: Path) -> None:
    # Given a Parquet price column of strings, one of them not a number
    columns = houses_table({"Austin": 40})
    columns["PRICE"] = [str(p) for p in columns["PRICE"]]
    columns["PRICE"][3] = "call agent"
    dataset = load(write_parquet(tmp_path / "houses.parquet", columns))
    # Then that row is dropped as non-numeric, the rest are used
    [report] = dataset.report.segments
    assert report.dropped == {"non_numeric:PRICE": 1}
    assert report.rows_usable == 39
    assert dataset.report.examples["non_numeric:PRICE"] == "call agent"


@pytest.mark.parametrize(
    ("column", "values", "kind"),
    [
        ("SQUARE_FEET", pa.array([[1]] * 40), "list<"),
        ("PRICE", pa.array([b"1"] * 40), "binary"),
        ("GARAGE_SPACES", pa.array([True] * 40), "bool"),
        ("segment", pa.array([{"a": 1}] * 40), "struct<a: int64>"),
    ],
)
def test_parquet_columns_of_unusable_types_are_refused_naming_them(
    tmp_path: Path, column: str, values: pa.Array, kind: str
) -> None:
    # Given a nested, binary or bool column in a used role / When loaded / Then its name and type are in the error
    columns: dict = houses_table({"Austin": 40})
    columns[column] = values
    with pytest.raises(DatasetError, match=rf"column '{column}' \(.*\) has type {re.escape(kind)}"):
        load(write_parquet(tmp_path / "houses.parquet", columns))


def test_a_csv_named_parquet_is_refused(tmp_path: Path) -> None:
    # Given CSV text in a .parquet file / When loaded / Then it is called not Parquet
    path = write_bytes(tmp_path / "houses.parquet", csv_text(SCHEMA_HEADER, house_rows("Austin", 3)).encode())
    with pytest.raises(DatasetError, match=r"houses\.parquet is not a Parquet file"):
        load(path)


def test_a_parquet_file_without_a_suffix_is_recognised(tmp_path: Path) -> None:
    # Given a Parquet file without a suffix / When loaded / Then its magic bytes pick the reader
    path = write_parquet(tmp_path / "export", houses_table({"Austin": 40}))
    assert load(path).segments[0].city == "Austin"


@pytest.mark.parametrize(("separator", "hint"), [(";", "';'"), ("\t", "tabs")])
def test_a_file_in_another_dialect_gets_a_hint(tmp_path: Path, separator: str, hint: str) -> None:
    # Given a ';' or tab separated file / When loaded / Then the error says only commas are read
    text = "\n".join(separator.join(str(c) for c in r) for r in [SCHEMA_HEADER, *house_rows("Austin", 3)])
    path = write_bytes(tmp_path / "excel.csv", text.encode())
    with pytest.raises(DatasetError, match=rf"The header looks separated by {hint}: only comma-separated CSV is read"):
        load(path)


def test_a_header_only_file_in_a_folder_is_a_warning(tmp_path: Path) -> None:
    # Given a folder with one good file and one header-only file / When loaded / Then a warning, and the good rows
    write_houses(tmp_path / "a.csv", {"Austin": 40})
    write_csv(tmp_path / "b.csv", SCHEMA_HEADER, [])
    dataset = load(tmp_path)
    assert f"{tmp_path / 'b.csv'} has no data rows" in dataset.report.warnings
    assert dataset.segments[0].data.rows.shape == (40, 7)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (gzip.compress(b"segment,PRICE\nAustin,1\n"), r"is not CSV text but gzip-compressed: decompress it first"),
        (b"PK\x03\x04\x14\x00\x06\x00", r"is not CSV text but a zip archive \(an \.xlsx workbook\?\)"),
    ],
)
def test_binary_files_named_csv_are_named_for_what_they_are(tmp_path: Path, content: bytes, message: str) -> None:
    # Given gzip or zip bytes in a .csv / When loaded / Then the error says what the file really is
    with pytest.raises(DatasetError, match=message):
        load(write_bytes(tmp_path / "houses.csv", content))


def test_a_quote_never_closed_is_explained(tmp_path: Path) -> None:
    # Given an opening quote in the first row that never closes: the rest of the file is one field
    text = csv_text(SCHEMA_HEADER, house_rows("Austin", 40)).replace("Austin", '"Austin', 1)
    with pytest.raises(
        DatasetError, match=r"no readable rows; 1 row\(s\) have the wrong number of fields .* never closed"
    ):
        load(write_bytes(tmp_path / "houses.csv", text.encode()))
