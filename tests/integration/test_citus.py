"""Retrolytics on a real Citus cluster: a coordinator and two workers on loopback.

Tests marked ``citus`` run on the cluster that ``retrolytics stack up --citus`` starts, and skip
(saying why) where the citus extension is not installed, as on CI machines. The tests without the
mark run everywhere: the message a machine without Citus gives, the no-op switch on plain
PostgreSQL, and the check that nothing outside the switch branches on Citus.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from ingestion import schema
from ingestion import stack as local_stack
from ingestion.contract import MAX_LATENESS
from ingestion.loader import store_events
from ingestion.settings import Settings
from ingestion.stack import citus as citus_nodes
from ingestion.stack import postgres
from ingestion.stack.layout import StackPaths
from retrolytics import cli
from tests.integration import test_erasure as erasure_tests
from tests.integration import test_loader as single_node
from tests.support.erasure import with_erasure_key
from tests.support.factories import click_event, iso, many_events, pageview_event
from tests.support.loading import drain, produce_events
from tests.support.paths import REPO

DAY = timedelta(days=1)


# -- the cluster's tests reuse the single-node fixtures' names -----------------------------------


@pytest.fixture
def settings(citus_settings: Settings) -> Settings:
    return citus_settings


@pytest.fixture
def raw_db(citus_raw_db: psycopg.Connection) -> psycopg.Connection:
    return citus_raw_db


def rows(conn: psycopg.Connection, query: str, params: tuple | None = None) -> list[tuple]:
    return conn.execute(query, params).fetchall()


def day_events(day: datetime, count: int, received_after: timedelta = timedelta(seconds=1)):
    return [
        pageview_event(
            anonymous_id=f"device-{index % 7}",
            occurred_at=iso(day + timedelta(minutes=index)),
            received_at=iso(day + timedelta(minutes=index) + received_after),
        )
        for index in range(count)
    ]


def midday(days_ago: int) -> datetime:
    today = datetime.now(tz=UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    return today - days_ago * DAY


# -- without the extension (what CI sees) -------------------------------------------------------


@pytest.fixture
def citus_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the extension check at empty folders, as on a machine without Citus."""
    pkglibdir, sharedir = tmp_path / "pkglibdir", tmp_path / "sharedir"
    (sharedir / "extension").mkdir(parents=True)
    pkglibdir.mkdir()
    monkeypatch.setattr(postgres.PostgresInstall, "pkglibdir", lambda _install: pkglibdir)
    monkeypatch.setattr(postgres.PostgresInstall, "sharedir", lambda _install: sharedir)
    monkeypatch.setenv("RETROLYTICS_STATE_DIR", str(tmp_path / "state"))
    return tmp_path


@pytest.mark.integration
def test_without_citus_the_flag_says_how_to_use_an_existing_cluster(
    stack: local_stack.StackInfo, citus_absent: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert local_stack.main("up", citus=True) == local_stack.CITUS_EXIT_CODE == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Citus is not installed here" in captured.err
    assert str(citus_absent / "pkglibdir" / "citus.so") in captured.err
    assert "RETROLYTICS_DATABASE_URL" in captured.err
    assert "coordinator" in captured.err
    assert not (citus_absent / "state").exists(), "nothing may start without Citus"

    with pytest.raises(local_stack.CitusUnavailable, match="Citus is not installed here"):
        local_stack.up(citus=True)
    assert local_stack.main("status", citus=True) == 2
    assert local_stack.main("down", citus=True) == 0  # nothing to stop is fine
    assert "Citus is not installed here" in capsys.readouterr().err


@pytest.mark.integration
def test_a_library_without_its_control_file_is_not_citus(
    stack: local_stack.StackInfo, citus_absent: Path
) -> None:
    (citus_absent / "pkglibdir" / "citus.so").write_bytes(b"")
    reason = citus_nodes.absence_reason()
    assert reason is not None
    assert str(citus_absent / "sharedir" / "extension" / "citus.control") in reason
    assert "citus.so" not in reason


ABSENT_PLUGIN = """
from pathlib import Path

from ingestion.stack import postgres

EMPTY = Path(__file__).parent / "empty"


def pytest_configure(config):
    postgres.PostgresInstall.pkglibdir = lambda install: EMPTY
    postgres.PostgresInstall.sharedir = lambda install: EMPTY
"""


@pytest.mark.integration
def test_citus_tests_skip_with_the_reason_where_citus_is_absent(
    stack: local_stack.StackInfo, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "citus_absent_plugin.py").write_text(ABSENT_PLUGIN)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "citus_absent_plugin",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rs",
            f"{Path(__file__).relative_to(REPO)}::test_bootstrap_distributes_on_the_device",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout, result.stdout
    assert "Citus is not installed here" in result.stdout, result.stdout


# -- the switch on plain PostgreSQL -------------------------------------------------------------


@pytest.mark.integration
def test_columnar_switch_is_a_no_op_without_citus(raw_db_plain: psycopg.Connection) -> None:
    store_events(raw_db_plain, day_events(midday(500), 3, received_after=DAY))
    converted = schema.convert_old_partitions_to_columnar(raw_db_plain, timedelta(days=401))
    assert converted == []
    methods = rows(
        raw_db_plain,
        "select distinct a.amname from pg_inherits i join pg_class c on c.oid = i.inhrelid "
        "join pg_am a on a.oid = c.relam where i.inhparent = 'raw.events'::regclass",
    )
    assert methods == [("heap",)]


@pytest.fixture
def raw_db_plain(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        schema.bootstrap(conn)
        yield conn


def test_maintain_refuses_columnar_inside_the_lateness_bound(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["maintain", "--columnar-after-days", "30"]) == 2
    err = capsys.readouterr().err
    assert "--columnar-after-days" in err
    assert f"{schema.COLUMNAR_MIN_AGE.days} days" in err
    assert str(MAX_LATENESS.days) in err
    with pytest.raises(ValueError, match="must stay row-based"):
        schema.convert_old_partitions_to_columnar(None, timedelta(days=30))  # type: ignore[arg-type]


# -- nothing outside the switch branches on Citus ----------------------------------------------

# Code that asks whether Citus is there, reads its catalog or calls it directly.
CITUS_BRANCH = re.compile(
    r"pg_extension|extname|pg_dist_|citus_\w+|create_distributed_table|create_reference_table"
    r"|alter_table_set_access_method|\bif\b.*citus",
    re.IGNORECASE,
)
BROAD = "citus|pg_dist_|pg_extension|extname|distributed_table|reference_table|access_method"
# The switch itself, and the local stack that starts a cluster when asked with --citus.
ALLOWED = [":!tests/", ":!docs/", ":!ingestion/schema.py", ":!ingestion/stack/"]


def citus_branches(*pathspec: str) -> list[str]:
    listed = subprocess.run(
        ["git", "grep", "-n", "-i", "-E", BROAD, "--", *pathspec],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert listed.returncode in (0, 1), listed.stderr
    return [line for line in listed.stdout.splitlines() if CITUS_BRANCH.search(line)]


def test_nothing_outside_the_switch_branches_on_citus() -> None:
    inside = subprocess.run(
        ["git", "rev-parse", "--is-inside-work-tree"], cwd=REPO, capture_output=True
    )
    if inside.returncode != 0:
        pytest.skip(f"{REPO} is not a git checkout, so there is nothing to `git grep`")
    assert citus_branches("*.py", "*.sql", *ALLOWED) == []
    # The check can see a branch: the switch module has the only one.
    found = citus_branches("ingestion/schema.py")
    assert any("citus_enabled" in line for line in found), found
    assert any("extname = 'citus'" in line for line in found), found


@pytest.mark.parametrize(
    "line",
    [
        "x.py:1:    if conn.execute(\"select 1 from pg_extension where extname='citus'\"):",
        "m.sql:3:{% if citus_available() %}",
        "m.sql:4:select create_distributed_table('t', 'anonymous_id')",
        "m.sql:5:select * from pg_dist_partition where logicalrelid = 't'::regclass",
    ],
)
def test_the_branch_pattern_sees_a_branch(line: str) -> None:
    assert CITUS_BRANCH.search(line)


# -- the local cluster --------------------------------------------------------------------------


@pytest.mark.citus
@pytest.mark.integration
def test_stack_up_citus_is_idempotent_and_prints_the_settings(
    citus_stack: local_stack.CitusStackInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert local_stack.up(citus=True) == citus_stack
    assert local_stack.status(citus=True) == citus_stack
    assert local_stack.main("status", citus=True) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines() == [
        f"RETROLYTICS_DATABASE_URL=postgresql://retrolytics@127.0.0.1:"
        f"{citus_stack.postgres_port}/retrolytics",
        f"RETROLYTICS_KAFKA_BOOTSTRAP={citus_stack.kafka_bootstrap}",
    ]
    env_file = citus_nodes.env_file(StackPaths.current())
    assert env_file.read_text().splitlines() == printed.splitlines()
    assert len(set(citus_stack.cluster.all())) == 3
    with psycopg.connect(citus_stack.database_url) as conn:
        assert conn.execute("select citus_version()").fetchone()[0].startswith("Citus ")
        nodes = rows(
            conn,
            "select groupid, nodename, nodeport, isactive, shouldhaveshards from pg_dist_node "
            "order by groupid",
        )
        assert rows(conn, "show ssl") == [("off",)]
    assert nodes == [
        (0, "127.0.0.1", citus_stack.postgres_port, True, False),
        *((g, "127.0.0.1", port, True, True) for g, port in enumerate(citus_stack.worker_ports, 1)),
    ]
    # The workers really are the nodes the coordinator names.
    for port in citus_stack.worker_ports:
        with psycopg.connect(host="127.0.0.1", port=port, user="retrolytics") as worker:
            assert worker.execute("select current_setting('port')").fetchone() == (str(port),)


@pytest.fixture
def private_citus_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # /tmp, not pytest's tmp_path: as root the nodes run as `postgres`, which must enter it.
    folder = Path(tempfile.mkdtemp(prefix="retrolytics-citus-"))
    monkeypatch.setenv("RETROLYTICS_STATE_DIR", str(folder))
    yield folder
    try:
        local_stack.down(citus=True)
        local_stack.down()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.citus
@pytest.mark.integration
def test_kafka_stops_with_the_last_postgres_of_the_state_folder(
    citus_stack: local_stack.CitusStackInfo, private_citus_state: Path
) -> None:
    cluster = local_stack.up(citus=True)
    assert isinstance(cluster, local_stack.CitusStackInfo)
    assert set(cluster.cluster.all()).isdisjoint(citus_stack.cluster.all())
    single = local_stack.up()
    assert single.kafka_bootstrap == cluster.kafka_bootstrap
    assert single.postgres_port not in cluster.cluster.all()

    local_stack.down(citus=True)
    assert local_stack.status(citus=True) is None
    assert local_stack.status() == single, "Kafka must keep serving the single-node stack"
    assert local_stack.up(citus=True) == cluster  # the same remembered ports

    local_stack.down()
    assert local_stack.status() is None
    assert local_stack.status(citus=True) == cluster, "Kafka must keep serving the cluster"
    local_stack.down(citus=True)
    assert local_stack.status(citus=True) is None
    assert not citus_nodes.env_file(StackPaths.current()).exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(cluster.database_url, connect_timeout=3)


# -- storage and distribution -------------------------------------------------------------------


@pytest.mark.citus
@pytest.mark.integration
def test_bootstrap_distributes_on_the_device(
    citus_stack: local_stack.CitusStackInfo, raw_db: psycopg.Connection
) -> None:
    store_events(raw_db, [*day_events(midday(3), 40), *day_events(midday(2), 40)])
    schema.bootstrap(raw_db)  # a second bootstrap changes nothing
    tables = {
        name: (kind, column, colocation)
        for name, kind, column, colocation in rows(
            raw_db,
            "select table_name::text, citus_table_type, distribution_column, colocation_id "
            "from citus_tables where table_name::text like 'raw.%'",
        )
    }
    partitions = [f"raw.{schema.partition_name(midday(days).date())}" for days in (3, 2)]
    events_colocation = tables["raw.events"][2]
    assert tables == {
        "raw.events": ("distributed", "anonymous_id", events_colocation),
        **{p: ("distributed", "anonymous_id", events_colocation) for p in partitions},
        "raw.dead_letters": ("reference", "<none>", tables["raw.dead_letters"][2]),
        # A small lookup every worker joins the sessions with (ingestion.user_agents).
        "raw.user_agents": ("reference", "<none>", tables["raw.user_agents"][2]),
    }
    # The loader's offsets stay a plain table on the coordinator (see RAW_SCHEMA_SQL).
    assert rows(raw_db, "select count(*) from pg_dist_partition") == [(len(tables),)]
    assert rows(raw_db, "select to_regclass('raw.ingest_offsets')::text") == [
        ("raw.ingest_offsets",)
    ]
    placements = dict(
        rows(
            raw_db,
            "select table_name::text, array_agg(distinct nodeport order by nodeport) "
            "from citus_shards group by 1",
        )
    )
    workers = sorted(citus_stack.worker_ports)
    for table in ["raw.events", *partitions]:
        assert placements[table] == workers, table  # shards on both workers, none elsewhere
    # A reference table has a copy on every node, the coordinator included.
    assert placements["raw.dead_letters"] == sorted(citus_stack.cluster.all())
    # A device's rows of every day sit on one worker: per-device work never leaves it.
    devices = [device for (device,) in rows(raw_db, "select distinct anonymous_id from raw.events")]
    assert len(devices) == 7
    for device in devices:
        nodes = {
            rows(
                raw_db,
                "select nodeport from citus_shards "
                "where shardid = get_shard_id_for_distribution_column(%s::regclass, %s::text)",
                (table, device),
            )[0][0]
            for table in ["raw.events", *partitions]
        }
        assert len(nodes) == 1, (device, nodes)


# -- the loader's guarantees on the cluster -----------------------------------------------------


# The single-node tests whose assertions hold as they are, run again on the cluster (through the
# `settings` and `raw_db` fixtures above). Each is wrapped in a new function: marking the
# imported function itself would mark (and, without Citus, skip) the single-node test too.
def _on_the_cluster(test: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(test)
    def on_the_cluster(*args: object, **kwargs: object) -> None:
        test(*args, **kwargs)

    return pytest.mark.citus(on_the_cluster)


test_drain_loads_every_event_and_stops = _on_the_cluster(
    single_node.test_drain_loads_every_event_and_stops
)
test_offsets_are_stored_with_the_rows = _on_the_cluster(
    single_node.test_offsets_are_stored_with_the_rows
)
test_a_batch_already_written_is_skipped_by_its_offsets = _on_the_cluster(
    single_node.test_a_batch_already_written_is_skipped_by_its_offsets
)
test_each_kind_of_bad_message_becomes_a_dead_letter = _on_the_cluster(
    single_node.test_each_kind_of_bad_message_becomes_a_dead_letter
)
test_sigkill_at_any_point_loses_and_duplicates_nothing = _on_the_cluster(
    single_node.test_sigkill_at_any_point_loses_and_duplicates_nothing
)
test_sigterm_finishes_the_batch_and_exits_cleanly = _on_the_cluster(
    single_node.test_sigterm_finishes_the_batch_and_exits_cleanly
)


# -- erasure on the cluster: the single-node tests, on the coordinator's fixtures -----------------


@pytest.fixture
def keyed(citus_settings: Settings) -> Settings:
    return with_erasure_key(citus_settings)


test_erase_replay_and_rederive_leave_no_row_of_the_person = _on_the_cluster(
    erasure_tests.test_erase_replay_and_rederive_leave_no_row_of_the_person
)
test_an_erasure_racing_a_load_loses_nothing_of_others = _on_the_cluster(
    erasure_tests.test_an_erasure_racing_a_load_loses_nothing_of_others
)


@pytest.mark.citus
@pytest.mark.integration
def test_replay_and_duplicates_add_no_row_on_the_cluster(settings: Settings) -> None:
    repeated = click_event(anonymous_id="device-dup")
    events = [*many_events(400), repeated, repeated, pageview_event()]
    produce_events(settings, events)
    drain(settings)
    replay = replace(settings, consumer_group=f"{settings.consumer_group}-replay")
    drain(replay)
    drain(settings)  # the first group again: nothing left to read
    with psycopg.connect(settings.database_url) as conn:
        total, distinct = conn.execute(
            "select count(*), count(distinct event_id) from raw.events"
        ).fetchone()
        stored_repeat = conn.execute(
            "select count(*) from raw.events where event_id = %s", (repeated["event_id"],)
        ).fetchone()[0]
        groups = dict(
            rows(
                conn,
                "select consumer_group, sum(next_offset) from raw.ingest_offsets group by 1",
            )
        )
    assert total == distinct == len(events) - 1
    assert stored_repeat == 1
    # Both groups stored offsets covering every message of the topic.
    assert groups == {settings.consumer_group: len(events), replay.consumer_group: len(events)}


@pytest.mark.citus
@pytest.mark.integration
def test_late_and_old_events_get_their_own_distributed_partitions(settings: Settings) -> None:
    now = midday(0)
    late = pageview_event(occurred_at=iso(now - 40 * DAY), received_at=iso(now))
    produce_events(settings, [pageview_event(occurred_at=iso(now), received_at=iso(now)), late])
    drain(settings)
    expected = {f"raw.{schema.partition_name(day.date())}" for day in (now, now - 40 * DAY)}
    with psycopg.connect(settings.database_url) as conn:
        # On Citus, tableoid names the shard a row came from, so ask each partition instead.
        partitions = {name for (name,) in rows(conn, "select partition::text from time_partitions")}
        distributed = {name for (name,) in rows(conn, "select table_name::text from citus_tables")}
        counts = {name: rows(conn, f"select count(*) from {name}")[0][0] for name in expected}
    assert partitions == expected
    assert expected <= distributed
    assert counts == dict.fromkeys(expected, 1)


# -- columnar storage for old partitions --------------------------------------------------------


def access_methods(conn: psycopg.Connection) -> dict[str, str]:
    return dict(
        rows(
            conn,
            "select partition::text, access_method from time_partitions "
            "where parent_table = 'raw.events'::regclass",
        )
    )


def worker_access_methods(
    citus_stack: local_stack.CitusStackInfo, database_url: str, partition: str
) -> set[str]:
    """The access methods of a partition's shards, read on the workers themselves."""
    found = set()
    shard_prefix = partition.split(".", 1)[1] + "\\_%"
    for port in citus_stack.worker_ports:
        url = psycopg.conninfo.make_conninfo(database_url, port=port)
        with psycopg.connect(url) as worker:
            # Citus hides shards from catalog queries on workers unless asked not to.
            worker.execute("set citus.override_table_visibility to off")
            found |= {
                amname
                for (amname,) in rows(
                    worker,
                    "select distinct a.amname from pg_class c join pg_am a on a.oid = c.relam "
                    "where c.relkind = 'r' and c.relname like %s",
                    (shard_prefix,),
                )
            }
    return found


@pytest.mark.citus
@pytest.mark.integration
def test_old_partitions_go_columnar_and_late_events_still_load(
    citus_stack: local_stack.CitusStackInfo,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Events from 500 days ago (received the day after), and from last week.
    ancient, recent = day_events(midday(500), 30, received_after=DAY), day_events(midday(7), 30)
    produce_events(settings, ancient + recent)
    drain(settings)
    old = f"raw.{schema.partition_name(midday(500).date())}"
    young = f"raw.{schema.partition_name(midday(7).date())}"

    monkeypatch.setenv("RETROLYTICS_DATABASE_URL", settings.database_url)
    assert cli.main(["maintain", "--columnar-after-days", str(schema.COLUMNAR_MIN_AGE.days)]) == 0
    moved = capsys.readouterr().out.splitlines()[0]
    assert moved == f"moved 1 partitions to columnar storage: {old}"
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        assert access_methods(conn) == {old: "columnar", young: "heap"}
        assert rows(
            conn,
            "select table_name::text from citus_tables where table_name = %s::regclass",
            (old,),
        ) == [(old,)]
    assert worker_access_methods(citus_stack, settings.database_url, old) == {"columnar"}
    assert worker_access_methods(citus_stack, settings.database_url, young) == {"heap"}

    # A late event (as late as the contract allows, nearly) and a replay of the old day.
    late = day_events(midday(MAX_LATENESS.days - 1), 1, received_after=timedelta(0))[0]
    late["received_at"] = iso(datetime.now(tz=UTC))
    produce_events(settings, [late, *ancient])
    drain(settings)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        assert conn.execute("select count(*) from raw.events").fetchone() == (61,)
        late_partition = f"raw.{schema.partition_name(midday(MAX_LATENESS.days - 1).date())}"
        assert access_methods(conn)[late_partition] == "heap"
        stored_late = conn.execute(
            f"select count(*) from {late_partition} where event_id = %s", (late["event_id"],)
        ).fetchone()
        assert stored_late == (1,)
        # Columnar data reads like any other.
        assert conn.execute(
            f"select count(*), count(distinct anonymous_id) from {old}"
        ).fetchone() == (30, 7)

    assert cli.main(["maintain", "--columnar-after-days", str(schema.COLUMNAR_MIN_AGE.days)]) == 0
    assert "no row-based partition" in capsys.readouterr().out


@pytest.mark.citus
@pytest.mark.integration
def test_a_new_row_cannot_enter_a_columnar_partition(raw_db: psycopg.Connection) -> None:
    """Why COLUMNAR_MIN_AGE exists (Citus issue 6298); if this starts failing, Citus lifted
    the limitation and columnar may come sooner."""
    stored = day_events(midday(10), 5)
    store_events(raw_db, stored)
    converted = raw_db.execute("call retrolytics.columnar_after(%s)", (timedelta(days=2),))
    assert converted.fetchone() == ([f"raw.{schema.partition_name(midday(10).date())}"],)

    store_events(raw_db, stored[:2])  # duplicates: skipped by ON CONFLICT, no error
    assert raw_db.execute("select count(*) from raw.events").fetchone() == (5,)
    # New rows alone take the loader's plain COPY, which columnar accepts...
    store_events(raw_db, day_events(midday(10) + timedelta(hours=3), 1))
    assert raw_db.execute("select count(*) from raw.events").fetchone() == (6,)
    # ...but a new row beside a duplicate takes INSERT ... ON CONFLICT, which it refuses.
    mixed = [stored[0], *day_events(midday(10) + timedelta(hours=4), 1)]
    with pytest.raises(psycopg.Error, match="columnar_tuple_insert_speculative"):
        store_events(raw_db, mixed)
    assert raw_db.execute("select count(*) from raw.events").fetchone() == (6,)


# -- the dbt models on the cluster --------------------------------------------------------------


def build_models(database_url: str, target: Path, events: list[dict]) -> None:
    from retrolytics.warehouse import runner

    with psycopg.connect(database_url, autocommit=True) as conn:
        schema.bootstrap(conn)
        store_events(conn, events)
    runner.run_dbt(
        ["build"],
        database_url=database_url,
        project_dir=REPO / "dbt_project",
        definitions_dir=REPO / "definitions",
        target_path=target,
    )


@pytest.fixture(scope="module")
def shop_events() -> list[dict]:
    from demo.traffic import generate_events

    return list(generate_events(3000, 3, 11))


@pytest.fixture
def built_on_citus(
    citus_database_url: str, shop_events: list[dict], tmp_path: Path
) -> tuple[str, Path]:
    build_models(citus_database_url, tmp_path / "citus-target", shop_events)
    return citus_database_url, tmp_path / "citus-target"


def model_tables(conn: psycopg.Connection) -> dict[str, bool]:
    """Every table dbt built, and whether it holds per-device rows (an anonymous_id column)."""
    found = rows(
        conn,
        "select t.table_schema || '.' || t.table_name, bool_or(c.column_name = 'anonymous_id') "
        "from information_schema.tables t join information_schema.columns c "
        "using (table_schema, table_name) "
        "where t.table_schema in ('staging', 'intermediate', 'marts') "
        "and t.table_type = 'BASE TABLE' group by 1",
    )
    return dict(found)


# Columns that say when and by which run a row was derived, not what it says.
RUN_COLUMNS = ("derived_at", "invocation_id")


def mart_contents(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    """Every table in the marts schema, rows sorted, without the run's own columns."""
    contents = {}
    for table, _per_device in sorted(model_tables(conn).items()):
        if not table.startswith("marts.") or table.endswith("__versions"):
            continue
        columns = [
            name
            for (name,) in rows(
                conn,
                "select column_name from information_schema.columns "
                "where table_schema || '.' || table_name = %s order by ordinal_position",
                (table,),
            )
            if name not in RUN_COLUMNS
        ]
        listed = ", ".join(f'"{name}"::text' for name in columns)
        contents[table] = sorted(rows(conn, f"select {listed} from {table}"), key=repr)
    return contents


@pytest.mark.citus
@pytest.mark.integration
def test_dbt_models_are_distributed_with_the_events_and_match_one_postgres(
    built_on_citus: tuple[str, Path], database_url: str, shop_events: list[dict], tmp_path: Path
) -> None:
    citus_url, _target = built_on_citus
    with psycopg.connect(citus_url) as conn:
        tables = model_tables(conn)
        catalog = {
            name: (kind, colocation)
            for name, kind, colocation in rows(
                conn, "select table_name::text, citus_table_type, colocation_id from citus_tables"
            )
        }
        distribution = dict(
            rows(conn, "select table_name::text, distribution_column from citus_tables")
        )
        citus_marts = mart_contents(conn)
    assert distribution["marts.defined_events"] == "anonymous_id"
    assert catalog["staging.event_definitions"][0] == "reference"
    colocated = ("distributed", catalog["raw.events"][1])
    for table, per_device in tables.items():
        kind, colocation = catalog.get(table, ("local", None))
        if per_device:  # created empty, distributed, colocated with raw.events
            assert (kind, colocation) == colocated, table
        else:  # per-unit tables colocated too; the rest every node has whole
            assert kind == "reference" or (kind, colocation) == colocated, table

    build_models(database_url, tmp_path / "single-target", shop_events)
    with psycopg.connect(database_url) as conn:
        single_marts = mart_contents(conn)
    assert len(citus_marts["marts.defined_events"]) > 100
    assert citus_marts.keys() == single_marts.keys()
    for table, contents in citus_marts.items():
        assert contents == single_marts[table], table


def explain(conn: psycopg.Connection, statement: str) -> str:
    return "\n".join(line for (line,) in rows(conn, f"explain (costs off) {statement}"))


def events_shard_count(conn: psycopg.Connection) -> int:
    query = "select shard_count from citus_tables where table_name = 'raw.events'::regclass"
    return rows(conn, query)[0][0]


def assert_runs_on_the_workers(plan: str, shards: int) -> None:
    """Pushed down: one task per shard inserts what it selects; no coordinator round trip."""
    # Neither "pull to coordinator" nor "repartition".
    assert "INSERT/SELECT method" not in plan, plan
    assert "read_intermediate_result" not in plan, plan
    assert f"Task Count: {shards}" in plan, plan


@pytest.mark.citus
@pytest.mark.integration
@pytest.mark.parametrize(
    "compiled",
    [
        "marts/defined_events.sql",
        # The funnels' step events, per device like the events they come from.
        "intermediate/funnels/int_funnel_step_events.sql",
        # The retention analyses' input stream and activity facts, per device the same way.
        "intermediate/retention/int_retention_events.sql",
        "marts/retention/fct_retention_activity.sql",
        # The attempts at `unit: device` funnels. Funnels by `unit: user` are another model
        # (fct_funnel_entries_user), which must gather a person's devices from several shards,
        # so Citus plans it through the coordinator (see the windowed test below).
        "marts/funnels/fct_funnel_entries_device.sql",
        # Sessions are per device: every window is partitioned by anonymous_id.
        "marts/sessions/fct_sessions.sql",
    ],
)
def test_per_device_models_run_on_the_workers(
    built_on_citus: tuple[str, Path], compiled: str
) -> None:
    citus_url, target = built_on_citus
    statement = (target / "run" / "retrolytics" / "models" / compiled).read_text()
    with psycopg.connect(citus_url) as conn:
        assert_runs_on_the_workers(explain(conn, statement), events_shard_count(conn))


# The models whose statements a windowed run should keep on the workers (the user funnels aside).
WINDOWED_MODELS = (
    "defined_events",
    "fct_funnel_entries_device",
    "fct_funnel_entries_user",
    "fct_sessions",
)
# What the windowed run builds: those, the selector and signature matches defined_events joins
# (written earlier in the same invocation), the funnel stages between them (step events, identity
# snapshot, recompute plan), and the sessions' plan (fct_sessions follows the plan written earlier
# in the same invocation).
WINDOWED_RUN = (
    "int_selector_matches",
    "int_signature_matches",
    "defined_events",
    "int_funnel_step_events",
    "int_identity_snapshots",
    "int_funnel_recompute_plan",
    "fct_funnel_entries_device",
    "fct_funnel_entries_user",
    "int_sessions_plan",
    "fct_sessions",
)


def model_inserts(log: Path) -> dict[str, list[str]]:
    """The INSERT ... SELECT statements a dbt run executed into each of WINDOWED_MODELS, in order,
    read from its JSON debug log (the statements the materializations ran, not their inputs)."""
    target = re.compile(r'^\s*insert into "[^"]+"\."marts"\."(\w+)"[\s(]', re.MULTILINE)
    inserts: dict[str, list[str]] = {name: [] for name in WINDOWED_MODELS}
    for line in log.read_text().splitlines():
        event = json.loads(line)
        if event["info"]["name"] != "SQLQuery":
            continue
        sql = event["data"]["sql"]
        found = target.search(sql)
        if found and found.group(1) in inserts:
            inserts[found.group(1)].append(sql)
    return inserts


@pytest.fixture
def windowed_run(built_on_citus: tuple[str, Path], tmp_path: Path) -> dict[str, list[str]]:
    """What the hourly runs do after the first build (the last hour, looking back a day), for
    the models of WINDOWED_MODELS: the statements they inserted with."""
    from retrolytics.warehouse import runner

    citus_url, _target = built_on_citus
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    logs = tmp_path / "windowed-logs"
    debug_log = ["--log-path", str(logs), "--log-format-file", "json", "--log-level-file", "debug"]
    runner.run_dbt(
        ["run", "--select", *WINDOWED_RUN, *debug_log],
        database_url=citus_url,
        target_path=tmp_path / "windowed-target",
        window={"start": iso(hour - timedelta(hours=1)), "end": iso(hour), "lookback_hours": 24},
    )
    return model_inserts(logs / "dbt.log")


@pytest.mark.citus
@pytest.mark.integration
def test_windowed_runs_keep_devices_on_the_workers_and_gather_persons(
    built_on_citus: tuple[str, Path], windowed_run: dict[str, list[str]]
) -> None:
    citus_url, _target = built_on_citus
    [defined_events] = windowed_run["defined_events"]
    # One statement per unit: the `unit: device` funnels, and the `unit: user` ones.
    [device_funnels] = windowed_run["fct_funnel_entries_device"]
    [user_funnels] = windowed_run["fct_funnel_entries_user"]
    assert "step_events.unit = 'device'" in device_funnels
    assert "step_events.unit = 'user'" in user_funnels
    with psycopg.connect(citus_url) as conn:
        shards = events_shard_count(conn)
        # The run followed a plan (units touched in the window, each from its own point), joined
        # on unit_id, the distribution column the plan shares with the facts.
        assert "int_funnel_recompute_plan" in device_funnels
        plan = "select count(*) from intermediate.int_funnel_recompute_plan"
        assert rows(conn, plan)[0][0] > 0
        assert_runs_on_the_workers(explain(conn, defined_events), shards)
        assert_runs_on_the_workers(explain(conn, device_funnels), shards)
        # A person's events sit on the shards of all its devices: Citus must bring them
        # together, through the coordinator. Expected, and kept to this second statement.
        assert "INSERT/SELECT method: pull to coordinator" in explain(conn, user_funnels)


@pytest.mark.citus
@pytest.mark.integration
def test_sessions_and_persons_are_distributed_and_sessions_follow_their_plan_on_the_workers(
    built_on_citus: tuple[str, Path], windowed_run: dict[str, list[str]]
) -> None:
    citus_url, _target = built_on_citus
    [sessions] = windowed_run["fct_sessions"]
    # The hourly run read only the devices its plan names, joined on the distribution column.
    assert "int_sessions_plan" in sessions
    with psycopg.connect(citus_url) as conn:
        assert rows(conn, "select count(*) from intermediate.int_sessions_plan")[0][0] > 0
        assert_runs_on_the_workers(explain(conn, sessions), events_shard_count(conn))
        catalog = {
            name: (kind, column, colocation)
            for name, kind, column, colocation in rows(
                conn,
                "select table_name::text, citus_table_type, distribution_column, colocation_id "
                "from citus_tables",
            )
        }
    events_group = catalog["raw.events"][2]
    for table, column in (
        ("marts.fct_sessions", "anonymous_id"),
        ("intermediate.int_sessions_plan", "anonymous_id"),
        ("marts.dim_devices", "anonymous_id"),
        ("marts.dim_persons", "person_id"),
        ("marts.dim_person_traits", "person_id"),
    ):
        assert catalog[table] == ("distributed", column, events_group), table
    assert catalog["raw.user_agents"][0] == "reference"
