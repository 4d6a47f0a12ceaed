"""Export paths, gzip members, atomic publish and the expiry of old exports."""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tasks.db.bookkeeping import ensure_bookkeeping, exports
from tasks.retention import Removed, delete_abandoned_temp_files, delete_expired_exports
from tasks.errors import InputError
from tasks.exports.files import (
    Published,
    TempFiles,
    check_filename,
    concatenate,
    default_filename,
    exports_root,
    gzip_bytes,
    publish,
    record_export,
    resolve_destination,
    write_stream,
)

NOW = datetime(2026, 11, 25, 8, 45, 0, tzinfo=UTC)


def test_destination_stays_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    assert resolve_destination("exports/daily", root) == root / "exports" / "daily"
    assert (root / "exports" / "daily").is_dir()
    assert resolve_destination(str(root / "abs"), root) == root / "abs"
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside")
    for escaping in ("../../etc", "/etc", "link", "link/deeper", "a/../../x", ""):
        with pytest.raises(InputError, match="parameter 'destination'"):
            resolve_destination(escaping, root)
    assert not (tmp_path / "outside" / "deeper").exists()


def test_exports_root_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCHFLOWS_EXPORTS_ROOT", str(tmp_path / "r"))
    assert exports_root() == (tmp_path / "r").resolve()
    monkeypatch.delenv("BATCHFLOWS_EXPORTS_ROOT")
    monkeypatch.chdir(tmp_path)
    assert exports_root() == (tmp_path / "data").resolve()


def test_filename_is_a_plain_visible_name() -> None:
    assert check_filename("users.csv.gz") == "users.csv.gz"
    for bad in ("../x.csv", "a/b.csv", "a\\b.csv", ".hidden", "", "  "):
        with pytest.raises(InputError, match="parameter 'filename'"):
            check_filename(bad)


@pytest.mark.parametrize("name", ["users.csv\nINFO exported 0 rows", "a\rb.csv", "tab\t.csv", "x\x00.csv"])
def test_filename_with_a_line_break_or_control_character_is_refused(name: str) -> None:
    with pytest.raises(InputError, match="parameter 'filename': .* control character"):
        check_filename(name)


def test_default_name_has_source_utc_timestamp_and_extension() -> None:
    assert default_filename("public.users", "csv", "gzip", NOW) == (
        "public.users_20261125T084500Z.csv.gz"
    )
    assert default_filename("query", "ndjson", "none", NOW) == "query_20261125T084500Z.ndjson"
    assert default_filename("users", "parquet", "gzip", NOW) == "users_20261125T084500Z.parquet"
    assert default_filename("we/ird name", "json", "gzip", NOW).startswith("we_ird_name_")


def test_gzip_members_concatenate_into_one_readable_file(tmp_path: Path) -> None:
    parts = []
    for index, text in enumerate([b"a,b\n", b"", "Zoë\n".encode()]):
        path = tmp_path / f"part{index}"
        write_stream(path, iter([text[:1], text[1:]]), gzip=True)
        parts.append(path)
    whole = tmp_path / "whole.gz"
    concatenate(whole, [gzip_bytes(b"header\n"), *parts])
    assert gzip.decompress(whole.read_bytes()).decode() == "header\na,b\nZoë\n"


def _failing_chunks() -> Iterator[bytes]:
    yield b"some rows\n"
    raise OSError(28, "No space left on device")


def test_failed_write_leaves_nothing_under_the_final_name(tmp_path: Path) -> None:
    files = TempFiles.new(tmp_path, "users.csv.gz")
    write_stream(files.part(0), iter([b"ok\n"]), gzip=True)
    with pytest.raises(OSError, match="No space"):
        write_stream(files.part(1), _failing_chunks(), gzip=True)
    files.remove_all()
    assert list(tmp_path.iterdir()) == []


def test_publish_links_the_whole_file_and_never_overwrites(tmp_path: Path) -> None:
    files = TempFiles.new(tmp_path, "out.csv")
    files.whole.write_bytes(b"x\n")
    published = publish(files.whole, files.final)
    assert published.bytes == 2
    assert published.sha256 == (hashlib.sha256(b"x\n").hexdigest())
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]
    again = TempFiles.new(tmp_path, "out.csv")
    again.whole.write_bytes(b"y\n")
    with pytest.raises(InputError, match="already exists"):
        publish(again.whole, again.final)
    assert files.final.read_bytes() == b"x\n"


def _record(engine: sa.Engine, path: Path, expires_at: datetime) -> int:
    path.write_text("rows")
    return record_export(
        engine,
        published=Published(path=str(path), bytes=4, sha256="0" * 64),
        format="csv",
        compression="none",
        source="table users",
        rows=1,
        expires_at=expires_at,
        flow_run_id=None,
    )


def test_cleanup_deletes_expired_exports_and_marks_them_and_leaves_the_others(
    tmp_path: Path,
) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    ensure_bookkeeping(engine)
    old = _record(engine, tmp_path / "old.csv", NOW - timedelta(hours=1))
    gone = _record(engine, tmp_path / "gone.csv", NOW - timedelta(minutes=1))
    (tmp_path / "gone.csv").unlink()
    fresh = _record(engine, tmp_path / "fresh.csv", NOW + timedelta(hours=1))
    assert delete_expired_exports(engine, NOW, root=tmp_path) == Removed(export_files=1, exports=2)
    assert not (tmp_path / "old.csv").exists()
    assert (tmp_path / "fresh.csv").exists()
    with engine.connect() as conn:
        marks = dict(conn.execute(sa.select(exports.c.id, exports.c.deleted_at)).all())
    assert marks[fresh] is None
    assert marks[old] is not None
    assert marks[gone] is not None
    assert delete_expired_exports(engine, NOW, root=tmp_path) == Removed()
    engine.dispose()


def test_cleanup_removes_only_temp_files_a_killed_export_left_long_ago(tmp_path: Path) -> None:
    nested = tmp_path / "exports" / "daily"
    nested.mkdir(parents=True)
    old_part = TempFiles(nested, "users.csv.gz", "0123456789ab").part(3)
    old_tmp = TempFiles(tmp_path, "users.json", "ba9876543210").whole
    fresh_part = TempFiles(nested, "users.csv.gz", "feedfeedfeed").part(0)
    published = nested / "users.csv.gz"
    lookalike = nested / ".users.csv.gz.notatoken.tmp"
    for path in (old_part, old_tmp, fresh_part, published, lookalike):
        path.write_bytes(b"x")
    hour_ago = NOW.timestamp() - 3600
    for path in (old_part, old_tmp, published, lookalike):
        os.utime(path, (hour_ago, hour_ago))

    before = NOW - timedelta(minutes=30)
    counted = delete_abandoned_temp_files(tmp_path, before, dry_run=True)
    assert counted == Removed(temp_files=2)
    assert old_part.exists()
    assert delete_abandoned_temp_files(tmp_path, before) == Removed(temp_files=2)
    assert not old_part.exists()
    assert not old_tmp.exists()
    assert [fresh_part.exists(), published.exists(), lookalike.exists()] == [True, True, True]
