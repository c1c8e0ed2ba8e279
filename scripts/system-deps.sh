#!/usr/bin/env bash
# Debian packages the tests need: shellcheck (the pod scripts are linted), TeX and poppler
# (aisci doctor compiles a document; init_runpod.sh --skip-satisfied expects them on PATH;
# the paper's template uses booktabs/caption (latex-recommended) and Times (fonts-recommended)),
# bubblewrap (the tree search's sandbox for generated experiment code).
# Installs only what is missing; as root directly, otherwise through sudo.
set -euo pipefail
missing=()
command -v shellcheck >/dev/null || missing+=(shellcheck)
command -v pdflatex >/dev/null || missing+=(texlive-latex-base)
command -v pdftotext >/dev/null || missing+=(poppler-utils)
command -v bwrap >/dev/null || missing+=(bubblewrap)  # the tree search's sandbox
command -v kpsewhich >/dev/null && kpsewhich booktabs.sty >/dev/null \
    || missing+=(texlive-latex-recommended)
command -v kpsewhich >/dev/null && kpsewhich utmr8a.pfb >/dev/null \
    || missing+=(texlive-fonts-recommended)
# The web UI's browser tests drive Debian's headless Chromium through chromedriver.
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null; then
    sudo=(sudo)
else
    echo "missing Debian packages: ${missing[*]} (install them as root: apt-get install ${missing[*]})" >&2
    exit 1
fi
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
