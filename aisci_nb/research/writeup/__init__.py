"""The paper: our LaTeX template filled by the writeup model, compiled to PDF (Writeup step)."""

from .citations import LiteratureSearch, Paper, RecordedSearch, bibtex, gather
from .latex import TEX_PACKAGES, Compiled, TexMissing, WriteupError, compile_pdf, require_tex
from .paper import PaperResult, build_paper
from .step import example_manifest, run_writeup

__all__ = ["TEX_PACKAGES", "Compiled", "LiteratureSearch", "Paper", "PaperResult",
           "RecordedSearch", "TexMissing", "WriteupError", "bibtex", "build_paper",
           "compile_pdf", "example_manifest", "gather", "require_tex", "run_writeup"]
