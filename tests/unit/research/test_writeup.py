"""The paper: compiled from our template with pdflatex + bibtex, checked with poppler; LaTeX
errors go back to the (scripted) model; what cannot be fixed is reported clearly."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from aisci_nb.research.llm.offline import scripted_llm
from aisci_nb.research.writeup import (
    TEX_PACKAGES,
    Paper,
    RecordedSearch,
    TexMissing,
    WriteupError,
    bibtex,
    build_paper,
    example_manifest,
    require_tex,
    run_writeup,
)
from aisci_nb.research.writeup.citations import as_paper
from aisci_nb.research.writeup.latex import escape, parse_log

from .conftest import OUTPUT, events, needs_tex, poppler

IDEA = json.loads((Path(__file__).resolve().parents[3] / "aisci_nb/examples/idea.json")
                  .read_text())


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return example_manifest(tmp_path_factory.mktemp("figures"))


def build(manifest: Path, out: Path, script: str = "default", **kw):
    return build_paper(scripted_llm(script), IDEA, json.loads(manifest.read_text()),
                       manifest.parent, out, RecordedSearch(), **kw)


@needs_tex
def test_the_paper_compiles_and_holds_everything(example_paper) -> None:
    paper = example_paper
    pdf = str(paper.pdf)
    info = poppler("pdfinfo", pdf)
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.MULTILINE).group(1))
    assert pages == paper.pages and 1 <= pages <= 8
    text = " ".join(poppler("pdftotext", pdf, "-").split())
    assert " ".join(paper.title.split()) in text
    for heading in paper.sections:
        assert heading in text, heading
    assert "References" in text and "Nakkiran" in text  # bibtex resolved the citations
    assert "[?]" not in text and "??" not in text  # no unresolved citation or reference
    images = [ln.split() for ln in poppler("pdfimages", "-list", pdf).splitlines()[2:]]
    assert sum(1 for row in images if row[2] == "image") == len(paper.figures) == 4
    assert paper.fixes == [] and paper.words > 500
    log = (paper.pdf.parent / "paper.log").read_text()
    assert parse_log(log)[:4] == ([], [], [], [])
    # A page for a person to look at (the closing note gives its path).
    OUTPUT.mkdir(exist_ok=True)
    shutil.copy(paper.pdf, OUTPUT / "paper.pdf")
    poppler("pdftoppm", "-f", "1", "-l", "1", "-r", "80", "-png", "-singlefile", pdf,
            str(OUTPUT / "paper-page-1"))
    assert (OUTPUT / "paper-page-1.png").stat().st_size > 10_000


@needs_tex
def test_a_latex_error_is_fixed_by_the_model(manifest: Path, tmp_path: Path) -> None:
    paper = build(manifest, tmp_path / "latex", "latex_fix")
    assert len(paper.fixes) == 1
    assert "Undefined control sequence" in paper.fixes[0]["problems"][0]
    assert paper.fixes[0]["unmatched"] == []
    assert "cross-entropy" in poppler("pdftotext", str(paper.pdf), "-")


@needs_tex
def test_an_error_the_model_cannot_fix_is_reported_clearly(manifest: Path,
                                                           tmp_path: Path) -> None:
    with pytest.raises(WriteupError) as err:
        build(manifest, tmp_path / "latex", "latex_unfixable", max_fixes=1)
    message = str(err.value)
    assert "still does not compile after 1 fix round(s)" in message
    assert "Undefined control sequence" in message and "\\lossfn" in message
    assert "undefined citation" not in message  # not before bibtex ran: noise
    assert str(tmp_path / "latex" / "paper.tex") in message


@needs_tex
def test_the_page_limit_is_checked(manifest: Path, tmp_path: Path) -> None:
    with pytest.raises(WriteupError, match=r"the paper has \d pages; the limit is 1"):
        build(manifest, tmp_path / "latex", "default", page_limit=1, max_fixes=0)


def test_missing_tex_names_the_debian_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(TexMissing) as err:
        require_tex()
    assert "pdflatex" in str(err.value)
    for package in TEX_PACKAGES:
        assert package in str(err.value)


@needs_tex
def test_run_writeup_emits_and_registers(ctx, tmp_path: Path) -> None:
    paper = run_writeup(ctx, scripted_llm("default"), tmp_path / "w")
    got = events(ctx, tmp_path)
    types = [e["type"] for e in got]
    assert types.index("ai.paper.started") < types.index("ai.paper.generated")
    generated = next(e["data"] for e in got if e["type"] == "ai.paper.generated")
    assert generated["word_count"] == paper.words
    registered = {e["data"]["key"]: e["data"]["kind"] for e in got
                  if e["type"] == "ai.artifact.registered"}
    assert registered[generated["artifact_key"]] == "paper"
    assert generated["artifact_key"].endswith("paper.pdf")
    assert "latex" in registered.values()


def test_bibtex_keys_are_unique_and_escaped() -> None:
    papers = [Paper("Deep Double Descent", ("Preetum Nakkiran",), 2020, "ICLR & more"),
              Paper("Deep Double Descent II", ("Preetum Nakkiran",), 2020, "x_y"),
              as_paper(type("S2", (), {"title": "T", "authors": "Ada Lovelace, C. Babbage",
                                       "year": 1843, "venue": ""})())]
    bib, keys = bibtex(papers)
    assert list(keys) == ["nakkiran2020deep", "nakkiran2020deepa", "lovelace1843paper"]
    assert "ICLR \\& more" in bib and "x\\_y" in bib
    assert "Ada Lovelace and C. Babbage" in bib


def test_escape_makes_plain_text_safe() -> None:
    assert escape("50% of a_b & $x$ #1 {}") == r"50\% of a\_b \& \$x\$ \#1 \{\}"
