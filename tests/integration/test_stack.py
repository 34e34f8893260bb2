"""The local stack (``retrolytics stack``) against the real PostgreSQL and Kafka it starts.

The shared stack of the test session is never stopped here; tests that need a stack of their own
point RETROLYTICS_STATE_DIR at a temporary folder and clean up after themselves.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from ingestion import stack as local_stack
from ingestion.settings import read_stack_env
from ingestion.stack import ports as stack_ports
from ingestion.stack import processes
from ingestion.stack.layout import StackPaths
from ingestion.topics import (
    DEFAULT_PARTITIONS,
    RELIABLE_PRODUCER_CONFIG,
    delete_topic,
    ensure_topic,
)
from tests.support.paths import REPO

pytestmark = pytest.mark.integration


def parse_env_lines(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        assert sep, f"not a KEY=value line: {line!r}"
        assert key.startswith("RETROLYTICS_"), line
        values[key] = value
    return values


@pytest.fixture
def private_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state folder of its own: nothing here can disturb the session's shared stack."""
    folder = tmp_path / "state"
    monkeypatch.setenv("RETROLYTICS_STATE_DIR", str(folder))
    return folder


@pytest.fixture
def listening_socket() -> Iterator[int]:
    """A port on loopback held by something that is not the stack."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        yield holder.getsockname()[1]
    finally:
        holder.close()


def test_up_twice_returns_the_same_running_stack(stack: local_stack.StackInfo) -> None:
    again = local_stack.up()
    assert again == stack
    assert local_stack.status() == stack
    assert stack.database_url.startswith("postgresql://retrolytics:")
    assert stack.database_url.endswith(f"@127.0.0.1:{stack.postgres_port}/retrolytics")
    assert stack.kafka_bootstrap == f"127.0.0.1:{stack.kafka_port}"
    assert stack.postgres_port != stack.kafka_port


def test_status_prints_only_the_env_lines(
    stack: local_stack.StackInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert local_stack.main("status") == 0
    printed = capsys.readouterr().out
    assert printed.splitlines() == stack.env_lines()
    assert parse_env_lines(printed) == {
        "RETROLYTICS_DATABASE_URL": stack.database_url,
        "RETROLYTICS_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "RETROLYTICS_LOADER_DATABASE_URL": stack.loader_database_url,
        "RETROLYTICS_DBT_DATABASE_URL": stack.dbt_database_url,
        "RETROLYTICS_BI_DATABASE_URL": stack.bi_database_url,
        "RETROLYTICS_ERASURE_KEY": stack.erasure_key,
    }
    assert read_stack_env() == parse_env_lines(printed)


def test_status_lines_load_into_a_shell(stack: local_stack.StackInfo) -> None:
    script = (
        f'set -a; eval "$({sys.executable} -m retrolytics.cli stack status)"; set +a; '
        f"{sys.executable} -c "
        '\'import os; print(os.environ["RETROLYTICS_DATABASE_URL"]); '
        'print(os.environ["RETROLYTICS_KAFKA_BOOTSTRAP"])\''
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETROLYTICS_KAFKA")}
    env.pop("RETROLYTICS_DATABASE_URL", None)
    result = subprocess.run(
        ["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [stack.database_url, stack.kafka_bootstrap]


def test_postgres_answers_as_retrolytics(stack: local_stack.StackInfo) -> None:
    with psycopg.connect(stack.database_url, connect_timeout=10) as conn:
        row = conn.execute(
            "select current_user, current_database(), r.rolsuper, current_setting('port'),"
            " current_setting('listen_addresses'), current_setting('server_encoding')"
            " from pg_roles r where r.rolname = current_user"
        ).fetchone()
    assert row == (
        "retrolytics",
        "retrolytics",
        False,  # the owner, not a superuser
        str(stack.postgres_port),
        "127.0.0.1",
        "UTF8",
    )


def test_kafka_round_trips_a_message(stack: local_stack.StackInfo, topic: str) -> None:
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, **RELIABLE_PRODUCER_CONFIG})
    payload = uuid.uuid4().bytes
    producer.produce(topic, key=b"device-1", value=payload)
    assert producer.flush(30) == 0

    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": f"test-stack-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        metadata = consumer.list_topics(topic, timeout=10)
        assert len(metadata.topics[topic].partitions) == 6
        received = None
        deadline = time.monotonic() + 60
        while received is None and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                received = message
    finally:
        consumer.close()
    assert received is not None, "the produced message was never consumed"
    assert (received.key(), received.value()) == (b"device-1", payload)


def test_a_new_topic_answers_offset_queries_at_once(stack: local_stack.StackInfo) -> None:
    """ensure_topic returns only once each partition has its leader (23 of 40 topics failed
    this query while it returned on the controller's acknowledgement)."""
    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": "test-stack"})
    try:
        for _ in range(5):
            topic = f"test.new-topic.{uuid.uuid4().hex[:12]}"
            ensure_topic(stack.kafka_bootstrap, topic)
            try:
                for partition in range(DEFAULT_PARTITIONS):
                    offsets = consumer.get_watermark_offsets(
                        TopicPartition(topic, partition), timeout=10
                    )
                    assert offsets == (0, 0)
            finally:
                delete_topic(stack.kafka_bootstrap, topic)
    finally:
        consumer.close()


def test_ensure_topic_asks_a_silent_broker_again_until_its_deadline(listening_socket: int) -> None:
    """Every admin request of ensure_topic, the first included, runs under one deadline: a
    broker that takes connections but does not answer (like one starved of CPU) is asked again
    until then, and the error names the topic, the broker and the wait."""
    topic = f"test.silent.{uuid.uuid4().hex[:12]}"
    bootstrap = f"127.0.0.1:{listening_socket}"
    started = time.monotonic()
    expected = re.escape(f"topic {topic!r} on {bootstrap} is not ready after 3 s")
    with pytest.raises(KafkaException, match=expected):
        ensure_topic(bootstrap, topic, timeout=3)
    assert time.monotonic() - started >= 3, "gave up before its deadline"


def test_ensure_topic_refuses_an_invalid_name_at_once(stack: local_stack.StackInfo) -> None:
    """Waiting cannot mend a bad name: the broker's refusal is raised, not retried for minutes."""
    with pytest.raises(KafkaException) as refused:
        ensure_topic(stack.kafka_bootstrap, "not a valid name!")
    assert refused.value.args[0].code() == KafkaError.TOPIC_EXCEPTION, refused.value


def test_kafka_does_not_create_topics_on_first_use(stack: local_stack.StackInfo) -> None:
    missing = f"test.never-created.{uuid.uuid4().hex[:12]}"
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "message.timeout.ms": 3000})
    failures = []
    producer.produce(missing, value=b"x", on_delivery=lambda err, _msg: failures.append(err))
    producer.flush(15)
    assert failures and failures[0] is not None, "a write to a missing topic must fail"
    topics = AdminClient({"bootstrap.servers": stack.kafka_bootstrap}).list_topics(timeout=10)
    assert missing not in topics.topics


@pytest.fixture
def short_port_release_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """A port that stays taken is refused after 1 s instead of 15: the wait is for a crashed
    server's sockets, and these tests hold theirs on purpose."""
    monkeypatch.setattr(stack_ports, "PORT_RELEASE_WAIT_S", 1.0)


def test_a_taken_remembered_port_is_a_clear_error(
    private_state_dir: Path,
    listening_socket: int,
    short_port_release_wait: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    kafka, controller = stack_ports.pick_free_ports(2)
    private_state_dir.mkdir(parents=True)
    stack_ports.save(
        private_state_dir / "ports.json",
        stack_ports.Ports(postgres=listening_socket, kafka=kafka, kafka_controller=controller),
    )
    with pytest.raises(local_stack.StackError, match=rf"port {listening_socket} .*is taken"):
        local_stack.up()
    assert not (private_state_dir / "postgres").exists(), "nothing may start on a taken port"

    assert local_stack.main("up") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert str(listening_socket) in captured.err


def test_another_state_dir_never_reuses_the_shared_stacks_ports(
    stack: local_stack.StackInfo,
    tmp_path: Path,
    short_port_release_wait: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shared_ports_file = StackPaths.current().ports_file
    copied = tmp_path / "copied-state"
    copied.mkdir()
    # As if a user copied the state folder: its ports belong to the running shared stack.
    shutil.copy(shared_ports_file, copied / "ports.json")
    monkeypatch.setenv("RETROLYTICS_STATE_DIR", str(copied))
    with pytest.raises(local_stack.StackError, match=rf"port {stack.postgres_port} "):
        local_stack.up()
    assert local_stack.status() is None

    monkeypatch.undo()
    assert local_stack.status() == stack


def test_status_and_down_of_a_stack_that_never_ran(
    private_state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert local_stack.status() is None
    local_stack.down()
    assert local_stack.main("status") == local_stack.NOT_RUNNING_EXIT_CODE
    assert local_stack.main("down") == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "not running" in captured.err


def _kill_postgres(paths: StackPaths) -> None:
    """Like a power cut: the postmaster and every server process die at once."""
    postmaster = int((paths.postgres_data / "postmaster.pid").read_text().split()[0])
    victims = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            victims.append(int(stat.parent.name))
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    for pid in victims:
        deadline = time.monotonic() + 10
        while processes.is_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.fixture
def second_stack_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # Not pytest's tmp_path: when the tests run as root, PostgreSQL runs as `postgres`, which
    # may not enter pytest's private temporary root. /tmp itself is open to every user.
    folder = Path(tempfile.mkdtemp(prefix="retrolytics-second-stack-"))
    monkeypatch.setenv("RETROLYTICS_STATE_DIR", str(folder))
    try:
        yield folder
    finally:
        try:
            local_stack.down()
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def test_a_second_stack_recovers_from_a_crash_and_stops(
    stack: local_stack.StackInfo, second_stack_dir: Path
) -> None:
    second = local_stack.up()
    assert {second.postgres_port, second.kafka_port}.isdisjoint(
        {stack.postgres_port, stack.kafka_port}
    )
    paths = StackPaths.current()
    kafka_pid = processes.read_pid(paths.kafka_pid_file)
    assert kafka_pid is not None
    os.kill(kafka_pid, signal.SIGKILL)
    _kill_postgres(paths)
    deadline = time.monotonic() + 10
    while processes.is_alive(kafka_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert local_stack.status() is None

    assert local_stack.up() == second
    with psycopg.connect(second.database_url, connect_timeout=10) as conn:
        assert conn.execute("select current_user").fetchone() == ("retrolytics",)

    local_stack.down()
    assert local_stack.status() is None
    assert not paths.env_file.exists()
    local_stack.down()  # stopping a stopped stack is fine
    # The shared stack did not notice any of this.
    with psycopg.connect(stack.database_url, connect_timeout=10) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
