"""Ideation: from a hypothesis to research ideas, through a tool-using conversation with
the "ideation" model (literature search, finalize) refined over reflection rounds."""

from .config import IdeationSettings, literature, scripted
from .conversation import (
    Hypothesis,
    IdeationFailed,
    IdeationResult,
    generate_ideas,
)
from .idea import FIELDS, MalformedIdea, ResearchIdea, parse_idea
from .literature import LiteratureUnavailable, Paper, RecordedLiterature, SemanticScholar

IDEAS_FILE = "ideas.json"  # what the notebook leaves for the worker

__all__ = [
    "FIELDS", "IDEAS_FILE", "Hypothesis", "IdeationFailed", "IdeationResult",
    "IdeationSettings", "LiteratureUnavailable", "MalformedIdea", "Paper",
    "RecordedLiterature", "ResearchIdea", "SemanticScholar", "generate_ideas", "literature",
    "parse_idea", "scripted",
]
