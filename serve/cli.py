"""`retro serve IDX`: open the index once, warm every model, answer many clients over HTTP.

    retro serve IDX [--host 127.0.0.1] [--port 8000] [--api-key-file F] [--reader DIR | --no-reader]

Every argument is checked before anything heavy loads (torch, MiniLM, jax, the reader take 25-45 s):
the index opens (manifest and shard files), the config parses, the port is bound (so "in use" comes
in a second), and a host that is not loopback needs --api-key-file: a server reachable from the
network answers only clients that send its key. Then the snapshot is warmed (serve/snapshot.py) and
the reader compiled for every neighbour count a request may ask (`Reader.warm` per K bucket), and
one line on stdout says where it listens: `retro serve: ready on http://HOST:PORT/ ...`. Requests
that connect during warm-up wait in the socket's queue. With --port 0 the system picks a free port,
and the ready line names it.
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import socket
import time
from pathlib import Path

from serve.config import ServeConfig
from util.configs import resolve_config
from util.ray_cluster import add_engine_args, check_engine

MIN_KEY_CHARS = 16  # a shorter key is refused: it could be guessed


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_api_key(path: str) -> str:
    """The key in file `path` (surrounding whitespace dropped); ValueError/OSError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--api-key-file {path}: no such file")
    key = p.read_text(encoding="utf-8", errors="strict").strip()
    if len(key) < MIN_KEY_CHARS or any(c.isspace() for c in key):
        raise ValueError(
            f"--api-key-file {path}: expected one key of at least {MIN_KEY_CHARS} characters without spaces"
        )
    return key


def warm_ks(reader, max_k: int) -> list[int]:
    """Neighbour counts to compile the reader for: each of its K buckets (`k_buckets`) up to the one
    that holds max_k, else every k from 1 to max_k."""
    buckets = sorted(getattr(reader, "k_buckets", ()) or ())
    if not buckets:
        return list(range(1, max_k + 1))
    top = next((b for b in buckets if b >= max_k), buckets[-1])
    return [b for b in buckets if b <= top]


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a one-line ValueError (in use, no such address)."""
    if not 0 <= port <= 65535:
        raise ValueError(f"--port {port}: must be 0..65535 (0: any free port)")
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return socket.create_server((host, port), family=family, backlog=128, reuse_port=False)
    except OSError as e:
        raise ValueError(f"--host/--port {host}:{port}: cannot listen ({e.strerror or e})") from None


def _serve(args: argparse.Namespace) -> int:
    from index import Index
    from pipelines.answer import load_reader
    from pipelines.cascade import Cascade
    from pipelines.cascade_config import cascade_config

    key = read_api_key(args.api_key_file) if args.api_key_file else None
    if key is None and not is_loopback(args.host):
        raise ValueError(
            f"--host {args.host}: not a loopback address; a server others can reach needs "
            "--api-key-file F (clients then send 'Authorization: Bearer KEY')"
        )
    check_engine(args.engine, args.ray_address)
    cfg = cascade_config(args.config, list(args.set or []))
    scfg = resolve_config(ServeConfig, None, list(args.limit or []))  # --limit max_k=40 ...
    Cascade(Index.open(args.index), cfg).budgets()  # a config k larger than the index fails now
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as e:
        raise ValueError(
            f"retro serve needs the serve extra ({e.name} is missing): pip install -e '.[serve]'"
        ) from None
    if args.reader is not None and not Path(args.reader).is_dir():
        raise ValueError(f"--reader {args.reader}: no such checkpoint folder")
    sock = listen(args.host, args.port)  # a port in use fails now, before jax and MiniLM load
    reader = None if args.no_reader else load_reader(args.reader)
    t0 = time.perf_counter()
    from serve.app import create_app
    from serve.snapshot import Live

    opener = Index.open
    if args.engine == "ray":  # every snapshot's shards held by Ray actors (pipelines/ray_search.py)
        from pipelines.ray_search import open_index

        opener = functools.partial(open_index, engine="ray", address=args.ray_address)
    live = Live(args.index, cfg, watch_s=scfg.watch_s, opener=opener)
    if reader is not None:
        # every decode shape a request can need is compiled before the first one: up to max_k, not
        # the index's size, which an append may raise
        for k in warm_ks(reader, scfg.max_k):
            reader.warm(k)
    app = create_app(live, scfg, reader, key)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    snap = live.current
    print(
        f"retro serve: ready on http://{shown}:{port}/ (index {args.index}: generation {snap.generation}, "
        f"{snap.index.num_chunks} chunks; reader {reader.name if reader else 'none'}; "
        f"warm-up {time.perf_counter() - t0:.1f} s)",
        flush=True,
    )
    live.start()
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=10)
    )
    try:
        server.run(sockets=[sock])
    finally:
        live.stop()
        sock.close()
    return 0


def register(subparsers) -> None:
    """Add `serve`."""
    p = subparsers.add_parser(
        "serve", help="an HTTP server over one index: search, ask, a page to ask from (FastAPI)"
    )
    p.add_argument("index", help="index folder built by `retro index build` (appends are picked up live)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (not loopback: --api-key-file)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (0: any free port)")
    p.add_argument(
        "--api-key-file",
        default=None,
        help="file holding the key /v1/ requests must send as 'Authorization: Bearer KEY' (default: none, "
        "loopback only)",
    )
    p.add_argument("--reader", default=None, help="reader checkpoint folder (default: the shipped one)")
    p.add_argument(
        "--no-reader", action="store_true", help="evidence only: answers are null, nothing compiles"
    )
    p.add_argument("--config", help="YAML file of CascadeConfig fields (default: none, the built-in ones)")
    p.add_argument("--set", action="append", metavar="key=value", help="CascadeConfig override (repeatable)")
    p.add_argument(
        "--limit",
        action="append",
        metavar="key=value",
        help="ServeConfig bound (repeatable): max_k, max_hops, max_batch, max_query_chars, max_body_bytes, "
        "watch_s (default: 20, 4, 16, 13000, 262144, 1.0)",
    )
    add_engine_args(p, "the shards' query work runs in Ray actors, the merge in the server")
    p.set_defaults(func=_serve)
