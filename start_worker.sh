#!/usr/bin/env bash
# Run the worker on a pod and keep it running: restart it after a crash, with backoff,
# and log everything to a size-rotated worker.log.
#
#   ./start_worker.sh [--mode experiment|ideation|hybrid] [--region R] [--max-restarts N]
#                     [-- COMMAND ARGS...]
#
# COMMAND defaults to `python worker.py`; --mode and --region are passed on to it.
# A clean exit (0) ends the script; so does exit code 2 (a configuration error, which a
# restart would not fix). Ctrl+C or SIGTERM stops the worker and the script.
#
# Environment (all optional):
#   AISCI_PYTHON          the Python to use; else the conda env AISCI_CONDA_ENV is activated
#   AISCI_CONDA_ENV       conda environment name (ai_scientist)
#   CONDA_DIR             where conda lives if it is not on PATH ($HOME/miniforge3)
#   AISCI_LOG_FILE        log file (worker.log next to this script)
#   AISCI_LOG_MAX_BYTES   rotate at this size (52428800); AISCI_LOG_BACKUPS keep (5)
#   AISCI_BACKOFF_START_S first restart delay (2), doubled up to AISCI_BACKOFF_MAX_S (300);
#   AISCI_BACKOFF_RESET_S a run this long (600) counts as healthy and resets the delay
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }

mode=""
region=""
max_restarts=-1
while [ $# -gt 0 ]; do
    case "$1" in
        --mode) mode="${2:?--mode needs a value}"; shift 2 ;;
        --region) region="${2:?--region needs a value}"; shift 2 ;;
        --max-restarts) max_restarts="${2:?--max-restarts needs a number}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        *) echo "start_worker.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$mode" in
    ""|experiment|ideation|hybrid) ;;
    *) echo "start_worker.sh: --mode must be experiment, ideation or hybrid, not '$mode'" >&2
       exit 2 ;;
esac

activate_env() {
    if [ -n "${AISCI_PYTHON:-}" ]; then
        PY="$AISCI_PYTHON"
        PATH="$(dirname "$PY"):$PATH"  # its jupyter, papermill and aisci come first
        export PATH
        return
    fi
    local conda_sh="${CONDA_DIR:-$HOME/miniforge3}/etc/profile.d/conda.sh"
    if command -v conda >/dev/null 2>&1; then
        conda_sh="$(conda info --base)/etc/profile.d/conda.sh"
    fi
    if [ ! -f "$conda_sh" ]; then
        echo "start_worker.sh: no conda found; run ./init_runpod.sh or set AISCI_PYTHON" >&2
        exit 2
    fi
    # shellcheck source=/dev/null
    source "$conda_sh"
    conda activate "${AISCI_CONDA_ENV:-ai_scientist}"
    PY="python"
}
activate_env

if [ $# -gt 0 ]; then
    cmd=("$@")
else
    cmd=("$PY" "$ROOT/worker.py")
fi
[ -n "$mode" ] && cmd+=(--mode "$mode")
[ -n "$region" ] && cmd+=(--region "$region")

# One identity for the pod across restarts, unless RunPod's RUNPOD_POD_ID or .env names it.
if [ -z "${RUNPOD_POD_ID:-}" ] && ! grep -qs '^RUNPOD_POD_ID=' .env; then
    RUNPOD_POD_ID="$(hostname)-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
    export RUNPOD_POD_ID
fi

log_file="${AISCI_LOG_FILE:-$ROOT/worker.log}"
tee_flag=()
[ -t 1 ] && tee_flag=(--tee)
# Everything below, ours and the worker's, goes through the rotating log.
exec > >("$PY" -m aisci_nb.ops.logpipe "$log_file" --max-bytes "${AISCI_LOG_MAX_BYTES:-52428800}" \
    --backups "${AISCI_LOG_BACKUPS:-5}" "${tee_flag[@]}") 2>&1
pump=$!
# On the way out, close our end and let the log pump write its last lines.
trap 'exec 1>&- 2>&-; wait "$pump" 2>/dev/null || true' EXIT

say() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) start_worker: $*"; }

child=""
stopping=0
stop() {
    stopping=1
    if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
        say "stopping worker pid $child"
        kill -TERM "$child" 2>/dev/null || true
    fi
}
trap stop INT TERM

backoff_start="${AISCI_BACKOFF_START_S:-2}"
backoff_max="${AISCI_BACKOFF_MAX_S:-300}"
reset_after="${AISCI_BACKOFF_RESET_S:-600}"
delay="$backoff_start"
restarts=0
while :; do
    say "starting pod ${RUNPOD_POD_ID:-(named in .env)}: ${cmd[*]}"
    started=$SECONDS
    "${cmd[@]}" &
    child=$!
    set +e
    wait "$child"
    code=$?
    # A trapped signal interrupts `wait`; wait again for the worker to finish.
    while kill -0 "$child" 2>/dev/null; do wait "$child"; code=$?; done
    set -e
    child=""
    if [ "$stopping" = 1 ]; then
        say "stopped (worker exit code $code)"
        exit 0
    fi
    if [ "$code" = 0 ]; then
        say "worker finished (exit code 0)"
        exit 0
    fi
    if [ "$code" = 2 ]; then
        say "worker exit code 2: a configuration error; fix it (aisci doctor) and start again"
        exit 2
    fi
    if [ "$max_restarts" -ge 0 ] && [ "$restarts" -ge "$max_restarts" ]; then
        say "worker crashed (exit code $code); $restarts restart(s) done, giving up"
        exit "$code"
    fi
    if [ $((SECONDS - started)) -ge "$reset_after" ]; then
        delay="$backoff_start"
    fi
    say "worker crashed (exit code $code); restarting in ${delay}s"
    sleep "$delay" &
    child=$!
    wait "$child" || true
    child=""
    [ "$stopping" = 1 ] && { say "stopped while waiting to restart"; exit 0; }
    restarts=$((restarts + 1))
    delay=$(awk -v d="$delay" -v m="$backoff_max" 'BEGIN { d *= 2; print (d > m ? m : d) }')
done
