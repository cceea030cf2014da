"""The FastAPI app: health, index info, search, ask (one and a batch), the page, and their guards.

    GET  /              the page (serve/static/): a question box, the answer, its evidence and latency
    GET  /health        status, generation, snapshot, chunks, reader (no key needed)
    GET  /v1/index      docs, tokens, chunks, shards, generation of the snapshot served, and the limits
    POST /v1/search     {"query", "k"?, "hops"?}           -> SearchResult.to_dict()  (`retro search --json`)
    POST /v1/ask        {"question", "id"?, "k"?, "hops"?, "mode"?} -> SearchResult.ask_dict(id) (`retro ask --json`)
    POST /v1/ask/batch  {"questions": [{"question", "id"?}], "k"?, "hops"?, "mode"?} -> {"answers": [...]}
    GET  /openapi.json  the schema, with every bound

Every answer body is the typed result the CLI prints (pipelines/results.py), nothing added; which
snapshot served it travels in headers: X-Retro-Generation (index.json's generation), X-Retro-Snapshot
(this server's snapshot number) and X-Retro-Chunks (that snapshot's chunk count).

Concurrency: the endpoints are plain functions, so FastAPI runs each request in its thread pool, and
there is no global lock. What the libraries do not make thread-safe is either loaded before the first
request (every lazy load of the index, the cascade and the reader: serve/snapshot.py, `Reader.warm`)
or locked alone: the Hugging Face tokenizer MiniLM's forward passes share
(`pipelines.dense.tokenizer_lock`, held for the tokenizer call only). torch, FAISS and JAX release
the GIL in their kernels.

Guards: a body over `max_body_bytes` is refused with 413 before it is read (`BodyLimit`); a bad
request is a 422 whose `detail` is one sentence naming the field (serve/api.py); with an API key
every /v1/ route needs `Authorization: Bearer KEY` (compared in constant time), else 401.
"""

import hmac
import sys
import traceback
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from pipelines.answer import ask
from serve.api import ERROR_RESPONSES, request_models, validation_errors
from serve.config import ServeConfig
from serve.snapshot import Live, Snapshot

STATIC = Path(__file__).parent / "static"


class BodyLimit:
    """ASGI middleware: a request body larger than `max_bytes` gets 413 before any of it is parsed
    (by its Content-Length, or, when it is sent in chunks, as soon as the count passes the limit)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def _refuse(self, scope, receive, send, status: int, detail: str) -> None:
        await JSONResponse({"detail": detail}, status, headers={"Connection": "close"})(scope, receive, send)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or ())
        length = headers.get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                return await self._refuse(scope, receive, send, 400, "Content-Length: not a number")
            if n > self.max_bytes:
                return await self._refuse(
                    scope, receive, send, 413, f"body: {n} bytes is over the limit of {self.max_bytes}"
                )
        parts, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return None
            parts.append(message.get("body", b""))
            size += len(parts[-1])
            if size > self.max_bytes:
                return await self._refuse(
                    scope, receive, send, 413, f"body: over the limit of {self.max_bytes} bytes"
                )
            if not message.get("more_body"):
                break
        body, replayed = b"".join(parts), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def _stamped(content: dict, snap: Snapshot) -> JSONResponse:
    """The body as it is, with the snapshot that answered in headers."""
    return JSONResponse(
        content,
        headers={
            "X-Retro-Generation": str(snap.generation),
            "X-Retro-Snapshot": str(snap.serial),
            "X-Retro-Chunks": str(snap.index.num_chunks),
        },
    )


def create_app(live: Live, cfg: ServeConfig, reader=None, api_key: str | None = None) -> FastAPI:
    """The app over `live`'s snapshots; `reader` None serves evidence only (answer null, as
    `retro ask --no-reader`); `api_key` None leaves /v1/ open (the CLI allows that on loopback only)."""
    from pipelines.cli import version

    m = request_models(cfg)
    app = FastAPI(
        title="retro",
        version=version(),
        description="Search and ask a retro index: the cascade's ranked evidence, the RETRO reader's "
        "answer with citations, and each stage's latency.",
    )
    app.add_middleware(BodyLimit, max_bytes=cfg.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        return JSONResponse(validation_errors(list(exc.errors())), 422)

    @app.exception_handler(ValueError)
    async def _bad_value(request, exc: ValueError):  # the pipeline's own one-line input errors
        return JSONResponse({"detail": str(exc)}, 422)

    @app.exception_handler(Exception)
    async def _failed(request, exc: Exception):
        traceback.print_exception(exc, file=sys.stderr)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}); see the server's log"}, 500)

    bearer = HTTPBearer(auto_error=False, description="the key of --api-key-file, when the server has one")

    def require_key(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if api_key is None:
            return
        given = (creds.credentials if creds is not None else "").encode()
        if not hmac.compare_digest(given, api_key.encode()):
            raise HTTPException(
                401,
                "Authorization: this server needs the header 'Authorization: Bearer KEY' with its key",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def checked(snap: Snapshot, k: int | None, mode: str | None) -> None:
        """What the schema cannot know: k against this snapshot's chunks, a mode without a reader."""
        if k is not None and k > snap.index.num_chunks:
            raise HTTPException(422, f"k: {k} is larger than the index ({snap.index.num_chunks} chunks)")
        if mode is not None and reader is None:
            raise HTTPException(422, "mode: this server has no reader (started with --no-reader)")

    def answer(snap: Snapshot, question: str, qid, k, hops, mode) -> dict:
        """One question on one snapshot, as `retro ask` answers it."""
        if reader is None:  # evidence only: the cascade's own hops
            return snap.cascade.search(question, k=k, hops=hops).ask_dict(qid)
        hops = snap.cascade.cfg.hops if hops is None else hops
        return ask(snap.cascade, reader, question, k=k, hops=hops, mode=mode).ask_dict(qid)

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/health")
    def health() -> dict:
        snap = live.current
        return {
            "status": "ok",
            "generation": snap.generation,
            "snapshot": snap.serial,
            "chunks": snap.index.num_chunks,
            "reader": None if reader is None else reader.name,
            "last_error": live.last_error,
        }

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], responses=ERROR_RESPONSES)

    @v1.get("/index")
    def index_info():
        snap = live.current
        limits = {
            "max_k": min(cfg.max_k, snap.index.num_chunks),
            "max_hops": cfg.max_hops,
            "max_batch": cfg.max_batch,
            "max_query_chars": cfg.max_query_chars,
            "max_body_bytes": cfg.max_body_bytes,
        }
        info = {**snap.info(), "reader": None if reader is None else reader.name, "limits": limits}
        return _stamped(info, snap)

    @v1.post("/search")
    def search(req: m.SearchRequest):
        snap = live.current  # one snapshot for the whole request, however many hops
        checked(snap, req.k, None)
        return _stamped(snap.cascade.search(req.query, k=req.k, hops=req.hops).to_dict(), snap)

    @v1.post("/ask")
    def ask_one(req: m.AskRequest):
        snap = live.current
        checked(snap, req.k, req.mode)
        return _stamped(answer(snap, req.question, req.id, req.k, req.hops, req.mode), snap)

    @v1.post("/ask/batch")
    def ask_batch(req: m.BatchRequest):
        snap = live.current  # every question of the batch on the same snapshot
        checked(snap, req.k, req.mode)
        answers = [answer(snap, q.question, q.id, req.k, req.hops, req.mode) for q in req.questions]
        return _stamped({"answers": answers}, snap)

    app.include_router(v1)
    return app
