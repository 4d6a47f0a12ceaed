"""The import's error-rate alert: a Prefect event that the bootstrap's automation turns into a
notification (deployments/automations.py), so a run that completes with many rejected rows
does not pass unnoticed."""

from __future__ import annotations

from prefect.events import emit_event

from tasks.imports.ledger import ImportTotals

ERROR_RATE_EVENT = "batchflows.import.error-rate"


def error_rate_reason(totals: ImportTotals, alert_error_rate: float, source: str) -> str | None:
    """Why the import deserves an alert, or None when its rejected share is within the limit."""
    if totals.total == 0 or totals.failed / totals.total <= alert_error_rate:
        return None
    return (
        f"{source}: {totals.failed:,} of {totals.total:,} rows rejected "
        f"({totals.failed / totals.total:.1%}), over alert_error_rate {alert_error_rate:.1%}; "
        "the rejects are in batchflows_rejects"
    )


def emit_error_rate_alert(
    import_id: str, table: str, source: str, totals: ImportTotals, alert_error_rate: float
) -> str | None:
    """Emit `batchflows.import.error-rate` when the share crossed the limit; the reason."""
    reason = error_rate_reason(totals, alert_error_rate, source)
    if reason is None:
        return None
    emit_event(
        event=ERROR_RATE_EVENT,
        resource={
            "prefect.resource.id": f"batchflows.import.{import_id}",
            "prefect.resource.name": f"import {import_id} into {table}",
        },
        payload={
            "reason": reason,
            "table": table,
            "source": source,
            "rejected": totals.failed,
            "total": totals.total,
            "alert_error_rate": alert_error_rate,
        },
    )
    return reason
