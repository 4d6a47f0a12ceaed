"""Reflect a target table into a plain, serialisable description, and quote its identifiers.

User-given table and column names never reach SQL as typed: they are looked up among the names
the database reports, and only those reflected names are quoted by the dialect. Names starting
with `batchflows_` (any case) belong to the bookkeeping and are never a flow's user table.
"""

from __future__ import annotations

from enum import StrEnum

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.engine import Engine

from tasks.errors import InputError, SchemaError

RESERVED_PREFIX = "batchflows_"


class Kind(StrEnum):
    """How batchflows validates and converts a column's values."""

    INTEGER = "integer"
    DECIMAL = "decimal"
    FLOAT = "float"
    BOOLEAN = "boolean"
    DATE = "date"
    TIMESTAMP = "timestamp"
    TIME = "time"
    STRING = "string"
    UUID = "uuid"
    JSON = "json"
    OTHER = "other"


class ColumnSpec(BaseModel):
    """One reflected column: its kind, limits and whether it may be NULL or omitted."""

    name: str
    kind: Kind
    sql_type: str
    nullable: bool
    has_default: bool
    bits: int | None = None
    length: int | None = None
    fixed_length: bool = False
    precision: int | None = None
    scale: int | None = None
    timezone: bool = False
    choices: list[str] | None = None


class TableSpec(BaseModel):
    """A reflected table: where it lives, its columns and the column sets that are unique."""

    schema_name: str | None
    name: str
    dialect: str
    columns: list[ColumnSpec]
    unique_keys: list[list[str]]

    @property
    def display_name(self) -> str:
        return f"{self.schema_name}.{self.name}" if self.schema_name else self.name

    def column(self, name: str) -> ColumnSpec:
        for column in self.columns:
            if column.name == name:
                return column
        raise SchemaError(f"table {self.display_name} has no column {name!r}")

    def has_unique_key(self, key: list[str]) -> bool:
        return any(set(unique) == set(key) for unique in self.unique_keys)


def split_table_name(table: str) -> tuple[str | None, str]:
    """`schema.table` or `table` -> (schema, table); quotes are not part of names."""
    if "." in table:
        schema, _, name = table.partition(".")
        return schema, name
    return None, table


def check_not_bookkeeping(name: str, parameter: str = "table") -> str:
    """Refuse a `batchflows_*` name: no flow reads or writes user data in the bookkeeping."""
    if name.lower().startswith(RESERVED_PREFIX):
        raise InputError(
            f"parameter {parameter!r}: {name!r} is a batchflows bookkeeping table (the prefix "
            f"{RESERVED_PREFIX!r} is reserved); flows never read or write user data there"
        )
    return name


def reflect_table(engine: Engine, table: str) -> TableSpec:
    """Describe `table` (optionally `schema.table`) as the database reports it; a bookkeeping
    table is refused before anything is read or written."""
    schema, name = split_table_name(table.strip())
    check_not_bookkeeping(name)
    inspector = sa.inspect(engine)
    if schema is not None and schema not in inspector.get_schema_names():
        raise SchemaError(f"parameter 'table': schema {schema!r} does not exist")
    names = inspector.get_table_names(schema=schema)
    if name not in names:
        folded = [n for n in names if n.lower() == name.lower()]
        hint = f"; did you mean {folded[0]!r}?" if len(folded) == 1 else ""
        raise SchemaError(
            f"parameter 'table': table {table!r} does not exist in {engine.url.database!r}{hint}"
        )
    reflected = sa.Table(name, sa.MetaData(), schema=schema, autoload_with=engine)
    columns = [_column_spec(column, engine.dialect) for column in reflected.columns]
    return TableSpec(
        schema_name=schema,
        name=name,
        dialect=engine.dialect.name,
        columns=columns,
        unique_keys=_unique_keys(inspector, name, schema),
    )


def _unique_keys(inspector: sa.Inspector, name: str, schema: str | None) -> list[list[str]]:
    keys: list[list[str]] = []
    primary = inspector.get_pk_constraint(name, schema=schema).get("constrained_columns") or []
    if primary:
        keys.append(list(primary))
    for unique in inspector.get_unique_constraints(name, schema=schema):
        keys.append([c for c in unique["column_names"] if c is not None])
    # SQLite turns an inline UNIQUE into an automatic index, hidden unless asked for.
    extra = {"include_auto_indexes": True} if inspector.dialect.name == "sqlite" else {}
    for index in inspector.get_indexes(name, schema=schema, **extra):
        options = index.get("dialect_options", {})
        partial = options.get("postgresql_where") is not None or options.get("sqlite_where")
        if index.get("unique") and not partial and None not in index["column_names"]:
            keys.append([c for c in index["column_names"] if c is not None])
    return keys


def _column_spec(column: sa.Column[object], dialect: sa.Dialect) -> ColumnSpec:
    autoincrement = column.primary_key and column.autoincrement is True
    return ColumnSpec.model_validate(
        {
            "name": column.name,
            "sql_type": str(column.type.compile(dialect=dialect)),
            "nullable": bool(column.nullable),
            "has_default": column.server_default is not None
            or column.identity is not None
            or bool(autoincrement),
            **_classify(column.type, dialect.name),
        }
    )


def _classify(sql_type: sa.types.TypeEngine[object], dialect: str) -> dict[str, object]:
    """The kind of a reflected type and the limits validation needs (checked subclass first)."""
    if isinstance(sql_type, sa.Enum):
        return {"kind": Kind.STRING, "choices": list(sql_type.enums)}
    if isinstance(sql_type, sa.Boolean):
        return {"kind": Kind.BOOLEAN}
    if isinstance(sql_type, sa.Integer):
        # SQLite stores every INTEGER in 64 bits whatever the declared name.
        bits = 32
        if dialect == "sqlite" or isinstance(sql_type, sa.BigInteger):
            bits = 64
        elif isinstance(sql_type, sa.SmallInteger):
            bits = 16
        return {"kind": Kind.INTEGER, "bits": bits}
    return _classify_other(sql_type)


def _classify_other(sql_type: sa.types.TypeEngine[object]) -> dict[str, object]:
    if isinstance(sql_type, sa.Float):
        return {"kind": Kind.FLOAT}
    if isinstance(sql_type, sa.Numeric):
        return {"kind": Kind.DECIMAL, "precision": sql_type.precision, "scale": sql_type.scale}
    if isinstance(sql_type, sa.DateTime):
        return {"kind": Kind.TIMESTAMP, "timezone": bool(sql_type.timezone)}
    if isinstance(sql_type, sa.Date):
        return {"kind": Kind.DATE}
    if isinstance(sql_type, sa.Time):
        return {"kind": Kind.TIME}
    if isinstance(sql_type, sa.Uuid):
        return {"kind": Kind.UUID}
    if isinstance(sql_type, sa.JSON):
        return {"kind": Kind.JSON}
    if isinstance(sql_type, sa.String):
        return {
            "kind": Kind.STRING,
            "length": sql_type.length,
            "fixed_length": isinstance(sql_type, sa.CHAR),
        }
    return {"kind": Kind.OTHER}


def quote(dialect: sa.Dialect, name: str) -> str:
    """A reflected identifier, quoted for `dialect`."""
    return dialect.identifier_preparer.quote_identifier(name)


def qualified(dialect: sa.Dialect, spec: TableSpec) -> str:
    """The table's quoted, schema-qualified name."""
    table = quote(dialect, spec.name)
    return f"{quote(dialect, spec.schema_name)}.{table}" if spec.schema_name else table
