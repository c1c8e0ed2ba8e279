"""`aisci`: local services, the control plane, submitting runs, and the end-to-end demo."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..contract.lifecycle import CancelResult, IdeationStatus, RunStatus
from ..settings import load_settings
from .services import DEFAULT_PORTS, LocalServices, ServiceError


def _fail(message: str, code: int = 1) -> int:
    print(f"aisci: error: {message}", file=sys.stderr)
    return code


def cmd_services(args: argparse.Namespace) -> int:
    ports = {"mongod": args.mongo_port, "s3": args.s3_port, "control-plane": args.cp_port}
    svc = LocalServices(Path.cwd(), ports=ports, with_s3=not args.no_s3)
    try:
        if args.action == "up":
            svc.up()
            print("connection settings written to .env")
        elif args.action == "down":
            svc.down()
        elif args.action == "install":
            for line in svc.install():
                print(line)
        else:
            print("\n".join(svc.status()))
    except ServiceError as exc:
        return _fail(str(exc))
    return 0


def cmd_control_plane(args: argparse.Namespace) -> int:
    import uvicorn

    from ..control_plane.app import app_from_env

    workers = args.workers or os.cpu_count() or 1
    if workers == 1:
        uvicorn.run(app_from_env(), host=args.host, port=args.port, log_level="info")
    else:  # each process builds its own app (and MongoDB client) from the environment
        uvicorn.run("aisci_nb.control_plane.app:app_from_env", factory=True, host=args.host,
                    port=args.port, workers=workers, log_level="info")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from ..contract.idea import InvalidIdea, load_idea
    from ..db import connect, ensure_indexes
    from ..queue.submit import submit_for_ideation, submit_hypothesis

    idea = None
    if args.idea_json is not None:
        try:
            idea = load_idea(args.idea_json)
        except InvalidIdea as exc:
            return _fail(f"idea refused: {exc}", 2)
    if not args.ideation:
        if idea is None:
            return _fail("--idea-json is required (or --ideation, to generate the idea)", 2)
        for flag in ("idea", "topic", "auto_run"):
            if getattr(args, flag):
                return _fail(f"--{flag.replace('_', '-')} needs --ideation", 2)
    topic = None
    if args.topic is not None:
        try:
            topic = args.topic.read_text()
        except OSError as exc:
            return _fail(f"--topic {args.topic}: cannot read ({exc.strerror})", 2)
    settings = load_settings()
    db = connect(settings)
    ensure_indexes(db)
    by = os.environ.get("USER", "cli")
    if not args.ideation:
        done = submit_hypothesis(db, title=args.title, idea=idea, priority=args.priority,
                                 created_by=by)
        print(f"hypothesis {done.hypothesis_id}")
        print(f"run {done.run_id} QUEUED")
        print(f"{settings.control_plane_url}/runs/{done.run_id}")
        return 0
    text = args.idea or (idea or {}).get("Short Hypothesis") or args.title
    try:
        done = submit_for_ideation(
            db, title=args.title, idea_text=text, topic=topic, idea=idea,
            reflections=args.reflections, num_ideas=args.ideas, auto_run=args.auto_run,
            priority=args.priority, created_by=by)
    except ValueError as exc:
        return _fail(str(exc), 2)
    print(f"hypothesis {done.hypothesis_id}")
    print(f"ideation {done.request_id} QUEUED ({args.ideas} idea(s), {args.reflections} "
          f"reflection round(s) each{'; the first idea runs when done' if args.auto_run else ''})")
    print("served by a worker in --mode ideation or hybrid")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel through MongoDB directly, so it works with the control plane down too."""
    import socket

    from ..db import connect
    from ..queue.cancel import cancel_run

    settings = load_settings()
    outcome = cancel_run(connect(settings), args.run_id, by=os.environ.get("USER", "cli"),
                         reason=args.reason, source=f"cli://{socket.gethostname()}")
    if outcome.outcome == CancelResult.NOT_FOUND:
        return _fail(f"no run {args.run_id}")
    if outcome.outcome == CancelResult.FINAL:
        return _fail(f"run {args.run_id} is already {outcome.status}")
    if outcome.outcome == CancelResult.CANCELED:
        print(f"run {args.run_id} CANCELED")
    else:
        print(f"run {args.run_id} is {outcome.status}: cancel requested, its worker stops it "
              "within seconds")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """A person's verdict, through MongoDB directly (like cancel): who is the local user."""
    import socket

    from ..db import connect
    from ..queue.validation import ValidationRefused, record_human_verdict

    settings = load_settings()
    by = f"{os.environ.get('USER', 'cli')}@{socket.gethostname()}"
    try:
        done = record_human_verdict(connect(settings), args.run_id, args.verdict, by=by,
                                    notes=args.notes, source=f"cli://{socket.gethostname()}")
    except ValidationRefused as exc:
        return _fail(str(exc))
    print(f"run {args.run_id} {done.status} (human verdict {done.verdict} by {done.by})")
    return 0


def cmd_rerun(args: argparse.Namespace) -> int:
    import socket

    from ..db import connect
    from ..queue.rerun import RerunRefused, rerun_from
    from ..worker.pipelines import PIPELINE_STEP_NAMES

    settings = load_settings()
    by = f"{os.environ.get('USER', 'cli')}@{socket.gethostname()}"
    try:
        done = rerun_from(connect(settings), args.run_id, args.from_step,
                          steps=PIPELINE_STEP_NAMES, by=by,
                          reason=args.reason, source=f"cli://{socket.gethostname()}")
    except (RerunRefused, ValueError) as exc:
        return _fail(str(exc))
    print(f"run {args.run_id} QUEUED (was {done.previous}): starts at {done.from_step}, "
          f"re-runs {', '.join(done.reset)}; earlier steps' outputs are reused")
    return 0


def wait_for_run(db, run_id: str, timeout_s: float = 900) -> dict:
    """Poll the run until it is terminal or awaits a person, showing its stage progress."""
    from tqdm import tqdm

    from ..contract.lifecycle import TERMINAL

    deadline = time.monotonic() + timeout_s
    with tqdm(total=100, desc="QUEUED", bar_format="{desc:<20} {percentage:3.0f}%|{bar}| "
              "{elapsed}") as bar:
        while time.monotonic() < deadline:
            run = db.runs.find_one({"_id": run_id}) or {}
            stage = run.get("currentStage") or {}
            bar.n = int(100 * (stage.get("progress") or 0))
            bar.set_description(f"{run.get('status', '?')} {stage.get('name') or ''}".strip())
            bar.refresh()
            if run.get("status") in TERMINAL or run.get("status") == "AWAITING_HUMAN":
                return run
            time.sleep(0.5)
    raise TimeoutError(f"run {run_id} did not finish in {timeout_s:.0f}s")


def wait_for_ideation(db, hypothesis_id: str, timeout_s: float = 300) -> dict:
    """Poll the hypothesis until its ideation is COMPLETED or FAILED."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        doc = db.hypotheses.find_one({"_id": hypothesis_id}) or {}
        if (doc.get("ideation") or {}).get("status") in (IdeationStatus.COMPLETED,
                                                         IdeationStatus.FAILED):
            return doc
        time.sleep(0.3)
    raise TimeoutError(f"ideation of {hypothesis_id} did not finish in {timeout_s:.0f}s")


def cmd_demo(args: argparse.Namespace) -> int:
    """Services up, one worker, the sample idea submitted (or ideation first, `--ideation`),
    followed to the end."""
    from ..contract.idea import example_idea
    from ..db import connect, ensure_indexes
    from ..queue.submit import submit_for_ideation, submit_hypothesis

    started = time.monotonic()
    root = Path.cwd()
    try:
        env = LocalServices(root).up()
    except ServiceError as exc:
        return _fail(str(exc))
    os.environ.update(env)
    settings = load_settings()
    db = connect(settings)
    ensure_indexes(db)
    title = "Demo: MLP width on noisy two-moons"
    if args.ideation:  # ideas first (offline: scripted model, recorded literature)
        done = submit_for_ideation(db, title=title, idea_text=example_idea()["Short Hypothesis"],
                                   auto_run=True, created_by="demo")
        print(f"submitted ideation {done.request_id} (its first idea runs when done)")
    else:
        done = submit_hypothesis(db, title=title, idea=example_idea(), created_by="demo")
        print(f"submitted run {done.run_id}")
    log_path = root / ".aisci" / "logs" / "demo-worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    mode, runs = ("hybrid", "2") if args.ideation else ("experiment", "1")
    with log_path.open("ab") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "aisci_nb.worker.main", "--mode", mode,
             "--max-runs", runs],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ}, cwd=root)
    try:
        run_id = done.run_id
        if args.ideation:
            hypothesis = wait_for_ideation(db, done.hypothesis_id, timeout_s=args.timeout)
            ideation = hypothesis.get("ideation") or {}
            if ideation.get("status") != IdeationStatus.COMPLETED:
                worker.terminate()
                return _fail(f"ideation {ideation.get('status')}: {ideation.get('error')}")
            for idea in ideation.get("ideas") or []:
                print(f"  idea {idea['Name']}: {idea['Title']}")
            run_id = ideation["runId"]
        run = wait_for_run(db, run_id, timeout_s=args.timeout)
        worker.wait(timeout=120)
    except BaseException:
        worker.terminate()
        raise
    artifacts = _await_artifacts(db, run_id)
    print(f"\nrun {run_id}: {run['status']}")
    if run.get("status") == RunStatus.FAILED:
        print(f"  {run.get('errorType')}: {run.get('errorMessage')}")
    print(f"  {settings.control_plane_url}/runs/{run_id}  (sign in with AISCI_UI_TOKEN "
          "from .env)")
    for step, record in (run.get("steps") or {}).items():
        print(f"  step {step:<8} {record.get('status', '?'):<9} "
              f"{record.get('duration_s') or 0:6.1f}s")
    for stage, metrics in (run.get("metrics") or {}).items():
        for name, value in metrics.items():
            print(f"  metric {stage}.{name} = {value:.4f}")
    for key in artifacts:
        print(f"  artifact {key}")
    print(f"demo wall time {time.monotonic() - started:.1f}s "
          f"(worker log: {log_path.relative_to(root)}; stop services: aisci services down)")
    return 0 if run.get("status") in (RunStatus.COMPLETED, RunStatus.AWAITING_HUMAN) else 1


def _await_artifacts(db, run_id: str, timeout_s: float = 15) -> list[str]:
    """Artifact keys from the read model; the projection may trail the run's status."""
    deadline = time.monotonic() + timeout_s
    while True:
        keys = [a["key"] for a in db.artifacts.find({"runId": run_id}).sort("key", 1)]
        if keys or time.monotonic() > deadline:
            return keys
        time.sleep(0.3)


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import main as doctor

    return doctor(args.only, pod=args.pod, timeout_s=args.timeout, env_file=args.env_file)


def cmd_debug(args: argparse.Namespace) -> int:
    """Prepare a step's workspace and open its notebook at the failing cell in JupyterLab."""
    from ..db import connect
    from ..storage.store import open_store
    from .debug import DebugError, prepare, start_lab
    from .debug_node import prepare_node
    from .services import stop_pid

    started = time.monotonic()
    settings = load_settings()
    try:
        if args.node:
            ws = prepare_node(connect(settings), open_store(settings), args.run_id, args.node,
                              args.dir)
        else:
            ws = prepare(connect(settings), open_store(settings), args.run_id, args.step,
                         args.dir)
    except (DebugError, OSError) as exc:
        return _fail(str(exc))
    print(f"workspace {ws.root}")
    what = f"node {args.node}, cell" if args.node else "failing cell"
    print(f"notebook  {ws.notebook} (step {ws.step}, {what} {ws.cell_id or 'unknown'})")
    for step, outputs in ws.inputs.items():
        for name, path in outputs.items():
            print(f"input     {step}.{name} -> {path}")
    if args.no_lab:
        return 0

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM/SIGHUP end `aisci debug` like Ctrl-C: with its lab

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    try:
        lab = start_lab(ws, port=args.port)
    except DebugError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130  # start_lab stopped the half-started lab
    print(f"JupyterLab ready in {time.monotonic() - started:.1f}s (pid {lab.pid}; Ctrl-C, "
          f"or stopping this command, stops it)")
    print(lab.url, flush=True)
    try:
        lab.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        # Its token stays valid while it runs: the lab never outlives this command.
        stop_pid(lab.pid)
    return 0


def cmd_user(args: argparse.Namespace) -> int:
    """Add or update a person who signs in to the control plane (stored hashed in MongoDB)."""
    import getpass

    from ..control_plane import accounts
    from ..db import connect

    password = os.environ.get("AISCI_NEW_PASSWORD") if args.password_from_env else None
    if password is None:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            return _fail("the passwords differ", 2)
    db = connect(load_settings())
    accounts.ensure_indexes(db)
    try:
        accounts.add_user(db, args.name, args.role, password)
    except accounts.AccountError as exc:
        return _fail(str(exc), 2)
    accounts.audit(db, os.environ.get("USER", "cli"), "user_add", args.name, role=args.role)
    print(f"user {args.name} ({args.role}) saved")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """A personal API token for a programmatic client; shown once, stored hashed."""
    from ..control_plane import accounts
    from ..db import connect

    db = connect(load_settings())
    try:
        token = accounts.create_token(db, args.user, args.label or "")
    except accounts.AccountError as exc:
        return _fail(str(exc), 2)
    accounts.audit(db, os.environ.get("USER", "cli"), "token_create", args.user,
                   label=args.label)
    print(token)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aisci", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("services", help="start, stop or show the local services")
    s.add_argument("action", choices=["up", "down", "status", "install"],
                   help="install: find mongod and build the pinned S3 server, start nothing")
    s.add_argument("--mongo-port", type=int, default=DEFAULT_PORTS["mongod"])
    s.add_argument("--s3-port", type=int, default=DEFAULT_PORTS["s3"])
    s.add_argument("--cp-port", type=int, default=DEFAULT_PORTS["control-plane"])
    s.add_argument("--no-s3", action="store_true", help="use the local directory store")
    s.set_defaults(func=cmd_services)

    c = sub.add_parser("control-plane", help="serve the control plane (ingest, UI)")
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--port", type=int, default=DEFAULT_PORTS["control-plane"])
    c.add_argument("--workers", type=int, default=0,
                   help="server processes sharing the port (default: one per CPU core)")
    c.set_defaults(func=cmd_control_plane)

    m = sub.add_parser("submit", help="queue a run (or ideation first) for a hypothesis")
    m.add_argument("--title", required=True)
    m.add_argument("--idea-json", type=Path, help="an AI-Scientist idea file")
    m.add_argument("--priority", type=int, default=0, help="higher runs first")
    m.add_argument("--ideation", action="store_true",
                   help="generate the ideas first (queued for an ideation worker)")
    m.add_argument("--idea", help="with --ideation: the hypothesis in words (default: the "
                                  "idea file's Short Hypothesis, else the title)")
    m.add_argument("--topic", type=Path, help="with --ideation: a topic/workshop markdown file")
    m.add_argument("--reflections", type=int, default=3,
                   help="with --ideation: rounds per idea (default 3)")
    m.add_argument("--ideas", type=int, default=1,
                   help="with --ideation: how many ideas (default 1)")
    m.add_argument("--auto-run", action="store_true",
                   help="with --ideation: queue the first idea's run when ideation completes")
    m.set_defaults(func=cmd_submit)

    x = sub.add_parser("cancel", help="cancel a run (queued: at once; running: its worker stops)")
    x.add_argument("run_id")
    x.add_argument("--reason", help="shown with the run")
    x.set_defaults(func=cmd_cancel)

    v = sub.add_parser("validate", help="record a person's verdict on a run AWAITING_HUMAN")
    v.add_argument("run_id")
    verdict = v.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--pass", dest="verdict", action="store_const", const="pass",
                         help="the paper holds up: HUMAN_VALIDATED")
    verdict.add_argument("--fail", dest="verdict", action="store_const", const="fail",
                         help="it does not: FAILED, with the notes as the reason")
    v.add_argument("--notes", help="what the reviewer found (kept with the verdict)")
    v.set_defaults(func=cmd_validate)

    r = sub.add_parser("rerun", help="re-queue a finished run to start at a step (e.g. Writeup)")
    r.add_argument("run_id")
    r.add_argument("--from", dest="from_step", required=True,
                   help="the first step to run again; earlier steps' outputs are reused")
    r.add_argument("--reason", help="kept with the run")
    r.set_defaults(func=cmd_rerun)
    u = sub.add_parser("user", help="people who sign in to the control plane")
    usub = u.add_subparsers(dest="user_action", required=True)
    ua = usub.add_parser("add", help="add a user, or set an existing one's role and password")
    ua.add_argument("name")
    ua.add_argument("--role", choices=["operator", "viewer"], required=True,
                    help="viewers read; operators also create, cancel, retry and validate")
    ua.add_argument("--password-from-env", action="store_true",
                    help="read the password from AISCI_NEW_PASSWORD instead of prompting")
    ua.set_defaults(func=cmd_user)

    t = sub.add_parser("token", help="personal API tokens for programmatic clients")
    tsub = t.add_subparsers(dest="token_action", required=True)
    tc = tsub.add_parser("create", help="print a new token for USER (shown once)")
    tc.add_argument("--user", required=True)
    tc.add_argument("--label", help="what the token is for")
    tc.set_defaults(func=cmd_token)

    g = sub.add_parser("debug", help="open a run's step notebook at its failing cell")
    g.add_argument("run_id")
    g.add_argument("--step", help="the step to debug (default: the failed one), e.g. Stage_2")
    g.add_argument("--node", help="a tree-search node to rebuild as a notebook, e.g. "
                                  "Stage_1-n002 (its code, output, error, working directory)")
    g.add_argument("--no-lab", action="store_true", help="prepare the workspace only")
    g.add_argument("--port", type=int, help="JupyterLab's port (default: a free one)")
    g.add_argument("--dir", type=Path, default=Path(".aisci/debug"),
                   help="where workspaces go (default: .aisci/debug)")
    g.set_defaults(func=cmd_debug)

    d = sub.add_parser("demo", help="run one sample research run end to end on local services")
    d.add_argument("--timeout", type=float, default=900)
    d.add_argument("--ideation", action="store_true",
                   help="generate the idea first (hybrid worker), then run it")
    d.set_defaults(func=cmd_demo)

    from .doctor import CHECKS

    h = sub.add_parser("doctor", help="check this machine can run a worker: one line per check")
    h.add_argument("--only", action="append", choices=list(CHECKS), metavar="CHECK",
                   help=f"run only this check (repeatable): {', '.join(CHECKS)}")
    h.add_argument("--pod", action="store_true", help="a pod: S3 settings are required too")
    h.add_argument("--timeout", type=float, default=5.0, help="seconds per network check")
    h.add_argument("--env-file", type=Path, default=Path(".env"))
    h.set_defaults(func=cmd_doctor)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
