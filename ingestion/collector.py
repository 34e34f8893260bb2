"""HTTP collector: browser → Kafka, the shortest path to the first durable store.

``retrolytics collect`` serves this ASGI app (Starlette on uvicorn).

Endpoints
---------
``POST /v1/events``
    One event (a JSON object) or a batch (a JSON array of objects) in the raw event contract
    (``ingestion.contract``). ``Content-Type`` ``application/json``, ``text/plain`` (what
    ``navigator.sendBeacon`` sends for a string) or none. The collector stamps ``received_at``
    (its own clock; a client value is replaced), validates every event exactly as the loader will,
    produces each one to Kafka keyed by ``anonymous_id`` (idempotent producer, ``acks=all``) and
    answers ``200 {"accepted": n}`` only after Kafka acknowledged every event of the request.

    Policy for a partly bad batch: the *whole* batch is rejected with ``400`` and one reason per
    bad event (``{"error": …, "problems": [{"index": i, "event_id": …, "reason": …}]}``) and
    nothing is produced. A client drops the events named there and resends the rest, so a request
    never half-lands and a retry never duplicates part of it.

    Other answers: ``413`` body larger than ``max_body_bytes`` or more than ``max_batch_events``
    events; ``415`` another content type; ``403`` an ``Origin`` that is not allowed (when origins
    are configured); ``503`` with ``Retry-After`` when Kafka did not acknowledge in time (the
    snippet retries). Every error body is ``{"error": "<what is wrong>"}``.
``GET /health``
    ``200`` when the Kafka cluster answers a metadata request (with the topic's partition count),
    ``503`` when it does not.
``GET /retrolytics.js``
    The browser snippet (``ingestion/snippet/retrolytics.js``). It posts to the origin it was
    loaded from.

CORS: the configured origins may call ``POST /v1/events`` with ``Content-Type:
application/json`` (preflight answered by Starlette's ``CORSMiddleware``). Because simple
requests (``sendBeacon``) skip the preflight, a request whose ``Origin`` is not allowed is also
refused on the server side; requests without ``Origin`` (servers, curl) are accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import uvicorn
from confluent_kafka import KafkaError, KafkaException, Producer
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ingestion.contract import ContractViolation, check_time_bounds, parse_message
from ingestion.settings import Settings
from ingestion.topics import RELIABLE_PRODUCER_CONFIG, ensure_topic

log = logging.getLogger("retrolytics.collector")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8700
EVENTS_PATH = "/v1/events"
SNIPPET_PATH = Path(__file__).resolve().parent / "snippet" / "retrolytics.js"
MAX_BODY_BYTES = 512 * 1024
MAX_BATCH_EVENTS = 100
DELIVERY_TIMEOUT_S = 10.0
HEALTH_TIMEOUT_S = 3.0
RETRY_AFTER_S = 5
# ``retrolytics collect`` without --allow-origin: the demo shop on its default port.
DEMO_SHOP_ORIGINS = ("http://127.0.0.1:8800", "http://localhost:8800")
ACCEPTED_MEDIA_TYPES = ("", "application/json", "text/plain")


@dataclass(frozen=True)
class CollectorConfig:
    kafka_bootstrap: str
    topic: str
    allow_origins: tuple[str, ...] = ()
    max_body_bytes: int = MAX_BODY_BYTES
    max_batch_events: int = MAX_BATCH_EVENTS
    # How long Kafka may take to acknowledge before the browser is told to retry (503).
    delivery_timeout_s: float = DELIVERY_TIMEOUT_S

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> CollectorConfig:
        return cls(kafka_bootstrap=settings.kafka_bootstrap, topic=settings.topic, **overrides)

    def origin_allowed(self, origin: str | None) -> bool:
        return origin is None or "*" in self.allow_origins or origin in self.allow_origins


class RequestRejected(Exception):
    """A request the collector refuses; becomes a JSON error response."""

    def __init__(self, status: int, error: str, problems: list[dict] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.problems = problems

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"error": self.error}
        if self.problems is not None:
            body["problems"] = self.problems
        return JSONResponse(body, status_code=self.status)


class KafkaUnavailable(Exception):
    """Kafka did not acknowledge; the client should retry."""


# -- Kafka ----------------------------------------------------------------------------------


def _settle(future: asyncio.Future, error: KafkaError | None) -> None:
    if future.done():  # the request already gave up waiting
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(KafkaUnavailable(f"Kafka did not acknowledge: {error.str()}"))


class KafkaSink:
    """The reliable producer, polled by one background thread so the event loop never blocks.

    Delivery callbacks run on the poll thread and hand their outcome to the request's event loop
    through ``call_soon_threadsafe``.
    """

    def __init__(self, bootstrap: str, topic: str, delivery_timeout_s: float) -> None:
        self.topic = topic
        self.delivery_timeout_s = delivery_timeout_s
        self._config = {
            "bootstrap.servers": bootstrap,
            **RELIABLE_PRODUCER_CONFIG,
            "client.id": "retrolytics-collector",
            "message.timeout.ms": int(delivery_timeout_s * 1000),
            "logger": logging.getLogger("retrolytics.collector.kafka"),
        }
        self._producer = Producer(self._config)
        self._fatal = False
        self._stopping = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-delivery", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.1)

    def _on_delivery(
        self, loop: asyncio.AbstractEventLoop, future: asyncio.Future, error: Any, _: Any
    ) -> None:
        if error is not None and error.fatal():
            # A fatal error ends this producer instance; the next request starts a fresh one.
            self._fatal = True
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, future, error)

    def _current_producer(self) -> Producer:
        if self._fatal:
            log.warning("replacing the Kafka producer after a fatal error")
            self._producer = Producer(self._config)
            self._fatal = False
        return self._producer

    async def deliver(self, messages: Sequence[tuple[bytes, bytes]]) -> None:
        """Produce (key, value) pairs; return once Kafka acknowledged all, else raise
        KafkaUnavailable."""
        if not messages:
            return
        loop = asyncio.get_running_loop()
        producer = self._current_producer()
        futures: list[asyncio.Future] = []
        try:
            for key, value in messages:
                future = loop.create_future()
                callback = partial(self._on_delivery, loop, future)
                producer.produce(self.topic, value=value, key=key, on_delivery=callback)
                futures.append(future)
        except (BufferError, KafkaException) as exc:
            for future in futures:
                future.cancel()
            raise KafkaUnavailable(f"Kafka refused the events: {exc}") from exc
        # librdkafka fails each message after message.timeout.ms; the margin covers the poll.
        done, pending = await asyncio.wait(futures, timeout=self.delivery_timeout_s + 2)
        for future in pending:
            future.cancel()
        if pending:
            raise KafkaUnavailable(
                f"Kafka did not acknowledge {len(pending)} event(s) "
                f"within {self.delivery_timeout_s:g} s"
            )
        failures = [f.exception() for f in done if f.exception() is not None]
        if failures:
            raise KafkaUnavailable(str(failures[0]))

    def describe_cluster(self, timeout_s: float) -> dict[str, Any]:
        """Broker count and the topic's partitions; raises KafkaException if unreachable."""
        metadata = self._producer.list_topics(timeout=timeout_s)
        topic = metadata.topics.get(self.topic)
        return {
            "brokers": len(metadata.brokers),
            "topic": self.topic,
            "topic_exists": topic is not None and topic.error is None,
            "partitions": len(topic.partitions) if topic is not None else 0,
        }

    def close(self, flush_timeout_s: float = 5.0) -> None:
        self._stopping.set()
        self._poller.join(timeout=2)
        self._producer.flush(flush_timeout_s)


# -- requests -------------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _reject_constant(name: str) -> Any:
    # Python's json would take NaN and Infinity; JSON (and PostgreSQL's jsonb) does not.
    raise ValueError(f"{name} is not valid JSON")


def check_content_type(request: Request) -> None:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in ACCEPTED_MEDIA_TYPES:
        raise RequestRejected(
            415, f"content type {media_type!r} is not accepted; send application/json"
        )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing it as soon as it grows past ``limit`` bytes."""
    too_large = RequestRejected(413, f"request body is larger than the {limit}-byte limit")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def decode_events(body: bytes, max_events: int) -> list[Any]:
    """One event (object) or a batch (array) of JSON values; shape errors raise 400/413."""
    if not body.strip():
        raise RequestRejected(
            400, "empty body: send one event (a JSON object) or a batch (a JSON array)"
        )
    try:
        document = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise RequestRejected(400, f"body is not valid UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise RequestRejected(400, f"body is not JSON: {exc.msg} at character {exc.pos}") from None
    except ValueError as exc:
        raise RequestRejected(400, f"body is not JSON: {exc}") from None
    if isinstance(document, dict):
        return [document]
    if not isinstance(document, list):
        raise RequestRejected(
            400, f"body is a JSON {_json_type(document)}; send an event object or an array of them"
        )
    if not document:
        raise RequestRejected(400, "empty batch: the array holds no events")
    if len(document) > max_events:
        raise RequestRejected(
            413, f"batch of {len(document)} events is larger than the {max_events}-event limit"
        )
    return document


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def stamp_and_validate(document: Any, received_at: datetime) -> tuple[bytes, bytes]:
    """The Kafka (key, value) of one event; ContractViolation names what is wrong.

    Validation is the loader's own (``parse_message`` and the time bounds), so whatever the
    collector acknowledges loads, and nothing the loader would dead-letter is acknowledged.
    """
    if not isinstance(document, dict):
        raise ContractViolation(f"an event must be a JSON object, not a {_json_type(document)}")
    stamped = {**document, "received_at": _iso(received_at)}
    value = json.dumps(stamped, ensure_ascii=False, separators=(",", ":")).encode()
    event = parse_message(value)
    check_time_bounds(event.occurred_at, received_at)
    return event.anonymous_id.encode(), value


def validate_batch(documents: list[Any], received_at: datetime) -> list[tuple[bytes, bytes]]:
    """All events' (key, value), or RequestRejected(400) listing every bad event."""
    messages, problems = [], []
    for index, document in enumerate(documents):
        try:
            messages.append(stamp_and_validate(document, received_at))
        except ContractViolation as violation:
            event_id = document.get("event_id") if isinstance(document, dict) else None
            problems.append({"index": index, "event_id": event_id, "reason": violation.reason})
    if problems:
        raise RequestRejected(
            400,
            f"{len(problems)} of {len(documents)} event(s) break the event contract; "
            "the whole batch was rejected, nothing was stored",
            problems,
        )
    return messages


# -- the app --------------------------------------------------------------------------------


@dataclass
class _State:
    config: CollectorConfig
    sink: KafkaSink | None = None
    snippet: bytes = field(default=b"")


def _unavailable(reason: str) -> JSONResponse:
    return JSONResponse(
        {"error": f"Kafka is unavailable, retry later: {reason}"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def create_app(config: CollectorConfig) -> Starlette:
    """The collector as an ASGI app; the Kafka producer lives as long as the app's lifespan."""
    state = _State(config)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        state.snippet = SNIPPET_PATH.read_bytes()
        state.sink = KafkaSink(config.kafka_bootstrap, config.topic, config.delivery_timeout_s)
        try:
            yield
        finally:
            await asyncio.to_thread(state.sink.close)

    async def collect(request: Request) -> Response:
        try:
            if not config.origin_allowed(request.headers.get("origin")):
                raise RequestRejected(
                    403,
                    f"origin {request.headers['origin']} may not send events to this collector; "
                    "add it with --allow-origin",
                )
            check_content_type(request)
            body = await read_body(request, config.max_body_bytes)
            documents = decode_events(body, config.max_batch_events)
            messages = validate_batch(documents, datetime.now(UTC))
        except RequestRejected as rejected:
            return rejected.response()
        assert state.sink is not None
        try:
            await state.sink.deliver(messages)
        except KafkaUnavailable as exc:
            log.warning("answering 503 to %d event(s): %s", len(messages), exc)
            return _unavailable(str(exc))
        return JSONResponse({"accepted": len(messages)})

    async def health(_: Request) -> Response:
        assert state.sink is not None
        try:
            cluster = await asyncio.to_thread(state.sink.describe_cluster, HEALTH_TIMEOUT_S)
        except KafkaException as exc:
            body = {"status": "unavailable", "kafka": {"reachable": False, "error": str(exc)}}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ok", "kafka": {"reachable": True, **cluster}})

    async def snippet(_: Request) -> Response:
        return Response(
            state.snippet,
            media_type="application/javascript; charset=utf-8",
            headers={"Cache-Control": "public, max-age=300"},
        )

    middleware = [
        Middleware(
            CORSMiddleware,
            allow_origins=list(config.allow_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type"],
            max_age=600,
        )
    ]
    routes = [
        Route(EVENTS_PATH, collect, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/retrolytics.js", snippet, methods=["GET"]),
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


# -- serving --------------------------------------------------------------------------------


def serve(app: Any, host: str, port: int) -> None:
    """Serve an ASGI app in the foreground until interrupted."""
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)


def bind_loopback(host: str = DEFAULT_HOST, port: int = 0) -> socket.socket:
    """A bound listening socket (port 0: a free one), so its URL is known before serving."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def socket_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


@contextlib.contextmanager
def serving_in_background(
    app: Any, host: str = DEFAULT_HOST, port: int = 0, sock: socket.socket | None = None
) -> Iterator[str]:
    """Serve an app on a thread, on ``sock`` or a new socket on host:port (0: a free port);
    yields its base URL and stops the server (closing the socket) on exit."""
    sock = sock or bind_loopback(host, port)
    url = socket_url(sock)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", server_header=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError(f"the server on {url} did not start")
        time.sleep(0.02)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def main(
    settings: Settings, host: str, port: int, allow_origins: Sequence[str] | None = None
) -> int:
    """``retrolytics collect``: make sure the topic exists, then serve until interrupted."""
    allow_origins = tuple(allow_origins) if allow_origins else DEMO_SHOP_ORIGINS
    try:
        ensure_topic(settings.kafka_bootstrap, settings.topic)
    except KafkaException as exc:
        # Start anyway: /health says what is wrong and events get 503 until Kafka is back.
        log.warning(
            "cannot prepare topic %s at %s: %s", settings.topic, settings.kafka_bootstrap, exc
        )
    config = CollectorConfig.from_settings(settings, allow_origins=allow_origins)
    print(
        f"collector on http://{host}:{port}{EVENTS_PATH} → Kafka {settings.kafka_bootstrap} "
        f"topic {settings.topic}; snippet at http://{host}:{port}/retrolytics.js; "
        f"allowed origins: {', '.join(allow_origins) or 'none'}",
        flush=True,
    )
    serve(create_app(config), host, port)
    return 0
