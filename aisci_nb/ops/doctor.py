"""`aisci doctor`: is this machine ready to run a worker? One line per check, with the fix.

Each check exercises the real thing (writes to MongoDB and S3 and reads back, posts to the
control plane with our key, compiles a small LaTeX document) so a PASS means the worker
will get past that point. A WARN is something a worker can live with (no GPU, artifacts in
the local store, no LLM key); only a FAIL makes the exit code non-zero. Secrets are never
printed: URLs lose their passwords, keys are only ever named.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import httpx
from dotenv import dotenv_values
from pydantic import ValidationError

from ..settings import Settings, WorkerMode, describe_error

# What every worker needs, and what a pod needs on top (artifacts must leave the pod).
REQUIRED = ("MONGODB_URL", "CONTROL_PLANE_URL", "AISCI_API_KEY")
S3_VARIABLES = ("MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "MINIO_BUCKET")
LLM_VARIABLES = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
APT_HINT = "apt-get install texlive-latex-base poppler-utils (init_runpod.sh does this)"


class Status(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Result:
    check: str
    status: Status
    detail: str
    fix: str | None = None

    def line(self) -> str:
        text = f"{self.status.value.upper():<4}  {self.check:<13} {self.detail}"
        return f"{text} — fix: {self.fix}" if self.fix and self.status is not Status.PASS else text


@dataclass
class Context:
    """What the checks look at: the variables (environment over `.env`) and the settings."""

    values: dict[str, str]
    env_file: Path | None
    pod: bool = False
    timeout_s: float = 5.0
    settings: Settings | None = None
    settings_error: str | None = None

    @classmethod
    def gather(cls, environ: Mapping[str, str], env_file: Path | None, *, pod: bool = False,
               timeout_s: float = 5.0) -> Context:
        names = {n.upper() for n in Settings.model_fields} | set(REQUIRED) | set(S3_VARIABLES)
        from_file = dotenv_values(env_file) if env_file and env_file.is_file() else {}
        values = {k.upper(): v for k, v in from_file.items() if v is not None}
        values.update({k.upper(): v for k, v in environ.items()})
        values = {k: v for k, v in values.items() if k in names and v.strip()}
        ctx = cls(values, env_file, pod=pod, timeout_s=timeout_s)
        try:
            ctx.settings = Settings(_env_file=None, **{k.lower(): v for k, v in values.items()})
        except ValidationError as exc:
            ctx.settings_error = describe_error(exc)
        return ctx


def _not_checked(name: str) -> Result:
    return Result(name, Status.FAIL, "not checked: the settings are invalid", "see the env line")


def check_env(ctx: Context) -> Result:
    wanted = list(REQUIRED)
    if ctx.pod or any(n in ctx.values for n in S3_VARIABLES):
        wanted += S3_VARIABLES  # half an S3 configuration is a mistake, on a pod none is too
    missing = [n for n in wanted if n not in ctx.values]
    where = f"the environment or {ctx.env_file}" if ctx.env_file else "the environment"
    if missing:
        return Result("env", Status.FAIL, f"missing {', '.join(missing)}",
                      f"set {'it' if len(missing) == 1 else 'them'} in {where}")
    if ctx.settings_error:
        return Result("env", Status.FAIL, ctx.settings_error, f"correct it in {where}")
    return Result("env", Status.PASS, f"{', '.join(wanted)} set")


def check_llm_keys(ctx: Context) -> Result:
    present = [n for n in LLM_VARIABLES if n in ctx.values]
    if present:
        return Result("llm-keys", Status.PASS, f"{', '.join(present)} set")
    return Result("llm-keys", Status.WARN, "no LLM key: only the offline scripted provider works",
                  f"set {' or '.join(LLM_VARIABLES)} for real research")


def _mongo_where(s: Settings) -> str:
    """host:port/db of the MongoDB URL, without user or password."""
    from pymongo.uri_parser import parse_uri

    hosts = ",".join(f"{h}:{p}" for h, p in parse_uri(s.mongodb_url)["nodelist"])
    return f"{hosts}/{s.db_name}"


def check_mongodb(ctx: Context) -> Result:
    if ctx.settings is None:
        return _not_checked("mongodb")
    from pymongo import MongoClient
    from pymongo.errors import OperationFailure, PyMongoError, ServerSelectionTimeoutError

    s = ctx.settings
    where = _mongo_where(s)
    ms = int(ctx.timeout_s * 1000)
    client: MongoClient = MongoClient(s.mongodb_url, serverSelectionTimeoutMS=ms,
                                      connectTimeoutMS=ms, socketTimeoutMS=ms)
    try:
        db = client[s.db_name]
        db.command("ping")
        probe = f"doctor-{s.runpod_pod_id}-{secrets.token_hex(4)}"
        db.doctor.insert_one({"_id": probe})
        db.doctor.delete_one({"_id": probe})
    except ServerSelectionTimeoutError:
        return Result("mongodb", Status.FAIL, f"no answer from {where} in {ctx.timeout_s:g}s",
                      "start mongod or correct MONGODB_URL (host, port, replicaSet)")
    except OperationFailure as exc:
        reason = (exc.details or {}).get("errmsg") or str(exc)
        return Result("mongodb", Status.FAIL, f"{where} refused: {reason} (code {exc.code})",
                      "check the user and password in MONGODB_URL and that the user may "
                      "readWrite its database")
    except PyMongoError as exc:
        return Result("mongodb", Status.FAIL, f"{where}: {type(exc).__name__}: {exc}",
                      "check MONGODB_URL")
    finally:
        client.close()
    return Result("mongodb", Status.PASS, f"{where} reachable and writable")


def check_s3(ctx: Context) -> Result:
    if ctx.settings is None:
        return _not_checked("s3")
    s = ctx.settings
    if not s.minio_endpoint:
        root = s.artifacts_dir.resolve()
        try:
            root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=root):
                pass
        except OSError as exc:
            return Result("s3", Status.FAIL, f"local store {root} not writable ({exc})",
                          "set ARTIFACTS_DIR to a writable directory")
        return Result("s3", Status.WARN, f"no MINIO_ENDPOINT: artifacts stay in {root}",
                      "set MINIO_ENDPOINT, MINIO_ACCESS_KEY, MINIO_SECRET_KEY, MINIO_BUCKET")
    import io

    import urllib3
    from minio import Minio
    from minio.error import S3Error

    assert s.minio_access_key and s.minio_secret_key  # Settings requires them with an endpoint
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=ctx.timeout_s, read=ctx.timeout_s),
                               retries=urllib3.Retry(total=0))
    client = Minio(s.minio_endpoint, access_key=s.minio_access_key,
                   secret_key=s.minio_secret_key.get_secret_value(), secure=s.minio_secure,
                   http_client=http)
    where = f"bucket {s.minio_bucket!r} at {s.minio_endpoint}"
    key = f"doctor/{s.runpod_pod_id}-{secrets.token_hex(4)}.txt"
    payload = b"aisci doctor probe\n"
    try:
        if not client.bucket_exists(s.minio_bucket):
            return Result("s3", Status.FAIL, f"{where} does not exist",
                          "create the bucket (mc mb ALIAS/BUCKET) or correct MINIO_BUCKET")
        client.put_object(s.minio_bucket, key, io.BytesIO(payload), len(payload))
        resp = client.get_object(s.minio_bucket, key)
        try:
            echoed = resp.read()
        finally:
            resp.close()
            resp.release_conn()
        client.remove_object(s.minio_bucket, key)
    except S3Error as exc:
        if exc.code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return Result("s3", Status.FAIL, f"{s.minio_endpoint} rejected the credentials "
                          f"({exc.code})", "correct MINIO_ACCESS_KEY and MINIO_SECRET_KEY")
        return Result("s3", Status.FAIL, f"{where}: {exc.code}: {exc.message}",
                      "grant this key read and write on the bucket")
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return Result("s3", Status.FAIL, f"no answer from {s.minio_endpoint} "
                      f"({type(exc).__name__})",
                      "start the S3 server or correct MINIO_ENDPOINT and MINIO_SECURE")
    if echoed != payload:
        return Result("s3", Status.FAIL, f"{where}: read back other bytes than written",
                      "check the S3 server's health")
    return Result("s3", Status.PASS, f"{where} readable and writable")


def check_control_plane(ctx: Context) -> Result:
    if ctx.settings is None:
        return _not_checked("control-plane")
    s = ctx.settings
    url = s.control_plane_url.rstrip("/")
    headers = {"content-type": "application/x-ndjson"}
    if s.aisci_api_key:
        headers["authorization"] = f"Bearer {s.aisci_api_key.get_secret_value()}"
    try:
        with httpx.Client(base_url=url, timeout=ctx.timeout_s) as client:
            health = client.get("/healthz")
            if not health.is_success:
                return Result("control-plane", Status.FAIL,
                              f"{url}/healthz answered {health.status_code}",
                              "check that CONTROL_PLANE_URL is the aisci control plane and "
                              "that it reaches its MongoDB (see its log)")
            # An empty batch stores nothing but passes through authentication.
            resp = client.post("/api/ingest/events", content=b"", headers=headers)
    except httpx.HTTPError as exc:
        return Result("control-plane", Status.FAIL, f"no answer from {url} "
                      f"({type(exc).__name__})",
                      "start it (aisci control-plane) or correct CONTROL_PLANE_URL")
    if resp.status_code == 401:
        reason = "no key sent" if not s.aisci_api_key else "our key was refused"
        return Result("control-plane", Status.FAIL, f"{url} reachable, {reason} (401)",
                      "set AISCI_API_KEY to one of the control plane's INGEST_API_KEYS")
    if resp.status_code != 202:
        return Result("control-plane", Status.FAIL,
                      f"{url}/api/ingest/events answered {resp.status_code}",
                      "check that CONTROL_PLANE_URL is the aisci control plane")
    if not s.aisci_api_key:
        return Result("control-plane", Status.WARN,
                      f"{url} accepts events without credentials",
                      "turn INGEST_ALLOW_UNAUTHENTICATED off once every pod has AISCI_API_KEY")
    return Result("control-plane", Status.PASS, f"{url} reachable, accepts our key")


def check_gpu(ctx: Context) -> Result:
    from ..worker.telemetry import gpu_sample

    sample = gpu_sample()
    if sample is None:
        return Result("gpu", Status.WARN, "no NVIDIA GPU visible: steps run on the CPU",
                      "on a GPU pod run nvidia-smi; if it fails, the pod has no driver or GPU")
    extra = [f"{v}{unit}" for v, unit in ((sample.gpu_util, "% busy"),
                                           (sample.mem_gb, " GiB used"),
                                           (sample.temp_c, "°C")) if v is not None]
    return Result("gpu", Status.PASS, ", ".join([sample.name, *extra]))


def check_torch(ctx: Context) -> Result:
    from ..worker.telemetry import gpu_name

    try:
        import torch
    except ImportError:
        return Result("torch", Status.FAIL, "torch is not installed",
                      "pip install -e '.[torch]' (or recreate the environment)")
    gpu = gpu_name()
    if not torch.cuda.is_available():
        if gpu:
            return Result("torch", Status.FAIL,
                          f"torch {torch.__version__} cannot use the {gpu} "
                          f"(built for CUDA {torch.version.cuda})",
                          "install a CUDA build of torch matching the driver (nvidia-smi shows "
                          "its CUDA version)")
        torch.ones(4).sum().item()
        return Result("torch", Status.PASS, f"torch {torch.__version__}, CPU only")
    value = torch.ones(4, device="cuda").sum().item()
    if value != 4:
        return Result("torch", Status.FAIL, f"a CUDA sum gave {value}, not 4",
                      "check the driver (nvidia-smi)")
    return Result("torch", Status.PASS, f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
                  f"{torch.cuda.device_count()} device(s)")


_TEX = r"""\documentclass{article}
\begin{document}
Checked by aisci doctor~\cite{probe}.
\bibliographystyle{plain}
\bibliography{probe}
\end{document}
"""
_BIB = "@misc{probe, title={A probe}, author={Doctor, A.}, year={2024}}\n"


def check_latex(ctx: Context) -> Result:
    """pdflatex and bibtex compile a document with a citation, as the paper step will."""
    missing = [tool for tool in ("pdflatex", "bibtex") if shutil.which(tool) is None]
    paper = ctx.settings is None or ctx.settings.worker_mode is not WorkerMode.IDEATION
    severity = Status.FAIL if paper else Status.WARN
    if missing:
        return Result("latex", severity, f"{' and '.join(missing)} not found: the paper step "
                      "cannot build a PDF", APT_HINT)
    with tempfile.TemporaryDirectory(prefix="aisci-doctor-") as tmp:
        (Path(tmp) / "probe.tex").write_text(_TEX)
        (Path(tmp) / "probe.bib").write_text(_BIB)
        steps = [["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "probe.tex"],
                 ["bibtex", "probe"],
                 ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "probe.tex"]]
        for cmd in steps:
            try:
                proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True,
                                      timeout=max(30.0, ctx.timeout_s), stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                return Result("latex", severity, f"{cmd[0]} took too long", APT_HINT)
            if proc.returncode != 0:
                last = [ln for ln in proc.stdout.splitlines() if ln.startswith("!")] or \
                    (proc.stdout.strip().splitlines() or ["no output"])[-1:]
                return Result("latex", severity, f"{cmd[0]} failed: {last[0][:160]}", APT_HINT)
        if not (Path(tmp) / "probe.pdf").is_file():
            return Result("latex", severity, "pdflatex wrote no PDF", APT_HINT)
        version = subprocess.run(["pdflatex", "--version"], capture_output=True,
                                 text=True).stdout.splitlines()[:1]
    return Result("latex", Status.PASS,
                  f"pdflatex and bibtex build a PDF ({version[0] if version else 'pdflatex'})")


def check_jupyter(ctx: Context) -> Result:
    try:
        import jupyterlab
        from jupyter_client.kernelspec import KernelSpecManager
    except ImportError as exc:
        return Result("jupyter", Status.FAIL, f"{exc.name} is not installed",
                      "pip install -e . (JupyterLab opens failed step notebooks)")
    specs = KernelSpecManager().find_kernel_specs()
    if "python3" not in specs:
        return Result("jupyter", Status.FAIL, "no python3 kernel: papermill cannot run steps",
                      "python -m ipykernel install --user")
    return Result("jupyter", Status.PASS, f"JupyterLab {jupyterlab.__version__}, python3 kernel")


CHECKS: dict[str, Callable[[Context], Result]] = {
    "env": check_env,
    "llm-keys": check_llm_keys,
    "mongodb": check_mongodb,
    "s3": check_s3,
    "control-plane": check_control_plane,
    "gpu": check_gpu,
    "torch": check_torch,
    "latex": check_latex,
    "jupyter": check_jupyter,
}


def run_checks(ctx: Context, only: list[str] | None = None) -> list[Result]:
    """The chosen checks (all by default) in catalogue order; slow ones run side by side."""
    names = [n for n in CHECKS if not only or n in only]

    def guarded(name: str) -> Result:
        try:
            return CHECKS[name](ctx)
        except Exception as exc:  # a check that breaks is a failed check, not a traceback
            return Result(name, Status.FAIL, f"{type(exc).__name__}: {exc}", "report this")

    with ThreadPoolExecutor(max_workers=len(names) or 1) as pool:
        return list(pool.map(guarded, names))


def summary(results: list[Result]) -> str:
    counts = {s: sum(r.status is s for r in results) for s in Status}
    return (f"doctor: {counts[Status.PASS]} ok, {counts[Status.WARN]} warning(s), "
            f"{counts[Status.FAIL]} failing")


def main(only: list[str] | None = None, *, pod: bool = False, timeout_s: float = 5.0,
         env_file: Path = Path(".env"), print_=print) -> int:
    """Print one line per check and the tally; 0 only when nothing failed."""
    ctx = Context.gather(os.environ, env_file, pod=pod, timeout_s=timeout_s)
    results = run_checks(ctx, only)
    for r in results:
        print_(r.line())
    print_(summary(results))
    return 1 if any(r.status is Status.FAIL for r in results) else 0
