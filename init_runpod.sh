#!/usr/bin/env bash
# From a fresh GPU pod with this repository and a .env to a running worker, in one command.
#
#   ./init_runpod.sh [--skip-satisfied] [--no-start] [--mode M] [--region R]
#
# Each step does only what is missing, so running it again changes nothing:
#   1. conda (Miniforge into $CONDA_DIR) if there is none, then the environment
#      `ai_scientist` from environment.yml: created, or updated when environment.yml or
#      pyproject.toml changed since the last run;
#   2. TeX and poppler through apt (the packages not installed yet);
#   3. a block in ~/.bashrc that activates the environment in new shells;
#   4. .env: every variable a pod needs must be set, each missing one is named;
#   5. the worker, through start_worker.sh (Ctrl+C stops it).
#
# --skip-satisfied  skip conda when a Python that imports aisci_nb is at hand
#                   ($AISCI_PYTHON, else python3 on PATH), and apt when pdflatex, bibtex
#                   and pdftotext are on PATH (CI, or a machine set up by other means)
# --no-start        stop after the checks instead of starting the worker
#
# Environment: CONDA_DIR ($HOME/miniforge3), AISCI_CONDA_ENV (ai_scientist),
# AISCI_APT_PACKAGES (the texlive-* packages and poppler-utils), MINIFORGE_URL.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

ENV_NAME="${AISCI_CONDA_ENV:-ai_scientist}"
CONDA_DIR="${CONDA_DIR:-$HOME/miniforge3}"
APT_PACKAGES="${AISCI_APT_PACKAGES:-texlive-latex-base texlive-latex-recommended \
texlive-latex-extra texlive-fonts-recommended texlive-bibtex-extra poppler-utils}"
MINIFORGE_URL="${MINIFORGE_URL:-https://github.com/conda-forge/miniforge/releases/latest/download/Miniforge3-Linux-$(uname -m).sh}"

skip_satisfied=0
start=1
worker_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --skip-satisfied) skip_satisfied=1; shift ;;
        --no-start) start=0; shift ;;
        --mode|--region) worker_args+=("$1" "${2:?$1 needs a value}"); shift 2 ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
        *) echo "init_runpod.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

say() { echo "init: $*"; }
die() { echo "init: error: $1" >&2; exit "${2:-1}"; }

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) for: $*"
    fi
}

# -- 1. Python: conda and the environment -------------------------------------------------

python_ready() { [ -n "$1" ] && "$1" -c "import aisci_nb" >/dev/null 2>&1; }

find_conda() {
    if command -v conda >/dev/null 2>&1; then
        command -v conda
    elif [ -x "$CONDA_DIR/bin/conda" ]; then
        echo "$CONDA_DIR/bin/conda"
    fi
}

env_stamp() { cat environment.yml pyproject.toml | sha256sum | cut -d' ' -f1; }

setup_python() {
    if [ "$skip_satisfied" = 1 ]; then
        local candidate="${AISCI_PYTHON:-$(command -v python3 || true)}"
        if python_ready "$candidate"; then
            PY="$candidate"
            say "python: $PY already has aisci_nb; conda skipped"
            return
        fi
        say "python: no Python with aisci_nb at hand; setting up conda"
    fi
    local conda
    conda="$(find_conda)"
    if [ -z "$conda" ]; then
        say "conda: not found; installing Miniforge into $CONDA_DIR"
        command -v curl >/dev/null || die "no curl to download Miniforge: apt-get install curl"
        local installer
        installer="$(mktemp --suffix=.sh)"
        curl -fsSL "$MINIFORGE_URL" -o "$installer"
        bash "$installer" -b -p "$CONDA_DIR"
        rm -f "$installer"
        conda="$CONDA_DIR/bin/conda"
    else
        say "conda: $conda already installed"
    fi
    local base prefix
    base="$("$conda" info --base)"
    prefix="$base/envs/$ENV_NAME"
    if [ ! -x "$prefix/bin/python" ]; then
        say "environment $ENV_NAME: creating from environment.yml (several minutes)"
        "$conda" env create -n "$ENV_NAME" -f environment.yml
        env_stamp >"$prefix/.aisci-env-stamp"
    elif [ "$(cat "$prefix/.aisci-env-stamp" 2>/dev/null)" != "$(env_stamp)" ]; then
        say "environment $ENV_NAME: environment.yml or pyproject.toml changed; updating"
        "$conda" env update -n "$ENV_NAME" -f environment.yml --prune
        env_stamp >"$prefix/.aisci-env-stamp"
    else
        say "environment $ENV_NAME: up to date"
    fi
    PY="$prefix/bin/python"
    python_ready "$PY" || die "the environment $ENV_NAME cannot import aisci_nb"
    ACTIVATE="source '$base/etc/profile.d/conda.sh' && conda activate '$ENV_NAME'"
}

# -- 2. TeX and poppler --------------------------------------------------------------------

setup_apt() {
    if [ "$skip_satisfied" = 1 ] && command -v pdflatex >/dev/null && command -v bibtex >/dev/null \
        && command -v pdftotext >/dev/null; then
        say "apt: pdflatex, bibtex and pdftotext already on PATH; apt skipped"
        return
    fi
    command -v dpkg-query >/dev/null || die "no dpkg: install TeX and poppler by hand ($APT_PACKAGES)"
    local missing=() pkg
    # shellcheck disable=SC2086  # the package list is split on purpose
    for pkg in $APT_PACKAGES; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    if [ ${#missing[@]} = 0 ]; then
        say "apt: TeX and poppler already installed"
        return
    fi
    say "apt: installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}"
}

# -- 3. new shells get the environment -----------------------------------------------------

setup_shell() {
    local rc="$HOME/.bashrc" begin="# >>> aisci (init_runpod.sh) >>>" end="# <<< aisci <<<"
    local activate="${ACTIVATE:-}" block
    if [ -z "$activate" ]; then
        activate="export PATH=\"$(dirname "$PY"):\$PATH\""
    fi
    block="$(printf '%s\n' "$begin" "$activate" "alias aisci-logs='tail -F $ROOT/worker.log'" "$end")"
    if [ -f "$rc" ] && [ "$(sed -n "/^$begin\$/,/^$end\$/p" "$rc")" = "$block" ]; then
        say "shell: $rc already activates the environment"
        return
    fi
    if [ -f "$rc" ] && grep -qxF "$begin" "$rc"; then
        sed -i "/^$begin\$/,/^$end\$/d" "$rc"  # an older block: replace it
    fi
    printf '%s\n' "$block" >>"$rc"
    say "shell: added the environment to $rc"
}

# -- 4. .env -------------------------------------------------------------------------------

check_env() {
    if [ -f .env ] && [ "$(stat -c %a .env)" != 600 ]; then
        chmod 600 .env
        say ".env: it holds secrets; made it readable by its owner only"
    fi
    local out
    if ! out="$("$PY" -m aisci_nb.ops.cli doctor --only env --pod --env-file "$ROOT/.env")"; then
        echo "$out" | head -n 1 >&2
        die ".env is not complete: add what is missing to $ROOT/.env (see .env.example)" 2
    fi
    say ".env: every variable a pod needs is set"
}

setup_python
setup_apt
setup_shell
check_env
say "ready; check the services with: $PY -m aisci_nb.ops.cli doctor"
if [ "$start" = 1 ]; then
    say "starting the worker (Ctrl+C stops it; log in $ROOT/worker.log)"
    AISCI_PYTHON="$PY" exec "$ROOT/start_worker.sh" "${worker_args[@]}"
fi
