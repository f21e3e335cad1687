"""The dbt project in dbt/ builds, passes its own tests and agrees with the source tables.

Two DuckDB files are used: one loaded for real by the connector from the bundled simulator,
and a small hand-made one with the awkward shapes the models must survive (metrics that are a
string in one row and a list in another, keys that look like JSON paths, list-valued entities,
latency sent as an object, missing optional columns, an unknown channel).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from tests.support.dbt_runs import (
    MEASURES,
    expected_awkward_load_health,
    expected_load_health,
    insert_awkward_runs,
)

REPO = Path(__file__).resolve().parents[2]
DBT_PROJECT = REPO / "dbt"


def _dbt_executable() -> str | None:
    beside_python = Path(sys.executable).parent / "dbt"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("dbt")


DBT = _dbt_executable()

pytestmark = pytest.mark.skipif(
    DBT is None,
    reason="dbt is not installed: pip install 'dbt-duckdb==1.11.1' 'dbt-core>=1.11,<1.12'",
)


@dataclass
class DbtRun:
    db_path: Path
    work_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    late_day: date | None = None  # awkward rows: UTC day of the conversation started at 23:30 UTC
    late: datetime | None = None  # and that instant, when the awkward run history's first part ran

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "POLYAI_DUCKDB_PATH": str(self.db_path),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            **self.env,
        }
        command = [
            str(DBT),
            "--no-use-colors",
            *args,
            "--project-dir",
            str(DBT_PROJECT),
            "--profiles-dir",
            str(DBT_PROJECT),
            "--target-path",
            str(self.work_dir / "target"),
            "--log-path",
            str(self.work_dir / "logs"),
        ]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        if check:
            assert result.returncode == 0, f"dbt {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result

    def query(self, sql: str) -> list[tuple]:
        with duckdb.connect(str(self.db_path), read_only=True) as connection:
            return connection.sql(sql).fetchall()

    def scalar(self, sql: str):
        return self.query(sql)[0][0]


def summary_counts(output: str) -> dict[str, int]:
    """PASS/WARN/ERROR/... counts from dbt's closing 'Done. PASS=.. WARN=..' line."""
    done = [line for line in output.splitlines() if "Done. PASS=" in line][-1]
    pairs = (item.split("=") for item in done.split("Done.")[1].split())
    return {key: int(value) for key, value in pairs}


# --- the connector, for real ----------------------------------------------------------------


@pytest.fixture(scope="module")
def connector_db(tmp_path_factory: pytest.TempPathFactory) -> DbtRun:
    import dlt

    from pipelines.runner import make_pipeline, run_load
    from polyai_simulator import SimClock, SimConfig, Simulator, SimulatorServer
    from sources.polyai import ResyncRange, load_resync, polyai_source

    tmp_path = tmp_path_factory.mktemp("dbt_connector")
    db_path = tmp_path / "connector.duckdb"
    now = datetime.now(UTC)
    # Two projects whose simulators share a seed, so that their conversation ids collide: the
    # models must keep them apart by project.
    simulators = [
        Simulator(
            SimConfig(
                seed=2,
                n_conversations=300,
                start=now - timedelta(days=2),
                end=now,
                latency_object_fraction=0.2,
                project_id=project_id,
                api_key=f"dbt-key-{project_id}",
            ),
            SimClock(),
        )
        for project_id in ("proj-dbt-a", "proj-dbt-b")
    ]
    servers = [SimulatorServer(sim) for sim in simulators]
    projects = [
        {"project_id": sim.config.project_id, "api_key": sim.config.api_key, "base_url": server.start()}
        for sim, server in zip(simulators, servers, strict=True)
    ]
    try:
        pipeline = make_pipeline(
            "dbt_test", dlt.destinations.duckdb(str(db_path)), "polyai", str(tmp_path / "pipelines")
        )
        make_source = functools.partial(
            polyai_source,
            account_id=simulators[0].config.account_id,
            start_date=simulators[0].config.start.isoformat(),
            include_latency=True,
            # Small pages: 4 windows per connection (planning.slices_per_worker), so that the
            # backfill's first load stops with windows left.
            limit=50,
        )
        # A backfill in several parts, then a run in which project b's key is refused.
        run_load(pipeline, functools.partial(make_source, projects=projects, max_conversations_per_load=150))
        refused = [projects[0], {**projects[1], "api_key": "not-b-s-key"}]
        run_load(pipeline, functools.partial(make_source, projects=refused))
        # A resync of the first day's last hours, which counts as a resync, not a run.
        resync = ResyncRange(now - timedelta(hours=30), now - timedelta(hours=26))
        load_resync(pipeline, resync, **make_source.keywords, projects=projects)
    finally:
        for server in servers:
            server.stop()
    return DbtRun(db_path, tmp_path)


@pytest.fixture(scope="module")
def connector_build(connector_db: DbtRun) -> subprocess.CompletedProcess[str]:
    return connector_db("build")


def test_build_passes_on_connector_data(connector_build: subprocess.CompletedProcess[str]) -> None:
    counts = summary_counts(connector_build.stdout)
    assert counts["ERROR"] == 0
    assert counts["PASS"] > 50
    assert counts["WARN"] == 0, connector_build.stdout


def test_source_freshness_passes(connector_db: DbtRun, connector_build) -> None:
    result = connector_db("source", "freshness")
    assert "PASS freshness of polyai.conversations" in result.stdout
    assert "PASS freshness of polyai.turns" in result.stdout
    assert "PASS freshness of polyai._polyai_runs" in result.stdout


def test_load_health_agrees_with_the_run_rows(connector_db: DbtRun, connector_build) -> None:
    rows = connector_db.query(
        f"select run_date, project_id, {', '.join(MEASURES)} from polyai_analytics.fct_load_health"
    )
    mart = {(row[0], row[1]): dict(zip(MEASURES, row[2:], strict=True)) for row in rows}
    expected = expected_load_health(connector_db.db_path)
    assert mart.keys() == expected.keys()
    for key, measures in expected.items():
        lag = measures.pop("max_lag_seconds")
        got = dict(mart[key])
        assert got.pop("max_lag_seconds") == pytest.approx(lag, abs=1), key
        assert got == measures, key
    # The backfill took several parts; project b failed once, in the second run.
    assert sum(m["load_parts"] for m in mart.values()) > sum(m["runs"] for m in mart.values())
    failed = {key[1]: m["failed_runs"] for key, m in mart.items() if m["failed_runs"]}
    assert failed == {"proj-dbt-b": 1}
    resynced = {key[1] for key, m in mart.items() if m["resyncs"]}
    assert resynced == {"proj-dbt-a", "proj-dbt-b"}, "one resync read both projects"


def test_marts_agree_with_source_tables(connector_db: DbtRun, connector_build) -> None:
    q = connector_db.scalar
    conversations = q("select count(*) from polyai.conversations")
    assert conversations > 0
    # Both projects, with the same conversation ids, sliced apart in every mart.
    assert q("select count(distinct id) from polyai.conversations") * 2 == conversations
    for mart in ("fct_daily_volume", "fct_containment", "fct_ood_silence_rates", "fct_duration_distribution"):
        assert q(f"select count(distinct project_id) from polyai_analytics.{mart}") == 2, mart
    turns_staged = q("select count(*) from polyai_analytics.stg_polyai__turns")
    assert turns_staged == q("select count(*) from polyai.turns")
    assert q("select sum(conversations) from polyai_analytics.fct_daily_volume") == conversations
    assert q("select sum(in_progress_conversations) from polyai_analytics.fct_daily_volume") == q(
        "select count(*) from polyai.conversations where in_progress"
    )
    assert q("select sum(handed_off_conversations) from polyai_analytics.fct_containment") == q(
        "select count(*) from polyai.conversations where handoff and not in_progress"
    )
    assert q("select sum(handed_off_conversations) from polyai_analytics.fct_handoff_reasons") == q(
        "select count(*) from polyai.conversations where handoff and not in_progress"
    )

    intents = q("select sum(json_array_length(intents)) from polyai.turns")
    assert intents > 0
    assert q("select count(*) from polyai_analytics.int_polyai__turn_intents") == intents

    # every metric value: 1 per string, n per list of n
    metric_values = q(
        """
        select sum(case when json_type(metrics -> ('$."' || key || '"')) = 'ARRAY'
                        then json_array_length(metrics -> ('$."' || key || '"')) else 1 end)
        from (select metrics, unnest(json_keys(metrics)) as key from polyai.conversations)
        """
    )
    assert q("select count(*) from polyai_analytics.int_polyai__conversation_metrics") == metric_values

    turns = q("select count(*) from polyai.turns")
    assert q("select sum(turns) from polyai_analytics.fct_ood_silence_rates") == turns
    assert q("select sum(ood_turns) from polyai_analytics.fct_ood_silence_rates") == q(
        "select count(*) from polyai.turns where is_ood"
    )
    assert q("select sum(turns_with_latency) from polyai_analytics.fct_turn_latency_percentiles") == q(
        "select count(latency) from polyai.turns"
    )
    # the simulator sends some latencies as objects: they land in latency_detail, not in latency
    assert q("select count(*) from polyai.turns where latency_detail is not null") > 0

    median, expected = connector_db.query(
        """
        select m.latency_p50_seconds, s.p50
        from polyai_analytics.fct_turn_latency_percentiles as m
        join (
            select cast(c.started_at at time zone 'UTC' as date) as day, c.project_id, c.channel,
                   c.environment, quantile_cont(t.latency, 0.5) as p50
            from polyai.turns t
            join polyai.conversations c on c.project_id = t.project_id and c.id = t.conversation_id
            group by all
        ) as s
          on s.day = m.conversation_date and s.project_id = m.project_id and s.channel = m.channel
          and s.environment = m.environment
        order by m.turns desc
        limit 1
        """
    )[0]
    assert median == pytest.approx(expected)


# --- awkward hand-made rows -----------------------------------------------------------------

CONVERSATIONS_DDL = """
create table polyai.conversations (
    id varchar, account_id varchar, project_id varchar, variant_id varchar, variant_name varchar,
    environment varchar, started_at timestamp with time zone, channel varchar, from_number varchar,
    to_number varchar, in_progress boolean, num_turns bigint, total_duration bigint,
    polyai_duration bigint, handoff boolean, handoff_reason varchar, handoff_destination varchar,
    num_silences bigint, num_ood bigint, metrics json, state json
)
"""
# No user_input_dtmf / translated_user_input: dlt only creates a column once it saw a value.
TURNS_DDL = """
create table polyai.turns (
    account_id varchar, project_id varchar, conversation_id varchar, turn_index bigint,
    conversation_started_at timestamp with time zone,
    user_input varchar, user_input_datetime timestamp with time zone, agent_response varchar,
    agent_response_datetime timestamp with time zone, barge_in boolean, intents json,
    entities json, is_ood boolean, is_silence boolean, english_agent_response varchar,
    latency double, latency_detail json
)
"""


def _conversation(conversation_id: str, started_at: datetime, **overrides) -> dict:
    row = {
        "id": conversation_id,
        "account_id": "acc",
        "project_id": "proj",
        "variant_id": "var-a",
        "variant_name": "A",
        "environment": "live",
        "started_at": started_at,
        "channel": "VOICE-SIP",
        "from_number": "+440000000000",
        "to_number": "+441111111111",
        "in_progress": False,
        "num_turns": 1,
        "total_duration": 45,
        "polyai_duration": 45,
        "handoff": False,
        "handoff_reason": "",
        "handoff_destination": "",
        "num_silences": 0,
        "num_ood": 0,
        "metrics": {},
        "state": {"booking": {"party": 2}},
    }
    row.update(overrides)
    return row


def _turn(conversation_id: str, turn_index: int, started_at: datetime, **overrides) -> dict:
    row = {
        "account_id": "acc",
        "project_id": "proj",
        "conversation_id": conversation_id,
        "turn_index": turn_index,
        "conversation_started_at": started_at,
        "user_input": "hello",
        "user_input_datetime": started_at + timedelta(seconds=turn_index * 10),
        "agent_response": "hi",
        "agent_response_datetime": started_at + timedelta(seconds=turn_index * 10 + 1),
        "barge_in": False,
        "intents": [],
        "entities": [],
        "is_ood": False,
        "is_silence": False,
        "english_agent_response": None,
        "latency": 0.5,
        "latency_detail": None,
    }
    row.update(overrides)
    return row


def _insert(connection: duckdb.DuckDBPyConnection, table: str, rows: list[dict]) -> None:
    columns = list(rows[0])
    json_columns = {"metrics", "state", "intents", "entities", "latency_detail"}
    placeholders = ", ".join("cast(? as json)" if column in json_columns else "?" for column in columns)
    values = [
        [
            json.dumps(row[column]) if column in json_columns and row[column] is not None else row[column]
            for column in columns
        ]
        for row in rows
    ]
    connection.executemany(
        f"insert into polyai.{table} ({', '.join(columns)}) values ({placeholders})", values
    )


@pytest.fixture(scope="module")
def awkward_db(tmp_path_factory: pytest.TempPathFactory) -> DbtRun:
    tmp_path = tmp_path_factory.mktemp("dbt_awkward")
    db_path = tmp_path / "awkward.duckdb"
    # An hour before now, so source freshness passes; late evening UTC is what a non-UTC
    # session would put on the wrong day.
    recent = datetime.now(UTC) - timedelta(hours=1)
    late = recent.replace(hour=23, minute=30) - timedelta(days=1)
    conversations = [
        _conversation(
            "c1",
            late,
            metrics={"CSAT": "5", "TURN_SEEN": ["0", "1", "2"], "$weird.key": "w", 'quo"te': "q"},
            num_turns=2,
            total_duration=0,
        ),
        _conversation(
            "c2",
            recent,
            metrics={"CSAT": ["3", "4"]},
            state=None,
            channel="WHATSAPP",
            handoff=True,
            handoff_reason="",
            total_duration=4000,
        ),
        _conversation(
            "c3",
            recent,
            metrics=None,
            environment="sandbox",
            channel="WEBCHAT",
            handoff=True,
            handoff_reason="user_requested",
            total_duration=90,
        ),
        _conversation("c4", recent, in_progress=True, total_duration=10, num_turns=0),
    ]
    turns = [
        _turn(
            "c1",
            0,
            late,
            intents=["book_table", "book_table"],
            entities=[{"dates": ["2026-12-24", "2026-12-25"], "name": "李雷"}, {"party_size": "2"}],
        ),
        _turn(
            "c1",
            1,
            late,
            intents=["payment"],
            entities=[{"dates": []}],
            latency=None,
            latency_detail={"asr": 0.1, "llm": 0.7, "tts": 0.05},
            is_ood=True,
        ),
        _turn("c2", 0, recent, latency=1.5, is_silence=True),
        _turn("c3", 0, recent, intents=None, entities=None, latency=2.5),
    ]
    with duckdb.connect(str(db_path)) as connection:
        connection.execute("create schema polyai")
        connection.execute(CONVERSATIONS_DDL)
        connection.execute(TURNS_DDL)
        _insert(connection, "conversations", conversations)
        _insert(connection, "turns", turns)
        insert_awkward_runs(connection, late)
    # A machine far from UTC: the models must still report on UTC days.
    return DbtRun(db_path, tmp_path, env={"TZ": "Pacific/Auckland"}, late_day=late.date(), late=late)


@pytest.fixture(scope="module")
def awkward_build(awkward_db: DbtRun) -> subprocess.CompletedProcess[str]:
    return awkward_db("build")


def test_build_on_awkward_rows_only_warns_about_the_new_channel(awkward_build) -> None:
    counts = summary_counts(awkward_build.stdout)
    assert counts["ERROR"] == 0
    # the source's and the staging model's accepted_values on channel both see WHATSAPP
    assert counts["WARN"] == 2, awkward_build.stdout
    assert "accepted_values" in awkward_build.stdout


def test_metrics_unnest_strings_lists_and_odd_keys(awkward_db: DbtRun, awkward_build) -> None:
    rows = awkward_db.query(
        "select conversation_id, metric_name, value_position, metric_value, is_latest_value "
        "from polyai_analytics.int_polyai__conversation_metrics order by all"
    )
    assert rows == [
        ("c1", "$weird.key", 0, "w", True),
        ("c1", "CSAT", 0, "5", True),
        ("c1", "TURN_SEEN", 0, "0", False),
        ("c1", "TURN_SEEN", 1, "1", False),
        ("c1", "TURN_SEEN", 2, "2", True),
        ("c1", 'quo"te', 0, "q", True),
        ("c2", "CSAT", 0, "3", False),
        ("c2", "CSAT", 1, "4", True),
    ]


def test_entities_give_one_row_per_value(awkward_db: DbtRun, awkward_build) -> None:
    rows = awkward_db.query(
        "select conversation_id, turn_index, entity_position, entity_name, value_position, entity_value "
        "from polyai_analytics.int_polyai__turn_entities order by all"
    )
    assert rows == [
        ("c1", 0, 0, "dates", 0, "2026-12-24"),
        ("c1", 0, 0, "dates", 1, "2026-12-25"),
        ("c1", 0, 0, "name", 0, "李雷"),
        ("c1", 0, 1, "party_size", 0, "2"),
    ]


def test_intents_keep_duplicates_and_skip_empty_lists(awkward_db: DbtRun, awkward_build) -> None:
    rows = awkward_db.query(
        "select conversation_id, turn_index, intent_position, intent "
        "from polyai_analytics.int_polyai__turn_intents order by all"
    )
    assert rows == [("c1", 0, 0, "book_table"), ("c1", 0, 1, "book_table"), ("c1", 1, 0, "payment")]


def test_staging_types_days_and_missing_columns(awkward_db: DbtRun, awkward_build) -> None:
    q = awkward_db.query
    started = q(
        "select conversation_id, started_date, is_in_progress, is_handoff, handoff_reason, from_number "
        "from polyai_analytics.stg_polyai__conversations order by conversation_id"
    )
    assert started[0][:2] == ("c1", awkward_db.late_day)
    assert [row[2] for row in started] == [False, False, False, True]
    assert [row[4] for row in started] == [None, None, "user_requested", None]
    # columns the loader never created read as NULL
    assert q(
        "select count(*) from polyai_analytics.stg_polyai__turns "
        "where user_input_dtmf is null and translated_user_input is null"
    ) == [(4,)]
    assert q(
        "select latency_seconds, latency_detail ->> 'llm' from polyai_analytics.stg_polyai__turns "
        "where turn_id = 'proj-c1-1'"
    ) == [(None, "0.7")]


def test_awkward_marts(awkward_db: DbtRun, awkward_build) -> None:
    q = awkward_db.query
    assert q(
        "select sum(conversations), sum(in_progress_conversations) from polyai_analytics.fct_daily_volume"
    ) == [(4, 1)]
    assert q(
        "select channel, handoff_reason, handed_off_conversations, share_of_handoffs "
        "from polyai_analytics.fct_handoff_reasons order by channel"
    ) == [("WEBCHAT", "user_requested", 1, 1.0), ("WHATSAPP", "unspecified", 1, 1.0)]
    assert q(
        "select sum(turns), sum(turns_with_latency) from polyai_analytics.fct_turn_latency_percentiles"
    ) == [(4, 3)]
    buckets = dict(
        q(
            "select duration_bucket, conversations from polyai_analytics.fct_duration_distribution "
            "where channel = 'VOICE-SIP' and environment = 'live'"
        )
    )
    # c4 is in progress: only c1 (0 s) counts
    assert buckets == {
        "0-30s": 1,
        "30-60s": 0,
        "1-2min": 0,
        "2-5min": 0,
        "5-10min": 0,
        "10-30min": 0,
        "30min+": 0,
    }


def test_awkward_load_health_counts_complete_loads_on_utc_days(awkward_db: DbtRun, awkward_build) -> None:
    assert awkward_db.late is not None
    measures = ", ".join(MEASURES)
    rows = awkward_db.query(
        f"select run_date, project_id, {measures} from polyai_analytics.fct_load_health order by all"
    )
    assert rows == expected_awkward_load_health(awkward_db.late)
    assert awkward_db.query("select distinct part_seconds from polyai_analytics.stg_polyai__runs") == [(12,)]


# --- other warehouses -----------------------------------------------------------------------


def _fake_service_account_keyfile(path: Path) -> Path:
    """A syntactically valid service-account file: dbt-bigquery builds credentials from it when
    it opens a connection, but an offline compile never sends a request with them."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    account = {
        "type": "service_account",
        "project_id": "compile-only",
        "private_key_id": "0",
        "private_key": pem,
        "client_email": "compile-only@compile-only.iam.gserviceaccount.com",
        "client_id": "0",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path.write_text(json.dumps(account))
    return path


# What only the target's own macros render: proves dbt dispatched to them.
DIALECT_MARKERS = {"bigquery": "approx_quantiles(", "snowflake": "lateral flatten("}
OFFLINE_SETTINGS = {
    "bigquery": {"POLYAI_BQ_PROJECT": "compile-only"},
    "snowflake": {"POLYAI_SNOWFLAKE_ACCOUNT": "compile-only", "POLYAI_SNOWFLAKE_PASSWORD": "unused"},
}


@pytest.mark.parametrize("target", ["bigquery", "snowflake"])
def test_models_compile_to_sql_the_other_warehouses_parse(target: str, tmp_path: Path) -> None:
    """Without an account: dbt compiles every model and test for the target with no connection
    (no cache, no introspection), and sqlglot parses each statement in the target's dialect."""
    import sqlglot
    from sqlglot.errors import ErrorLevel

    if importlib.util.find_spec(f"dbt.adapters.{target}") is None:
        pytest.skip(f"dbt-{target} is not installed (it is in the test extra: pip install -e '.[test]')")
    settings = dict(OFFLINE_SETTINGS[target])
    if target == "bigquery":
        settings["POLYAI_BQ_KEYFILE"] = str(_fake_service_account_keyfile(tmp_path / "sa.json"))
    run = DbtRun(tmp_path / "unused.duckdb", tmp_path, env=settings)
    run(
        "compile",
        "--target",
        target,
        "--no-populate-cache",
        "--no-introspect",
        "--vars",
        "{polyai_introspect_sources: false}",
    )
    compiled = sorted((tmp_path / "target" / "compiled" / "polyai").rglob("*.sql"))
    models = [path for path in compiled if path.stem.startswith(("stg_", "int_", "fct_"))]
    assert len(models) == 13, [path.name for path in models]
    unparsable = []
    for path in compiled:
        try:
            sqlglot.parse(path.read_text(), read=target, error_level=ErrorLevel.RAISE)
        except sqlglot.errors.SqlglotError as error:
            unparsable.append(f"{path.name}: {str(error)[:300]}")
    assert not unparsable, "\n".join(unparsable)
    assert any(DIALECT_MARKERS[target] in path.read_text().lower() for path in models)


@pytest.mark.parametrize(
    ("target", "credential_variable"),
    [("bigquery", "POLYAI_BQ_PROJECT"), ("snowflake", "POLYAI_SNOWFLAKE_ACCOUNT")],
)
def test_compile_against_a_live_warehouse(target: str, credential_variable: str, tmp_path: Path) -> None:
    """Runs only where a real account is configured (see dbt/profiles.yml): compiles with the
    source check and column introspection against the warehouse the connector loaded."""
    if importlib.util.find_spec(f"dbt.adapters.{target}") is None:
        pytest.skip(f"dbt-{target} is not installed: compiling for {target} needs its adapter")
    if not os.environ.get(credential_variable):
        pytest.skip(
            f"no {target} account configured ({credential_variable} and the other variables in "
            f"dbt/profiles.yml): this test connects to the warehouse"
        )
    DbtRun(tmp_path / "unused.duckdb", tmp_path)("compile", "--target", target)
