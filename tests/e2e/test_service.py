"""The jobs HTTP service as clients use it: a real server, worker and service process.

One Prefect server, worker and service serve the module; the service and the worker share a
fresh PostgreSQL schema as the configured database and a temporary exports root.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from deployments import processes
from samples.users import KEY, RULES, create_users_table, write_users_csv
from service.keys import create_key, revoke_key
from service.signing import download_path
from service.tables import service_engine
from tests.e2e.stack import Stack, running_stack
from tests.flows.helpers import (
    UsersFile,
    execute,
    expected_ids,
    query,
    slow_down_inserts,
    table_ids,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
RATE_LIMIT = 40
TERMINAL = {"completed", "failed", "cancelled"}


@dataclass
class Service:
    """The running service, the database it keeps, and a client per owner."""

    url: str
    database: str
    state: Path
    stack: Stack

    def client(self, key: str | None) -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def key(self, owner: str, **scopes: Any) -> str:
        return create_key(service_engine(self.database), owner, **scopes)[1]


@pytest.fixture(scope="module")
def service(postgres_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    schema = f"svc_{uuid.uuid4().hex[:10]}"
    execute(postgres_database, f'CREATE SCHEMA "{schema}"')
    url = (
        sa.make_url(postgres_database)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )
    root = tmp_path_factory.mktemp("service")
    shared = {"BATCHFLOWS_DATABASE_URL": url, "BATCHFLOWS_EXPORTS_ROOT": str(root / "exports")}
    with running_stack(**shared) as stack:
        port = processes.free_port()
        env = {
            **stack.env,
            "BATCHFLOWS_SERVICE_PORT": str(port),
            "BATCHFLOWS_SERVICE_STATE": str(root / "state"),
            "BATCHFLOWS_SERVICE_MAX_UPLOAD_MB": "1",
            "BATCHFLOWS_SERVICE_RATE_LIMIT": str(RATE_LIMIT),
        }
        process = processes.spawn(processes.service_command(), env, root / "service.log")
        running = Service(f"http://127.0.0.1:{port}", url, root / "state", stack)
        try:
            processes.wait_service(running.url, process)
            yield running
        finally:
            processes.stop(process.pid)


def _wait(
    client: httpx.Client, job_id: str, until: set[str], timeout: float = 180
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get(f"/api/batch/jobs/{job_id}").json()
        if body["status"] in until:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.3)


def _logs(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = client.get(f"/api/batch/jobs/{job_id}/logs").json()["items"]
    return lines


def _users(tmp_path: Path, url: str, table: str, rows: int) -> UsersFile:
    path = tmp_path / f"{table}.csv"
    generated = write_users_csv(path, rows, invalid_rate=0.05, duplicate_rate=0.05, seed=11)
    create_users_table(url, table, replace=True)
    return UsersFile(path=path, generated=generated)


def _chunks(url: str, import_id: str) -> int:
    sql = "SELECT count(*) FROM batchflows_chunks WHERE import_id = :id"
    return int(query(url, sql, id=import_id)[0][0])


def _rules() -> dict[str, Any]:
    return {column: rule.model_dump(exclude_none=True) for column, rule in RULES.items()}


def _import(source: str, table: str, **more: Any) -> dict[str, Any]:
    parameters = {"source": source, "table": table, "key": KEY, "rules": _rules(), **more}
    return {"type": "import-csv", "parameters": parameters}


def _all_pages(client: httpx.Client, path: str, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        page = client.get(path, params=params).json()
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["nextCursor"]
        if cursor is None:
            return items


def test_an_uploaded_import_completes_with_progress_and_pages_of_rejects(
    service: Service, tmp_path: Path
) -> None:
    users = _users(tmp_path, service.database, "users_upload", 3000)
    client = service.client(service.key("alice"))

    uploaded = client.post(
        "/api/batch/uploads",
        content=users.path.open("rb"),
        headers={"Content-Type": "text/csv"},
    )
    assert uploaded.status_code == 201, uploaded.text
    upload = uploaded.json()
    assert upload["sha256"] == hashlib.sha256(users.path.read_bytes()).hexdigest()
    submitted = client.post(
        "/api/batch/jobs",
        json=_import(f"upload:{upload['uploadId']}", "users_upload", chunk_size=500),
    )
    assert submitted.status_code == 202, submitted.text
    job = submitted.json()
    assert job["status"] == "queued"
    assert job["statusUrl"] == f"/api/batch/jobs/{job['jobId']}"
    done = _wait(client, job["jobId"], TERMINAL)

    assert done["status"] == "completed", done
    assert done["progress"] == {
        "percentage": 100.0,
        "processed": 3000,
        "total": 3000,
        "successful": 3000 - users.generated.invalid,
        "failed": users.generated.invalid,
        "currentChunk": 6,
        "totalChunks": 6,
    }
    assert done["result"]["failed"] == users.generated.invalid
    assert done["startedAt"]
    assert done["completedAt"]
    assert table_ids(service.database, "users_upload") == expected_ids(users, "first")
    rejects = _all_pages(client, f"/api/batch/jobs/{job['jobId']}/results", limit=40)
    assert sorted(r["line"] for r in rejects) == sorted(users.generated.invalid_lines)
    assert all(r["raw"] and r["errors"] for r in rejects)
    listed = client.get("/api/batch/jobs", params={"status": "completed"}).json()
    assert job["jobId"] in [j["jobId"] for j in listed["items"]]


def test_inline_data_becomes_an_upload_and_imports(service: Service) -> None:
    execute(service.database, "CREATE TABLE contacts (email text PRIMARY KEY, name text, age int)")
    client = service.client(service.key("bob"))
    records = [
        {"email": "a@example.com", "name": 'Zoë "Z", Müller', "age": 31},
        {"email": "b@example.com", "name": None, "age": 40},
        {"email": "c@example.com", "name": "", "age": "not a number"},
    ]
    body = {
        "type": "import-csv",
        "parameters": {"data": records, "table": "contacts", "key": ["email"]},
    }

    job = client.post("/api/batch/jobs", json=body).json()
    done = _wait(client, job["jobId"], TERMINAL)

    assert done["status"] == "completed", done
    assert (done["progress"]["successful"], done["progress"]["failed"]) == (2, 1)
    rows = query(service.database, "SELECT email, name, age FROM contacts ORDER BY email")
    assert [tuple(r) for r in rows] == [
        ("a@example.com", 'Zoë "Z", Müller', 31),
        ("b@example.com", None, 40),
    ]
    (reject,) = client.get(f"/api/batch/jobs/{job['jobId']}/results").json()["items"]
    assert reject["line"] == 4
    assert "age" in reject["errors"]


def test_an_export_downloads_through_its_signed_link_only(service: Service, tmp_path: Path) -> None:
    users = _users(tmp_path, service.database, "users_export", 300)
    client = service.client(service.key("carol"))
    job = client.post(
        "/api/batch/jobs",
        json={
            "type": "export-table",
            "parameters": {"table": "users_export", "compression": "none"},
        },
    ).json()
    done = _wait(client, job["jobId"], TERMINAL)
    assert done["status"] == "completed", done
    (item,) = client.get(f"/api/batch/jobs/{job['jobId']}/results").json()["items"]
    anonymous = service.client(None)

    got = anonymous.get(item["downloadUrl"])
    forged = anonymous.get(item["downloadUrl"].replace("signature=", "signature=0"))
    secret = (service.state / "secret").read_bytes().strip()
    expired = anonymous.get(download_path(secret, job["jobId"], int(time.time()) - 1))
    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == item["sha256"]
    assert got.content.count(b"\n") == item["rows"] + 1
    assert forged.status_code == 403
    assert forged.json()["error"]["code"] == "forbidden"
    for hostile in ("signature=%C3%A9", "expires=%C2%B2"):
        name = hostile.split("=")[0]
        link = re.sub(rf"{name}=[^&]*", hostile, item["downloadUrl"])
        assert anonymous.get(link).status_code == 403, hostile
    assert expired.status_code == 410
    (path,) = query(service.database, "SELECT path FROM batchflows_exports")[0]
    Path(path).unlink()
    assert anonymous.get(item["downloadUrl"]).status_code == 410
    assert users.generated.rows == 300


def test_cancelling_an_import_keeps_whole_chunks_and_the_same_import_id_resumes_it(
    service: Service, tmp_path: Path
) -> None:
    users = _users(tmp_path, service.database, "users", 4000)
    slow_down_inserts(service.database)
    client = service.client(service.key("dave"))
    upload = client.post(
        "/api/batch/uploads", content=users.path.read_bytes(), headers={"Content-Type": "text/csv"}
    ).json()
    body = _import(
        f"upload:{upload['uploadId']}",
        "users",
        chunk_size=100,
        max_concurrency=2,
        import_id="svc-1",
    )
    job = client.post("/api/batch/jobs", json=body).json()
    deadline = time.monotonic() + 120
    while client.get(f"/api/batch/jobs/{job['jobId']}").json()["progress"]["currentChunk"] < 5:
        assert time.monotonic() < deadline, "the import never got going"
        time.sleep(0.1)

    cancelled = client.post(f"/api/batch/jobs/{job['jobId']}/cancel")
    stopped = _wait(client, job["jobId"], TERMINAL, timeout=120)

    assert (cancelled.status_code, cancelled.json()) == (202, {"status": "cancelling"})
    assert stopped["status"] == "cancelled", stopped
    # A non-admin key's import_id is kept apart per owner: dave's "svc-1" is "dave:svc-1".
    stopped_at = _chunks(service.database, "dave:svc-1")
    assert 5 <= stopped_at < 40
    assert stopped["progress"]["currentChunk"] == stopped_at
    in_ledger = query(
        service.database,
        "SELECT coalesce(sum(inserted), 0) FROM batchflows_chunks WHERE import_id = 'dave:svc-1'",
    )
    assert query(service.database, "SELECT count(*) FROM users")[0][0] == in_ledger[0][0]
    resumed = client.post("/api/batch/jobs", json=body).json()
    done = _wait(client, resumed["jobId"], TERMINAL)
    assert done["status"] == "completed", done
    assert (done["result"]["resumed_chunks"], done["result"]["total"]) == (stopped_at, 4000)
    assert table_ids(service.database) == expected_ids(users, "first")


def test_the_same_idempotency_key_returns_the_first_job_per_owner(service: Service) -> None:
    erin, frank = service.client(service.key("erin")), service.client(service.key("frank"))
    body = {
        "type": "export-table",
        "parameters": {"table": "no_such_table"},
        "options": {"idempotencyKey": "nightly-1", "priority": "low"},
    }

    first, again = (erin.post("/api/batch/jobs", json=body).json() for _ in range(2))
    other = frank.post("/api/batch/jobs", json=body).json()

    assert first["jobId"] == again["jobId"]
    assert other["jobId"] != first["jobId"]
    failed = _wait(erin, first["jobId"], TERMINAL)
    assert failed["status"] == "failed"
    assert "no_such_table" in failed["error"]
    # The run's last log lines may reach Prefect a moment after its final state.
    deadline = time.monotonic() + 30
    while not any(line["level"] == "error" for line in _logs(erin, first["jobId"])):
        assert time.monotonic() < deadline, _logs(erin, first["jobId"])
        time.sleep(0.5)
    mine = erin.get("/api/batch/jobs").json()["items"]
    assert [j["jobId"] for j in mine] == [first["jobId"]]


def test_the_job_list_pages_newest_first_without_repeats_while_jobs_arrive(
    service: Service,
) -> None:
    client = service.client(service.key("olga"))
    job = {"type": "export-table", "parameters": {"table": "missing_listed"}}

    def submit() -> str:
        return str(client.post("/api/batch/jobs", json=job).json()["jobId"])

    submitted = [submit() for _ in range(3)]
    first = client.get("/api/batch/jobs", params={"limit": 2}).json()
    late = submit()
    second = client.get("/api/batch/jobs", params={"limit": 2, "cursor": first["nextCursor"]})

    assert [j["jobId"] for j in first["items"]] == [submitted[2], submitted[1]]
    assert [j["jobId"] for j in second.json()["items"]] == [submitted[0]]
    assert second.json()["nextCursor"] is None
    everything = [j["jobId"] for j in _all_pages(client, "/api/batch/jobs", 1)]
    assert everything == [late, *reversed(submitted)]


def test_another_owners_job_is_404_everywhere(service: Service) -> None:
    owner, other = service.client(service.key("gina")), service.client(service.key("hank"))
    job = owner.post(
        "/api/batch/jobs", json={"type": "export-table", "parameters": {"table": "missing"}}
    ).json()
    admin = service.client(service.key("root", admin=True))

    for path in ("", "/results", "/logs"):
        response = other.get(f"/api/batch/jobs/{job['jobId']}{path}")
        assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")
    assert other.post(f"/api/batch/jobs/{job['jobId']}/cancel").status_code == 404
    assert other.get(f"/api/batch/jobs/{uuid.uuid4()}").status_code == 404
    assert other.get("/api/batch/jobs/../../etc/passwd").status_code == 404
    assert admin.get(f"/api/batch/jobs/{job['jobId']}").status_code == 200


def test_keys_scopes_and_reach_are_enforced(service: Service, tmp_path: Path) -> None:
    limited = service.client(service.key("ivy", types=["export-table"]))
    plain = service.client(service.key("jack"))
    revoked_key = service.key("kate")
    revoke_key(service_engine(service.database), revoked_key.split("_")[1])

    def error(response: httpx.Response) -> tuple[int, str]:
        assert "Traceback" not in response.text
        assert "postgresql" not in response.text
        return response.status_code, response.json()["error"]["code"]

    assert error(service.client(None).get("/api/batch/jobs")) == (401, "unauthorized")
    assert error(service.client("bf_nonsense").get("/api/batch/jobs")) == (401, "unauthorized")
    assert error(service.client(revoked_key).get("/api/batch/jobs")) == (401, "unauthorized")
    assert error(limited.post("/api/batch/jobs", json=_import("upload:x", "t"))) == (
        403,
        "forbidden",
    )
    urgent = {**_import("upload:x", "t"), "options": {"priority": "high"}}
    assert error(plain.post("/api/batch/jobs", json=urgent)) == (403, "forbidden")
    hostile = {
        "source": "/etc/passwd",
        "database": "postgresql://postgres@127.0.0.1/postgres",
    }
    hostile_job = {"type": "import-csv", "parameters": {**hostile, "table": "t", "key": ["id"]}}
    refused = plain.post("/api/batch/jobs", json=hostile_job)
    assert error(refused) == (403, "forbidden")
    assert set(refused.json()["error"]["fields"]) == {"source", "database"}
    escape = {"type": "export-table", "parameters": {"table": "t", "destination": "../../etc"}}
    assert error(plain.post("/api/batch/jobs", json=escape))[0] == 403
    assert error(plain.post("/api/batch/queues/default/pause")) == (403, "forbidden")
    other = service.client(service.key("liam"))
    upload = plain.post(
        "/api/batch/uploads", content=b"a\n1\n", headers={"Content-Type": "text/csv"}
    )
    stolen = other.post("/api/batch/jobs", json=_import(f"upload:{upload.json()['uploadId']}", "t"))
    assert error(stolen) == (400, "invalid_request")
    assert stolen.json()["error"]["fields"] == {"source": "no such upload"}


def test_bad_requests_are_400_naming_each_field(service: Service) -> None:
    client = service.client(service.key("mia"))
    upload = client.post(
        "/api/batch/uploads", content=b"a\n1\n", headers={"Content-Type": "text/csv"}
    )
    source = f"upload:{upload.json()['uploadId']}"

    unknown = client.post("/api/batch/jobs", json={"type": "mine-bitcoin", "parameters": {}})
    wrong = client.post(
        "/api/batch/jobs",
        json={
            "type": "import-csv",
            "parameters": {"source": source, "key": "email", "chunk_size": "big", "colour": 1},
        },
    )
    not_json = client.post(
        "/api/batch/jobs", content=b"{", headers={"Content-Type": "application/json"}
    )
    bulk = client.post("/api/batch/jobs/bulk", json={"jobs": [{"type": "x"}] * 101})
    cursor = client.get("/api/batch/jobs", params={"cursor": "!!"})
    before = client.get("/api/batch/queues").json()["queues"]

    assert unknown.status_code == 400
    assert unknown.json()["error"]["fields"] == {"type": "unknown job type"}
    assert wrong.status_code == 400
    assert set(wrong.json()["error"]["fields"]) == {"table", "key", "chunk_size", "colour"}
    assert not_json.status_code == 400
    assert bulk.status_code == 400
    assert cursor.status_code == 400
    assert [q["name"] for q in before] == ["high", "default", "low"]
    # Nothing was created by the refused submissions.
    assert client.get("/api/batch/jobs").json()["items"] == []


def test_bulk_submits_each_job_or_says_why_not(service: Service) -> None:
    client = service.client(service.key("noah"))
    good = {"type": "export-table", "parameters": {"table": "missing_a"}}
    bad = {"type": "export-table", "parameters": {"format": "xml"}}

    response = client.post("/api/batch/jobs/bulk", json={"jobs": [good, bad]})

    assert response.status_code == 202
    first, second = response.json()["jobs"]
    assert first["accepted"] is True
    assert first["jobId"]
    assert (second["accepted"], second["status"]) == (False, 400)
    assert "format" in second["error"]["fields"]


def test_too_large_bodies_are_413(service: Service) -> None:
    client = service.client(service.key("olga"))
    uploads = service.state / "uploads"
    before = sorted(uploads.glob("*"))
    big = b"a\n" + b"1\n" * (1024 * 1024)

    upload = client.post("/api/batch/uploads", content=big, headers={"Content-Type": "text/csv"})
    streamed = client.post(
        "/api/batch/uploads",
        content=iter([big[:600_000], big[600_000:]]),
        headers={"Content-Type": "text/csv"},
    )
    inline = client.post(
        "/api/batch/jobs",
        json={"type": "import-csv", "parameters": {"data": [{"a": "x" * 1000}] * 11_000}},
    )

    assert (upload.status_code, upload.json()["error"]["code"]) == (413, "payload_too_large")
    assert streamed.status_code == 413
    assert inline.status_code == 413
    assert sorted(uploads.glob("*")) == before  # nothing of a refused body is kept


def test_a_key_over_its_rate_limit_gets_429_with_retry_after(service: Service) -> None:
    client = service.client(service.key("pete"))
    codes = [
        client.post("/api/batch/jobs", json={"type": "nothing"}).status_code
        for _ in range(RATE_LIMIT + 1)
    ]
    refused = client.post("/api/batch/jobs", json={"type": "nothing"})

    assert codes[:RATE_LIMIT] == [400] * RATE_LIMIT
    assert codes[RATE_LIMIT] == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["error"]["code"] == "rate_limited"
    # Another key is not affected.
    assert service.client(service.key("quinn")).get("/api/batch/jobs").status_code == 200


def test_queues_show_counts_and_admins_pause_and_resume_them(service: Service) -> None:
    admin = service.client(service.key("root2", admin=True))

    paused = admin.post("/api/batch/queues/low/pause")
    seen = {q["name"]: q for q in admin.get("/api/batch/queues").json()["queues"]}
    waiting = admin.post(
        "/api/batch/jobs",
        json={
            "type": "export-table",
            "parameters": {"table": "missing"},
            "options": {"priority": "low"},
        },
    ).json()
    cancelled = admin.post(f"/api/batch/jobs/{waiting['jobId']}/cancel")
    again = admin.post(f"/api/batch/jobs/{waiting['jobId']}/cancel")
    resumed = admin.post("/api/batch/queues/low/resume")
    missing = admin.post("/api/batch/queues/nope/pause")
    health = service.client(None).get("/healthz")
    docs = service.client(None).get("/docs")

    assert paused.json() == {"name": "low", "isPaused": True}
    assert seen["low"]["isPaused"] is True
    assert seen["default"]["isPaused"] is False
    assert set(seen["default"]) >= {"waiting", "active", "completed", "failed", "delayed", "paused"}
    assert (cancelled.status_code, cancelled.json()) == (202, {"status": "cancelled"})
    assert again.json() == {"status": "cancelled"}
    assert admin.get(f"/api/batch/jobs/{waiting['jobId']}").json()["status"] == "cancelled"
    assert resumed.json()["isPaused"] is False
    assert missing.status_code == 404
    assert health.json() == {"status": "ok", "prefect": "ok", "database": "ok"}
    assert docs.status_code == 200


def test_admin_clean_deletes_finished_jobs_and_old_uploads(service: Service) -> None:
    owner = service.client(service.key("rita"))
    admin = service.client(service.key("root3", admin=True))
    job = owner.post(
        "/api/batch/jobs", json={"type": "export-table", "parameters": {"table": "missing"}}
    ).json()
    assert _wait(owner, job["jobId"], TERMINAL)["status"] == "failed"
    unused = owner.post(
        "/api/batch/uploads", content=b"b\n2\n", headers={"Content-Type": "text/csv"}
    )
    assert unused.status_code == 201, unused.text
    # An import still waiting in a paused queue: its upload must outlive the clean.
    assert admin.post("/api/batch/queues/low/pause").status_code == 200
    upload = owner.post(
        "/api/batch/uploads", content=b"a\n1\n", headers={"Content-Type": "text/csv"}
    ).json()
    waiting = owner.post(
        "/api/batch/jobs",
        json={**_import(f"upload:{upload['uploadId']}", "t"), "options": {"priority": "low"}},
    ).json()

    refused = owner.post("/api/batch/jobs/clean", json={"olderThanHours": 0})
    cleaned = admin.post("/api/batch/jobs/clean", json={"olderThanHours": 0})
    admin.post(f"/api/batch/jobs/{waiting['jobId']}/cancel")
    admin.post("/api/batch/queues/low/resume")

    assert refused.status_code == 403
    assert cleaned.status_code == 200
    assert cleaned.json()["deleted"] >= 1
    assert cleaned.json()["uploadsDeleted"] >= 1
    assert owner.get(f"/api/batch/jobs/{job['jobId']}").status_code == 404
    kept = list((service.state / "uploads").iterdir())
    assert [path.read_bytes() for path in kept] == [b"a\n1\n"]
