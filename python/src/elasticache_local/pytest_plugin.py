"""pytest fixtures running ElastiCache Local for a test session.

- `elasticache_local` (session scope): one emulator for the whole session (one per worker
  under pytest-xdist), stopped at the end. It has `endpoint_url`, `region`,
  `client(service="elasticache", **kwargs)`, `reset()`, `health()`.
- `elasticache` (function scope): the same emulator, reset *before* the test, so every test
  starts with no resources and no nodes, and what a failing test made is still there while
  it fails (the next test, or the end of the session, clears it).

Options, on the command line or as ini keys (`elasticache_local_binary`, ...):
`--elasticache-local-binary`, `--elasticache-local-region`, `--elasticache-local-start-timeout`.
With ELASTICACHE_LOCAL_TIMING=1 in the environment, the terminal summary prints how long after
the pytest process started the server answered its health check and a client made by the
fixture had its first API call answered.
"""

from __future__ import annotations

import os
import time
from typing import Iterator, Optional

import pytest

from . import Emulator, EmulatorError, find_binary

OPTIONS = {
    "binary": ("path of the elasticache-local binary (default: the one pip installed)", None),
    "region": ("region of the emulator and of the fixture's clients", "us-east-1"),
    "start_timeout": ("seconds to wait for the emulator to answer its health check", "30"),
}


def _process_age() -> Optional[float]:
    """Seconds since this process started (Linux), so figures include Python's and pytest's
    own start-up."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
            return float(uptime.read().split()[0]) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


_STARTED = time.monotonic() - (_process_age() or 0.0)
_emulators = []


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("elasticache-local")
    for name, (help, default) in OPTIONS.items():
        flag = "--elasticache-local-" + name.replace("_", "-")
        group.addoption(flag, dest="elasticache_local_" + name, help=help)
        parser.addini("elasticache_local_" + name, help=help, default=default)


def _option(config: pytest.Config, name: str) -> Optional[str]:
    key = "elasticache_local_" + name
    return config.getoption(key) or config.getini(key) or None


def pytest_report_header(config: pytest.Config) -> str:
    try:
        return f"elasticache-local: {find_binary(_option(config, 'binary'))}"
    except EmulatorError as e:
        return f"elasticache-local: {e}"


@pytest.fixture(scope="session")
def elasticache_local(pytestconfig: pytest.Config) -> Iterator[Emulator]:
    try:
        emulator = Emulator(
            binary=_option(pytestconfig, "binary"),
            region=_option(pytestconfig, "region") or "us-east-1",
            start_timeout=float(_option(pytestconfig, "start_timeout") or 30),
        ).start()
    except EmulatorError as e:
        pytest.fail(str(e), pytrace=False)
    _emulators.append(emulator)
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def elasticache(elasticache_local: Emulator) -> Emulator:
    elasticache_local.reset()
    return elasticache_local


def pytest_terminal_summary(terminalreporter) -> None:
    if not os.environ.get("ELASTICACHE_LOCAL_TIMING") or not _emulators:
        return
    emulator = _emulators[0]

    def since_start(at: Optional[float]) -> str:
        return "-" if at is None else f"{at - _STARTED:.2f} s"

    terminalreporter.write_line(
        f"elasticache-local: healthy {since_start(emulator.ready_at)}, first API call answered "
        f"{since_start(emulator.first_call_at)} after pytest started"
    )
