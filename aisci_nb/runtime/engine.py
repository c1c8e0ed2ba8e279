"""The papermill engine the runner uses: papermill's nbclient engine plus a session.

A `KernelSession` is what one step execution shares between the runner's threads and the
nbclient client running in the calling thread: the kernel process (to interrupt or kill it
on cancel or timeout) and the executing notebook (for live snapshots, under a lock). The
per-cell hooks are nbclient's own `on_cell_*` options, passed through papermill. Registered
with papermill's engine registry as `aisci`, so the rest of papermill (parameter injection,
saves, the error banner) works unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from typing import Any

from nbclient.util import run_sync
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines
from papermill.utils import merge_kwargs, remove_args

from ..contract.scrub import Scrubber

ENGINE_NAME = "aisci"


class KernelSession:
    """Per-execution state: the kernel process, the live notebook, a lock around changes."""

    def __init__(self, kernel_env: Mapping[str, str] | None = None,
                 scrubber: Scrubber | None = None) -> None:
        self.kernel_env = dict(kernel_env) if kernel_env is not None else None
        self.scrubber = scrubber  # the kernel process's own stdout/stderr, scrubbed
        self.lock = threading.Lock()
        self.kernel_started = threading.Event()
        self.finished = threading.Event()
        self.process: subprocess.Popen | None = None
        self.client: AisciClient | None = None
        self.dirty = False

    @property
    def kernel_pid(self) -> int | None:
        return self.process.pid if self.process else None

    def exit_status(self) -> int | None:
        """The kernel's exit status once it has ended (negative: killed by that signal)."""
        return self.process.poll() if self.process else None

    def send_signal(self, signum: int) -> None:
        """Signal the kernel's process group (the kernel and whatever it started)."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        try:
            if os.getpgid(proc.pid) == proc.pid:  # jupyter_client starts it in its own session
                os.killpg(proc.pid, signum)
            else:
                proc.send_signal(signum)
        except (ProcessLookupError, PermissionError):
            return

    def interrupt(self) -> None:
        self.send_signal(signal.SIGINT)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def snapshot(self) -> bytes | None:
        """The executing notebook as JSON, consistent with respect to incoming outputs."""
        client = self.client
        if client is None:
            return None
        for _ in range(5):
            try:
                with self.lock:
                    self.dirty = False
                    return json.dumps(client.nb, indent=1, ensure_ascii=False).encode()
            except RuntimeError:  # a cell's metadata changed size mid-dump; take it again
                continue
        return None


def _pump(stream: Any, scrubber: Scrubber) -> None:
    """What the kernel process writes outside any cell (to the worker's log), scrubbed."""
    out = sys.stderr.buffer
    for line in iter(stream.readline, b""):
        out.write(scrubber.bytes(line))
        out.flush()
    stream.close()


class AisciClient(PapermillNotebookClient):
    """papermill's client, reporting its kernel process and guarding notebook updates."""

    def __init__(self, nb_man: Any, session: KernelSession, **kw: Any) -> None:
        super().__init__(nb_man, **kw)
        self.session = session
        session.client = self

    async def async_start_new_kernel(self, **kwargs: Any) -> None:
        if self.session.kernel_env is not None:
            kwargs.setdefault("env", self.session.kernel_env)
        if self.session.scrubber:
            kwargs.setdefault("stdout", subprocess.PIPE)
            kwargs.setdefault("stderr", subprocess.PIPE)
        await super().async_start_new_kernel(**kwargs)
        provisioner = getattr(self.km, "provisioner", None)
        self.session.process = getattr(provisioner, "process", None)
        if self.session.scrubber and self.session.process is not None:
            proc = self.session.process
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    threading.Thread(target=_pump, args=(stream, self.session.scrubber),
                                     name="aisci-kernel-output", daemon=True).start()
        self.session.kernel_started.set()

    start_new_kernel = run_sync(async_start_new_kernel)

    def process_message(self, *args: Any, **kwargs: Any) -> Any:
        with self.session.lock:
            out = super().process_message(*args, **kwargs)
            self.session.dirty = True
        return out


class AisciEngine(NBClientEngine):
    """NBClientEngine with `AisciClient`; takes the `session` engine keyword."""

    @classmethod
    def execute_managed_notebook(
        cls,
        nb_man: Any,
        kernel_name: str,
        log_output: bool = False,
        stdout_file: Any = None,
        stderr_file: Any = None,
        start_timeout: float = 60,
        execution_timeout: float | None = None,
        session: KernelSession | None = None,
        **kwargs: Any,
    ) -> Any:
        kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
        final_kwargs = merge_kwargs(
            kwargs,
            timeout=execution_timeout,
            startup_timeout=start_timeout,
            kernel_name=kernel_name,
            log=logging.getLogger("papermill"),
            log_output=log_output,
            stdout_file=stdout_file,
            stderr_file=stderr_file,
        )
        return AisciClient(nb_man, session or KernelSession(), **final_kwargs).execute()


papermill_engines.register(ENGINE_NAME, AisciEngine)
