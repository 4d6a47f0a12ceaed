"""Plan an import: check the file against the table, register the import, list what is left.

Everything that can make the whole import impossible is found here, before a row is written:
the file's structure, the header against the reflected table, the key against the table's
unique constraints, the rules. Running again with an `import_id` that exists resumes it, on
condition that the file and the options are the same; it continues where the chunks its
ledger holds end (tasks/imports/sizing.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.engine import Engine

from tasks.db.bookkeeping import ensure_bookkeeping
from tasks.db.engine import get_engine
from tasks.db.schema import TableSpec, reflect_table
from tasks.errors import InputError, SchemaError
from tasks.imports.csv_plan import ChunkSpec, CsvDialect, plan_file
from tasks.imports.ledger import register_import
from tasks.imports.rules import ColumnRule, OnConflict
from tasks.imports.sizing import CommittedRange, ResumePoint, resume_point
from tasks.imports.validation import check_rules


class ImportOptions(BaseModel):
    """The options that decide what an import writes; a resumed import must repeat them."""

    table: str
    key: list[str]
    on_conflict: OnConflict
    rules: dict[str, ColumnRule]
    chunk_size: int | None
    dialect: CsvDialect
    columns: list[str] | None
    ignore_extra_columns: bool

    @property
    def reverse(self) -> bool:
        """Update mode applies chunks last to first, so the last occurrence of a key wins."""
        return self.on_conflict == "update"


class ImportJob(BaseModel):
    """What every chunk task needs to know about its import (small: it goes to each task)."""

    import_id: str
    source: str
    path: str
    size: int
    mtime_ns: int
    database: str | None
    options: ImportOptions
    table: TableSpec
    header: list[str]
    used: list[str]
    columns: list[str]
    max_error_rate: float

    def previous(self, index: int) -> int | None:
        """The chunk that applies just before chunk `index` (chunks are numbered in the
        order they apply: from the end of the file in update mode), if any."""
        return index - 1 if index > 0 else None

    @property
    def required(self) -> set[str]:
        """Columns that may not be empty: the key (on top of NOT NULL columns)."""
        return set(self.options.key)


class ImportPlan(BaseModel):
    """The job, the file's pieces (chunk_size rows each, or about PIECE_BYTES) and where the
    work left to do starts."""

    job: ImportJob
    fingerprint: str
    total_rows: int
    pieces: list[ChunkSpec]
    start: ResumePoint


def make_plan(
    *,
    source: str,
    options: ImportOptions,
    import_id: str,
    database: str | None,
    max_error_rate: float,
    flow_run_id: str | None = None,
) -> ImportPlan:
    """Check everything structural, register (or resume) the import and return its plan."""
    if not 0.0 <= max_error_rate <= 1.0:
        raise InputError(f"parameter 'max_error_rate': {max_error_rate} must be between 0 and 1")
    if not options.key:
        raise InputError("parameter 'key': name at least one column that identifies a record")
    file_plan = plan_file(source, options.dialect, options.chunk_size, options.columns)
    engine = get_engine(database)
    table = reflect_table(engine, options.table)
    used, columns = map_columns(
        file_plan.header, table, ignore_extra=options.ignore_extra_columns, source=file_plan.path
    )
    check_key(options.key, table, columns)
    check_rules(options.rules, table, columns)
    ensure_bookkeeping(engine)
    job = ImportJob(
        import_id=import_id,
        source=source,
        path=file_plan.path,
        size=file_plan.size,
        mtime_ns=file_plan.mtime_ns,
        database=database,
        options=options,
        table=table,
        header=file_plan.header,
        used=used,
        columns=columns,
        max_error_rate=max_error_rate,
    )
    plan = ImportPlan(
        job=job,
        fingerprint=file_plan.fingerprint,
        total_rows=file_plan.total_rows,
        pieces=file_plan.chunks,
        start=resume_point(file_plan.chunks, [], reverse=options.reverse),
    )
    return register(engine, plan, flow_run_id)


def map_columns(
    header: list[str], table: TableSpec, *, ignore_extra: bool, source: str
) -> tuple[list[str], list[str]]:
    """Header names to read, and the table columns they fill (same order).

    Names match exactly, or else case-insensitively when that is unambiguous. NOT NULL columns
    without a default must be present, as the database could not fill them.
    """
    names = [c.name for c in table.columns]
    folded: dict[str, list[str]] = {}
    for name in names:
        folded.setdefault(name.lower(), []).append(name)
    used: list[str] = []
    columns: list[str] = []
    unknown: list[str] = []
    for name in header:
        if name in names:
            match = name
        elif len(folded.get(name.lower(), [])) == 1:
            match = folded[name.lower()][0]
        else:
            unknown.append(name)
            continue
        used.append(name)
        columns.append(match)
    if unknown and not ignore_extra:
        raise SchemaError(
            f"{source}: header column(s) {', '.join(map(repr, unknown))} are not in table "
            f"{table.display_name} (columns: {', '.join(names)}); "
            "pass ignore_extra_columns=True to skip them"
        )
    missing = [
        c.name
        for c in table.columns
        if c.name not in columns and not c.nullable and not c.has_default
    ]
    if missing:
        raise SchemaError(
            f"{source}: the file has no column for {', '.join(map(repr, missing))}, which "
            f"table {table.display_name} requires (NOT NULL without a default)"
        )
    return used, columns


def check_key(key: list[str], table: TableSpec, columns: list[str]) -> None:
    """The key must be columns of the file that a unique constraint or primary key covers."""
    names = {c.name for c in table.columns}
    for name in key:
        if name not in names:
            raise SchemaError(
                f"parameter 'key': {name!r} is not a column of table {table.display_name}"
            )
        if name not in columns:
            raise SchemaError(f"parameter 'key': column {name!r} is not in the file's header")
    if not table.has_unique_key(key):
        known = "; ".join("(" + ", ".join(k) + ")" for k in table.unique_keys) or "none"
        raise SchemaError(
            f"parameter 'key': table {table.display_name} has no primary key or unique "
            f"constraint on ({', '.join(key)}), so duplicates cannot be detected; "
            f"unique keys it has: {known}"
        )


def register(engine: Engine, plan: ImportPlan, flow_run_id: str | None) -> ImportPlan:
    """Record a new import, or check and resume an existing one with the same id."""
    job = plan.job
    options = job.options.model_dump(mode="json")
    row = {
        "import_id": job.import_id,
        "source": job.source,
        "fingerprint": plan.fingerprint,
        "table_name": job.table.display_name,
        "options": options,
        "status": "running",
        "total_rows": plan.total_rows,
        # Pieces for now: with automatic sizing the finished import records its real count.
        "chunk_count": len(plan.pieces),
        "flow_run_id": flow_run_id,
    }
    done = register_import(
        engine, row, lambda existing: _check_same_import(plan, existing, options)
    )
    committed = [CommittedRange(index=i, start=start, end=end) for i, start, end in done]
    start = resume_point(plan.pieces, committed, reverse=job.options.reverse)
    return plan.model_copy(update={"start": start})


def _check_same_import(
    plan: ImportPlan, existing: sa.RowMapping, options: dict[str, object]
) -> None:
    where = f"import {plan.job.import_id!r}"
    if existing["fingerprint"] != plan.fingerprint:
        raise InputError(
            f"parameter 'import_id': {where} was started on a different file "
            f"({existing['source']}, {existing['fingerprint']}); the file changed since, so it "
            "cannot be resumed: start a new import (leave import_id empty)"
        )
    if existing["options"] != options:
        changed = sorted(k for k in options if existing["options"].get(k) != options[k])
        raise InputError(
            f"parameter 'import_id': {where} was started with other options "
            f"({', '.join(changed)} differ); resume it with the same options or start a new import"
        )
