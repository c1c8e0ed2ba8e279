"""Runs one node's code inside the sandbox (a separate interpreter): applies the resource
limits to itself, runs the file as `__main__`, and records an exception's type and trace in
a small JSON file, so the parent never parses tracebacks out of the output.

Usage: python -I _runner.py LIMITS_JSON CODE_FILE EXC_FILE
"""

import json
import os
import resource
import runpy
import signal
import sys
import traceback


class CpuTimeExceeded(Exception):
    pass


def _on_xcpu(signum, frame):
    raise CpuTimeExceeded("the node used up its CPU-time limit")


def _record(path, exc):
    try:
        with open(path, "w") as f:
            json.dump({"exc_type": type(exc).__name__,
                       "exc_info": "".join(traceback.format_exception(exc))[-20000:]}, f)
    except Exception:
        pass


def main():
    limits = json.loads(sys.argv[1])
    code, exc_file = sys.argv[2], sys.argv[3]
    if limits.get("memory_bytes"):
        b = int(limits["memory_bytes"])
        resource.setrlimit(resource.RLIMIT_AS, (b, b))
    if limits.get("cpu_s"):
        s = int(limits["cpu_s"])
        signal.signal(signal.SIGXCPU, _on_xcpu)
        resource.setrlimit(resource.RLIMIT_CPU, (s, s + 2))
    sys.path[0] = os.getcwd()
    sys.argv = [code]
    try:
        runpy.run_path(code, run_name="__main__")
    except SystemExit as exc:
        if exc.code in (0, None):
            return 0
        _record(exc_file, exc)
        return exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:
        _record(exc_file, exc)
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
