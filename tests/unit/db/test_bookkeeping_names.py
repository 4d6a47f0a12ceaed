"""A `batchflows_*` table is never a flow's user table, however it is spelled."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tasks.db.bookkeeping import ensure_bookkeeping
from tasks.db.read_only import check_condition, check_select
from tasks.db.schema import reflect_table
from tasks.errors import InputError


@pytest.mark.parametrize(
    "table", ["batchflows_exports", "main.batchflows_dead_letters", "BATCHFLOWS_Sync_State"]
)
def test_reflecting_a_bookkeeping_table_for_a_flow_is_refused(tmp_path: Path, table: str) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    ensure_bookkeeping(engine)
    with pytest.raises(InputError, match=r"parameter 'table': .* bookkeeping table"):
        reflect_table(engine, table)
    engine.dispose()


@pytest.mark.parametrize(
    "text",
    [
        "select * from batchflows_imports",
        'select * from "Batchflows_Rejects"',
        "select * from public.batchflows_claims",
        "with x as (select 1) select * from x join batchflows_chunks using (id)",
    ],
)
def test_queries_naming_a_bookkeeping_table_are_refused(text: str) -> None:
    with pytest.raises(InputError, match=r"parameter 'query': .* bookkeeping table"):
        check_select(text)


def test_conditions_naming_a_bookkeeping_table_are_refused_but_strings_are_data() -> None:
    with pytest.raises(InputError, match="parameter 'where'"):
        check_condition("id in (select id from batchflows_exports)")
    assert check_condition("note = 'batchflows_exports'") == "note = 'batchflows_exports'"
