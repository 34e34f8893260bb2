"""Where the local stack keeps its state: one folder holding ports, data, logs and pid files."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ingestion import settings


@dataclass(frozen=True)
class StackPaths:
    root: Path
    env_file: Path

    @classmethod
    def current(cls) -> StackPaths:
        """The paths for the state folder the environment selects right now."""
        return cls(
            root=settings.state_dir().absolute(),
            env_file=settings.stack_env_file().absolute(),
        )

    @property
    def ports_file(self) -> Path:
        return self.root / "ports.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "stack.lock"

    @property
    def postgres_dir(self) -> Path:
        return self.root / "postgres"

    @property
    def postgres_data(self) -> Path:
        return self.postgres_dir / "data"

    @property
    def postgres_socket_dir(self) -> Path:
        return self.postgres_dir / "run"

    @property
    def postgres_logs(self) -> Path:
        return self.postgres_dir / "log"

    @property
    def kafka_dir(self) -> Path:
        return self.root / "kafka"

    @property
    def kafka_data(self) -> Path:
        return self.kafka_dir / "data"

    @property
    def kafka_logs(self) -> Path:
        return self.kafka_dir / "logs"

    @property
    def kafka_pid_file(self) -> Path:
        return self.kafka_dir / "kafka.pid"

    @property
    def kafka_properties(self) -> Path:
        return self.kafka_dir / "server.properties"


@contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock so concurrent ``up``/``down`` calls on one folder take turns."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_atomically(path: Path, content: str | bytes) -> None:
    """Readers (``Settings.from_env`` in other processes) never see a half-written file."""
    partial = path.with_name(f".{path.name}.partial")
    if isinstance(content, bytes):
        partial.write_bytes(content)
    else:
        partial.write_text(content)
    partial.replace(path)


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, or a note that it does not exist (yet)."""
    if not path.exists():
        return f"({path} does not exist)"
    content = path.read_text(errors="replace").splitlines()
    return "\n".join(content[-lines:]) or f"({path} is empty)"
