"""E-mail templates: a subject, an HTML body and/or a text body, rendered per recipient.

Templates may come from users (an inline `template` parameter), so they are rendered in
Jinja2's `SandboxedEnvironment`: `{{ ''.__class__.__mro__ }}` and friends raise a SecurityError
instead of reaching Python internals. The HTML body is autoescaped, so a recipient's name
cannot inject markup; undefined variables are errors, never silent blanks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ValidationError, model_validator

from tasks.email.address import check_header
from tasks.errors import InputError

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates" / "email"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_FILES = {"subject": "subject.txt", "html": "body.html", "text": "body.txt"}

_html_env = SandboxedEnvironment(autoescape=True, undefined=StrictUndefined)
_text_env = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined)


class TemplateSource(BaseModel):
    """The template texts: a subject and at least one body."""

    subject: str
    html: str | None = None
    text: str | None = None

    @model_validator(mode="after")
    def _has_body(self) -> TemplateSource:
        if self.html is None and self.text is None:
            raise ValueError("give an 'html' or a 'text' body (or both)")
        return self


class Rendered(BaseModel):
    """One recipient's subject and bodies."""

    subject: str
    html: str | None
    text: str | None


class EmailTemplate:
    """Compiled templates; `render` gives one recipient's message texts."""

    def __init__(self, source: TemplateSource, label: str) -> None:
        self.label = label
        self._subject = _compile(_text_env, source.subject, f"{label} subject")
        self._html = _compile(_html_env, source.html, f"{label} html") if source.html else None
        self._text = _compile(_text_env, source.text, f"{label} text") if source.text else None

    def render(self, context: Mapping[str, Any]) -> Rendered:
        """The texts for `context`; InputError for a sandbox violation or a missing variable."""
        try:
            subject = self._subject.render(context).strip()
            html = self._html.render(context) if self._html else None
            text = self._text.render(context) if self._text else None
        except SecurityError as exc:
            raise InputError(f"template {self.label}: refused by the sandbox: {exc}") from exc
        except TemplateError as exc:
            raise InputError(f"template {self.label}: {exc}") from exc
        return Rendered(subject=check_header(subject, "Subject"), html=html, text=text)


def _compile(env: SandboxedEnvironment, text: str, label: str) -> Template:
    try:
        return env.from_string(text)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        where = f" line {line}" if line else ""
        raise InputError(f"template {label}{where}: {exc}") from exc


def load_template(template: str | Mapping[str, Any]) -> EmailTemplate:
    """A named template under templates/email/<name>/, or an inline {subject, html, text}."""
    if isinstance(template, str):
        return EmailTemplate(_named(template), f"{template!r}")
    try:
        source = TemplateSource.model_validate(dict(template))
    except ValidationError as exc:
        raise InputError(f"parameter 'template': {exc.errors()[0]['msg']}") from exc
    return EmailTemplate(source, "inline")


def _named(name: str, root: Path = TEMPLATES_DIR) -> TemplateSource:
    if not _NAME.match(name):
        raise InputError(
            f"parameter 'template': {name!r} is not a template name (lower-case letters, digits,"
            " '-' and '_'); give a name under templates/email/ or an inline dict"
        )
    directory = root / name
    if not directory.is_dir():
        known = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise InputError(f"parameter 'template': no template {name!r} (known: {known})")
    texts = {
        field: (directory / file).read_text(encoding="utf-8")
        for field, file in _FILES.items()
        if (directory / file).is_file()
    }
    try:
        return TemplateSource.model_validate(texts)
    except ValidationError as exc:
        raise InputError(f"template {name!r} in {directory}: {exc.errors()[0]['msg']}") from exc
