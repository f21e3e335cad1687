"""Warehouses on this machine for the destination tests: a real PostgreSQL server, BigQuery
through `bqemulator` and Snowflake through `fakesnow`'s HTTP server.

The two emulators cannot share the project's environment: fakesnow 0.12 pins sqlglot 30.22.x
(with which dlt 1.31's `pipeline.dataset()` breaks, hence the project's `sqlglot<30.22`),
bqemulator 1.4 pins sqlglot < 30.12, and fakesnow 0.11 pins duckdb 1.5. Both serve over HTTP,
so each runs from its own virtualenv under `<venv>/doubles/` (built on first use, or ahead of
the tests by `python tests/support/destination_doubles.py`), and the connector talks to them with the
same client libraries it uses against the real warehouses. Every adjustment the emulators need
lives in their launch scripts in `tests/support/doubles/`, never in the connector.

Run as a script, builds both virtualenvs (CI does it before the tests).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DOUBLES_DIR = Path(__file__).parent / "doubles"
SIDE_ENVS_DIR = Path(sys.prefix) / "doubles"
# What each emulator's virtualenv holds; numpy because bqemulator's DuckDB UDFs need it.
SIDE_ENV_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "bqemulator": ("bqemulator==1.4.0", "numpy"),
    # snowflake-connector-python 5 lacks the `converter` module fakesnow imports.
    "fakesnow": ("fakesnow[server]==0.12.1", "snowflake-connector-python<5"),
}
STARTUP_SECONDS = 60.0


class DoubleUnavailable(Exception):
    """The stand-in cannot run on this machine; the message says why and how to fix it."""


# --------------------------------------------------------------------------- side virtualenvs


def side_python(name: str) -> Path:
    """The Python of the emulator's own virtualenv, built (once) if it is not there yet.

    `.ready` holds the requirements it was built with: a change of pins rebuilds it.
    """
    env_dir = SIDE_ENVS_DIR / name
    python = env_dir / "bin" / "python"
    ready = env_dir / ".ready"
    requirements = SIDE_ENV_REQUIREMENTS[name]
    if ready.exists() and ready.read_text() == "\n".join(requirements):
        return python
    shutil.rmtree(env_dir, ignore_errors=True)  # half-built, or built with other pins
    try:
        subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, capture_output=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *requirements],
            check=True,
            capture_output=True,
            text=True,
            timeout=900,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        output = str(getattr(error, "stderr", "") or "")
        raise DoubleUnavailable(
            f"could not install {' '.join(requirements)} into {env_dir} (PyPI unreachable?): "
            f"{output.strip()[-500:]}"
        ) from error
    ready.write_text("\n".join(requirements))
    return python


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A stand-in server this test run started, with its log for failure messages."""

    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    command: list[str], log: Path, ready_url: str, env: dict[str, str] | None = None
) -> ServerProcess:
    """Starts the command and waits until `ready_url` answers (any HTTP status counts)."""
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    server = ServerProcess(process, log)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DoubleUnavailable(f"{command[1]} exited with {process.returncode}:\n{server.log_tail()}")
        try:
            urllib.request.urlopen(ready_url, timeout=2).close()
            return server
        except urllib.error.HTTPError:
            return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise DoubleUnavailable(f"{command[1]} did not answer {ready_url} within {STARTUP_SECONDS}s")


# --------------------------------------------------------------------------- BigQuery


BIGQUERY_PROJECT = "polyai-test"


@contextlib.contextmanager
def bigquery_emulator(work_dir: Path) -> Iterator[str]:
    """bqemulator on 127.0.0.1; yields its REST endpoint (`http://127.0.0.1:<port>`)."""
    python = side_python("bqemulator")
    rest_port, grpc_port = free_port(), free_port()
    command = [
        str(python),
        str(DOUBLES_DIR / "bqemulator_server.py"),
        "start",
        "--rest-host=127.0.0.1",
        f"--rest-port={rest_port}",
        "--grpc-host=127.0.0.1",
        f"--grpc-port={grpc_port}",
        f"--project={BIGQUERY_PROJECT}",
        "--ephemeral",
        "--log-level=warning",
    ]
    endpoint = f"http://127.0.0.1:{rest_port}"
    server = start_server(
        command, work_dir / "bqemulator.log", f"{endpoint}/bigquery/v2/projects/{BIGQUERY_PROJECT}/datasets"
    )
    try:
        yield endpoint
    finally:
        server.stop()


# --------------------------------------------------------------------------- Snowflake


@contextlib.contextmanager
def snowflake_emulator(work_dir: Path) -> Iterator[tuple[str, int]]:
    """fakesnow's server on 127.0.0.1; yields (host, port)."""
    python = side_python("fakesnow")
    port = free_port()
    command = [str(python), str(DOUBLES_DIR / "fakesnow_server.py"), "127.0.0.1", str(port)]
    # Its stages (PUT files) go to a folder of this test run, not to the user's temp folder.
    env = {**os.environ, "TMPDIR": str(work_dir)}
    server = start_server(command, work_dir / "fakesnow.log", f"http://127.0.0.1:{port}/", env=env)
    try:
        yield "127.0.0.1", port
    finally:
        server.stop()


# --------------------------------------------------------------------------- PostgreSQL

POSTGRES_INSTALL_HINT = "apt-get install postgresql (Debian/Ubuntu) puts initdb and pg_ctl in place"


def postgres_bin_dir() -> Path:
    """Where initdb and pg_ctl are: on PATH, or Debian's versioned folder."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if candidates:
        return candidates[0].parent
    raise DoubleUnavailable(f"PostgreSQL server binaries (initdb, pg_ctl) not found: {POSTGRES_INSTALL_HINT}")


def postgres_runner() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its binaries as the `postgres` user."""
    if os.geteuid() != 0:
        return []
    if shutil.which("runuser") is None:
        raise DoubleUnavailable("running as root without `runuser` to start PostgreSQL as another user")
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError as error:
        raise DoubleUnavailable(f"running as root and no `postgres` user: {POSTGRES_INSTALL_HINT}") from error
    return ["runuser", "-u", "postgres", "--"]


@contextlib.contextmanager
def postgres_server(bin_dir: Path) -> Iterator[str]:
    """A throw-away PostgreSQL cluster on 127.0.0.1; yields a connection URL for dlt.

    Its folder is made with `tempfile` rather than pytest's tmp_path: the server may run as
    another user, and pytest's folders are private to the current one.
    """
    runner = postgres_runner()
    base = Path(tempfile.mkdtemp(prefix="polyai-pg-"))
    data, sockets, log = base / "data", base / "sockets", base / "server.log"
    sockets.mkdir()
    if runner:
        shutil.chown(base, user="postgres")
        shutil.chown(sockets, user="postgres")
        base.chmod(0o755)
    port = free_port()
    pg_ctl = [*runner, str(bin_dir / "pg_ctl"), "-D", str(data)]
    try:
        run_checked([*runner, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                     "-E", "UTF8", "--no-sync"])  # fmt: skip
        # Durability settings off: a test cluster, thrown away afterwards.
        options = (
            f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        run_checked([*pg_ctl, "-o", options, "-l", str(log), "-w", "-t", "60", "start"])
        try:
            # dlt requires a password; the cluster trusts local connections and ignores it.
            yield f"postgresql://postgres:unused@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run([*pg_ctl, "-m", "immediate", "-w", "stop"], capture_output=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run_checked(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise DoubleUnavailable(f"{' '.join(command)} failed: {result.stdout}{result.stderr}"[-2000:])


if __name__ == "__main__":
    for side_env in SIDE_ENV_REQUIREMENTS:
        print(f"{side_env}: {side_python(side_env)}")
