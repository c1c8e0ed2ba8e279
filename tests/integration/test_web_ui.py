"""The web UI's pages and their JSON twins (issue 14), against the real app and MongoDB:
each page renders what the read model holds, filters and pages, the operator actions, the
sandboxed notebook and inline files, the LLM draft, and the statistics."""

from __future__ import annotations

import json
import re

import nbformat
import pytest
from fastapi.testclient import TestClient
from ulid import ULID

from aisci_nb.contract.idea import example_idea
from aisci_nb.control_plane import accounts
from aisci_nb.control_plane.app import create_app
from aisci_nb.control_plane.live import Broadcaster
from aisci_nb.db import utcnow
from aisci_nb.queue.submit import submit_hypothesis

from ..conftest import API_KEY, UI_AUTH, Stack

PASSWORD = "correct horse battery"


@pytest.fixture
def c(stack: Stack) -> TestClient:
    with TestClient(create_app(stack.settings), raise_server_exceptions=True) as client:
        yield client


def ingest(c: TestClient, run_id: str, *events: tuple[str, dict], seq0: int = 2) -> None:
    lines = [json.dumps({"specversion": "1.0", "id": str(ULID()), "source": "test://ui",
                         "type": t, "subject": f"run/{run_id}", "time": utcnow().isoformat(),
                         "datacontenttype": "application/json", "sequence": str(seq0 + i),
                         "data": {"run_id": run_id, **d}}) for i, (t, d) in enumerate(events)]
    resp = c.post("/api/ingest/events", content="\n".join(lines).encode(),
                  headers={"authorization": f"Bearer {API_KEY}",
                           "content-type": "application/x-ndjson"})
    assert resp.status_code in (200, 202), resp.text


def started(c: TestClient, run_id: str) -> None:
    ingest(c, run_id,
           ("ai.run.started", {"pod_id": "pod-a", "gpu": "H100", "region": "eu"}),
           ("ai.run.stage_started", {"stage": "Stage_1"}),
           ("ai.node.created", {"stage": "Stage_1", "node_id": "n1"}),
           ("ai.node.completed", {"stage": "Stage_1", "node_id": "n1", "is_buggy": True}),
           ("ai.node.created", {"stage": "Stage_1", "node_id": "n2", "parent_id": "n1"}),
           ("ai.node.completed", {"stage": "Stage_1", "node_id": "n2", "parent_id": "n1",
                                  "is_buggy": False, "metric": 0.91}),
           ("ai.run.stage_progress", {"stage": "Stage_1", "progress": 0.5, "iteration": 2,
                                      "max_iterations": 4, "good_nodes": 1, "buggy_nodes": 1,
                                      "total_nodes": 2, "best_metric": 0.91, "eta_s": 120}),
           ("ai.run.stage_metric", {"stage": "Stage_1", "name": "val_acc", "value": 0.8}),
           ("ai.run.stage_metric", {"stage": "Stage_1", "name": "val_acc", "value": 0.91}),
           ("ai.run.heartbeat", {}),
           ("ai.run.log", {"level": "error", "message": "a visible error line"}))


def test_every_page_renders_with_its_json_twin(stack: Stack, c: TestClient) -> None:
    run_id = submit_hypothesis(stack.db, title="Label smoothing", idea=example_idea()).run_id
    hyp = stack.db.runs.find_one({"_id": run_id})["hypothesisId"]
    started(c, run_id)
    pages = {"/": "Overview", "/runs": "Runs", f"/runs/{run_id}": "Tree search",
             "/hypotheses": "Hypotheses", f"/hypotheses/{hyp}": "Run this idea",
             "/validations": "Awaiting", "/metrics": "queue depth"}
    for path, text in pages.items():
        page = c.get(path, headers={**UI_AUTH, "accept": "text/html"})
        assert page.status_code == 200, (path, page.text[:500])
        assert text in page.text, path
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1]
        assert "<script>" not in page.text and " on" + "click=" not in page.text
    # The overview shows all nine counts and the worker that heartbeats.
    home = c.get("/api/overview", headers=UI_AUTH).json()
    assert len(home["counts"]) == 9 and home["counts"]["RUNNING"] == 1
    assert home["workers"][0]["pod"] == "pod-a" and home["workers"][0]["currentRun"] == run_id
    assert home["workers"][0]["gpu"] == "H100"
    # The run's twin: stages with node counts, the tree coloured, series, the error log.
    d = c.get(f"/api/runs/{run_id}", headers=UI_AUTH).json()
    stage = d["stages"][0]
    assert (stage["goodNodes"], stage["buggyNodes"], stage["totalNodes"]) == (1, 1, 2)
    assert {n["id"]: n["state"] for n in d["tree"]} == {"n1": "buggy", "n2": "best"}
    assert [p["value"] for p in d["series"]["Stage_1"]["val_acc"]] == [0.8, 0.91]
    errors = c.get(f"/api/runs/{run_id}/events?level=error", headers=UI_AUTH).json()
    assert [e["message"] for e in errors["events"]] == ["a visible error line"]
    node = c.get(f"/api/runs/{run_id}/nodes/n2", headers=UI_AUTH).json()
    assert node["metric"] == 0.91 and node["journal"] is None
    # Every twin is in the OpenAPI schema.
    schema = c.get("/openapi.json", headers=UI_AUTH).json()["paths"]
    for twin in ("/api/overview", "/api/runs", "/api/runs/{run_id}", "/api/hypotheses",
                 "/api/hypotheses/{hypothesis_id}/detail", "/api/validations", "/api/stats",
                 "/api/live"):
        assert twin in schema, twin


def test_runs_filters_search_pages_and_hide(stack: Stack, c: TestClient) -> None:
    ids = [submit_hypothesis(stack.db, title=f"alpha {i}" if i % 2 else f"beta {i}",
                             idea=example_idea()).run_id for i in range(7)]
    stack.db.runs.update_one({"_id": ids[0]}, {"$set": {"status": "FAILED"}})
    api = lambda q: c.get(f"/api/runs?{q}", headers=UI_AUTH).json()  # noqa: E731
    assert api("size=3")["total"] == 7 and api("size=3")["pages"] == 3
    assert [r["_id"] for r in api("size=3&page=3")["runs"]] == [ids[0]]  # oldest last
    assert {r["title"] for r in api("q=ALPHA")["runs"]} == {"alpha 1", "alpha 3", "alpha 5"}
    assert [r["_id"] for r in api("status=FAILED")["runs"]] == [ids[0]]
    today = utcnow().date().isoformat()
    assert api(f"since={today}&until={today}")["total"] == 7
    assert api("since=2001-01-01&until=2001-01-02")["total"] == 0
    assert c.get("/api/runs?status=NOPE", headers=UI_AUTH).status_code == 422
    assert c.get("/api/runs?since=yesterday", headers=UI_AUTH).status_code == 422
    assert c.post(f"/api/runs/{ids[1]}/hide", headers=UI_AUTH).json()["hidden"] is True
    assert api("")["total"] == 6 and [r["_id"] for r in api("hidden=true")["runs"]] == [ids[1]]
    page = c.get("/runs?hidden=true", headers=UI_AUTH)
    assert ids[1] in page.text and ids[2] not in page.text
    c.post(f"/api/runs/{ids[1]}/unhide", headers=UI_AUTH)
    assert api("")["total"] == 7
    assert c.post("/api/runs/nope/hide", headers=UI_AUTH).status_code == 404


def test_viewers_read_operators_act(stack: Stack, c: TestClient) -> None:
    accounts.add_user(stack.db, "vic", "viewer", PASSWORD)
    token = accounts.create_token(stack.db, "vic", "ui test")
    viewer = {"authorization": f"Bearer {token}"}
    run_id = submit_hypothesis(stack.db, title="t", idea=example_idea()).run_id
    assert c.get(f"/runs/{run_id}", headers={**viewer, "accept": "text/html"}).status_code == 200
    page = c.get(f"/runs/{run_id}", headers={**viewer, "accept": "text/html"}).text
    assert 'data-action="cancel"' not in page  # no buttons a viewer cannot use
    for path in (f"/api/runs/{run_id}/hide", f"/api/runs/{run_id}/retry",
                 "/api/hypotheses/x/ideas/0/run"):
        assert c.post(path, headers=viewer).status_code == 403, path
    assert c.post("/api/hypotheses/draft", json={"notes": "x"}, headers=viewer
                  ).status_code == 403


def test_retry_and_run_this_idea(stack: Stack, c: TestClient) -> None:
    done = submit_hypothesis(stack.db, title="t", idea=example_idea())
    assert c.post(f"/api/runs/{done.run_id}/retry", headers=UI_AUTH).status_code == 409
    stack.db.runs.update_one({"_id": done.run_id}, {"$set": {"status": "FAILED"}})
    new = c.post(f"/api/runs/{done.run_id}/retry", headers=UI_AUTH)
    assert new.status_code == 201
    retried = stack.db.runs.find_one({"_id": new.json()["run_id"]})
    assert retried["status"] == "QUEUED" and retried["retryOf"] == done.run_id
    assert stack.db.events.count_documents({"runId": retried["_id"],
                                            "type": "ai.run.enqueued"}) == 1
    ideas = [example_idea(), {**example_idea(), "Name": "second_idea", "Title": "Second idea",
                              "Related Work": "Prior work on label smoothing."}]
    stack.db.hypotheses.update_one({"_id": done.hypothesis_id},
                                   {"$set": {"ideation": {"status": "COMPLETED",
                                                          "ideas": ideas}}})
    detail = c.get(f"/api/hypotheses/{done.hypothesis_id}/detail", headers=UI_AUTH).json()
    assert [i["Name"] for i in detail["ideas"]] == [ideas[0]["Name"], "second_idea"]
    page = c.get(f"/hypotheses/{done.hypothesis_id}", headers={**UI_AUTH, "accept": "text/html"})
    for field in ("Name", "Title", "Short Hypothesis", "Related Work", "Abstract", "Experiments",
                  "Risk Factors and Limitations"):
        assert f"<dt>{field}</dt>" in page.text
    run = c.post(f"/api/hypotheses/{done.hypothesis_id}/ideas/1/run", headers=UI_AUTH)
    assert run.status_code == 201
    doc = stack.db.runs.find_one({"_id": run.json()["run_id"]})
    assert doc["idea"]["Name"] == "second_idea" and doc["ideaIndex"] == 1
    assert c.post(f"/api/hypotheses/{done.hypothesis_id}/ideas/5/run",
                  headers=UI_AUTH).status_code == 409
    assert c.post("/api/hypotheses/nope/ideas/0/run", headers=UI_AUTH).status_code == 404


def _notebook(failing: bool) -> bytes:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1", outputs=[]),
                nbformat.v4.new_code_cell("print('<script>alert(1)</script>')", outputs=[
                    nbformat.v4.new_output("display_data",
                                           data={"text/html": "<script>alert(1)</script>"})])]
    if failing:
        nb.cells.append(nbformat.v4.new_code_cell("1/0", outputs=[nbformat.v4.new_output(
            "error", ename="ZeroDivisionError", evalue="division by zero",
            traceback=["ZeroDivisionError: division by zero"])]))
    return nbformat.writes(nb).encode()


def test_notebook_html_is_sandboxed_and_marks_the_failing_cell(stack: Stack,
                                                                c: TestClient) -> None:
    run_id = submit_hypothesis(stack.db, title="t", idea=example_idea()).run_id
    store = c.app.state.store
    files = {f"runs/{run_id}/notebooks/Stage_1.ipynb": (_notebook(True),
                                                        "application/x-ipynb+json"),
             f"runs/{run_id}/figures/loss.png": (b"\x89PNG\r\n\x1a\nfake", "image/png"),
             f"runs/{run_id}/paper.pdf": (b"%PDF-1.4 fake", "application/pdf"),
             f"runs/{run_id}/data.csv": (b"a,b\n1,2\n", "text/csv")}
    for key, (data, ctype) in files.items():
        stored = store.put_bytes(key, data, ctype)
        stack.db.artifacts.insert_one({"runId": run_id, "key": key, "size": stored.size,
                                       "sha256": stored.sha256, "contentType": ctype,
                                       "kind": "file"})
    nb_url = f"/api/runs/{run_id}/notebook/runs/{run_id}/notebooks/Stage_1.ipynb"
    html = c.get(nb_url, headers=UI_AUTH)
    assert html.status_code == 200 and html.headers["x-aisci-failed-cell"] == "2"
    csp = html.headers["content-security-policy"]
    assert csp.startswith("sandbox;") and "script-src" not in csp
    assert "frame-ancestors 'self'" in csp and html.headers["x-frame-options"] == "SAMEORIGIN"
    assert "celltag_aisci-failed" in html.text and "ZeroDivisionError" in html.text
    png = c.get(f"/api/runs/{run_id}/inline/runs/{run_id}/figures/loss.png", headers=UI_AUTH)
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")
    pdf = c.get(f"/api/runs/{run_id}/inline/runs/{run_id}/paper.pdf", headers=UI_AUTH)
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    assert c.get(f"/api/runs/{run_id}/inline/runs/{run_id}/data.csv",
                 headers=UI_AUTH).status_code == 415
    assert c.get(f"/api/runs/{run_id}/notebook/runs/{run_id}/paper.pdf",
                 headers=UI_AUTH).status_code == 415
    page = c.get(f"/runs/{run_id}", headers={**UI_AUTH, "accept": "text/html"}).text
    assert re.search(r'<iframe sandbox [^>]*src="' + re.escape(nb_url), page)
    assert f'src="/api/runs/{run_id}/inline/runs/{run_id}/figures/loss.png"' in page


def test_draft_from_notes_uses_the_llm_layer(stack: Stack, c: TestClient) -> None:
    d = c.post("/api/hypotheses/draft", json={"notes": "we talked about label smoothing"},
               headers=UI_AUTH)
    assert d.status_code == 200, d.text
    assert d.json()["title"].startswith("Label smoothing") and d.json()["hypothesis"]
    assert c.post("/api/hypotheses/draft", json={"notes": ""}, headers=UI_AUTH
                  ).status_code == 422


def test_statistics_aggregate_from_mongodb(stack: Stack, c: TestClient) -> None:
    run_id = submit_hypothesis(stack.db, title="t", idea=example_idea()).run_id
    stack.db.runs.update_one({"_id": run_id}, {"$set": {
        "claimedAt": stack.db.runs.find_one({"_id": run_id})["createdAt"],
        "gpuUsage": {"seconds": 7200, "name": "H100"}}})
    ingest(c, run_id, ("ai.llm.usage", {"model": "gpt-x", "prompt_tokens": 100,
                                        "completion_tokens": 20, "cost_usd": 0.5}))
    s = c.get("/api/stats", headers=UI_AUTH).json()
    assert s["queue_depth"] == 1 and s["gpu_hours"]["total"] == 2.0
    assert s["llm"]["per_model"] == [{"model": "gpt-x", "calls": 1, "tokens": 120,
                                      "cost": 0.5}]
    assert sum(p["v"] for p in s["events_per_second"]) > 0
    assert s["pickup"][0]["latency_s"] == 0.0
    assert s["runs_per_day"][0]["QUEUED"] == 1
    assert c.get("/metrics").status_code == 401  # Prometheus' side is unchanged


def test_one_watcher_fans_out_to_every_subscriber(stack: Stack) -> None:
    """Ten pages, one change stream: every page gets the event, filtered by run."""
    import asyncio

    async def scenario() -> list[int]:
        b = Broadcaster(stack.db)
        subs = [b.subscribe("r1" if i % 2 else None) for i in range(10)]
        await asyncio.sleep(1.0)  # the watcher is up
        stack.db.events.insert_one({"_id": "e1", "runId": "r1", "type": "ai.run.log",
                                    "data": {"message": "hi"}, "receivedAt": utcnow()})
        stack.db.events.insert_one({"_id": "e2", "runId": "r2", "type": "ai.run.log",
                                    "data": {}, "receivedAt": utcnow()})
        await asyncio.sleep(1.5)
        b.close()
        assert b.mode == "change-stream"
        return [s.queue.qsize() for s in subs]

    sizes = asyncio.run(scenario())
    assert sizes == [2 if i % 2 == 0 else 1 for i in range(10)]
