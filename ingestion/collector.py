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
    are configured); ``431`` more than ``MAX_HEADER_FIELDS`` header fields or more than
    ``MAX_HEADER_BYTES`` of them; ``503`` with
    ``Retry-After`` when Kafka did not acknowledge in time (the snippet retries). Every error body
    is ``{"error": "<what is wrong>"}``; a body nested deeper than the contract's
    ``MAX_JSON_DEPTH`` (per event), or holding a number the pipeline cannot store (``1e999``, an
    integer of thousands of digits), is a ``400``. A lone surrogate escape (``"\\ud800"``, which
    ``JSON.stringify`` writes for a string cut inside a surrogate pair) is accepted and forwarded
    as the client spelled it; the loader stores it as U+FFFD, as it does for any message.
``GET /health``
    ``200`` when the Kafka cluster answers a metadata request (with the topic's partition count),
    ``503`` when it does not.
``GET /retrolytics.js``
    The browser snippet (``ingestion/snippet/retrolytics.js``). It posts to the origin it was
    loaded from.

Request headers: ``serve`` and ``serving_in_background`` run uvicorn's h11 protocol, which stops
buffering a header block past ``MAX_HEADER_BYTES`` (uvicorn answers ``400`` and closes the
connection); httptools, uvicorn's other parser, buffers without bound. Behind another server, set
such a limit there. The exact limits (``431``) are checked in the app itself.

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
import math
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
from starlette.types import ASGIApp, Receive, Scope, Send

from ingestion.contract import ContractViolation, check_json_depth, parse_message, to_row
from ingestion.redaction import Redaction, redact
from ingestion.settings import Settings
from ingestion.topics import RELIABLE_PRODUCER_CONFIG, ensure_topic

log = logging.getLogger("retrolytics.collector")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8700
EVENTS_PATH = "/v1/events"
SNIPPET_PATH = Path(__file__).resolve().parent / "snippet" / "retrolytics.js"
MAX_BODY_BYTES = 512 * 1024
MAX_BATCH_EVENTS = 100
# The request line plus all headers (h11's own default; Node's too). Browsers send 1-4 KB.
MAX_HEADER_BYTES = 16 * 1024
# gunicorn's default limit_request_fields; a browser sends 10-20, proxies add a few.
MAX_HEADER_FIELDS = 100
DELIVERY_TIMEOUT_S = 10.0
HEALTH_TIMEOUT_S = 3.0
RETRY_AFTER_S = 5
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
    redaction: Redaction = field(default_factory=Redaction)

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
        return ErrorResponse(body, status_code=self.status)


class ErrorResponse(JSONResponse):
    """JSON with every non-ASCII character escaped: an error may echo a client's lone surrogate
    (an ``event_id`` of ``"\\ud800"``), which UTF-8 cannot encode but a JSON escape can."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


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


class UnstorableNumber(ValueError):
    """A number JSON can spell but the pipeline cannot carry."""


def _reject_constant(name: str) -> Any:
    # Python's json would take NaN and Infinity; JSON (and PostgreSQL's jsonb) does not.
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    # 1e999 would parse to infinity, which JSON cannot write back and jsonb cannot hold.
    value = float(text)
    if not math.isfinite(value):
        raise UnstorableNumber(f"the number {text[:40]} is out of range for a double")
    return value


def _convertible_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # longer than Python converts (sys.get_int_max_str_digits)
        raise UnstorableNumber(f"an integer of {len(text)} digits is too long to store") from None


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
    if declared.isascii() and declared.isdigit() and int(declared) > limit:  # not "²"
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def check_body_depth(body: bytes) -> None:
    """Refuse (400) a body whose events nest deeper than the loader allows a message, before
    Python's recursive parser sees it. A batch's own array is not counted against its events."""
    document = body.lstrip()
    try:
        check_json_depth(document[1:] if document.startswith(b"[") else document)
    except ContractViolation as violation:
        raise RequestRejected(400, f"body is nested too deeply: {violation.reason}") from None


def decode_events(body: bytes, max_events: int) -> list[Any]:
    """One event (object) or a batch (array) of JSON values; shape errors raise 400/413."""
    if not body.strip():
        raise RequestRejected(
            400, "empty body: send one event (a JSON object) or a batch (a JSON array)"
        )
    check_body_depth(body)
    try:
        document = json.loads(
            body.decode("utf-8"),
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            parse_int=_convertible_int,
        )
    except UnicodeDecodeError as exc:
        raise RequestRejected(400, f"body is not valid UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise RequestRejected(400, f"body is not JSON: {exc.msg} at character {exc.pos}") from None
    except UnstorableNumber as exc:
        raise RequestRejected(400, f"body cannot be stored: {exc}") from None
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


def stamp_and_validate(
    document: Any,
    received_at: datetime,
    rules: Redaction = Redaction(),  # noqa: B008 - immutable
    client_ip: str | None = None,
) -> tuple[bytes, bytes]:
    """The Kafka (key, value) of one event; ContractViolation names what is wrong.

    Validation is the loader's own (``parse_message``, then building the row), so whatever the
    collector acknowledges loads, and nothing the loader would dead-letter is acknowledged.
    Redaction (``ingestion.redaction``) happens here, so Kafka never holds what it removes.
    """
    if not isinstance(document, dict):
        raise ContractViolation(f"an event must be a JSON object, not a {_json_type(document)}")
    stamped = {**document, "received_at": _iso(received_at)}
    if rules.ip == "truncated" and client_ip:  # redact() below cuts it to its network
        context = stamped.get("context")
        stamped["context"] = {**(context if isinstance(context, dict) else {}), "ip": client_ip}
    text = json.dumps(stamped, ensure_ascii=False, separators=(",", ":"))
    # Only a lone surrogate cannot be UTF-8; backslashreplace writes it back as the JSON escape
    # the client sent (it can only occur inside a JSON string), for the loader to replace.
    value = text.encode("utf-8", "backslashreplace")
    event = parse_message(value)
    if redact(event, rules):
        value = event.model_dump_json(exclude_none=True).encode()
    to_row(event, received_at=received_at, partition=None, offset=None)
    return event.anonymous_id.encode(), value


def validate_batch(
    documents: list[Any],
    received_at: datetime,
    rules: Redaction = Redaction(),  # noqa: B008 - immutable
    client_ip: str | None = None,
) -> list[tuple[bytes, bytes]]:
    """All events' (key, value), or RequestRejected(400) listing every bad event."""
    messages, problems = [], []
    for index, document in enumerate(documents):
        try:
            messages.append(stamp_and_validate(document, received_at, rules, client_ip))
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


def header_problem(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """What makes a request's headers too many or too large, or None."""
    if len(headers) > MAX_HEADER_FIELDS:
        return (
            f"request has {len(headers)} header fields, more than the {MAX_HEADER_FIELDS} allowed"
        )
    size = sum(len(name) + len(value) + 4 for name, value in headers)  # "name: value\r\n"
    if size > MAX_HEADER_BYTES:
        return f"request headers are {size} bytes, more than the {MAX_HEADER_BYTES}-byte limit"
    return None


class HeaderLimits:
    """ASGI middleware: ``431`` for too many or too large request headers.

    h11 only refuses a header block that is still incomplete past ``MAX_HEADER_BYTES``, so one
    that arrives in a single read (up to asyncio's 256 KiB) gets through; this makes the limits
    exact, and holds under any server."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem = header_problem(scope["headers"]) if scope["type"] == "http" else None
        if problem is not None:
            await ErrorResponse({"error": problem}, status_code=431)(scope, receive, send)
            return
        await self.app(scope, receive, send)


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
            client_ip = request.client.host if request.client else None
            messages = validate_batch(documents, datetime.now(UTC), config.redaction, client_ip)
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
        Middleware(HeaderLimits),
        Middleware(
            CORSMiddleware,
            allow_origins=list(config.allow_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type"],
            max_age=600,
        ),
    ]
    routes = [
        Route(EVENTS_PATH, collect, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/retrolytics.js", snippet, methods=["GET"]),
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


# -- serving --------------------------------------------------------------------------------


def server_config(app: Any, **options: Any) -> uvicorn.Config:
    """uvicorn's settings for every server started here: h11, because it bounds the request line
    and headers (``MAX_HEADER_BYTES``) before parsing them and httptools cannot."""
    return uvicorn.Config(
        app,
        http="h11",
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        server_header=False,
        **options,
    )


def serve(app: Any, host: str, port: int) -> None:
    """Serve an ASGI app in the foreground until interrupted."""
    uvicorn.Server(server_config(app, host=host, port=port, log_level="info")).run()


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
    server = uvicorn.Server(server_config(app, log_level="warning"))
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
    settings: Settings,
    host: str,
    port: int,
    allow_origins: Sequence[str] | None = None,
    redaction: Redaction | None = None,
) -> int:
    """``retrolytics collect``: make sure the topic exists, then serve until interrupted.

    Browsers may send events only from ``allow_origins`` (none unless given); requests without
    an ``Origin`` header (servers, scripts) are always accepted."""
    allow_origins = tuple(allow_origins or ())
    try:
        ensure_topic(settings.kafka_bootstrap, settings.topic)
    except KafkaException as exc:
        # Start anyway: /health says what is wrong and events get 503 until Kafka is back.
        log.warning(
            "cannot prepare topic %s at %s: %s", settings.topic, settings.kafka_bootstrap, exc
        )
    config = CollectorConfig.from_settings(
        settings, allow_origins=allow_origins, redaction=redaction or Redaction()
    )
    print(
        f"collector on http://{host}:{port}{EVENTS_PATH} → Kafka {settings.kafka_bootstrap} "
        f"topic {settings.topic}; snippet at http://{host}:{port}/retrolytics.js; "
        f"allowed origins: {', '.join(allow_origins) or 'none (add sites with --allow-origin)'}",
        flush=True,
    )
    serve(create_app(config), host, port)
    return 0
