"""A single-node Apache Kafka in KRaft mode (broker and controller in one JVM).

The broker's jars come from Maven Central through ``pom.xml`` next to this file and are cached
outside the work tree, so only the very first setup on a machine pays for the download.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from ingestion.stack import processes
from ingestion.stack.errors import StackError
from ingestion.stack.layout import StackPaths, exclusive, tail, write_atomically
from ingestion.stack.ports import HOST, Ports

STACK_PACKAGE = Path(__file__).resolve().parent
POM = STACK_PACKAGE / "pom.xml"
LOG4J_CONFIG = STACK_PACKAGE / "log4j2.yaml"
MINIMUM_JAVA = 17
READY_TIMEOUT = 90
STOP_TIMEOUT = 60
COMPLETE_MARKER = "complete.sha256"
JVM_OPTIONS = [
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
]


def kafka_version() -> str:
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if not match:
        raise StackError(f"{POM} does not declare <kafka.version>")
    return match.group(1).strip()


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "retrolytics" / f"kafka-{kafka_version()}"


def find_java() -> str:
    """The java executable, checked to be recent enough for Kafka 4."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home, "bin", "java") if java_home else None
    java = str(candidate) if candidate and candidate.exists() else shutil.which("java")
    if java is None:
        raise StackError(
            f"Kafka needs Java {MINIMUM_JAVA} or newer and no `java` was found; install it "
            "(Debian: apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
        )
    result = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if not match:
        raise StackError(f"could not read the version of {java}:\n{result.stderr}")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_x" style numbering means Java 8
        major = int(match.group(2))
    if major < MINIMUM_JAVA:
        raise StackError(
            f"Kafka {kafka_version()} needs Java {MINIMUM_JAVA} or newer, but {java} is "
            f"Java {major}; install openjdk-17 (or newer) or point JAVA_HOME at it"
        )
    return java


def ensure_jars() -> Path:
    """The folder of broker jars, copied from Maven Central unless the cache is complete."""
    cache = cache_dir()
    libs = cache / "libs"
    fingerprint = hashlib.sha256(POM.read_bytes()).hexdigest()
    marker = cache / COMPLETE_MARKER
    if _marker_matches(marker, fingerprint):
        return libs
    cache.mkdir(parents=True, exist_ok=True)
    with exclusive(cache / ".lock"):  # two stacks set up at once share one download
        if _marker_matches(marker, fingerprint):
            return libs
        _copy_dependencies(cache, libs)
        marker.write_text(fingerprint + "\n")
    return libs


def _marker_matches(marker: Path, fingerprint: str) -> bool:
    return marker.exists() and marker.read_text().strip() == fingerprint


def _copy_dependencies(cache: Path, libs: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            "Maven (`mvn`) is needed once to download Kafka's jars into "
            f"{cache}; install it (Debian: apt-get install maven)"
        )
    incoming = cache / "libs.partial"
    shutil.rmtree(incoming, ignore_errors=True)
    command = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={incoming}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any(incoming.glob("kafka_2.13-*.jar")):
        output = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
        raise StackError(
            f"downloading Kafka's jars with Maven failed (exit code {result.returncode}):\n"
            f"{' '.join(command)}\n{output}"
        )
    shutil.rmtree(libs, ignore_errors=True)
    incoming.rename(libs)


def _java_command(java: str, libs: Path, paths: StackPaths, main_class: str) -> list[str]:
    return [
        java,
        *JVM_OPTIONS,
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        f"-Dkafka.logs.dir={paths.kafka_logs}",
        "-cp",
        f"{libs}/*",
        main_class,
    ]


def write_config(paths: StackPaths, ports: Ports) -> None:
    broker = f"{HOST}:{ports.kafka}"
    controller = f"{HOST}:{ports.kafka_controller}"
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": controller,
        "controller.listener.names": "CONTROLLER",
        "listeners": f"PLAINTEXT://{broker},CONTROLLER://{controller}",
        "advertised.listeners": f"PLAINTEXT://{broker},CONTROLLER://{controller}",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(paths.kafka_data),
        "num.partitions": "6",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # After a crash the restarted broker must wait out its old session before it may
        # register again; with one node and no network a short session costs nothing.
        "broker.heartbeat.interval.ms": "1000",
        "broker.session.timeout.ms": "4000",
        # Keep every event: replaying the topic from the start must re-create the same rows,
        # and synthetic traffic carries back-dated timestamps that time retention would drop.
        "log.retention.ms": "-1",
        "num.network.threads": "3",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
    }
    lines = ["# Written by `retrolytics stack up` on every start; edits are overwritten."]
    lines += [f"{name}={value}" for name, value in settings.items()]
    paths.kafka_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(paths.kafka_properties, "\n".join(lines) + "\n")


def _random_cluster_id() -> str:
    # Kafka's Uuid text form: URL-safe base64 of the 16 bytes, without padding. Like Kafka's
    # Uuid.randomUuid, draw again when it starts with "-": the storage tool's argument parser
    # would take such an id for an option (1 format in 64 failed before).
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def format_storage(paths: StackPaths, java: str, libs: Path) -> bool:
    """Format the KRaft log folder once; returns whether it was formatted now."""
    if (paths.kafka_data / "meta.properties").exists():
        return False
    command = [
        *_java_command(java, libs, paths, "kafka.tools.StorageTool"),
        "format",
        "--standalone",
        "--cluster-id",
        _random_cluster_id(),
        "--config",
        str(paths.kafka_properties),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        raise StackError(
            f"formatting Kafka's storage in {paths.kafka_data} failed:\n"
            f"{result.stdout}{result.stderr}"
        )
    return True


def running_pid(paths: StackPaths) -> int | None:
    """The pid of this state folder's broker, if it runs (a recycled pid does not count)."""
    pid = processes.read_pid(paths.kafka_pid_file)
    if pid is None or not processes.is_alive(pid):
        return None
    command = processes.command_line(pid)
    if "kafka.Kafka" not in command or str(paths.kafka_properties) not in command:
        return None
    return pid


def launch(paths: StackPaths, java: str, libs: Path) -> int:
    """Start the broker in the background; ``wait_until_ready`` tells when it serves."""
    paths.kafka_logs.mkdir(parents=True, exist_ok=True)
    command = [*_java_command(java, libs, paths, "kafka.Kafka"), str(paths.kafka_properties)]
    pid = processes.start_detached(command, paths.kafka_logs / "stdout.log", cwd=paths.kafka_dir)
    write_atomically(paths.kafka_pid_file, f"{pid}\n")
    return pid


def _log_excerpt(paths: StackPaths) -> str:
    parts = []
    for name in ("stdout.log", "server.log"):
        log = paths.kafka_logs / name
        parts.append(f"--- last lines of {log} ---\n{tail(log, 30)}")
    return "\n".join(parts)


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def _silent_logger() -> logging.Logger:
    # librdkafka reports every refused connection; while waiting for startup they are expected.
    logger = logging.getLogger("ingestion.stack.kafka.startup")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger


def _broker_answers(port: int) -> bool:
    admin = AdminClient({"bootstrap.servers": f"{HOST}:{port}", "logger": _silent_logger()})
    try:
        metadata = admin.list_topics(timeout=5)
    except KafkaException:
        return False
    return bool(metadata.brokers)


def wait_until_ready(paths: StackPaths, port: int, pid: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if not processes.is_alive(pid):
            raise StackError(f"Kafka exited while starting up:\n{_log_excerpt(paths)}")
        if _accepts_connections(port) and _broker_answers(port):
            return
        time.sleep(0.3)
    raise StackError(
        f"Kafka on {HOST}:{port} did not answer within {READY_TIMEOUT}s:\n{_log_excerpt(paths)}"
    )


def stop(paths: StackPaths) -> bool:
    """SIGTERM (a clean shutdown), SIGKILL after a timeout; returns whether one was running."""
    pid = running_pid(paths)
    if pid is not None:
        processes.terminate(pid, STOP_TIMEOUT)
    paths.kafka_pid_file.unlink(missing_ok=True)
    return pid is not None
