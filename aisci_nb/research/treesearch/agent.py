"""The LLM side of the search: one prompt per operation (draft, debug, improve, tune,
ablate, plan the ablations) to the "code" role, and the answer parsed into a plan and a
script. An answer without a fenced Python block is a malformed proposal — the search turns
it into a buggy node, it never raises.

Every prompt opens with a marker line (`[treesearch op=... stage=...]`) that names the
operation, so recorded scripts can answer by operation.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ...errors import AisciError
from ..llm import LLM, Message, ScriptMissing
from .journal import Node
from .metrics import MetricSpec
from .policy import Action
from .stages import StageSpec

ROLE = "code"
FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.S)
LABEL = re.compile(r"^\s*(?:hyperparameter|ablation|label)\s*:\s*([\w.\-]+)", re.I | re.M)
OUTPUT_TAIL = 3_000

SYSTEM = (
    "You are an ML researcher writing experiment code for an automated tree search. Answer "
    "with a short plan in prose, then exactly one fenced ```python block holding a complete, "
    "self-contained script."
)


@dataclass(frozen=True)
class Proposal:
    plan: str
    code: str
    label: str | None = None
    error: str | None = None  # why the answer is unusable; None when it is usable


class AblationPlanError(AisciError, RuntimeError):
    """The model did not give a usable list of ablations."""


def parse_response(text: str) -> Proposal:
    """Plan (the prose before the code) and code (the first fenced block)."""
    match = FENCE.search(text or "")
    if match is None or not match.group(1).strip():
        return Proposal(plan=(text or "").strip(), code="",
                        error="the answer holds no fenced ```python block")
    plan = (text[:match.start()] + text[match.end():]).strip()
    code = match.group(1).strip() + "\n"
    try:
        compile(code, "runfile.py", "exec")
    except SyntaxError as exc:
        return Proposal(plan, code, _label(plan), f"the code does not compile: {exc}")
    return Proposal(plan, code, _label(plan))


def _label(plan: str) -> str | None:
    found = LABEL.search(plan)
    return found.group(1) if found else None


def contract(metric: MetricSpec, wall_s: float, stage: int) -> str:
    extra = {2: ' Also save "sweeps": {hyperparameter: {value: metric}} for what you tried.',
             4: ' Also save "ablation": the name of the ablation you ran.'}.get(stage, "")
    return (
        "Requirements for the script:\n"
        "- Runs as `python runfile.py` in its own working directory, with no network and "
        "no credentials; numpy, torch and matplotlib are installed. Use the GPU when "
        "torch.cuda.is_available(), else the CPU.\n"
        "- Seeds every RNG from int(os.environ.get('AISCI_SEED', '0')).\n"
        f"- Finishes well within {wall_s:g} seconds.\n"
        "- Saves its results to experiment_data.json in the working directory: "
        '{"metrics": {name: float}, "series": {name: [float per epoch]}, "config": {...}}, '
        f'with the metric "{metric.name}" ({metric.description}; '
        f'{"higher" if metric.maximize else "lower"} is better) in "metrics" and the '
        '"train_loss", "val_loss" series.' + extra + "\n"
        "- Saves its plots as PNG files in the working directory (matplotlib, Agg backend)."
    )


class Agent:
    def __init__(self, llm: LLM, idea: dict[str, Any], spec: StageSpec, metric: MetricSpec,
                 wall_s: float) -> None:
        self.llm = llm
        self.idea = idea
        self.spec = spec
        self.metric = metric
        self.wall_s = wall_s

    def _idea_text(self) -> str:
        keys = ("Title", "Short Hypothesis", "Abstract", "Experiments")
        parts = [f"{k}: {self.idea[k]}" for k in keys if self.idea.get(k)]
        return "\n".join(parts) or "(no idea given: a small classifier on synthetic data)"

    def _ask(self, op: str, body: str, label: str | None = None, json_output: bool = False):
        marker = f"[treesearch op={op} stage={self.spec.name}" + \
            (f" label={label}]" if label else "]")
        user = "\n\n".join([
            marker,
            f"Research idea:\n{self._idea_text()}",
            f"Stage {self.spec.number} ({self.spec.title}): {self.spec.goal}",
            body,
        ])
        return self.llm.chat(ROLE, [Message("system", SYSTEM), Message("user", user)],
                             json_output=json_output)

    def propose(self, action: Action, tried: list[str] | None = None) -> Proposal:
        """Ask for the code of the node that `action` creates."""
        spec, parent = self.spec, action.parent
        rules = contract(self.metric, self.wall_s, spec.number)
        if action.op == "draft":
            body = f"Write a first implementation of the experiment.\n\n{rules}"
        elif action.op == "debug":
            assert parent is not None
            body = (f"This script failed ({parent.reason}: {parent.exc_type}). Fix it; keep "
                    f"what works.\n\n{_node_text(parent)}\n\n{rules}")
        elif action.op == "tune":
            body = ("Propose ONE hyperparameter to tune (start your plan with "
                    "'Hyperparameter: NAME'), not one tried already: "
                    f"{', '.join(tried or []) or 'none yet'}. Sweep a few values in the "
                    f"script and report the best.\n\n{_node_text(parent)}\n\n{rules}")
        elif action.op == "ablate":
            body = (f"Run the ablation '{action.label}' of this model: remove or replace that "
                    "one component and keep everything else as is.\n\n"
                    f"{_node_text(parent)}\n\n{rules}")
        else:  # improve
            body = ("Improve this working script to better test the hypothesis; change one "
                    f"idea at a time.\n\n{_node_text(parent)}\n\n{rules}")
        try:
            response = self._ask(action.op, body, action.label)
        except ScriptMissing:  # a gap in a recorded script is the script's bug: say so
            raise
        except Exception as exc:  # a provider error is this node's problem, not the run's
            return Proposal("", "", action.label, f"the LLM call failed: {exc}")
        proposal = parse_response(response.text)
        if action.label and proposal.label != action.label:
            proposal = Proposal(proposal.plan, proposal.code, action.label, proposal.error)
        return proposal

    def plan_ablations(self, base: Node | None, attempts: int = 2) -> list[str]:
        """The ablations stage 4 will run: a JSON object {"ablations": [name, ...]}."""
        body = ("List the ablations that show what each component of this model contributes, "
                'as JSON: {"ablations": ["short_snake_case_name", ...]} (2 to 5).\n\n'
                + (_node_text(base) if base else ""))
        last = ""
        for _ in range(attempts):
            last = self._ask("plan_ablations", body, json_output=True).text
            try:
                raw = json.loads(_strip_fence(last))
                names = [str(n) for n in raw["ablations"] if str(n).strip()]
            except (ValueError, KeyError, TypeError):
                continue
            if names:
                return list(dict.fromkeys(names))
        raise AblationPlanError(f"no usable ablation list in the model's answer: {last[:300]!r}")


def _strip_fence(text: str) -> str:
    m = re.search(r"```(?:json)?\s*\n(.*?)```", text, re.S)
    return m.group(1) if m else text


def _node_text(node: Node | None) -> str:
    if node is None:
        return ""
    parts = [f"Plan:\n{node.plan}", f"Code:\n```python\n{node.code}```"]
    if node.metric is not None and node.metric.value is not None:
        parts.append(f"Result: {node.metric.name} = {node.metric.value:.4g}")
    if node.term_out:
        parts.append(f"Output (end):\n{node.term_out[-OUTPUT_TAIL:]}")
    if node.exc_info:
        parts.append(f"Error:\n{node.exc_info[-OUTPUT_TAIL:]}")
    return "\n\n".join(parts)
