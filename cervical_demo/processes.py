"""The demo's background processes (virtual radio, hub, web view): started with their output in
log files and their pids in ``DIR/pids/``, so ``cervical demo stop`` finds and stops them even
after the demo itself has ended or was interrupted."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PIDS_DIR = "pids"


class DemoProcessError(RuntimeError):
    """A background process did not start or ended early; the message ends with its log."""


def cervical_command() -> list[str]:
    """The ``cervical`` console script of this environment (next to its Python)."""
    script = Path(sys.executable).with_name("cervical")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from edge_runtime.console import main; main()"]


class Background:
    """One named background process of the demo."""

    def __init__(self, out_dir: Path, name: str, args: list[str], log: Path) -> None:
        self.out_dir, self.name, self.args, self.log = out_dir, name, args, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid_file(self) -> Path:
        return self.out_dir / PIDS_DIR / f"{self.name}.pid"

    def start(self, detach: bool = False) -> Background:
        """``detach``: its own session, so it outlives the demo and ignores the terminal's Ctrl-C
        (the web view); otherwise it shares the demo's fate."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "160"}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                cervical_command() + self.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=detach,
            )
        self.pid_file.write_text(f"{self.proc.pid}\n")
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def check_running(self) -> None:
        if not self.running():
            code = None if self.proc is None else self.proc.returncode
            raise DemoProcessError(
                f"the {self.name} process ended (exit {code}); last lines of {self.log}:\n"
                + self.log_tail()
            )

    def wait_for_log(self, text: str, timeout_s: float) -> None:
        """Until the log holds ``text`` (blocking: for use off the event loop)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.log.is_file() and text in self.log.read_text(errors="replace"):
                return
            self.check_running()
            time.sleep(0.1)
        raise DemoProcessError(
            f"the {self.name} process did not log {text!r} within {timeout_s:.0f} s; last lines "
            f"of {self.log}:\n{self.log_tail()}"
        )

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit code."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.pid_file.unlink(missing_ok=True)
            return self.proc.returncode
        return None


def _is_ours(pid: int) -> bool:
    """The pid still names a ``cervical`` process (pids are reused after a reboot)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(part.endswith(b"cervical") or b"edge_runtime.console" in part for part in cmdline)


def stop_recorded(out_dir: Path, timeout_s: float = 10.0) -> list[str]:
    """Stop every process recorded under ``out_dir/pids`` that still runs; returns their names."""
    stopped = []
    for pid_file in sorted((out_dir / PIDS_DIR).glob("*.pid")):
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            pid_file.unlink(missing_ok=True)
            continue
        if _is_ours(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while _is_ours(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _is_ours(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            stopped.append(pid_file.stem)
        pid_file.unlink(missing_ok=True)
    return stopped
