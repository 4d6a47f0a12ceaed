"""Fuzzed CSV files (hypothesis): hostile quoting, delimiters, line endings, bytes, widths.

Fault: any text at all as the import's file. Expected: the import either completes with
every row inserted or rejected with a reason (`total = inserted + skipped + failed`, one
reject with errors per failed row, the table holding exactly the inserted rows), or refuses
the whole file with an `InputError` naming it; never another exception, and never half a
chunk: the table holds exactly the rows of the chunks in the ledger.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.import_csv import ImportResult, import_csv
from tasks.db.engine import dispose_engines
from tasks.errors import InputError
from tests.flows.helpers import execute, query

FIELD = st.text(alphabet=st.sampled_from(list('aZ10- ",;\n\r\t\\é李')), max_size=12)
LINE = st.lists(FIELD, min_size=0, max_size=5).map(",".join)
BODY = st.lists(LINE, max_size=12).map("\n".join)


def _import_or_refusal(source: Path, url: str) -> ImportResult | None:
    """The import's result, or None when it refused the file with a message."""
    try:
        return import_csv(source=str(source), table="fz", key=["k"], chunk_size=3, database=url)
    except InputError as exc:
        if not str(exc):
            raise AssertionError("an InputError without a message") from exc
        return None


@pytest.mark.timeout(600)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    body=BODY,
    ending=st.sampled_from(["", "\n", "\r\n"]),
    bom=st.booleans(),
    garbage=st.binary(max_size=6),
)
def test_any_file_is_imported_or_rejected_row_by_row_never_half_a_chunk(
    body: str, ending: str, bom: bool, garbage: bytes
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{Path(directory) / 'fuzz.db'}"
        execute(url, "CREATE TABLE fz (k varchar(8) PRIMARY KEY, n integer, s varchar(6))")
        source = Path(directory) / "fuzz.csv"
        data = ("\ufeff" if bom else "") + "k,n,s\n" + body + ending
        source.write_bytes(data.encode() + (garbage if len(body) % 3 == 0 else b""))
        result = _import_or_refusal(source, url)
        ledger = "SELECT count(*) FROM sqlite_master WHERE name = 'batchflows_chunks'"
        committed = 0
        if query(url, ledger)[0][0]:
            sums = query(url, "SELECT coalesce(sum(inserted), 0) FROM batchflows_chunks")
            committed = int(sums[0][0])
        assert query(url, "SELECT count(*) FROM fz")[0][0] == committed
        if result is not None:
            assert result.total == result.inserted + result.skipped + result.failed
            assert result.updated == 0
            rejects = query(url, "SELECT errors FROM batchflows_rejects")
            assert len(rejects) == result.failed
            assert all(r.errors for r in rejects)
            assert query(url, "SELECT count(*) FROM fz")[0][0] == result.inserted
        dispose_engines()
