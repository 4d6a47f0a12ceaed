"""E-mail campaigns: templates, the ledger, SMTP delivery. What flows use is named here."""

from tasks.email.address import normalize_address
from tasks.email.campaign import BatchCounts, Campaign, Plan, Recipient
from tasks.email.ledger import failures
from tasks.email.message import Attachment
from tasks.email.smtp import SmtpServer, resolve_smtp
from tasks.email.steps import plan_campaign, send_all
from tasks.email.template import load_template

__all__ = [
    "Attachment",
    "BatchCounts",
    "Campaign",
    "Plan",
    "Recipient",
    "SmtpServer",
    "failures",
    "load_template",
    "normalize_address",
    "plan_campaign",
    "resolve_smtp",
    "send_all",
]
