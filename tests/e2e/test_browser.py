"""The web UI in a real browser (issue 14): Debian's headless Chromium driven by Selenium
through chromedriver, against the test stack's control plane process and a real worker.

sign in → draft and create a hypothesis with ideation → its ideas appear (live) → run one
→ the progress advances while a worker runs it (no reload) → the tree and a figure show →
the PDF opens → cancel and retry → the validation form; a signed-out browser sees only the
sign-in page; a cross-site form post is refused. Screenshots of every page go to
`test-output/screens/` (git-ignored); the ingest→page latency (median of 20) to
`test-output/latency.json`.

Where another issue's piece is not merged (ideation's worker, the tree search's nodes, the
paper), that part is driven through the real ingest, with the events a pod would send.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ulid import ULID

from aisci_nb.contract.idea import example_idea
from aisci_nb.control_plane import accounts
from aisci_nb.db import utcnow
from aisci_nb.queue.submit import submit_hypothesis

from ..conftest import API_KEY, ROOT, UI_AUTH, Stack

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENS = ROOT / "test-output" / "screens"
# A real worker whose pipeline is the tick notebook (`idea["test"]` says how long it ticks).
WORKER_DRIVER = ROOT / "tests" / "worker_driver.py"
PASSWORD = "correct horse battery"
WAIT_S = 60

webdriver = pytest.importorskip("selenium.webdriver")
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip("chromium and chromium-driver are not installed (scripts/system-deps.sh)",
                allow_module_level=True)

from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture
def browser() -> Iterator:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1440,1000", "--disable-gpu"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver, name: str) -> Path:
    SCREENS.mkdir(parents=True, exist_ok=True)
    path = SCREENS / f"{name}.png"
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1440, min(max(int(height), 900), 4000))
    driver.save_screenshot(str(path))
    driver.set_window_size(1440, 1000)
    return path


def wait(driver, predicate, what: str, timeout: float = WAIT_S):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.02).until(
            lambda d: predicate(d) or None)
    except TimeoutException:
        shot(driver, "failure")
        raise AssertionError(f"timed out waiting for {what}") from None


def mark_page(driver) -> None:
    """A marker that a reload would wipe: proves updates arrive without one."""
    driver.execute_script("window.__noReload = 'yes'")


def not_reloaded(driver) -> bool:
    return driver.execute_script("return window.__noReload") == "yes"


def post_events(stack: Stack, run_id: str | None, *events: tuple[str, dict],
                hypothesis_id: str | None = None, seq: int | None = None) -> None:
    """Events as a pod sends them: NDJSON CloudEvents to the real ingest."""
    lines = []
    for i, (etype, data) in enumerate(events):
        subject = f"run/{run_id}" if run_id else f"hypothesis/{hypothesis_id}"
        body = {"run_id": run_id, **data} if run_id else {"hypothesis_id": hypothesis_id,
                                                          **data}
        event = {"specversion": "1.0", "id": str(ULID()), "source": "test://pod-ui",
                 "type": etype, "subject": subject, "time": utcnow().isoformat(),
                 "datacontenttype": "application/json", "data": body}
        if seq is not None:
            event["sequence"] = str(seq + i)
        lines.append(json.dumps(event))
    resp = httpx.post(f"{stack.control_plane_url}/api/ingest/events",
                      content="\n".join(lines).encode(), timeout=30,
                      headers={"authorization": f"Bearer {API_KEY}",
                               "content-type": "application/x-ndjson"})
    assert resp.status_code in (200, 202), resp.text


def store_artifact(stack: Stack, run_id: str, key: str, data: bytes, ctype: str,
                   kind: str, seq: int) -> None:
    stored = stack.store().put_bytes(key, data, ctype)
    post_events(stack, run_id, ("ai.artifact.registered", {
        "key": key, "bytes": stored.size, "sha256": stored.sha256, "content_type": ctype,
        "kind": kind}), seq=seq)


def sign_in(driver, base: str, name: str) -> None:
    driver.get(f"{base}/login")
    driver.find_element(By.NAME, "username").send_keys(name)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(driver, lambda d: d.find_elements(By.ID, "counts"), "the overview after sign-in")


def ideas() -> list[dict]:
    base = example_idea()
    second = {**base, "Name": "ticks_idea", "Title": "A short run the worker ticks through",
              "Related Work": "The queue tests' tick notebook.",
              "test": {"Stage_1": {"ticks": 300, "tick_s": 0.5}}}
    return [base, second]


def png() -> bytes:
    """A real 2x2 PNG (a figure the page must decode)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([1, 2, 3, 4], [0.9, 0.6, 0.45, 0.4], label="val_loss")
    ax.set_title("Validation loss")
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def pdf() -> bytes:
    """A minimal valid one-page PDF."""
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            None, b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    text = b"BT /F1 18 Tf 40 100 Td (aisci paper) Tj ET"
    objs[3] = b"<< /Length %d >>\nstream\n" % len(text) + text + b"\nendstream"
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objs) + 1, xref)
    return bytes(out)


class EvilSite:
    """Another site (localhost, not 127.0.0.1) whose page posts a form to the control
    plane as soon as it loads."""

    def __init__(self, target: str) -> None:
        page = (f'<form id="f" method="post" action="{target}">'
                '<input name="csrf_token" value="guess"></form>'
                '<script>document.getElementById("f").submit()</script>').encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://localhost:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_signed_out_browser_sees_only_sign_in_and_cross_site_posts_fail(
        stack: Stack, browser) -> None:
    base = stack.control_plane_url
    run_id = submit_hypothesis(stack.db, title="secret title", idea=example_idea()).run_id
    for path in ("/", "/runs", f"/runs/{run_id}", "/hypotheses", "/validations", "/metrics"):
        browser.get(base + path)
        assert "/login" in browser.current_url, path
        assert "secret title" not in browser.page_source
        assert browser.find_elements(By.NAME, "password")
    shot(browser, "login")
    # Signed in, a form on another site cannot act for the person.
    accounts.add_user(stack.db, "olga", "operator", PASSWORD)
    sign_in(browser, base, "olga")
    evil = EvilSite(f"{base}/api/runs/{run_id}/hide")
    try:
        browser.get(evil.url)
        wait(browser, lambda d: base in d.current_url, "the cross-site post")
        assert "refused" in browser.page_source or "sign in" in browser.page_source.lower()
    finally:
        evil.close()
    assert not stack.db.runs.find_one({"_id": run_id}).get("hidden")
    assert stack.db.audit.count_documents({"action": "hide"}) == 0


def test_researcher_flow_live_in_the_browser(stack: Stack, browser) -> None:
    base = stack.control_plane_url
    accounts.add_user(stack.db, "olga", "operator", PASSWORD)
    sign_in(browser, base, "olga")

    # Draft from notes (the LLM layer, scripted offline), then edit and create.
    browser.find_element(By.CSS_SELECTOR, "details.draft summary").click()
    browser.find_element(By.CSS_SELECTOR, "#draft-form textarea").send_keys(
        "We discussed whether label smoothing helps calibration on toy data.")
    browser.find_element(By.CSS_SELECTOR, "#draft-form button").click()
    title = browser.find_element(By.CSS_SELECTOR, "#hypothesis-form input[name=title]")
    wait(browser, lambda d: title.get_attribute("value").startswith("Label smoothing"),
         "the drafted title")
    title.send_keys(" (edited)")
    shot(browser, "overview")
    paths = httpx.get(f"{base}/openapi.json", headers=UI_AUTH).json()["paths"]
    form_creates = "post" in paths.get("/api/hypotheses", {})
    if form_creates:  # issue 11's API: the form creates the hypothesis and its ideation
        browser.find_element(By.CSS_SELECTOR, "#hypothesis-form button.primary").click()
        link = wait(browser, lambda d: d.find_elements(By.ID, "created-hypothesis"),
                    "the created hypothesis")[0]
        hyp_id = link.get_attribute("href").rsplit("/", 1)[1]
    else:  # not merged here: the queue's own submit, ideation queued as issue 11 does
        hyp_id = submit_hypothesis(stack.db, title=title.get_attribute("value"),
                                   idea=example_idea(), created_by="olga").hypothesis_id
        stack.db.runs.delete_many({"hypothesisId": hyp_id})
        stack.db.hypotheses.update_one({"_id": hyp_id}, {"$set": {"ideation": {
            "status": "QUEUED", "reflections": 2, "numIdeas": 2, "ideas": []}}})
    hyp = stack.db.hypotheses.find_one({"_id": hyp_id})
    assert hyp["title"].endswith("(edited)") and hyp["ideation"]["status"] == "QUEUED"

    # The hypothesis page waits for ideation; the ideas appear without a reload.
    browser.get(f"{base}/hypotheses/{hyp_id}")
    assert browser.find_element(By.ID, "ideation-status").text == "QUEUED"
    mark_page(browser)
    stack.db.hypotheses.update_one({"_id": hyp_id}, {"$set": {
        "ideation.status": "COMPLETED", "ideation.ideas": ideas(), "ideation.count": 2}})
    post_events(stack, None, ("ai.ideation.generated", {"request_id": "req-ui", "count": 2}),
                hypothesis_id=hyp_id)
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#ideas .idea")) == 2,
         "the ideas")
    assert not_reloaded(browser)
    assert "Risk Factors and Limitations" in browser.find_element(
        By.CSS_SELECTOR, "#ideas .idea[data-idea='1']").text
    shot(browser, "hypothesis")

    # Run the second idea; a real worker runs it while the page watches.
    browser.find_element(By.CSS_SELECTOR, "#ideas .idea[data-idea='1'] [data-action=run-idea]"
                         ).click()
    wait(browser, lambda d: "/runs/" in d.current_url, "the run page")
    run_id = browser.current_url.rsplit("/", 1)[1].split("?")[0]
    assert stack.db.runs.find_one({"_id": run_id})["idea"]["Name"] == "ticks_idea"
    mark_page(browser)
    env = {**os.environ, **stack.env, "PYTHONPATH": str(ROOT), "TEST_STEPS": "Stage_1",
           "CANCEL_CHECK_S": "0.25", "LEASE_RENEW_S": "1"}
    with (stack.tmp / "worker.log").open("ab") as log:
        worker = subprocess.Popen([sys.executable, str(WORKER_DRIVER), "--max-runs", "1"],
                                  env=env, cwd=stack.tmp, stdout=log, stderr=subprocess.STDOUT)
    try:
        _watch_the_run(stack, browser, base, run_id)
    finally:
        if worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=60)


def _progress(browser) -> float:
    # read in the page: the stages table is redrawn as events arrive
    return float(browser.execute_script(
        "const b = document.querySelector('#stages progress'); return b ? b.value : -1"))


def _watch_the_run(stack: Stack, browser, base: str, run_id: str) -> None:
    wait(browser, lambda d: d.find_element(By.ID, "run-status").text == "RUNNING",
         "RUNNING on the page", timeout=120)
    wait(browser, lambda d: _progress(d) > 0, "the first progress")
    first = _progress(browser)
    # The worker's cells-done reports may already have reached their ceiling (3 of 5 cells:
    # 60%) and progress only grows, while the tick loop's own count starts again from 0: the
    # next move is what the pod's search reports next.
    post_events(stack, run_id, ("ai.run.stage_progress", {
        "stage": "Stage_1", "progress": min(1.0, first / 100 + 0.2)}), seq=9_000)
    wait(browser, lambda d: _progress(d) > first, "the progress to advance")
    assert not_reloaded(browser)

    # The tree search's nodes, a figure and the paper, as the pod sends them.
    post_events(stack, run_id,
                ("ai.node.created", {"stage": "Stage_1", "node_id": "root"}),
                ("ai.node.completed", {"stage": "Stage_1", "node_id": "root",
                                       "is_buggy": True, "reason": "exception"}),
                ("ai.node.completed", {"stage": "Stage_1", "node_id": "fix1",
                                       "parent_id": "root", "is_buggy": False, "metric": 0.82}),
                ("ai.node.completed", {"stage": "Stage_1", "node_id": "fix2",
                                       "parent_id": "root", "is_buggy": False, "metric": 0.9}),
                ("ai.node.selected_best", {"stage": "Stage_1", "node_id": "fix2"}),
                ("ai.run.stage_metric", {"stage": "Stage_1", "name": "val_acc", "value": 0.82}),
                ("ai.run.stage_metric", {"stage": "Stage_1", "name": "val_acc", "value": 0.9}),
                seq=10_000)
    store_artifact(stack, run_id, f"runs/{run_id}/artifacts/Plots/val_loss.png", png(),
                   "image/png", "figure", seq=10_100)
    store_artifact(stack, run_id, f"runs/{run_id}/artifacts/Writeup/paper.pdf", pdf(),
                   "application/pdf", "paper", seq=10_101)
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#tree .node")) == 3,
         "the tree's three nodes")
    assert browser.find_elements(By.CSS_SELECTOR, "#tree .node.best[data-node=fix2]")
    assert browser.find_elements(By.CSS_SELECTOR, "#tree .node.buggy[data-node=root]")
    wait(browser, lambda d: d.execute_script(
        "const i = document.querySelector('#figures img');"
        "return i && i.complete && i.naturalWidth > 100"), "the figure, decoded")
    # (by selector, in the page: the tree is redrawn as events arrive)
    browser.execute_script("document.querySelector('#tree .node[data-node=fix1]')"
                           ".dispatchEvent(new MouseEvent('click', {bubbles: true}))")
    wait(browser, lambda d: "0.82" in d.find_element(By.ID, "node-detail").text,
         "the node's details")
    assert browser.find_elements(By.CSS_SELECTOR, "#charts svg path.line")
    pdf_link = wait(browser, lambda d: d.find_elements(By.ID, "pdf-link"), "the PDF link")[0]
    opened = browser.execute_async_script(
        "const done = arguments[1]; fetch(arguments[0]).then(async r => done("
        "[r.status, r.headers.get('content-type'), (await r.text()).slice(0, 5)]))",
        pdf_link.get_attribute("href"))
    assert opened == [200, "application/pdf", "%PDF-"]
    assert not_reloaded(browser)
    shot(browser, "run-live")

    # The ingest → page latency: 20 log events, each timed until its row is in the page.
    latencies = []
    for i in range(20):
        marker = f"latency-probe-{i}-{ULID()}"
        sent = time.time() * 1000
        post_events(stack, run_id, ("ai.run.log", {"level": "info", "message": marker}),
                    seq=20_000 + i)
        arrived = wait(browser, lambda d, m=marker: d.execute_script(
            "for (const r of document.querySelectorAll('#events tr[data-arrived]'))"
            " if (r.textContent.includes(arguments[0])) return Number(r.dataset.arrived);"
            "return null;", m), f"event {i} in the page")
        latencies.append(arrived - sent)
    out = ROOT / "test-output" / "latency.json"
    out.write_text(json.dumps({"median_ms": statistics.median(latencies),
                               "p95_ms": sorted(latencies)[18], "all_ms": latencies}))
    assert len(latencies) == 20

    # Cancel (the worker stops it), then retry: a new run, queued.
    browser.find_element(By.CSS_SELECTOR, "[data-action=cancel]").click()
    browser.switch_to.alert.accept()
    wait(browser, lambda d: d.find_element(By.ID, "run-status").text == "CANCELED",
         "CANCELED on the page", timeout=120)
    retry = browser.find_element(By.CSS_SELECTOR, "[data-action=retry]")
    wait(browser, lambda d: retry.is_enabled(), "retry to be offered")
    retry.click()
    link = wait(browser, lambda d: d.find_elements(By.ID, "retry-link"), "the retried run")[0]
    new_id = link.text
    assert stack.db.runs.find_one({"_id": new_id})["retryOf"] == run_id
    assert stack.db.runs.find_one({"_id": new_id})["status"] == "QUEUED"
    stack.db.runs.update_one({"_id": new_id}, {"$set": {"status": "CANCELED"}})  # not run
    shot(browser, "run-canceled")
    # Every other page, for the record.
    for name, path in (("overview-with-runs", "/"), ("runs", "/runs"),
                       ("hypotheses", "/hypotheses"), ("validations", "/validations"),
                       ("metrics", "/metrics")):
        browser.get(base + path)
        wait(browser, lambda d: d.find_elements(By.TAG_NAME, "h1"), path)
        shot(browser, name)


def test_validation_form_moves_the_run_to_human_validated(stack: Stack, browser) -> None:
    base = stack.control_plane_url
    paths = httpx.get(f"{base}/openapi.json", headers=UI_AUTH).json()["paths"]
    if "/api/validations/{run_id}/human" not in paths:
        pytest.skip("the human-validation API (issue 12) is not merged in this branch")
    accounts.add_user(stack.db, "olga", "operator", PASSWORD)
    run_id = submit_hypothesis(stack.db, title="to validate", idea=example_idea()).run_id
    post_events(stack, run_id, ("ai.run.started", {"pod_id": "pod-v"}),
                ("ai.validation.auto_started", {"model": "scripted"}),
                ("ai.validation.auto_completed", {"verdict": "pass", "notes": "sound",
                                                  "scores": {"soundness": 3, "overall": 6}}),
                seq=2)
    store_artifact(stack, run_id, f"runs/{run_id}/artifacts/Writeup/paper.pdf", pdf(),
                   "application/pdf", "paper", seq=10)
    sign_in(browser, base, "olga")
    browser.get(f"{base}/validations")
    row = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR,
                                                  f"#validations tr[data-run='{run_id}']"),
               "the run in the queue")[0]
    assert "soundness" in row.text and row.find_elements(By.LINK_TEXT, "PDF")
    shot(browser, "validations-queue")
    row.find_element(By.CSS_SELECTOR, "a").click()
    form = wait(browser, lambda d: d.find_elements(By.ID, "validation-form"), "the form")[0]
    form.find_element(By.CSS_SELECTOR, "input[value=pass]").click()
    form.find_element(By.NAME, "notes").send_keys("Checked the figures.")
    shot(browser, "validation-form")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(browser, lambda d: d.find_element(By.ID, "run-status").text == "HUMAN_VALIDATED",
         "HUMAN_VALIDATED on the page")
    assert stack.db.runs.find_one({"_id": run_id})["status"] == "HUMAN_VALIDATED"
