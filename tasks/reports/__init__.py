"""Reports: definitions, data, charts, HTML/PDF/CSV rendering. What flows use is named here."""

from tasks.reports.mail import Mailed
from tasks.reports.steps import (
    Format,
    gather_data,
    generate,
    mail_report_task,
    plan_report,
    process,
)

__all__ = [
    "Format",
    "Mailed",
    "gather_data",
    "generate",
    "mail_report_task",
    "plan_report",
    "process",
]
