"""Who may read and write what (issue 13): sign-in, roles, CSRF, tokens, ingest scopes.

Each test is one finding of the attacker's probe, run against the real app and MongoDB.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from ulid import ULID

from aisci_nb.contract import runtoken
from aisci_nb.contract.idea import example_idea
from aisci_nb.control_plane import accounts
from aisci_nb.control_plane.app import PUBLIC_ROUTES, create_app
from aisci_nb.events.emitter import sign
from aisci_nb.queue.submit import submit_hypothesis

from ..conftest import API_KEY, ROOT, UI_AUTH, UI_TOKEN, Stack

PASSWORD = "correct horse battery"


def client(stack: Stack, **overrides) -> TestClient:
    settings = stack.settings.model_copy(update=overrides)
    return TestClient(create_app(settings), raise_server_exceptions=False)


def event(run_id: str, event_type: str, data: dict, epoch: int | None = None,
          source: str = "test://auth") -> dict:
    out = {"specversion": "1.0", "id": str(ULID()), "source": source, "type": event_type,
           "subject": f"run/{run_id}", "time": "2026-01-01T00:00:00Z",
           "datacontenttype": "application/json", "data": {"run_id": run_id, **data}}
    if epoch is not None:
        out["leaseepoch"] = epoch
    return out


def ndjson(*events: dict) -> bytes:
    import json

    return b"\n".join(json.dumps(e).encode() for e in events)


def post_events(c, body: bytes, token: str, path: str = "/api/ingest/events"):
    return c.post(path, content=body, headers={"authorization": f"Bearer {token}",
                                               "content-type": "application/x-ndjson"})


def all_routes(app) -> list[tuple[str, str]]:
    """(method, path) of every route, routers included (FastAPI >= 0.16x wraps them);
    a mount (static files, a sub-app) counts as a GET of its path."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: included routes are flat in app.routes
        contexts = app.routes
    else:
        contexts = list(iter_route_contexts(app.routes))
    out = []
    for r in contexts:
        methods = getattr(r, "methods", None) or {"GET"}
        out += [(m, r.path) for m in sorted(methods) if m != "HEAD"]
    return out


def fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


# -- finding 1: every read is public --------------------------------------------------------


def test_signed_out_requests_are_refused_on_every_route(stack: Stack) -> None:
    """Enumerated from the app's routes: a route added later without `UserDep` (or an
    entry in PUBLIC_ROUTES with its reason) fails here."""
    c = client(stack)
    routes = all_routes(c.app)
    assert ("GET", "/docs") in routes and ("GET", "/openapi.json") in routes
    assert {k for k in PUBLIC_ROUTES} <= set(routes), "PUBLIC_ROUTES names a missing route"
    checked = 0
    for method, path in routes:
        if (method, path) in PUBLIC_ROUTES:
            continue
        for headers in ({}, {"authorization": f"Bearer {API_KEY}"},  # a worker key
                        {"authorization": "Bearer aisci_pat_forged"}):
            resp = c.request(method, fill(path), headers=headers)
            assert resp.status_code == 401, (method, path, headers, resp.status_code)
        page = c.request(method, fill(path), headers={"accept": "text/html"},
                         follow_redirects=False)
        if method == "GET":
            assert page.status_code == 303 and page.headers["location"].startswith("/login")
        checked += 1
    assert checked >= 6
    # The public ones say nothing without their own credential.
    assert c.get("/healthz").json() == {"status": "ok"}
    assert c.get("/metrics").status_code == 401
    assert c.get("/artifacts/runs/x/a.txt").status_code == 422  # no signature: refused
    assert c.post("/api/ingest/events", content=b"").status_code == 401


def test_metrics_take_their_own_token(stack: Stack) -> None:
    c = client(stack, metrics_token=SecretStr("prometheus-scrape-token"))
    assert c.get("/metrics", headers={"authorization": "Bearer wrong"}).status_code == 401
    scraped = c.get("/metrics", headers={"authorization": "Bearer prometheus-scrape-token"})
    assert scraped.status_code == 200 and "aisci_runs" in scraped.text
    # The scrape token reads metrics only.
    assert c.get("/", headers={"authorization": "Bearer prometheus-scrape-token"}
                 ).status_code == 401


def _sign_in(c: TestClient, name: str, password: str) -> None:
    form = c.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    done = c.post("/login", data={"csrf_token": csrf, "username": name, "password": password,
                                  "next": "/"}, follow_redirects=False)
    assert done.status_code == 303, done.text
    cookie = done.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie


def _page_csrf(c: TestClient) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', c.get("/").text).group(1)


def test_sign_in_roles_csrf_and_audit(stack: Stack) -> None:
    accounts.add_user(stack.db, "olga", "operator", PASSWORD)
    accounts.add_user(stack.db, "vic", "viewer", PASSWORD)
    run_id = submit_hypothesis(stack.db, title="t", idea=example_idea()).run_id
    stored = stack.db.users.find_one({"_id": "olga"})
    assert PASSWORD not in str(stored) and stored["passwordHash"].startswith("scrypt$")

    c = client(stack)
    bad = c.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', bad.text).group(1)
    wrong = c.post("/login", data={"csrf_token": csrf, "username": "olga", "password": "nope"})
    assert wrong.status_code == 401 and "Wrong name" in wrong.text
    _sign_in(c, "olga", PASSWORD)
    index = c.get("/")
    assert index.status_code == 200 and "olga (operator)" in index.text

    url = f"/api/runs/{run_id}/cancel"
    assert c.post(url, json={"reason": "r"}).status_code == 403  # no CSRF token
    # A cross-site form post carries the cookie but not the token: refused.
    assert c.post(url, data={"reason": "r"}, headers={
        "origin": "https://evil.example", "sec-fetch-site": "cross-site"}).status_code == 403
    # Even with a stolen token, another origin is refused.
    token = _page_csrf(c)
    assert c.post(url, headers={"x-csrf-token": token, "origin": "https://evil.example"}
                  ).status_code == 403
    assert stack.db.runs.find_one({"_id": run_id})["status"] == "QUEUED"
    done = c.post(url, json={"reason": "wrong idea"}, headers={"x-csrf-token": token})
    assert done.status_code == 200, done.text
    entry = stack.db.audit.find_one({"action": "cancel"})
    assert (entry["user"], entry["target"], entry["via"]) == ("olga", run_id, "session")
    assert entry["at"] is not None

    viewer = client(stack)
    _sign_in(viewer, "vic", PASSWORD)
    other = submit_hypothesis(stack.db, title="t2", idea=example_idea()).run_id
    assert viewer.get(f"/runs/{other}").status_code == 200  # viewers read
    refused = viewer.post(f"/api/runs/{other}/cancel", headers={"x-csrf-token": _page_csrf(viewer)})
    assert refused.status_code == 403 and "viewer" in refused.json()["detail"]

    # Signing out ends the session.
    assert c.post("/logout", data={"csrf_token": token}, follow_redirects=False
                  ).status_code == 303
    assert c.get("/runs/" + run_id).status_code == 401


def test_login_refuses_a_forged_form_and_offsite_next(stack: Stack) -> None:
    accounts.add_user(stack.db, "olga", "operator", PASSWORD)
    c = client(stack)
    assert c.post("/login", data={"csrf_token": "x", "username": "olga",
                                  "password": PASSWORD}).status_code == 403
    form = c.get("/login?next=//evil.example/x")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    done = c.post("/login", data={"csrf_token": csrf, "username": "olga", "password": PASSWORD,
                                  "next": "//evil.example/x"}, follow_redirects=False)
    assert done.headers["location"] == "/"


def test_personal_api_tokens_from_the_cli(stack: Stack) -> None:
    env = {**os.environ, **stack.env, "AISCI_NEW_PASSWORD": PASSWORD, "PYTHONPATH": str(ROOT)}
    cli = [sys.executable, "-m", "aisci_nb.ops.cli"]
    added = subprocess.run([*cli, "user", "add", "bot", "--role", "viewer",
                            "--password-from-env"], env=env, capture_output=True, text=True)
    assert added.returncode == 0, added.stderr
    made = subprocess.run([*cli, "token", "create", "--user", "bot", "--label", "ci"], env=env,
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("aisci_pat_")
    assert token not in str(list(stack.db.api_tokens.find()))  # stored hashed
    run_id = submit_hypothesis(stack.db, title="t", idea=example_idea()).run_id
    c = client(stack)
    auth = {"authorization": f"Bearer {token}"}
    assert c.get(f"/runs/{run_id}", headers=auth).status_code == 200
    assert c.get("/openapi.json", headers=auth).status_code == 200
    # A viewer's token cannot cancel; bearer calls need no CSRF token, but do need the role.
    assert c.post(f"/api/runs/{run_id}/cancel", headers=auth).status_code == 403
    assert {e["action"] for e in stack.db.audit.find()} >= {"user_add", "token_create"}


# -- finding 3: an ingest key could do anything to any run -----------------------------------


def test_run_token_speaks_for_its_run_and_epoch_only(stack: Stack) -> None:
    run_a = submit_hypothesis(stack.db, title="a", idea=example_idea()).run_id
    run_b = submit_hypothesis(stack.db, title="b", idea=example_idea()).run_id
    stack.db.runs.update_one({"_id": run_a}, {"$set": {"leaseEpoch": 3}})
    token = runtoken.mint(API_KEY, run_a, 3, ttl_s=600)
    c = client(stack)
    progress = {"stage": "Stage_1", "progress": 0.5}
    ok = post_events(c, ndjson(event(run_a, "ai.run.stage_progress", progress, epoch=3)), token)
    assert ok.status_code == 202 and ok.json()["accepted"] == 1, ok.text
    other = post_events(c, ndjson(event(run_b, "ai.run.stage_progress", progress, epoch=3),
                                  event(run_a, "ai.run.stage_progress", progress, epoch=2),
                                  event(run_a, "ai.run.stage_progress", progress)), token)
    reasons = [x["reason"] for x in other.json()["invalid_lines"]]
    assert other.json()["accepted"] == 0 and len(reasons) == 3, other.text
    assert f"not {run_b}" in reasons[0] and "epoch 3, not 2" in reasons[1]
    assert stack.db.events.count_documents({"runId": run_b}) == 1  # only its enqueue event
    single = c.post("/api/ingest/event", json=event(run_b, "ai.run.completed",
                                                    {"total_duration_s": 1.0}, epoch=3),
                    headers={"authorization": f"Bearer {token}"})
    assert single.status_code == 403
    # The lease was taken over: the old epoch's token is stale.
    stack.db.runs.update_one({"_id": run_a}, {"$set": {"leaseEpoch": 4}})
    stale = post_events(c, ndjson(event(run_a, "ai.run.stage_progress", progress, epoch=3)),
                        token)
    assert stale.json()["accepted"] == 0 and "stale" in stale.json()["invalid_lines"][0][
        "reason"]
    # Forged, expired, or used to read or cancel: refused.
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    log = {"level": "info", "message": "m"}
    assert post_events(c, ndjson(event(run_a, "ai.run.log", log, epoch=4)),
                       forged).status_code == 401
    expired = runtoken.mint(API_KEY, run_a, 4, ttl_s=-1)
    assert post_events(c, b"", expired).status_code == 401
    assert c.get(f"/runs/{run_a}", headers={"authorization": f"Bearer {token}"}
                 ).status_code == 401
    assert c.post(f"/api/runs/{run_a}/cancel", headers={"authorization": f"Bearer {token}"}
                  ).status_code == 401


def test_human_only_moves_are_never_accepted_from_ingest(stack: Stack) -> None:
    run_id = submit_hypothesis(stack.db, title="h", idea=example_idea()).run_id
    stack.db.runs.update_one({"_id": run_id}, {"$set": {"status": "RUNNING"}})
    c = client(stack)
    validated = post_events(c, ndjson(event(run_id, "ai.run.status_changed",
                                            {"from": "RUNNING", "to": "HUMAN_VALIDATED"})),
                            API_KEY)
    assert validated.json()["accepted"] == 0
    assert "person's verdict" in validated.json()["invalid_lines"][0]["reason"]
    assert stack.db.runs.find_one({"_id": run_id})["status"] == "RUNNING"
    stack.db.runs.update_one({"_id": run_id}, {"$set": {"status": "AWAITING_HUMAN"}})
    failed = post_events(c, ndjson(event(run_id, "ai.run.failed", {
        "code": "X", "message": "m", "retryable": False})), API_KEY)
    assert failed.json()["accepted"] == 0 and "human review" in failed.text
    assert stack.db.runs.find_one({"_id": run_id})["status"] == "AWAITING_HUMAN"


def test_artifact_keys_must_live_under_their_run(stack: Stack) -> None:
    run_id = submit_hypothesis(stack.db, title="k", idea=example_idea()).run_id
    other = submit_hypothesis(stack.db, title="k2", idea=example_idea()).run_id
    c = client(stack)
    art = {"bytes": 1, "sha256": "0" * 64, "content_type": "text/plain", "kind": "file"}
    resp = post_events(c, ndjson(
        event(run_id, "ai.artifact.registered", {**art, "key": f"runs/{other}/secret.ipynb"}),
        event(run_id, "ai.artifact.registered", {**art, "key": f"runs/{run_id}/../x"}),
        event(run_id, "ai.artifact.registered", {**art, "key": "other/place.txt"}),
        event(run_id, "ai.artifact.registered", {**art, "key": f"runs/{run_id}/ok.txt"})),
        API_KEY)
    assert resp.json()["accepted"] == 1 and resp.json()["invalid"] == 3, resp.text
    assert [d["key"] for d in stack.db.artifacts.find({"runId": run_id})] == [
        f"runs/{run_id}/ok.txt"]


# -- finding 7: the migration switch opened cancel too --------------------------------------


def test_unauthenticated_ingest_opens_ingest_only(stack: Stack) -> None:
    run_id = submit_hypothesis(stack.db, title="u", idea=example_idea()).run_id
    c = client(stack, ingest_allow_unauthenticated=True)
    # A cross-site form post (no preflight) can neither cancel nor reach the ingest.
    assert c.post(f"/api/runs/{run_id}/cancel", data={"reason": "x"}).status_code == 401
    line = ndjson(event(run_id, "ai.run.log", {"level": "info", "message": "hello"}))
    for ctype in ("application/x-www-form-urlencoded", "text/plain", "multipart/form-data", ""):
        resp = c.post("/api/ingest/events", content=line, headers={"content-type": ctype})
        assert resp.status_code == 415, (ctype, resp.status_code)
    ok = c.post("/api/ingest/events", content=line,
                headers={"content-type": "application/x-ndjson"})
    assert ok.status_code == 202 and ok.json()["accepted"] == 1
    assert stack.db.runs.find_one({"_id": run_id})["status"] == "QUEUED"
    banner = c.get("/login").text
    assert "ingest (only)" in banner and "still need a sign-in" in banner


# -- finding 8: hardening ------------------------------------------------------------------


def test_security_headers_and_trusted_hosts(stack: Stack) -> None:
    c = client(stack, trusted_hosts=["testserver", "cp.example.org"])
    page = c.get("/login")
    csp = page.headers["content-security-policy"]
    # Only the pages' own script files (issue 14's UI): no inline script, no other origin.
    assert "frame-ancestors 'none'" in csp and "script-src 'self';" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "default-src 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    # Nothing leaks to other origins; same-origin posts keep a real Origin (CSRF check).
    assert page.headers["referrer-policy"] == "same-origin"
    assert page.headers["x-frame-options"] == "DENY"
    assert c.get("/healthz", headers={"host": "evil.example"}).status_code == 400
    assert c.get("/healthz", headers={"host": "cp.example.org"}).status_code == 200


def test_hmac_covers_method_path_and_can_be_required(stack: Stack) -> None:
    run_id = submit_hypothesis(stack.db, title="s", idea=example_idea()).run_id
    body = ndjson(event(run_id, "ai.run.log", {"level": "info", "message": "signed"}))
    c = client(stack, ingest_require_hmac=True)

    def signed(path: str, sig_path: str):
        ts = str(int(time.time()))
        return c.post(path, content=body, headers={
            "content-type": "application/x-ndjson", "x-aisci-timestamp": ts,
            "x-aisci-signature": sign(API_KEY, ts, body, "POST", sig_path)})

    # A signature for one endpoint does not open another.
    assert signed("/api/ingest/events", "/api/ingest/event").status_code == 401
    assert signed("/api/ingest/events", "/api/ingest/events").status_code == 202
    refused = post_events(c, body, API_KEY)  # a bare bearer key, when HMAC is required
    assert refused.status_code == 401 and "HMAC" in refused.text
    token = runtoken.mint(API_KEY, run_id, 0, ttl_s=60)  # kernels keep their run token
    log = {"level": "info", "message": "k"}
    kernel = post_events(c, ndjson(event(run_id, "ai.run.log", log, epoch=0)), token)
    assert kernel.status_code == 202 and kernel.json()["accepted"] == 1, kernel.text


# -- finding 6: the run page broke or bloated ----------------------------------------------


def test_run_page_survives_missing_fields_and_80000_events(stack: Stack) -> None:
    from datetime import UTC, datetime

    run_id = submit_hypothesis(stack.db, title="big", idea=example_idea()).run_id
    c = client(stack)
    # A node without a metric (and a stage summary of odd shape) must not 500 the page.
    resp = post_events(c, ndjson(
        event(run_id, "ai.node.created", {"stage": "Stage_1", "node_id": "n1"}),
        event(run_id, "ai.run.stage_metric", {"stage": "Stage_1", "name": "acc",
                                              "value": 0.5})), API_KEY)
    assert resp.json()["accepted"] == 2, resp.text
    page = c.get(f"/runs/{run_id}", headers=UI_AUTH)
    assert page.status_code == 200 and "n1" in page.text

    now = datetime.now(UTC)
    blob = "x" * 100
    docs = [{"_id": f"bulk-{i}", "runId": run_id, "seq": 10 + i, "type": "ai.run.log",
             "source": "test://bulk", "timestamp": now,
             "data": {"run_id": run_id, "message": f"line {i} {blob}"}} for i in range(80_000)]
    for start in range(0, len(docs), 10_000):
        stack.db.events.insert_many(docs[start:start + 10_000], ordered=False)
    huge = {**docs[-1], "_id": "bulk-huge", "seq": 10 + 80_000,
            "data": {"run_id": run_id, "message": "huge " + "y" * 500_000}}
    stack.db.events.insert_one(huge)
    page = c.get(f"/runs/{run_id}", headers=UI_AUTH)
    assert page.status_code == 200
    assert len(page.content) < 1_000_000, len(page.content)  # was 15 MB (and 400 MB here)
    assert "line 79999" in page.text and "line 79000" not in page.text  # the newest first
    assert "Older events" in page.text and "80004 events" in page.text
    older = c.get(f"/runs/{run_id}?older=200", headers=UI_AUTH)
    assert "line 79800" in older.text and "line 79999" not in older.text
    assert len(older.content) < 1_000_000


def test_kernel_env_holds_no_worker_key_nor_store_secret(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    from aisci_nb.worker.kernel_env import kernel_env, run_token, secret_values

    for name, value in stack.env.items():  # the worker's own environment, as on a pod
        monkeypatch.setenv(name, value)
    token = run_token(stack.settings, "run-1", 2)
    env = kernel_env(stack.settings, token, stack.tmp / "outbox")
    values = "\n".join(env.values())
    for secret in (API_KEY, stack.env["MINIO_SECRET_KEY"], UI_TOKEN):
        assert secret not in values
    for name in ("AISCI_API_KEY", "MINIO_SECRET_KEY", "MONGODB_URL", "INGEST_API_KEYS"):
        assert name not in env
    assert runtoken.verify(env["AISCI_RUN_TOKEN"], [API_KEY]).run_id == "run-1"
    # The database password is one of the secrets every output is scrubbed of.
    password = stack.env["MONGODB_URL"].split("://", 1)[1].split("@")[0].split(":", 1)[1]
    assert password in secret_values(stack.settings)


def test_live_control_plane_refuses_signed_out_reads(stack: Stack) -> None:
    """The real server process (not only the in-process app) answers the same way."""
    base = stack.control_plane_url
    run_id = submit_hypothesis(stack.db, title="p", idea=example_idea()).run_id
    for path in ("/", f"/runs/{run_id}", "/docs", "/openapi.json", "/metrics",
                 f"/api/runs/{run_id}/artifacts/runs/{run_id}/x"):
        assert httpx.get(base + path).status_code == 401, path
    assert httpx.get(f"{base}/runs/{run_id}", headers=UI_AUTH).status_code == 200


def test_cookie_is_secure_behind_tls(stack: Stack) -> None:
    accounts.add_user(stack.db, "olga", "operator", PASSWORD)
    c = client(stack, control_plane_url="https://aisci.example.org")
    form = c.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    # the login-CSRF cookie is Secure too, so over plain http the test client drops it:
    c.cookies.set("aisci_login_csrf", csrf, path="/login")
    done = c.post("/login", data={"csrf_token": csrf, "username": "olga",
                                  "password": PASSWORD}, follow_redirects=False)
    assert done.status_code == 303
    assert "Secure" in done.headers["set-cookie"]
