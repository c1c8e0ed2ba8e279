"""`POST /api/hypotheses` (the UI's form) and `GET /api/hypotheses/{id}`.

A hypothesis is created with its ideation request (`ideation: true`, the default) or with
its first run (`ideation: false`, an idea given as `ideaJson`), in one transaction either
way. Creating is for operators (the UI's form with its session and CSRF token, or a
personal API token) and lands in the audit trail; reading, for anyone signed in. Worker keys
and run tokens can do neither.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ..contract.idea import InvalidIdea, validate_idea
from ..queue.submit import MAX_IDEAS, MAX_REFLECTIONS, submit_for_ideation, submit_hypothesis
from .accounts import audit
from .auth import OperatorDep, UserDep
from .deps import StateDep

router = APIRouter(prefix="/api/hypotheses", tags=["hypotheses"])


class NewHypothesis(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=300)
    idea: str | None = Field(None, max_length=20_000, description="the hypothesis in words")
    topic: str | None = Field(None, max_length=100_000, description="topic/workshop markdown")
    ideaJson: dict[str, Any] | None = Field(None, description="an AI-Scientist idea")
    ideation: bool = Field(True, description="generate ideas first (else run ideaJson now)")
    reflections: int = Field(3, ge=1, le=MAX_REFLECTIONS)
    numIdeas: int = Field(1, ge=1, le=MAX_IDEAS)
    autoRun: bool = Field(False, description="run the first idea when ideation completes")
    priority: int = Field(0, ge=-1000, le=1000)
    region: str | None = Field(None, max_length=100, description="only workers of this region")
    createdBy: str | None = Field(None, max_length=200)


@router.post("", status_code=201)
async def create(body: NewHypothesis, state: StateDep, user: OperatorDep) -> JSONResponse:
    """201 with the hypothesis and its ideation request (or run); 422 on a bad body."""
    idea = None
    if body.ideaJson is not None:
        try:
            idea = validate_idea(body.ideaJson, where="ideaJson")
        except InvalidIdea as exc:
            raise HTTPException(422, str(exc)) from None
    by = f"{body.createdBy} ({user.name})" if body.createdBy else user.name
    if not body.ideation:
        if idea is None:
            raise HTTPException(422, "ideaJson is required when ideation is false")
        done = await run_in_threadpool(submit_hypothesis, state.db, title=body.title,
                                       idea=idea, priority=body.priority, created_by=by,
                                       region=body.region)
        await run_in_threadpool(audit, state.db, user, "create_hypothesis",
                                done.hypothesis_id, run_id=done.run_id)
        return JSONResponse({"hypothesis_id": done.hypothesis_id, "run_id": done.run_id,
                             "status": "QUEUED"}, status_code=201)
    text = body.idea or (idea or {}).get("Short Hypothesis")
    if not text or not text.strip():
        raise HTTPException(422, "idea: the hypothesis in words is required for ideation")
    done = await run_in_threadpool(
        submit_for_ideation, state.db, title=body.title, idea_text=text, topic=body.topic,
        idea=idea, reflections=body.reflections, num_ideas=body.numIdeas,
        auto_run=body.autoRun, priority=body.priority, created_by=by, region=body.region)
    await run_in_threadpool(audit, state.db, user, "create_hypothesis", done.hypothesis_id,
                            request_id=done.request_id)
    return JSONResponse({"hypothesis_id": done.hypothesis_id, "request_id": done.request_id,
                         "ideation": {"status": "QUEUED"}}, status_code=201)


@router.get("/{hypothesis_id}")
async def get(hypothesis_id: str, state: StateDep, user: UserDep) -> JSONResponse:
    """The hypothesis with its ideation state and ideas (what the UI polls)."""
    doc = await run_in_threadpool(state.db.hypotheses.find_one, {"_id": hypothesis_id})
    if doc is None:
        raise HTTPException(404, f"no hypothesis {hypothesis_id}")
    return JSONResponse(jsonable_encoder(doc))
