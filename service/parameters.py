"""Job parameters: checked against the deployment's schema and the key's reach, before any run.

Schema errors name each offending field (400). What a non-admin key may not touch is refused
with 403: a `source` that is not one of its uploads, a `database` other than the configured
one, an export `destination` outside the exports root, a credentials block (`auth_block`,
`smtp`) and, where the deployment sends a credential, another `base_url`. A non-admin key's
`import_id` is kept apart per owner, so no owner can resume or read another's import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.utilities.schema_tools.validation import validate

from service.errors import bad_request, forbidden
from service.status import scrub
from service.uploads import PREFIX
from tasks.db.bookkeeping import IMPORT_ID_LENGTH


def schema_errors(schema: dict[str, Any], parameters: dict[str, Any]) -> dict[str, str]:
    """field -> what is wrong, for `parameters` (deployment defaults already merged in)."""
    properties = schema.get("properties") or {}
    fields: dict[str, str] = {
        name: "unknown parameter" for name in parameters if name not in properties
    }
    for name in schema.get("required") or []:
        if parameters.get(name) is None:
            fields[name] = "required"
    known = {name: value for name, value in parameters.items() if name in properties}
    # Not validate(ignore_required=True): it strips every key named "required", including a
    # property of that name (ColumnRule.required), and then refuses that property.
    for found in validate(known, schema):
        if found.validator == "required" and not found.absolute_path:
            continue  # reported above, by name
        error = found
        while error.context:  # anyOf / oneOf: the deepest complaint says most
            error = max(error.context, key=lambda e: (len(e.absolute_path), e.validator != "type"))
        path = ".".join(str(part) for part in error.absolute_path) or "parameters"
        fields.setdefault(path, scrub(error.message)[:300])
    return fields


def check_schema(schema: dict[str, Any], parameters: dict[str, Any]) -> None:
    """400 naming every offending field."""
    if fields := schema_errors(schema, parameters):
        raise bad_request(f"invalid parameters: {', '.join(sorted(fields))}", fields)


def inside(root: Path, destination: str) -> bool:
    """Whether the export `destination` stays inside `root` (symlinks resolved, nothing created)."""
    if not destination.strip() or "\x00" in destination:
        return False
    candidate = Path(destination)
    target = candidate if candidate.is_absolute() else root / candidate
    return target.resolve().is_relative_to(root.resolve())


def check_reach(
    parameters: dict[str, Any],
    configured_database: str | None,
    exports_root: Path,
    defaults: dict[str, Any] | None = None,
) -> None:
    """403 for a parameter that reaches outside what a non-admin owner may touch.

    Credentials are the operator's: a caller naming a block could send its secret to a host
    of the caller's choosing, and a deployment's own `auth_block` goes to its `base_url` only.
    """
    fields: dict[str, str] = {}
    if parameters.get("auth_block"):
        fields["auth_block"] = "credentials are set by the operator, on the deployment"
    if parameters.get("smtp"):
        fields["smtp"] = "only the service's configured SMTP server is allowed"
    defaults = defaults or {}
    base_url = parameters.get("base_url")
    if defaults.get("auth_block") and base_url not in (None, defaults.get("base_url")):
        fields["base_url"] = "this job type's credentials go to its own base_url only"
    source = parameters.get("source")
    if source is not None and not (isinstance(source, str) and source.startswith(PREFIX)):
        fields["source"] = f"give one of your uploads as {PREFIX}<uploadId>"
    database = parameters.get("database")
    if database not in (None, "") and database != configured_database:
        fields["database"] = "only the service's configured database is allowed"
    destination = parameters.get("destination")
    if destination is not None and not (
        isinstance(destination, str) and inside(exports_root, destination)
    ):
        fields["destination"] = "must be a directory inside the exports root"
    if fields:
        raise forbidden(f"not allowed for this key: {', '.join(sorted(fields))}", fields)


def owned_import_id(owner: str, import_id: str) -> str:
    """The import id a non-admin owner's `import_id` stands for: `<owner>:<import_id>`.

    The given id may not hold a colon, so the owner is whatever precedes the last one and two
    owners never share an id (`a` + `b:c` would otherwise be `a:b` + `c`).
    """
    if ":" in import_id:
        raise bad_request("import_id: may not contain ':'", {"import_id": "no ':' allowed"})
    owned = f"{owner}:{import_id}"
    if len(owned) > IMPORT_ID_LENGTH:
        room = IMPORT_ID_LENGTH - len(owner) - 1
        raise bad_request(
            f"import_id: at most {room} characters for this key",
            {"import_id": f"at most {room} characters"},
        )
    return owned
