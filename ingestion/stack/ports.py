"""Loopback ports: picked once per state folder, remembered, and checked before every start."""

from __future__ import annotations

import errno
import json
import random
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ingestion.stack.errors import StackError
from ingestion.stack.layout import write_atomically

HOST = "127.0.0.1"
# Stay below the kernel's ephemeral range so that outgoing connections never grab a remembered
# port between two runs of the stack.
LOWEST_PORT = 20000
FALLBACK_EPHEMERAL_START = 32768


@dataclass(frozen=True)
class Ports:
    postgres: int
    kafka: int
    kafka_controller: int


def load(path: Path) -> Ports | None:
    if not path.exists():
        return None
    try:
        return Ports(**json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise StackError(
            f"{path} is not a valid ports file ({exc}); delete it to pick new ports"
        ) from exc


def save(path: Path, ports: Ports) -> None:
    write_atomically(path, json.dumps(asdict(ports), indent=2) + "\n")


def load_or_pick(path: Path) -> Ports:
    """The remembered ports, or fresh free ones (remembered from now on)."""
    remembered = load(path)
    if remembered is not None:
        return remembered
    postgres, kafka, controller = pick_free_ports(3)
    ports = Ports(postgres=postgres, kafka=kafka, kafka_controller=controller)
    save(path, ports)
    return ports


def is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Servers set SO_REUSEADDR too, so a port left in TIME_WAIT counts as free, as for them.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


# A crashed server's threads may still be exiting, holding its sockets, after its main thread
# is already a zombie (which the stack takes for dead): give such a port time to come free.
PORT_RELEASE_WAIT_S = 15.0


def ensure_free(port: int, what: str, ports_file: Path) -> None:
    deadline = time.monotonic() + PORT_RELEASE_WAIT_S
    while not is_free(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not is_free(port):
        raise StackError(
            f"port {port} on {HOST} (remembered for {what} in {ports_file}) is taken by "
            f"another program; stop that program, or delete {ports_file} to pick new ports "
            "(clients then need the new `retrolytics stack status` lines)"
        )


def _ephemeral_start() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return FALLBACK_EPHEMERAL_START


def pick_free_ports(count: int) -> list[int]:
    """Distinct ports that are free right now, chosen at random below the ephemeral range."""
    upper = max(_ephemeral_start(), LOWEST_PORT + 1000)
    candidates = random.sample(range(LOWEST_PORT, upper), k=min(400, upper - LOWEST_PORT))
    chosen = [port for port in candidates if is_free(port)][:count]
    if len(chosen) < count:
        raise StackError(f"could not find {count} free ports on {HOST} in {LOWEST_PORT}-{upper}")
    return chosen
