"""The request bodies of the HTTP API as pydantic models, and the one-sentence form of their errors.

The models are made from a `ServeConfig` (`request_models`), so /openapi.json states the bounds the
server enforces: `k` has `maximum` max_k, a question `maxLength` max_query_chars, a batch `maxItems`
max_batch. A query or question is checked with `pipelines.query.check_query_text`, the CLI's own
check, so a wordless one ("🙂", "???") is a 422 naming the field, never a 500. Unknown fields are
refused (a typo such as "kk" is an error, not silently the default).

Errors are `{"detail": "<field>: <one sentence>", "errors": [{"field", "message"}, ...]}`; the first
error is the detail.

(No `from __future__ import annotations` here: the models are made inside a function, and pydantic
reads their annotations as objects.)
"""

from types import SimpleNamespace
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from pipelines.query import check_query_text
from serve.config import ServeConfig

MODES = ("constrained", "free")  # the reader's decoding modes (retro/reader.py)


def _searchable(what: str):
    def check(text: str) -> str:
        check_query_text(text, what)
        return text

    return AfterValidator(check)


class FieldError(BaseModel):
    """One problem of a request: where, and what is wrong, in a sentence."""

    field: str
    message: str


class ErrorBody(BaseModel):
    """Every 4xx body (and a 500's): `detail` is one sentence naming the field; `errors` lists each
    problem of a refused request body (422)."""

    detail: str
    errors: list[FieldError] | None = None


# the error responses /openapi.json declares for the /v1 routes, instead of FastAPI's default 422
ERROR_RESPONSES = {
    401: {"model": ErrorBody, "description": "a key is needed (a server with --api-key-file)"},
    413: {"model": ErrorBody, "description": "the body is over the server's limit"},
    422: {"model": ErrorBody, "description": "a field is missing, unknown or out of its bounds"},
}


def request_models(cfg: ServeConfig) -> SimpleNamespace:
    """SearchRequest, AskRequest, BatchQuestion, BatchRequest with `cfg`'s bounds."""
    closed = ConfigDict(extra="forbid")
    K = Annotated[
        int | None,
        Field(
            ge=1,
            le=cfg.max_k,
            description=f"neighbours per hop, 1..{cfg.max_k} and at most the index's chunks "
            "(default: the server's cascade config, 10)",
        ),
    ]
    Hops = Annotated[
        int | None,
        Field(ge=1, le=cfg.max_hops, description=f"hops, 1..{cfg.max_hops} (default: the config's, 1)"),
    ]

    def text(what: str):
        return Annotated[
            str,
            Field(min_length=1, max_length=cfg.max_query_chars, description=f"the {what}; cut at 200 words"),
            _searchable(what),
        ]

    Query, Question = text("query"), text("question")
    Mode = Annotated[
        Literal["constrained", "free"] | None,
        Field(description="reader decoding (default: the reader's)"),
    ]
    Id = Annotated[str | int | None, Field(description="echoed as `id` in the answer")]

    class SearchRequest(BaseModel):
        """POST /v1/search: the cascade's ranked neighbours with every stage's evidence."""

        model_config = closed
        query: Query
        k: K = None
        hops: Hops = None

    class AskRequest(BaseModel):
        """POST /v1/ask: retrieve, read and cite (`retro ask`)."""

        model_config = closed
        question: Question
        id: Id = None
        k: K = None
        hops: Hops = None
        mode: Mode = None

    class BatchQuestion(BaseModel):
        """One question of a batch."""

        model_config = closed
        question: Question
        id: Id = None

    class BatchRequest(BaseModel):
        """POST /v1/ask/batch: several questions, answered in order on one snapshot."""

        model_config = closed
        questions: Annotated[
            list[BatchQuestion],
            Field(min_length=1, max_length=cfg.max_batch, description=f"1..{cfg.max_batch} questions"),
        ]
        k: K = None
        hops: Hops = None
        mode: Mode = None

    return SimpleNamespace(
        SearchRequest=SearchRequest,
        AskRequest=AskRequest,
        BatchQuestion=BatchQuestion,
        BatchRequest=BatchRequest,
    )


def _field(loc) -> str:
    """A pydantic location as a field path a person reads: ("body", "questions", 2, "question") ->
    "questions[2].question"; the body itself is "body"."""
    parts = [p for p in loc if p != "body"]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def _message(err: dict) -> str:
    """One pydantic error as a sentence: our own ValueErrors as they are, the rest with the value."""
    kind, msg = err.get("type", ""), str(err.get("msg", "invalid"))
    if kind == "json_invalid":
        reason = (err.get("ctx") or {}).get("error", "")
        return f"not valid JSON ({reason})" if reason else "not valid JSON"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return "unknown field (the fields are in /openapi.json)"
    if kind == "missing":
        return "required"
    value = err.get("input")
    shown = f" (got {value!r})" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
    if isinstance(value, str) and kind == "string_too_long":
        shown = f" (got {len(value)} characters)"
    if isinstance(value, list) and kind in ("too_long", "too_short"):
        shown = f" (got {len(value)})"
    return msg[:1].lower() + msg[1:] + shown


def _item(err: dict) -> dict:
    """{"field", "message"} of one error; the message does not repeat the field's name."""
    loc = tuple(err.get("loc", ()))
    if err.get("type") == "json_invalid":  # its loc is ("body", character position)
        at = next((p for p in loc if isinstance(p, int)), None)
        where = f" at character {at}" if at is not None else ""
        return {
            "field": "body",
            "message": _message(err).replace("not valid JSON", "not valid JSON" + where, 1),
        }
    field, message = _field(loc), _message(err)
    last = next((str(p) for p in reversed(loc) if isinstance(p, str) and p != "body"), None)
    if last and message.startswith(last + " "):  # check_query_text names what it checked
        message = message[len(last) + 1 :]
    return {"field": field, "message": message}


def validation_errors(errors: list[dict]) -> dict:
    """FastAPI's RequestValidationError errors -> {"detail": first sentence, "errors": [...]}."""
    items = [_item(e) for e in errors]
    if not items:
        items = [{"field": "body", "message": "invalid request"}]
    first = items[0]
    return {"detail": f"{first['field']}: {first['message']}", "errors": items}
