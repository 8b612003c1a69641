"""ElastiCache Local from Python: start the emulator's binary, point boto3 at it, stop it.

The wheel installs the `elasticache-local` binary into the environment's scripts directory;
`Emulator` runs it on a free loopback port with ephemeral state. The pytest plugin
(`elasticache_local.pytest_plugin`, registered through the `pytest11` entry point) wraps it
in fixtures.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sysconfig
import tempfile
import time
import urllib.request
from typing import Any, Optional, Sequence

__all__ = ["Emulator", "EmulatorError", "find_binary", "check_engines"]

BINARY = "elasticache-local"
ENGINES = ("redis-server", "memcached")
INSTALL_ENGINES = (
    "install them with `sudo apt-get install redis-server memcached` "
    "(or scripts/install-engines.sh from the elasticache-local repository, which `make run` runs)"
)


class EmulatorError(RuntimeError):
    """The emulator could not be found, started or reached."""


def find_binary(explicit: Optional[str] = None) -> str:
    """The binary to run: `explicit` if given, else the one this package's wheel installed
    (the scripts directory of this environment, or of the user scheme after
    `pip install --user`), else the first on PATH."""
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise EmulatorError(f"{explicit} is not an executable file")
        return explicit
    dirs = [sysconfig.get_path("scripts")]
    user_scheme = getattr(sysconfig, "get_preferred_scheme", lambda _: f"{os.name}_user")("user")
    try:
        dirs.append(sysconfig.get_path("scripts", user_scheme))
    except KeyError:
        pass
    for path in [os.pathsep.join(d for d in dirs if d), None]:  # None: PATH
        found = shutil.which(BINARY, path=path)
        if found:
            return found
    raise EmulatorError(
        f"{BINARY} not found in {', '.join(dirs)} or on PATH: "
        "install the elasticache-local wheel, or name the binary with --elasticache-local-binary"
    )


def check_engines() -> None:
    """The emulator's nodes are real engine processes; fail early and clearly without them."""
    missing = [engine for engine in ENGINES if shutil.which(engine) is None]
    if missing:
        raise EmulatorError(f"{' and '.join(missing)} not found on PATH: {INSTALL_ENGINES}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulator:
    """One `elasticache-local serve --ephemeral` process; a context manager."""

    def __init__(
        self,
        binary: Optional[str] = None,
        region: str = "us-east-1",
        start_timeout: float = 30.0,
        args: Sequence[str] = (),
    ):
        self.binary = find_binary(binary)
        self.region = region
        self.start_timeout = start_timeout
        self.args = list(args)
        self.endpoint_url = ""
        # time.monotonic() when the server first answered its health check, and when a client
        # made by client() first had an API call answered (for start-up figures).
        self.ready_at: Optional[float] = None
        self.first_call_at: Optional[float] = None
        self._process: Optional[subprocess.Popen] = None
        self._log = None

    def start(self) -> "Emulator":
        check_engines()
        port = _free_port()
        self.endpoint_url = f"http://127.0.0.1:{port}"
        self._log = tempfile.TemporaryFile()
        command = [self.binary, "serve", "--listen", f"127.0.0.1:{port}", "--ephemeral",
                   "--region", self.region, *self.args]
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = self._process.poll()
            if code is not None:
                raise EmulatorError(f"{BINARY} exited with status {code}:\n{self.log()}")
            try:
                if self.health().get("status") == "ok":
                    self.ready_at = time.monotonic()
                    return self
            except OSError:  # not listening yet
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise EmulatorError(
                    f"{BINARY} not healthy after {self.start_timeout} s:\n{self.log()}"
                )
            time.sleep(0.02)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (the server stops its nodes), then SIGKILL if it is still there after
        `timeout` seconds (its nodes die with it either way)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def log(self, tail: int = 60) -> str:
        """The last lines the server wrote (stdout and stderr)."""
        if self._log is None:
            return ""
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").splitlines()
        return "\n".join(lines[-tail:])

    def _admin(self, method: str, path: str, timeout: float) -> dict:
        request = urllib.request.Request(self.endpoint_url + path, method=method)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body.strip() else {}

    def health(self) -> dict:
        """GET /_emulator/health: status, version, engines, zones."""
        return self._admin("GET", "/_emulator/health", timeout=1)

    def reset(self) -> None:
        """POST /_emulator/reset: every resource deleted and every node stopped on return."""
        self._admin("POST", "/_emulator/reset", timeout=120)

    def client(self, service: str = "elasticache", **kwargs: Any):
        """A boto3 client for this emulator, with test credentials; kwargs go to boto3."""
        import boto3  # imported here so that starting the binary alone does not need it

        settings = dict(
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        settings.update(kwargs)
        client = boto3.client(service, **settings)
        if self.first_call_at is None:
            client.meta.events.register("after-call", self._note_first_call)
        return client

    def _note_first_call(self, **_: Any) -> None:
        if self.first_call_at is None:
            self.first_call_at = time.monotonic()
