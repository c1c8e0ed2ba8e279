"""The ideation conversation: for each idea, up to N rounds in which the model searches the
literature or finalizes the idea through tools.

A round is one model call. The model may call `search_literature` (the results come back as
tool messages) or `finalize_idea`; the first valid `finalize_idea` ends the idea. An answer
that is not a valid idea (text instead of a tool call, malformed JSON, missing fields) is
sent back with the reason and costs a round: the reflection budget bounds retries too, and
an idea the budget could not produce is reported with the model's last problem.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..llm import LLM, Message, ToolCall, ToolSpec
from .idea import FIELDS, MalformedIdea, ResearchIdea, parse_idea
from .literature import LiteratureUnavailable, Search, format_papers

ROLE = "ideation"

SYSTEM = """You are an ambitious AI researcher proposing research ideas that are novel, \
clearly testable, and feasible as a small machine-learning experiment (a few GPU hours, \
public data, no human studies).

You work in rounds. In each round call exactly one tool:
- `search_literature` with a query, to check novelty and find related work;
- `finalize_idea` with the complete idea, once it is sound and distinct from prior work.

The idea has these fields (strings): "Name" (lowercase_with_underscores), "Title", \
"Short Hypothesis", "Related Work" (how it differs from the papers found), "Abstract" \
(conference style, at least 50 characters), "Experiments" (concrete setups, datasets, \
metrics), "Risk Factors and Limitations"."""

SEARCH_TOOL = ToolSpec(
    "search_literature",
    "Search Semantic Scholar for papers; returns titles, authors, venues, years, abstracts.",
    {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
)
FINALIZE_TOOL = ToolSpec(
    "finalize_idea",
    "Submit the finished research idea; ends the conversation about this idea.",
    {"type": "object", "required": ["idea"], "properties": {"idea": {
        "type": "object", "required": list(FIELDS),
        "properties": {name: {"type": "string"} for name in FIELDS}}}},
)


@dataclass(frozen=True)
class Hypothesis:
    """What ideation starts from: the hypothesis's title and idea text, and optionally a
    topic (workshop call) in markdown."""

    title: str
    idea: str
    topic: str | None = None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Hypothesis:
        idea = doc.get("idea") or ""
        if not idea and isinstance(doc.get("ideaJson"), dict):
            idea = doc["ideaJson"].get("Short Hypothesis") or ""
        return cls(title=doc.get("title") or "untitled", idea=idea or doc.get("title") or "",
                   topic=doc.get("topic"))


class IdeationFailed(RuntimeError):
    """No idea could be produced within the budget; the message says why."""


@dataclass
class Usage:
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0

    def add(self, usage: Any) -> None:
        self.calls += 1
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cached_tokens += usage.cached_tokens


@dataclass
class IdeationResult:
    ideas: list[dict[str, str]] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)  # rounds used, per idea
    searches: int = 0
    skipped_searches: int = 0
    usage: Usage = field(default_factory=Usage)
    problems: list[str] = field(default_factory=list)  # ideas the budget could not produce

    def summary(self) -> dict[str, Any]:
        return {"ideas": self.ideas, "rounds": self.rounds, "searches": self.searches,
                "skipped_searches": self.skipped_searches, "usage": vars(self.usage),
                "problems": self.problems}


Callback = Callable[..., None]


def _first_prompt(h: Hypothesis, index: int, total: int, rounds: int,
                  earlier: list[dict[str, str]]) -> str:
    parts = [f"Propose research idea #{index} (of {total}) for this hypothesis. "
             f"You have {rounds} round(s).", f"Title: {h.title}", f"Hypothesis:\n{h.idea}"]
    if h.topic:
        parts.append(f"Topic / workshop description:\n{h.topic}")
    if earlier:
        listed = "\n".join(f"- {i['Title']}" for i in earlier)
        parts.append(f"Ideas already proposed (propose something different):\n{listed}")
    return "\n\n".join(parts)


def _round_prompt(done: int, rounds: int) -> str:
    if done + 1 >= rounds:
        return f"Round {done + 1} of {rounds}, the last: call finalize_idea with the idea now."
    return (f"Round {done + 1} of {rounds}: refine the idea in light of what you found; "
            "search again or call finalize_idea.")


class Conversation:
    def __init__(self, llm: LLM, search: Search | None, *, reflections: int,
                 on_warning: Callback | None = None, on_round: Callback | None = None) -> None:
        if reflections < 1:
            raise ValueError("reflections: at least one round is needed")
        self.llm = llm
        self.search = search
        self.reflections = reflections
        self.on_warning = on_warning or (lambda message: None)
        self.on_round = on_round or (lambda **kw: None)
        self.search_off_reason: str | None = None if search else "literature search is off"
        self.result = IdeationResult()

    @property
    def tools(self) -> tuple[ToolSpec, ...]:
        return (SEARCH_TOOL, FINALIZE_TOOL) if self.search else (FINALIZE_TOOL,)

    def _search(self, call: ToolCall) -> str:
        query = str(call.arguments.get("query") or "").strip()
        if not query:
            return "Refused: search_literature needs a non-empty `query`."
        if self.search is None or self.search_off_reason:
            self.result.skipped_searches += 1
            return f"Literature search is unavailable ({self.search_off_reason}); go on " \
                   "without it."
        try:
            papers = self.search(query)
        except LiteratureUnavailable as exc:
            self.search_off_reason = str(exc)
            self.result.skipped_searches += 1
            self.on_warning(f"literature search skipped: {exc}")
            return f"Literature search is unavailable ({exc}); go on without it."
        self.result.searches += 1
        return format_papers(papers)

    def idea(self, hypothesis: Hypothesis, index: int, total: int) -> ResearchIdea:
        """One idea, or IdeationFailed after the budget; rounds used are recorded."""
        messages = [Message("system", SYSTEM), Message("user", _first_prompt(
            hypothesis, index, total, self.reflections, self.result.ideas))]
        problem = "the model never called finalize_idea"
        for done in range(self.reflections):
            response = self.llm.chat(ROLE, messages, tools=self.tools)
            self.result.usage.add(response.usage)
            messages.append(response.as_message())
            self.on_round(idea=index, round=done + 1, rounds=self.reflections)
            final: ResearchIdea | None = None
            for call in response.tool_calls:
                if call.name == "search_literature":
                    reply = self._search(call)
                elif call.name == "finalize_idea":
                    try:
                        final = final or parse_idea(call.arguments)
                        reply = "Idea accepted."
                    except MalformedIdea as exc:
                        problem = f"finalize_idea refused: {exc}"
                        reply = f"Refused: {exc}. Call finalize_idea again with all fields."
                else:
                    known = ", ".join(t.name for t in self.tools)
                    reply = f"Unknown tool {call.name!r}; use {known}."
                messages.append(Message("tool", reply, tool_call_id=call.id))
            if not response.tool_calls:  # a text answer: accept an idea written as JSON
                try:
                    final = parse_idea(response.text)
                except MalformedIdea as exc:
                    problem = f"the answer was not a valid idea: {exc}"
                    messages.append(Message("user", f"Your answer was not usable: {exc}. "
                                                    "Answer by calling a tool."))
            if final is not None:
                self.result.rounds.append(done + 1)
                return final
            messages.append(Message("user", _round_prompt(done + 1, self.reflections)))
        raise IdeationFailed(f"idea #{index}: no valid idea after {self.reflections} "
                             f"round(s); last problem: {problem}")


def generate_ideas(llm: LLM, hypothesis: Hypothesis, *, num_ideas: int = 1,
                   reflections: int = 3, search: Search | None = None,
                   on_warning: Callback | None = None,
                   on_round: Callback | None = None) -> IdeationResult:
    """`num_ideas` ideas, each refined over up to `reflections` rounds. An idea the budget
    could not produce is reported as a warning; none at all raises IdeationFailed."""
    if num_ideas < 1:
        raise ValueError("num_ideas: at least one idea is needed")
    talk = Conversation(llm, search, reflections=reflections, on_warning=on_warning,
                        on_round=on_round)
    for index in range(1, num_ideas + 1):
        try:
            idea = talk.idea(hypothesis, index, num_ideas)
        except IdeationFailed as exc:
            talk.result.problems.append(str(exc))
            talk.on_warning(str(exc))
            continue
        talk.result.ideas.append(idea.as_json())
    if not talk.result.ideas:
        raise IdeationFailed("; ".join(talk.result.problems))
    return talk.result


def dumps(result: IdeationResult) -> str:
    return json.dumps(result.summary(), indent=1)
