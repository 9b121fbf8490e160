"""Supervision of the background services trivas starts itself (broker, Connect, app).

A service is a detached process with a pid file and a log file in known places; ``start``
reuses a live one, ``stop`` asks politely (SIGTERM) and insists (SIGKILL) only after a grace
period, so the broker can flush its logs and close cleanly.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_held_signals: list[int] | None = None


def stop_on_signals() -> None:
    """Make SIGINT, SIGTERM and SIGHUP raise ``KeyboardInterrupt`` (so ``finally`` blocks stop
    what was started), except while a child is being recorded (:func:`recording_child`)."""

    def interrupt(signum: int, _frame: object) -> None:
        if _held_signals is not None:
            _held_signals.append(signum)
            return
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for signum in STOP_SIGNALS:
        signal.signal(signum, interrupt)


@contextmanager
def recording_child() -> Iterator[None]:
    """Hold stop signals from starting a child until its pid is recorded: an interruption in
    between would leave a process nobody knows to stop. A held signal is raised on exit."""
    global _held_signals
    _held_signals = []
    try:
        yield
    finally:
        held, _held_signals = _held_signals, None
        if held:
            raise KeyboardInterrupt(signal.Signals(held[0]).name)


@dataclass(frozen=True)
class Service:
    """Where a supervised process keeps its pid and its log."""

    name: str
    run_dir: Path
    log_file: Path

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    def pid(self) -> int | None:
        """Pid of the live process, or None (a stale pid file is removed)."""
        if not self.pid_file.exists():
            return None
        pid = int(self.pid_file.read_text().strip() or 0)
        if pid and pid_alive(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(
        self,
        command: Sequence[str],
        ready: Callable[[], bool],
        timeout_s: float = 60.0,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> int:
        """Start ``command`` detached unless already running; wait until ``ready()``."""
        existing = self.pid()
        if existing is not None:
            wait_until(ready, timeout_s, f"{self.name} (pid {existing}) to be ready", self.log_file)
            return existing
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log, recording_child():
            process = subprocess.Popen(
                list(command),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **(env or {})},
                cwd=cwd,
            )
            self.pid_file.write_text(str(process.pid))

        def ready_or_died() -> bool:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {process.returncode}; see {self.log_file}:\n"
                    + tail(self.log_file)
                )
            return ready()

        wait_until(ready_or_died, timeout_s, f"{self.name} to be ready", self.log_file)
        return process.pid

    def stop(self, grace_s: float = 30.0, signum: int = signal.SIGTERM) -> bool:
        """Stop the process (``signum``, then SIGKILL after ``grace_s``); False if not running."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signum)
        deadline = time.monotonic() + grace_s
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            while pid_alive(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True


def log4j2_properties(log_file: Path, levels: Mapping[str, str]) -> str:
    """A log4j2 configuration for a JVM service: INFO and above to ``log_file``, with the
    given ``logger name → level`` overrides (the broker and Connect are noisy at INFO)."""
    lines = [
        "status = warn",
        "appender.file.type = File",
        "appender.file.name = file",
        f"appender.file.fileName = {log_file}",
        "appender.file.layout.type = PatternLayout",
        "appender.file.layout.pattern = [%d] %p %m (%c)%n",
        "rootLogger.level = INFO",
        "rootLogger.appenderRef.file.ref = file",
    ]
    for index, (name, level) in enumerate(levels.items()):
        lines += [f"logger.l{index}.name = {name}", f"logger.l{index}.level = {level}"]
    return "\n".join(lines) + "\n"


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a running (not zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().split(") ", 1)[1][0] != "Z"
        except (OSError, IndexError):
            return False
    return True


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


# Ports handed out by this process, so two calls never give the same one before either is bound.
_handed_out: set[int] = set()
LOWEST_SERVICE_PORT = 10000


def ephemeral_ports() -> range:
    """The range the kernel takes outgoing connections' local ports from. A service port chosen
    inside it can be taken by any client's connection between choosing and binding it."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def port_bindable(port: int) -> bool:
    """True if a listener could bind ``127.0.0.1:port`` now (nobody listens or connects from it)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(count: int = 1) -> int:
    """The first of ``count`` consecutive free TCP ports below the ephemeral range (a cluster's
    nodes take consecutive ports), never one this process handed out before."""
    top = min(ephemeral_ports().start, 65536) - count
    for _ in range(500):
        first = random.randrange(LOWEST_SERVICE_PORT, top)
        block = range(first, first + count)
        if _handed_out.isdisjoint(block) and all(port_bindable(p) for p in block):
            _handed_out.update(block)
            return first
    raise RuntimeError(f"no {count} consecutive free ports between {LOWEST_SERVICE_PORT} and {top}")


def free_port() -> int:
    """A TCP port nobody listens on right now, outside the ephemeral range."""
    return free_port_block(1)


def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, log_file: Path | None = None
) -> None:
    """Poll ``condition`` until true; a TimeoutError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    detail = f"\n{tail(log_file)}" if log_file else ""
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}{detail}")


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file (empty if it does not exist)."""
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
