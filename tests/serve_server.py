"""A real `retro serve` in a subprocess for the server tests: started on a free port of 127.0.0.1,
ready when it prints its ready line, stopped with SIGTERM (uvicorn's graceful shutdown)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READY = re.compile(r"retro serve: ready on (http://\S+?)/? ")


@dataclass
class Server:
    proc: subprocess.Popen
    url: str  # http://127.0.0.1:PORT, no trailing slash
    log: Path  # the server's stderr

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(index: Path, *args: str, log: Path, timeout: float = 600) -> Server:
    """`retro serve INDEX --port 0 ARGS...`; fails the test with the server's stderr when it exits
    or does not print its ready line within `timeout` seconds."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "pipelines.cli", "serve", str(index), "--port", "0", *args]
    err = open(log, "w")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    found: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            m = READY.search(line)
            if m and not found:
                found.append(m.group(1))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=0.1)
    waited = 0.0
    while not found and proc.poll() is None and waited < timeout:
        reader.join(timeout=0.5)
        waited += 0.5
    if not found:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        raise AssertionError(f"retro serve did not start: {log.read_text()[-3000:]}")
    return Server(proc, found[0].rstrip("/"), log)
