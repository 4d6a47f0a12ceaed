"""Planning: chunks on record boundaries, exact counts, and structural errors before writing."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from tasks.errors import CsvFormatError, InputError
from tasks.imports import csv_plan
from tasks.imports.csv_parse import parse_chunk, read_range
from tasks.imports.csv_plan import CsvDialect, plan_file


def _file(tmp_path: Path, data: bytes, name: str = "data.csv") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _rows(count: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "note"])
    for number in range(count):
        note = f"line one\nline two of {number}" if number % 3 == 0 else f'say "hi", {number}'
        writer.writerow([number, note])
    return out.getvalue().encode()


@pytest.mark.parametrize("block_size", [7, 64, 4 * 1024 * 1024])
@pytest.mark.parametrize("chunk_size", [1, 4, 10, 1000])
def test_chunks_cover_every_record_once_whatever_the_block_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_size: int, chunk_size: int
) -> None:
    monkeypatch.setattr(csv_plan, "BLOCK_SIZE", block_size)
    data = _rows(25)
    path = _file(tmp_path, data)
    plan = plan_file(path, CsvDialect(), chunk_size)
    assert plan.total_rows == 25
    assert sum(c.rows for c in plan.chunks) == 25
    assert plan.chunks[0].start == len(b"id,note\n")
    assert plan.chunks[-1].end == len(data)
    ids: list[str] = []
    for chunk in plan.chunks:
        parsed = parse_chunk(
            read_range(path, chunk.start, chunk.end), chunk, plan.header, plan.header, CsvDialect()
        )
        assert parsed.rows == chunk.rows
        assert not parsed.rejects
        ids += parsed.strings.column("id").to_pylist()
    assert ids == [str(n) for n in range(25)]


def test_chunk_lines_are_physical_lines(tmp_path: Path) -> None:
    path = _file(tmp_path, b'id,note\n1,"a\nb"\n\n2,c\n3,d\r\n4,"e"')
    plan = plan_file(path, CsvDialect(), 2)
    assert [(c.first_line, c.first_row, c.rows) for c in plan.chunks] == [(2, 1, 2), (6, 3, 2)]


def test_utf8_bom_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    path = _file(tmp_path, "\ufeffid,name\n1,Zoë\n".encode())
    plan = plan_file(path, CsvDialect(), 10)
    assert plan.header == ["id", "name"]
    assert plan.chunks[0].start == len(b"\xef\xbb\xbfid,name\n")


@pytest.mark.parametrize("block_size", [1, 2, 3, 5, 7, 64])
def test_utf8_characters_split_across_blocks_are_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_size: int
) -> None:
    monkeypatch.setattr(csv_plan, "BLOCK_SIZE", block_size)
    good = "id,name\n1,Zoë\n2,李雷 😀\n3,Ødegaard\n".encode()
    assert plan_file(_file(tmp_path, good, "good.csv"), CsvDialect(), 10).total_rows == 3
    # A bad byte right after a character that a block boundary split, and a file that ends
    # inside a character: the decoder still finds and places both (a block too small for
    # the header names the field by number).
    bad = "id,name\n1,李".encode() + b"\xff\n"
    with pytest.raises(
        CsvFormatError, match=r"line 2: .*bytes ff are not valid utf-8 \(byte offset 13\)"
    ):
        plan_file(_file(tmp_path, bad, "bad.csv"), CsvDialect(), 10)
    truncated = "id,name\n1,李".encode()[:-1]
    with pytest.raises(
        CsvFormatError, match=r"line 2: .*bytes e6 9d are not valid utf-8 \(byte offset 10\)"
    ):
        plan_file(_file(tmp_path, truncated, "cut.csv"), CsvDialect(), 10)


def test_fingerprint_changes_with_content(tmp_path: Path) -> None:
    first = plan_file(_file(tmp_path, b"id\n1\n", "a.csv"), CsvDialect(), 10).fingerprint
    second = plan_file(_file(tmp_path, b"id\n2\n", "b.csv"), CsvDialect(), 10).fingerprint
    assert first.startswith("sha256:")
    assert first != second


def test_header_only_file_has_no_rows(tmp_path: Path) -> None:
    plan = plan_file(_file(tmp_path, b"id,name\n"), CsvDialect(), 10)
    assert (plan.total_rows, plan.chunks) == (0, [])


def test_latin1_file_with_declared_encoding(tmp_path: Path) -> None:
    path = _file(tmp_path, "id,name\n1,café\n".encode("latin-1"))
    assert plan_file(path, CsvDialect(encoding="latin-1"), 10).total_rows == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "line 1: the file is empty"),
        (b'id,name\n1,a\n2,"b\n3,c\n', 'line 3: column "name": a quoted value is never closed'),
        (b"id,name\n1,a\n2,caf\xe9\n", 'line 3: column "name": bytes e9 are not valid utf-8'),
        (b"id,id\n1,2\n", 'line 1: header names column "id" twice'),
        (b"id,\n1,2\n", "line 1: header field 2 has no column name"),
    ],
)
def test_structural_errors_name_file_line_and_column(
    tmp_path: Path, data: bytes, message: str
) -> None:
    path = _file(tmp_path, data)
    with pytest.raises(CsvFormatError) as caught:
        plan_file(path, CsvDialect(), 10)
    assert str(caught.value) == f"{path} {message}" or str(caught.value).startswith(
        f"{path} {message}"
    )


@pytest.mark.parametrize(
    ("dialect", "parameter"),
    [
        (CsvDialect(encoding="utf-16"), "encoding"),
        (CsvDialect(encoding="klingon"), "encoding"),
        (CsvDialect(encoding="utf-7"), "encoding"),
        (CsvDialect(encoding="rot13"), "encoding"),
        (CsvDialect(encoding="hex"), "encoding"),
        (CsvDialect(encoding="utf-8\x00"), "encoding"),
        (CsvDialect(encoding="shift_jis"), "encoding"),
        (CsvDialect(encoding="gb18030"), "encoding"),
        (CsvDialect(delimiter="§", encoding="latin-1"), "delimiter"),
        (CsvDialect(delimiter='"'), "delimiter"),
        (CsvDialect(delimiter=",,"), "delimiter"),
    ],
)
def test_bad_dialects_name_the_parameter(
    tmp_path: Path, dialect: CsvDialect, parameter: str
) -> None:
    with pytest.raises(InputError, match=f"parameter '{parameter}'"):
        plan_file(_file(tmp_path, b"id\n1\n"), dialect, 10)


@pytest.mark.parametrize("encoding", ["UTF8", "latin-1", "cp1252", "iso-8859-15", "euc-jp"])
def test_ascii_compatible_encodings_are_accepted(tmp_path: Path, encoding: str) -> None:
    assert plan_file(_file(tmp_path, b"id\n1\n"), CsvDialect(encoding=encoding), 10).total_rows == 1


def test_missing_file_names_the_parameter(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"parameter 'source': .* does not exist"):
        plan_file(str(tmp_path / "nope.csv"), CsvDialect(), 10)


def test_file_url_is_accepted(tmp_path: Path) -> None:
    path = _file(tmp_path, b"id\n1\n")
    assert plan_file(f"file://{path}", CsvDialect(), 10).total_rows == 1


def test_remote_urls_are_refused_clearly() -> None:
    with pytest.raises(InputError, match="only local paths"):
        plan_file("https://example.com/x.csv", CsvDialect(), 10)
