"""Helpers the routers share: JSON-ready read-model documents."""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse


def as_json(value: Any, status_code: int = 200) -> JSONResponse:
    """A read-model answer as JSON (datetimes as ISO 8601, ObjectIds as strings)."""
    return JSONResponse(jsonable_encoder(value, custom_encoder={ObjectId: str}),
                        status_code=status_code)
