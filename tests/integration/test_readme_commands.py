"""The README's commands, exactly as written, in a fresh copy of the repository, on default DuckDB.

The commands are read out of README.md's code blocks, so a README change changes what runs here.
They run in the copy's folder (dlt reads `.dlt/` from there) with only the README's variables,
plus `SOURCES__POLYAI__BASE_URL` to reach the simulator and `DLT_DATA_DIR` to keep dlt's global
folder (`/var/dlt` as root) apart from the machine's: no destination setting, so a broken default
cannot hide behind one. The copy's `.venv` is a link to the running virtualenv (no reinstall).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from polyai_simulator import SimClock, SimConfig, Simulator, SimulatorServer

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
# The demo's install is the project alone; the test command adds the test extra.
INSTALL = ("python3 -m venv .venv", ".venv/bin/pip install -e .")
TEST_COMMAND = ('.venv/bin/pip install -e ".[test]"', ".venv/bin/python -m pytest")
CI = ROOT / ".ci" / "run"

pytestmark = pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="needs the project's virtualenv")


def section(heading: str) -> str:
    """The README's text under `heading`, up to the next heading of any level (not a `#` comment
    inside a code block)."""
    lines, inside, in_code = [], False, False
    for line in README.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and re.match(r"#+ ", line):
            if inside:
                break
            inside = line.rstrip("\n").split(" ", 1)[1] == heading
            continue
        if inside:
            lines.append(line)
    assert lines, f"README has no section {heading!r}"
    return "".join(lines)


def code_blocks(heading: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", section(heading), re.MULTILINE | re.DOTALL)


def commands(block: str) -> list[str]:
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def demo_command() -> str:
    """The demo part of the README's first command; its install parts are checked for their form."""
    (first, *_) = commands(code_blocks("Two commands", "bash")[0])
    parts = [part.strip() for part in first.split("&&")]
    assert tuple(parts[: len(INSTALL)]) == INSTALL, parts
    (demo,) = parts[len(INSTALL) :]
    assert "--demo" in demo
    return demo


def readme_test_command() -> tuple[str, ...]:
    """The README's second command, split at `&&`."""
    (_, second) = commands(code_blocks("Two commands", "bash")[0])
    return tuple(part.strip() for part in second.split("&&"))


def real_api_block() -> str:
    return code_blocks("Pointing it at the real API", "bash")[0]


def exported(block: str) -> dict[str, str]:
    """The variables the block exports, as bash would set them."""
    names = {}
    for line in commands(block):
        words = shlex.split(line, comments=True)
        if words and words[0] == "export":
            name, _, value = words[1].partition("=")
            names[name] = value
    return names


def exported_settings(block: str) -> str:
    """The block's `export` lines alone, so that a later command sees the same settings."""
    return "".join(line + "\n" for line in block.splitlines() if line.startswith("export "))


def python(*lines: str) -> str:
    """A shell command that runs `lines` with the checkout's interpreter, its folder on the path."""
    return ".venv/bin/python - <<'EOF'\n" + "\n".join(lines) + "\nEOF\n"


@dataclass
class Checkout:
    folder: Path
    env: dict[str, str]

    def bash(self, script: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def copy_repository(folder: Path) -> None:
    """The repository's files as they are now (tracked and new; nothing git ignores: no secrets,
    no DuckDB file, no pipeline folder, no .venv), as a fresh clone would have them."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())


def isolated_env(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "home"),
        "DLT_DATA_DIR": str(tmp_path / "dlt_data"),
    }


@pytest.fixture
def checkout(tmp_path: Path) -> Checkout:
    folder = tmp_path / "repo"
    copy_repository(folder)
    (folder / ".venv").symlink_to(sys.prefix)
    return Checkout(folder, isolated_env(tmp_path))


@pytest.fixture
def readme_api() -> Iterator[tuple[Simulator, str]]:
    """A simulator that takes the README's key, account and project; its traffic ended an hour ago."""
    settings = exported(real_api_block())
    clock = SimClock()
    config = SimConfig(
        seed=13,
        n_conversations=300,
        start=clock.now() - timedelta(hours=8),
        end=clock.now() - timedelta(hours=1),
        api_key=settings["SOURCES__POLYAI__API_KEY"],
        account_id=settings["SOURCES__POLYAI__ACCOUNT_ID"],
        project_id=settings["SOURCES__POLYAI__PROJECT_ID"],
    )
    with SimulatorServer(Simulator(config, clock)) as server:
        yield server.simulator, server.base_url


def test_the_readme_commands_run_as_written_and_the_data_reads_as_arrow_and_pandas(
    checkout: Checkout, readme_api: tuple[Simulator, str]
) -> None:
    demo = checkout.bash(demo_command())
    assert demo.returncode == 0, demo.stderr
    assert "conversation rows" in demo.stdout
    # The shell the demo points to opens its file.
    (shell,) = re.findall(r"^Open it yourself: (.+)$", demo.stdout, re.MULTILINE)
    opened = checkout.bash(f"{shell} -c 'SELECT count(*) > 0 FROM polyai.conversations'")
    assert opened.returncode == 0 and "true" in opened.stdout, opened.stdout + opened.stderr

    simulator, base_url = readme_api
    checkout.env["SOURCES__POLYAI__BASE_URL"] = base_url
    real = checkout.bash(real_api_block())
    assert real.returncode == 0, real.stderr
    assert f"loaded {len(simulator.truth())} conversation rows" in real.stdout
    # Where the README says the file is.
    assert (checkout.folder / "polyai_conversations.duckdb").is_file()

    (reading,) = code_blocks("Reading the data in Python, and dlt's own CLI", "python")
    read = checkout.bash(python(reading))
    assert read.returncode == 0, read.stderr
    rows = read.stdout.split()
    assert rows[0] == rows[1] and int(rows[0]) > 0, read.stdout

    own = checkout.bash(
        python(
            "import dlt",
            'dataset = dlt.attach(pipeline_name="polyai_conversations").dataset()',
            "print(dataset.conversations.arrow().num_rows, len(dataset.conversations.df()))",
        )
    )
    assert own.returncode == 0, own.stderr
    assert own.stdout.split() == [str(len(simulator.truth()))] * 2

    # The source from the user's own script: the same pipeline, nothing new, nothing doubled.
    # With the settings the README's real-API block exports.
    (own_script,) = code_blocks("From your own script or orchestrator", "python")
    library = checkout.bash(exported_settings(real_api_block()) + python(own_script))
    assert library.returncode == 0, library.stderr
    again = checkout.bash(
        python(
            "import dlt",
            'dataset = dlt.attach(pipeline_name="polyai_conversations").dataset()',
            'print(dataset("SELECT count(*), count(DISTINCT id) FROM conversations").fetchall())',
        )
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"[({len(simulator.truth())}, {len(simulator.truth())})]", again.stdout

    (cli,) = code_blocks("Reading the data in Python, and dlt's own CLI", "bash")
    for command in commands(cli):
        result = checkout.bash(command, timeout=120)
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
        assert "polyai_" in result.stdout, f"{command}: {result.stdout}"

    # "Operating it": status, then reset and a run that reads everything again, nothing doubled.
    settings = exported_settings(real_api_block())
    (status_block,) = code_blocks("`status`: is it up to date?", "bash")
    status = checkout.bash(settings + status_block)
    assert status.returncode == 0, status.stderr
    assert f"rows: {len(simulator.truth())} conversations" in status.stdout, status.stdout
    assert ": ok" in status.stdout, status.stdout
    (reset_block,) = code_blocks("`reset`: read everything again from `start_date`", "bash")
    reset = checkout.bash(settings + reset_block)
    assert reset.returncode == 0, reset.stderr
    again_all = checkout.bash(real_api_block())
    assert again_all.returncode == 0, again_all.stderr
    assert f"loaded {len(simulator.truth())} conversation rows" in again_all.stdout
    status = checkout.bash(settings + status_block)
    assert f"rows: {len(simulator.truth())} conversations" in status.stdout, status.stdout
    # `resync`, its dry run then the resync itself, as written (a past range: it reads nothing here).
    (resync_block,) = code_blocks("`resync`: read a `started_at` range again", "bash")
    resync = checkout.bash(settings + resync_block)
    assert resync.returncode == 0, resync.stderr
    assert "nothing was written" in resync.stdout and ": done in 1 load(s)" in resync.stdout, resync.stdout


def test_the_default_duckdb_gets_the_memory_limit_and_the_variable_replaces_it(checkout: Checkout) -> None:
    """The limit the command gives DuckDB, read back from a connection of the command's pipeline."""
    probe = python(
        "from pipelines.runner import make_pipeline",
        'pipeline = make_pipeline("polyai_conversations", "duckdb")',
        "with pipeline.sql_client() as client:",
        "    print(client.execute_sql(\"SELECT current_setting('memory_limit'), \""
        " \"current_setting('threads')\"))",
        "print(pipeline.destination_client().config.credentials.database)",
    )
    default = checkout.bash(probe)
    assert default.returncode == 0, default.stderr
    assert default.stdout.splitlines() == [
        "[('61.0 MiB', 1)]",
        str(checkout.folder / "polyai_conversations.duckdb"),
    ]
    checkout.env["DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG"] = '{"memory_limit": "256MB"}'
    replaced = checkout.bash(probe)
    assert replaced.returncode == 0, replaced.stderr
    assert replaced.stdout.splitlines()[0].startswith("[('244.1 MiB', ")


def test_the_test_command_installs_the_test_extra_and_ci_runs_it() -> None:
    assert readme_test_command() == TEST_COMMAND
    install, pytest_command = TEST_COMMAND
    ci = [line.strip() for line in CI.read_text(encoding="utf-8").splitlines()]
    # CI installs the same extra, quietly: `pip install [options] -e ".[test]"` into the same .venv.
    extra = install.split(" install ", 1)[1]
    installs = [line for line in ci if line.startswith(".venv/bin/") and " pip install " in line]
    assert any(line.endswith(extra) for line in installs), ci
    assert any(line.startswith(pytest_command) for line in ci), ci


@pytest.mark.slow
def test_the_install_command_installs_what_the_demo_and_its_shell_need(tmp_path: Path) -> None:
    """The README's install exactly as written (no test extra; ~40 s here), then its demo command."""
    checkout = Checkout(tmp_path / "repo", isolated_env(tmp_path))
    copy_repository(checkout.folder)
    venv, install = INSTALL
    installed = checkout.bash(f"{venv} && {install} -q", timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    demo = checkout.bash(f"{demo_command()} --demo-conversations 200")
    assert demo.returncode == 0, demo.stderr
    (shell,) = re.findall(r"^Open it yourself: (.+)$", demo.stdout, re.MULTILINE)
    assert shell.startswith(".venv/bin/duckdb ")
    opened = checkout.bash(f"{shell} -c 'SELECT count(*) > 0 FROM polyai.conversations'")
    assert opened.returncode == 0 and "true" in opened.stdout, opened.stdout + opened.stderr
