"""Where export files go and how they appear: contained paths, gzip members, atomic publish.

Every export lives under one root directory ($BATCHFLOWS_EXPORTS_ROOT, default `data`), so a
`destination` that escapes it (`../..`, an absolute path elsewhere, a symlink out) is refused.
Parts are written to hidden temporary files beside the final name, concatenated in order into
one more temporary file, fsynced and then linked under the final name, which never replaces an
existing file: a reader sees the whole file or none, and an older export is never overwritten
(its expiry would delete the newer one).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel
from sqlalchemy.engine import Engine
from zlib_ng import zlib_ng

from tasks.db.bookkeeping import ensure_bookkeeping, exports
from tasks.errors import InputError

ROOT_ENV_VAR = "BATCHFLOWS_EXPORTS_ROOT"
DEFAULT_ROOT = "data"
GZIP_LEVEL = 6
_EXTENSIONS = {"csv": ".csv", "ndjson": ".ndjson", "json": ".json", "parquet": ".parquet"}
_COPY_BUFFER = 1 << 20


def exports_root() -> Path:
    """The directory every export lives under (created if missing), symlinks resolved."""
    root = Path(os.environ.get(ROOT_ENV_VAR) or DEFAULT_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    return root.resolve()


# The names TempFiles gives: `.<filename>.<12 hex token>.partNNNNN` and `....tmp`.
_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{12}\.(part\d{5}|tmp)$")


def abandoned_temp_files(root: Path, before: datetime) -> list[Path]:
    """Temporary export files under `root` last written before `before`: a killed run's leftovers.

    A running export rewrites its files continuously, so one untouched for long is abandoned.
    """
    cutoff = before.timestamp()
    return sorted(
        path
        for path in root.rglob(".*")
        if _TEMP_NAME.match(path.name) and path.is_file() and path.stat().st_mtime < cutoff
    )


def resolve_destination(destination: str, root: Path) -> Path:
    """The directory `destination` names inside `root`, created; anything outside is refused."""
    if not destination.strip() or "\x00" in destination:
        raise InputError("parameter 'destination': give a directory under the exports root")
    candidate = Path(destination)
    target = candidate if candidate.is_absolute() else root / candidate
    resolved = target.resolve()
    if not resolved.is_relative_to(root):
        raise InputError(
            f"parameter 'destination': {destination!r} is outside the exports root {root} "
            f"(${ROOT_ENV_VAR}); give a directory inside it"
        )
    resolved.mkdir(parents=True, exist_ok=True)
    if not resolved.resolve().is_relative_to(root):
        raise InputError(f"parameter 'destination': {destination!r} leads outside {root}")
    return resolved


def check_filename(filename: str) -> str:
    """A plain file name: no directory part, not hidden (temporary files are), no control
    characters (a line break in a name forges lines in logs and listings)."""
    bad = any(sep in filename for sep in ("/", "\\"))
    if any(ord(char) < 32 or ord(char) == 127 for char in filename):
        raise InputError(
            f"parameter 'filename': {filename[:200]!r} contains a line break or another "
            "control character; give a plain file name"
        )
    if bad or not filename.strip() or filename.startswith("."):
        raise InputError(
            f"parameter 'filename': {filename[:200]!r} must be a plain file name (no '/', not "
            "starting with '.'); put directories in 'destination'"
        )
    return filename


def file_extension(format: str, compression: str) -> str:
    """`.csv.gz`, `.ndjson`, `.parquet` ...: parquet compresses inside, so never `.gz`."""
    gz = ".gz" if compression == "gzip" and format != "parquet" else ""
    return _EXTENSIONS[format] + gz


def default_filename(source_name: str, format: str, compression: str, now: datetime) -> str:
    """`<table or "query">_<UTC timestamp>.<ext>`, e.g. `public.users_20261125T084500Z.csv.gz`."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", source_name).strip("._") or "export"
    return f"{stem}_{now.strftime('%Y%m%dT%H%M%SZ')}{file_extension(format, compression)}"


@dataclass(frozen=True)
class TempFiles:
    """The hidden temporary names of one export beside its final file."""

    directory: Path
    filename: str
    token: str

    @classmethod
    def new(cls, directory: Path, filename: str) -> TempFiles:
        return cls(directory, filename, secrets.token_hex(6))

    def part(self, index: int) -> Path:
        return self.directory / f".{self.filename}.{self.token}.part{index:05d}"

    @property
    def whole(self) -> Path:
        return self.directory / f".{self.filename}.{self.token}.tmp"

    @property
    def final(self) -> Path:
        return self.directory / self.filename

    def remove_all(self) -> None:
        """Delete every temporary file of this export (after a failure, or once published)."""
        for path in self.directory.glob(f".{glob_escape(self.filename)}.{self.token}.*"):
            path.unlink(missing_ok=True)


def glob_escape(name: str) -> str:
    """`name` with glob wildcards escaped."""
    return re.sub(r"([*?\[])", r"[\1]", name)


class GzipMember:
    """Compresses one stream into one gzip member; concatenated members are one gzip file.

    zlib-ng, not the standard zlib: the same deflate format at the same level, compressed in
    1.6 s instead of 3.0 s for the 101 MB of the 1M-row bench file (0.5 % larger), which
    is most of a csv.gz export's CPU.
    """

    def __init__(self, level: int = GZIP_LEVEL) -> None:
        self._compressor = zlib_ng.compressobj(level, zlib_ng.DEFLATED, 31)

    def compress(self, data: bytes) -> bytes:
        return self._compressor.compress(data)

    def finish(self) -> bytes:
        return self._compressor.flush()


def gzip_bytes(data: bytes) -> bytes:
    """`data` as one complete gzip member."""
    member = GzipMember()
    return member.compress(data) + member.finish()


def write_stream(path: Path, chunks: Iterable[bytes], gzip: bool) -> int:
    """Write `chunks` to `path` (one gzip member if `gzip`); the bytes written to disk."""
    member = GzipMember() if gzip else None
    written = 0
    with path.open("wb") as handle:
        for chunk in chunks:
            data = member.compress(chunk) if member is not None else chunk
            if data:
                handle.write(data)
                written += len(data)
        if member is not None:
            tail = member.finish()
            handle.write(tail)
            written += len(tail)
    return written


def concatenate(target: Path, pieces: Iterable[Path | bytes]) -> None:
    """Write part files and literal byte strings in order into `target`."""
    with target.open("wb") as out:
        for piece in pieces:
            if isinstance(piece, bytes):
                out.write(piece)
                continue
            with piece.open("rb") as handle:
                while block := handle.read(_COPY_BUFFER):
                    out.write(block)


class Published(BaseModel):
    """A file under its final name: where, how big, its checksum."""

    path: str
    bytes: int
    sha256: str


def publish(temp: Path, final: Path) -> Published:
    """fsync `temp`, then link it as `final` (never replacing a file) and fsync the directory."""
    digest = hashlib.sha256()
    with temp.open("rb+") as handle:
        while block := handle.read(_COPY_BUFFER):
            digest.update(block)
        os.fsync(handle.fileno())
    try:
        os.link(temp, final)
    except FileExistsError as exc:
        raise InputError(
            f"parameter 'filename': {final.name!r} already exists in {final.parent}; "
            "give another name (exports never overwrite each other)"
        ) from exc
    temp.unlink()
    directory = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return Published(path=str(final), bytes=final.stat().st_size, sha256=digest.hexdigest())


def record_export(
    engine: Engine,
    *,
    published: Published,
    format: str,
    compression: str,
    source: str,
    rows: int,
    expires_at: datetime,
    flow_run_id: str | None,
) -> int:
    """Add the published file to `batchflows_exports`; its id."""
    ensure_bookkeeping(engine)
    with engine.begin() as conn:
        inserted = conn.execute(
            exports.insert()
            .values(
                path=published.path,
                format=format,
                compression=compression if format != "parquet" else "parquet-internal",
                source=source,
                rows=rows,
                bytes=published.bytes,
                sha256=published.sha256,
                flow_run_id=flow_run_id,
                expires_at=expires_at.astimezone(UTC),
            )
            .returning(exports.c.id)
        ).scalar_one()
    return int(inserted)
