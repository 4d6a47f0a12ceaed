"""The export-table parameter form: every parameter described, typed and keyword-only."""

from __future__ import annotations

import inspect

from flows.export_table import export_table


def test_every_parameter_is_described_in_the_ui_form() -> None:
    properties = export_table.parameters.model_dump()["properties"]
    assert [name for name, schema in properties.items() if not schema.get("description")] == []
    assert properties["format"]["enum"] == ["csv", "ndjson", "json", "parquet"]
    assert properties["compression"]["enum"] == ["gzip", "none"]


def test_parameters_are_keyword_only_with_the_documented_defaults() -> None:
    signature = inspect.signature(export_table.fn)
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in signature.parameters.values())
    defaults = {name: p.default for name, p in signature.parameters.items()}
    assert defaults["format"] == "csv"
    assert defaults["compression"] == "gzip"
    assert defaults["destination"] == "exports"
    assert defaults["expires_in_hours"] == 24
    assert defaults["max_concurrency"] == 2
