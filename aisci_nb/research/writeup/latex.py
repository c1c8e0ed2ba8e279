"""LaTeX: fill our template, compile with pdflatex + bibtex under timeouts, and read the log
for what went wrong (errors, unresolved citations and references, missing figures)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent / "templates" / "paper.tex"
TEX_PACKAGES = ("texlive-latex-base", "texlive-latex-recommended", "texlive-fonts-recommended",
                "poppler-utils")
JOB = "paper"


class WriteupError(RuntimeError):
    """The paper could not be produced; the message says what to do."""


class TexMissing(WriteupError):
    pass


def require_tex() -> dict[str, str]:
    """The TeX and poppler programs, or one error naming the Debian packages to install."""
    tools = {name: shutil.which(name) for name in ("pdflatex", "bibtex", "pdfinfo")}
    missing = sorted(n for n, p in tools.items() if p is None)
    if missing:
        raise TexMissing(f"{', '.join(missing)} not found: install TeX and poppler with "
                         f"`apt-get install -y {' '.join(TEX_PACKAGES)}` "
                         "(or scripts/system-deps.sh)")
    return {k: v for k, v in tools.items() if v}


_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
            "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
            "^": r"\textasciicircum{}"}


def escape(text: str) -> str:
    """Plain text (titles, names from data) made safe for LaTeX."""
    return "".join(_SPECIAL.get(c, c) for c in text)


def render(title: str, authors: str, abstract: str, body: str, bibfile: str = "references",
           template: Path = TEMPLATE) -> str:
    values = {"TITLE": title, "AUTHORS": authors, "ABSTRACT": abstract, "BODY": body,
              "BIBFILE": bibfile}
    text = template.read_text()
    for key, value in values.items():
        text = text.replace(f"<<{key}>>", value)
    return text


@dataclass
class Compiled:
    ok: bool
    pdf: Path | None
    log: str
    errors: list[str] = field(default_factory=list)
    undefined_citations: list[str] = field(default_factory=list)
    undefined_refs: list[str] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)
    pages: int | None = None

    def problems(self) -> list[str]:
        """Everything that keeps the PDF from being the paper: errors and unresolved names."""
        out = list(self.errors)
        out += [f"undefined citation {c}" for c in self.undefined_citations]
        out += [f"undefined reference {r}" for r in self.undefined_refs]
        out += [f"missing file {f}" for f in self.missing_files]
        return out


_ERROR = re.compile(r"^! (.*)$", re.MULTILINE)
_LINE = re.compile(r"^l\.(\d+) (.*)$", re.MULTILINE)
_CITE = re.compile(r"Citation [`'](.+?)' on page \d+ undefined")
_REF = re.compile(r"Reference [`'](.+?)' on page \d+ undefined")
_FILE = re.compile(r"File [`'](.+?)' not found")
_PAGES = re.compile(r"Output written on .*? \((\d+) pages?")


def parse_log(log: str) -> tuple[list[str], list[str], list[str], list[str], int | None]:
    errors = []
    for m in _ERROR.finditer(log):
        if m.group(1).lstrip().startswith("==> Fatal error"):
            continue  # the consequence of the error above it
        where = _LINE.search(log, m.end())
        errors.append(f"{m.group(1)}" + (f" (line {where.group(1)}: {where.group(2).strip()})"
                                         if where else ""))
    pages = _PAGES.search(log)
    return (errors, sorted(set(_CITE.findall(log))), sorted(set(_REF.findall(log))),
            sorted(set(_FILE.findall(log))), int(pages.group(1)) if pages else None)


def _run(cmd: list[str], cwd: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, errors="replace",
                              timeout=timeout_s, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        raise WriteupError(f"{cmd[0]} ran longer than {timeout_s:.0f}s in {cwd}") from exc


def compile_pdf(workdir: Path, timeout_s: float = 60) -> Compiled:
    """pdflatex, bibtex, pdflatex twice (the usual sequence for citations and references);
    stops at the first pdflatex error, whose log is what the fix loop needs."""
    tools = require_tex()
    latex = [tools["pdflatex"], "-interaction=nonstopmode", "-halt-on-error",
             "-no-shell-escape", f"{JOB}.tex"]
    pdf = workdir / f"{JOB}.pdf"
    pdf.unlink(missing_ok=True)
    log = ""
    for i, cmd in enumerate([latex, [tools["bibtex"], JOB], latex, latex]):
        result = _run(cmd, workdir, timeout_s)
        if i == 1:
            if result.returncode != 0 and "I found no \\citation" not in result.stdout:
                log_bib = (workdir / f"{JOB}.blg")
                blg = log_bib.read_text(errors="replace") if log_bib.exists() else result.stdout
                return Compiled(False, None, blg, [f"bibtex failed: {blg[-500:]}"])
            continue
        log_path = workdir / f"{JOB}.log"
        log = log_path.read_text(errors="replace") if log_path.exists() else result.stdout
        if result.returncode != 0:  # citations are unresolved until bibtex ran: not said
            errors, _, _, files, _ = parse_log(log)
            return Compiled(False, None, log, errors or [f"pdflatex exited {result.returncode}"],
                            missing_files=files)
    errors, cites, refs, files, pages = parse_log(log)
    return Compiled(pdf.exists() and not errors, pdf if pdf.exists() else None, log, errors,
                    cites, refs, files, pages)


def log_excerpt(log: str, limit: int = 2500) -> str:
    """The part of a LaTeX log a model needs: each error with the lines after it."""
    lines = log.splitlines()
    picked: list[str] = []
    for i, line in enumerate(lines):
        if line.startswith("!") or "undefined" in line or "not found" in line:
            picked += lines[i:i + 4]
    return "\n".join(picked)[:limit] or log[-limit:]
