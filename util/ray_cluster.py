"""Ray as the engine beyond one machine: the one place that checks for it and connects to a cluster.

`--engine ray` on `retro index build`, `search`, `ask` and `serve` runs the per-shard work (building
a shard, scoring a query against a shard) in Ray tasks and actors (index/ray_build.py,
pipelines/ray_search.py) with the same functions the local path calls. Ray is an optional extra
(`pip install 'retro[ray]'`) and is imported only once a command has been checked, so a bad argument
is refused in a second and the base install never needs it.

`--ray-address`: none (the default) starts a local cluster with this machine's CPUs; `auto` joins the
cluster this machine belongs to (`ray start --head` on one node, `ray start --address ...` on the
others); `HOST:PORT` or `ray://HOST:PORT` joins that one. Every node must have retro installed and see
the index folder at the same path (a shared file system).
"""

from __future__ import annotations

import argparse
import importlib.util
import os

ENGINES = ("local", "ray")
INSTALL_HINT = "pip install 'retro[ray]'"


def add_engine_args(p: argparse.ArgumentParser, what: str) -> None:
    """--engine and --ray-address (util/ray_cluster.py), for every command that can run on Ray."""
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help=f"local: this process; ray: {what} (needs pip install 'retro[ray]')",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        help="with --engine ray: auto (join this machine's cluster), HOST:PORT or ray://HOST:PORT "
        "(default: start a local cluster with this machine's CPUs)",
    )


def check_engine(engine: str, address: str | None) -> None:
    """Refuse a bad --engine / --ray-address pair, or --engine ray without the ray package, with a
    one-line ValueError (before anything heavy is imported)."""
    if engine not in ENGINES:
        raise ValueError(f"--engine {engine}: expected one of {', '.join(ENGINES)}")
    if address is not None and engine != "ray":
        raise ValueError("--ray-address: only with --engine ray")
    if address is not None and not address.strip():
        raise ValueError("--ray-address: empty (give auto, HOST:PORT or ray://HOST:PORT)")
    if engine == "ray" and importlib.util.find_spec("ray") is None:
        raise ValueError(f"--engine ray needs the ray package, which is not installed: {INSTALL_HINT}")


def connect(address: str | None = None):
    """The `ray` module, connected: to the running session when there is one (a test's, a caller's),
    else a new local cluster with this machine's CPUs (`address` None), else the cluster at `address`."""
    try:
        import ray
    except ImportError:
        raise ValueError(f"the Ray engine needs the ray package: {INSTALL_HINT}") from None
    if not ray.is_initialized():
        if address is None:
            ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, logging_level="WARNING")
        else:
            try:
                ray.init(address=address, logging_level="WARNING")
            except ConnectionError as e:
                raise ValueError(f"--ray-address {address}: cannot join a Ray cluster there ({e})") from None
    return ray


def task_env() -> dict:
    """Ray options that carry this process's fault injection (util/progress.py: RETRO_KILL_AT,
    RETRO_KILL_ONCE) into the workers, so the crash tests reach a kill point inside a Ray task; {} when
    none is set (no runtime environment, no extra worker start)."""
    from util.progress import KILL_ENV, KILL_ONCE_ENV

    env = {k: os.environ[k] for k in (KILL_ENV, KILL_ONCE_ENV) if os.environ.get(k)}
    return {"runtime_env": {"env_vars": env}} if env else {}
