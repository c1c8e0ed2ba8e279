"""The automatic review of the paper in the NeurIPS form (Review step)."""

from .form import RUBRIC_VERSION, SCORES, Review
from .reviewer import PaperText, ReviewError, ReviewResult, read_pdf, review_paper
from .step import run_review

__all__ = ["RUBRIC_VERSION", "SCORES", "PaperText", "Review", "ReviewError", "ReviewResult",
           "read_pdf", "review_paper", "run_review"]
