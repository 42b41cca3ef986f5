"""The base of every response model, timestamps as the JSON shows them, and the error bodies that the
app's handlers render (server/app.py)."""

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# A duration from the settings, kept as given (an int stays an int in the JSON).
Seconds = int | float
ERROR_DESCRIPTIONS = {
    400: "bad request (an empty body, input nested too deeply)",
    401: "missing or wrong bearer token",
    404: "no such resource",
    409: "conflict with the resource's state",
    413: "body over the upload cap",
    422: "invalid input",
}


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC; SQLite hands timestamps back without their zone, and they were written in UTC."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


class Schema(BaseModel):
    """A response shape: exactly these fields, in this order (a field the data lacks or adds is an error)."""

    model_config = ConfigDict(extra="forbid")


class ValidationIssue(Schema):
    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(Schema):
    """Every error: a code (bad-request, unauthorized, not-found, method-not-allowed, conflict, too-large,
    invalid, http-error) and the reason; a request that fails validation lists what was wrong."""

    error: str = Field(examples=["not-found"])
    detail: str | list[ValidationIssue]


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each with the error body."""
    return {code: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[code]} for code in codes}
