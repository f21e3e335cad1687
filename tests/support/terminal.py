"""The command with its stderr on a pseudo-terminal, as a user at a terminal sees it."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios
import threading
from dataclasses import dataclass
from pathlib import Path

from tests.support.command import cli_command, cli_environment


@dataclass
class TerminalRun:
    returncode: int
    stdout: str
    # Everything written to the terminal, carriage returns included.
    terminal: str

    def frames(self) -> list[str]:
        """Each state of the terminal's lines: what was drawn between two `\\r` or `\\n`."""
        return [frame.strip() for frame in self.terminal.replace("\n", "\r").split("\r") if frame.strip()]


def run_on_terminal(
    cwd: Path, *args: str, env: dict[str, str] | None = None, columns: int = 200
) -> TerminalRun:
    """Runs the command with stderr on a pty `columns` wide (stdout on a pipe)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    written: list[bytes] = []

    def read_terminal() -> None:
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the command closed its side
                return
            if not chunk:
                return
            written.append(chunk)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        process = subprocess.Popen(
            cli_command(cwd, *args),
            cwd=cwd,
            env=cli_environment(cwd, env),
            stdout=subprocess.PIPE,
            stderr=terminal,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        os.close(terminal)
        stdout, _ = process.communicate(timeout=300)
        reader.join(timeout=10)
    finally:
        os.close(controller)
    return TerminalRun(process.returncode, stdout, b"".join(written).decode("utf-8", "replace"))
