"""HTTP requests -> MLflow's own scoring app for the champion, behind a guard: limits, clean 4xx errors.

Run:  python -m serve.asgi   (HOST, PORT, MODEL_URI, MLFLOW_TRACKING_URI, SERVE_MAX_BODY_BYTES,
      SERVE_MAX_IMAGES, SERVE_MAX_CONCURRENT, SERVE_BODY_SECONDS, SERVE_HEAD_SECONDS and
      SERVE_ALIAS_SECONDS are read from the environment)

MLflow's app (the one `mlflow models serve` runs) still does all the work: /ping, /version, JSON
and Parquet parsing, base64 decoding, the signature check and predict. Raw uploads, which MLflow does
not take (multipart/form-data file parts, one image each, or an application/octet-stream body of one
image), the guard turns into the same dataframe_split request, so they get the same limits, errors
and verdict rows as JSON. The guard only adds what
MLflow cannot be told to do: it refuses bodies over a size limit (from Content-Length when it is
declared, before reading), batches over an image limit, JSON nested past Python's recursion limit
and CSV (which cannot carry bytes); it checks a JSON batch item by item so an error names the item;
it answers 503 with Retry-After when SERVE_MAX_CONCURRENT requests are already being predicted,
and 408 to a body that has not arrived whole within SERVE_BODY_SECONDS (a slow client holds no slot);
it hides the API docs routes; and it rewrites error bodies, in which MLflow echoes the input back
(image bytes included) and, for unexpected errors, its stack trace. The model is loaded and warmed
up before the server listens, so /ping answers only when a request would be fast. A MODEL_URI that
names an alias (the default, models:/NAME@champion) is followed: when the alias moves, the new version
is loaded and warmed beside the old and swapped in (AliasFollower).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import threading
import time
from dataclasses import dataclass

from uvicorn.protocols.http.h11_impl import H11Protocol

from pipeline.served.schema import IMAGE_COLUMN  # numpy and pandas: the guard loads no TensorFlow

DEFAULT_MAX_BODY_BYTES = 20 * 2**20
DEFAULT_MAX_IMAGES = 64  # per request: a batch costs memory and time in proportion; clients send more requests
DEFAULT_MAX_CONCURRENT = 4  # requests predicting at once; on 2 cores more only queue up and time out together
DEFAULT_BODY_SECONDS = 30.0  # for a whole body to arrive: 20 MiB at under 1 MB/s is not a client, it is a stall
DEFAULT_HEAD_SECONDS = 10.0  # for a request's head (line and headers) to arrive on a new or kept-alive connection
DRAIN_BYTES = 2**20  # of a refused body, at most this much past the limit is read and dropped (see drain)
NESTED = b"[" * 32  # brackets in a row: a request of ours nests three deep at most
ITEM_SLACK = 64  # arrays and objects beyond two per image: the request's own, columns, params
MAX_MESSAGE_CHARS = 300  # an error message longer than this is not one a person reads
HIDDEN_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")  # FastAPI's, not our API
FORM, OCTET_STREAM = b"multipart/form-data", b"application/octet-stream"  # raw uploads, made JSON here
MLFLOW_TYPES = (b"application/json", b"application/x-parquet")  # what MLflow's app parses itself (CSV is refused)
ACCEPTED = (
    "application/json (dataframe_split or dataframe_records, base64), multipart/form-data (a file part per image, "
    "curl -F image=@photo.jpg) or application/octet-stream (one image file's bytes)"
)


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_images: int = DEFAULT_MAX_IMAGES
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    body_seconds: float = DEFAULT_BODY_SECONDS
    head_seconds: float = DEFAULT_HEAD_SECONDS  # applied by HeadTimeoutProtocol, below the app

    @classmethod
    def from_environment(cls) -> Limits:
        return cls(
            int(os.environ.get("SERVE_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)),
            int(os.environ.get("SERVE_MAX_IMAGES", DEFAULT_MAX_IMAGES)),
            int(os.environ.get("SERVE_MAX_CONCURRENT", DEFAULT_MAX_CONCURRENT)),
            float(os.environ.get("SERVE_BODY_SECONDS", DEFAULT_BODY_SECONDS)),
            float(os.environ.get("SERVE_HEAD_SECONDS", DEFAULT_HEAD_SECONDS)),
        )


def create_app(model_uri: str | None = None, limits: Limits | None = None):
    """MLflow's scoring app for the model, loaded and warmed up, wrapped in the guard.

    A missing store or model ends the start-up with one line saying which, before anything listens
    (and no empty store is created on the way).
    """
    from mlflow.exceptions import MlflowException

    from serve import alias_seconds, by_version, use_tracking_store
    from serve import model_uri as default_model_uri

    uri, store = model_uri or default_model_uri(), use_tracking_store()
    # MLflow's app answers 504 after this; set, it also tells the model to stop such a request's work.
    os.environ.setdefault("MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT", "60")
    if uri.startswith("models:/") and store.startswith("sqlite:///") and not os.path.exists(store.removeprefix("sqlite:///")):
        raise SystemExit(f"error: no MLflow store at {store}: run the pipeline (`dvc repro`) first, or set MLFLOW_TRACKING_URI")
    seconds = alias_seconds()
    try:
        # An alias is loaded by the version it names now: the follower starts from that version.
        followed = by_version(uri) if seconds > 0 else None
        app = scoring_app(followed[0] if followed else uri)
    except (MlflowException, OSError) as err:
        raise SystemExit(f"error: cannot load the model {uri} (store {store}): {str(err).splitlines()[0]}") from None
    guard = Guard(app, limits or Limits.from_environment())
    if followed:
        AliasFollower(guard, uri, followed[2], seconds).start()
    return guard


class AliasFollower(threading.Thread):
    """models:/NAME@ALIAS resolved again every `seconds`: when the alias names another version, that
    version is loaded beside the one serving and warmed up, then the guard's app is swapped for one
    on it. A request under way finishes on the app it started on, so none fails in the swap; every
    answer names the version that made it (model_version). A failed load keeps the old version."""

    def __init__(self, guard: Guard, uri: str, version: int, seconds: float):
        super().__init__(name="alias-follower", daemon=True)
        self.guard, self.uri, self.version, self.seconds = guard, uri, version, seconds

    def run(self) -> None:
        from serve import by_version

        while True:
            time.sleep(self.seconds)
            try:
                uri, alias, version = by_version(self.uri)
                if version == self.version:
                    continue
                app = scoring_app(uri)
            except Exception as err:  # the store unreachable, the alias deleted, a version that does not load
                print(f"serve: {self.uri}: {str(err).splitlines()[0][:MAX_MESSAGE_CHARS]}; still serving v{self.version}", flush=True)
                continue
            self.guard.app = app  # one assignment: the next request gets the new app whole
            print(f"serve: {alias} moved from v{self.version} to v{version}; serving v{version}", flush=True)
            self.version = version


def scoring_app(uri: str):
    """MLflow's scoring app on the model at uri, loaded and warmed up."""
    from mlflow.pyfunc import scoring_server

    model = scoring_server.load_model_with_mlflow_config(uri)
    warm_up(model)
    return scoring_server.init(model)


def warm_up(model) -> None:
    """One prediction before the server listens: the first real request then costs what the tenth does."""
    import io

    import pandas as pd
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (64, 64), "gray").save(png, "PNG")
    model.predict(pd.DataFrame({IMAGE_COLUMN: [png.getvalue()]}))


def image_column(request: dict) -> list | None:
    """The image values of a dataframe_split or dataframe_records request; None if it has another shape."""
    split = request.get("dataframe_split")
    if isinstance(split, dict) and isinstance(split.get("columns"), list) and isinstance(split.get("data"), list):
        if IMAGE_COLUMN not in split["columns"]:
            return None
        i = split["columns"].index(IMAGE_COLUMN)
        return [row[i] if isinstance(row, list) and len(row) > i else None for row in split["data"]]
    records = request.get("dataframe_records")
    if isinstance(records, list) and (not records or any(isinstance(r, dict) and IMAGE_COLUMN in r for r in records)):
        return [r.get(IMAGE_COLUMN) if isinstance(r, dict) else None for r in records]
    return None


def row_count(request: dict) -> int:
    """Rows in a dataframe_split or dataframe_records request (0 for another shape)."""
    split = request.get("dataframe_split")
    rows = split.get("data") if isinstance(split, dict) else request.get("dataframe_records")
    return len(rows) if isinstance(rows, list) else 0


def problem(body: bytes, max_images: int) -> tuple[int, str] | None:
    """(status, what is wrong) with a JSON request body, or None to let MLflow read it (and name any other problem).

    Before parsing, two counts of the raw bytes (C speed): a million empty items parse in half a
    second and take hundreds of MB, and no request of at most max_images images holds more than
    about two JSON arrays or objects per image, or nests deeper than three.
    """
    if NESTED in body:
        return 400, "the body is JSON nested too deeply; send a dataframe_split or dataframe_records object"
    if (items := body.count(b"[") + body.count(b"{")) > 2 * max_images + ITEM_SLACK:
        return 413, f"{items} JSON arrays and objects in one request, more than {max_images} images (SERVE_MAX_IMAGES) need; send several requests"
    try:
        request = json.loads(body)
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError; their text quotes no input
        return 400, f"the body is not valid JSON: {err}"
    except RecursionError:
        return 400, "the body is JSON nested too deeply; send a dataframe_split or dataframe_records object"
    if not isinstance(request, dict):
        return 400, "the body must be a JSON object with a dataframe_split or dataframe_records field"
    if "inputs" in request or "instances" in request:
        # MLflow does not base64-decode these, so the model would see base64 text, not an image.
        return 400, "send images in dataframe_split or dataframe_records; inputs and instances are not base64-decoded"
    if (rows := row_count(request)) > max_images:
        return 413, f"{rows} images in one request, over the limit of {max_images} (SERVE_MAX_IMAGES); send several requests"
    images = image_column(request)
    if images is None:
        return None
    if not images:
        return 400, "empty batch: send at least one image"
    for i, value in enumerate(images):
        if not isinstance(value, str):
            return 400, f"image {i}: expected the image file as base64 text, got {type(value).__name__}"
        try:
            base64.b64decode(value)  # as lenient as MLflow's base64.decodebytes
        except binascii.Error:
            return 400, f"image {i}: not valid base64"
    return None


class Refused(Exception):
    """A request refused before MLflow sees it: args are (status, what is wrong)."""


async def uploaded_images(content_type: bytes, body: bytes, max_images: int) -> list[bytes]:
    """A multipart/form-data or application/octet-stream body -> its image files' bytes, in order; Refused if unusable.

    Multipart is parsed by Starlette's parser (Starlette comes with MLflow's server; the parser runs
    on python-multipart), from the body already read and within the size limit. A form part without
    a filename is a plain field, not an image, and is ignored.
    """
    media_type = content_type.split(b";")[0].strip().lower()
    if not body:
        raise Refused(400, "empty body: send an image file" + (" as a file part (curl -F image=@photo.jpg)" if media_type == FORM else "'s bytes"))
    if media_type == OCTET_STREAM:
        return [body]
    try:  # installed with the project (requirements-common.txt), not with MLflow alone
        from python_multipart.multipart import parse_options_header
    except ImportError:
        raise Refused(415, "multipart/form-data needs python-multipart, not installed here; send application/octet-stream or JSON") from None
    from starlette.datastructures import Headers, UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    boundary = parse_options_header(content_type)[1].get(b"boundary")
    if not boundary:
        raise Refused(400, "malformed multipart/form-data: the Content-Type names no boundary")
    # Counted in the raw bytes first (C speed), as problem() counts JSON items: a boundary cannot
    # occur inside a part, so this bounds the parts, and the parser's work, before parsing.
    if (parts := body.count(b"--" + boundary) - 1) > max_images:
        raise Refused(413, f"{parts} form parts in one request, over the limit of {max_images} images (SERVE_MAX_IMAGES); send several requests")
    if b"--" + boundary + b"--" not in body:  # the parser drops an unfinished last part without a word
        raise Refused(400, "malformed multipart/form-data: no closing boundary (the body is cut short?)")

    async def whole_body():
        yield body

    try:
        form = await MultiPartParser(Headers(raw=[(b"content-type", content_type)]), whole_body(), max_files=max_images, max_fields=max_images).parse()
    except MultiPartException as err:  # its messages name the problem and quote no input
        raise Refused(400, f"malformed multipart/form-data: {err.message}") from None
    files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
    try:
        images = [await file.read() for file in files]
    finally:
        await form.close()  # the parser spools large files to temporary files
    if not images:
        raise Refused(400, "no file part in the form: send each image as a file part (curl -F image=@photo.jpg)")
    return images


def as_json_request(images: list[bytes]) -> bytes:
    """Image files' bytes -> the dataframe_split request MLflow's app reads, as a JSON client sends it."""
    data = [[base64.b64encode(image).decode("ascii")] for image in images]
    return json.dumps({"dataframe_split": {"columns": [IMAGE_COLUMN], "data": data}}).encode()


def with_json_headers(scope: dict, length: int) -> dict:
    """The request's scope with the headers of the JSON body that replaced its upload."""
    kept = [(name, value) for name, value in scope["headers"] if name not in (b"content-type", b"content-length")]
    return {**scope, "headers": [*kept, (b"content-type", b"application/json"), (b"content-length", str(length).encode())]}


def clean(message: str) -> str:
    """An MLflow error message -> the same without the input it echoes or the protocol essay."""
    # "Failed to predict data '<input>'. \nError: <the model's message>", and the same shape for a
    # failed signature check; the input's repr holds no real newline, so the last marker is MLflow's.
    for start, marker in (("Failed to predict data '", "'. \nError: "), ("Failed to enforce schema of data '", "'. Error: ")):
        if message.startswith(start) and marker in message:
            message = message.rpartition(marker)[2]
    message = message.partition("\nInput:")[0].partition(" IMPORTANT:")[0]
    return message[:MAX_MESSAGE_CHARS]


def error_body(status: int, body: bytes) -> dict:
    """MLflow's error response -> {"error_code", "message"}: no echoed input, no stack trace."""
    try:
        error = json.loads(body)
        return {"error_code": error.get("error_code", "BAD_REQUEST"), "message": clean(str(error["message"]))}
    except (ValueError, KeyError, TypeError, AttributeError):  # a plain-text error, e.g. 415
        code = "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST"
        return {"error_code": code, "message": clean(body.decode("utf-8", "replace"))}


def error_code(status: int) -> str:
    return "REQUEST_LIMIT_EXCEEDED" if status == 413 else "INVALID_PARAMETER_VALUE"


async def respond(send, status: int, error: dict, headers: tuple = ()) -> None:
    body = json.dumps(error).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware around MLflow's app; touches only POST /invocations (and hides the docs routes)."""

    def __init__(self, app, limits: Limits):
        self.app = app
        self.limits = limits
        self.predicting = 0  # requests handed to MLflow and not yet answered

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] in HIDDEN_PATHS:
            return await respond(send, 404, {"error_code": "NOT_FOUND", "message": "not found"})
        if scope["type"] != "http" or scope["path"] != "/invocations":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        limit = f"the body is over the limit of {self.limits.max_body_bytes} bytes; send fewer or smaller images"
        too_large = {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": limit}
        declared = int(headers.get(b"content-length", b"0") or 0)
        if declared > self.limits.max_body_bytes:  # decided from the header, before a byte of the body is kept
            if declared <= self.limits.max_body_bytes + DRAIN_BYTES:
                await self.drain(receive)
            return await respond(send, 413, too_large)
        try:
            async with asyncio.timeout(self.limits.body_seconds):
                body, over = await self.read_body(receive)
        except TimeoutError:
            slow = f"the body did not arrive within {self.limits.body_seconds:g} s (SERVE_BODY_SECONDS); send it again"
            return await respond(send, 408, {"error_code": "REQUEST_TIMEOUT", "message": slow}, ((b"connection", b"close"),))
        if over:
            return await respond(send, 413, too_large)
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type == b"text/csv":
            # CSV cannot carry bytes: the model would get text, and today reads a str as a file path here.
            csv = f"CSV cannot carry image bytes; send {ACCEPTED}"
            return await respond(send, 415, {"error_code": "BAD_REQUEST", "message": csv})
        if content_type not in (FORM, OCTET_STREAM, *MLFLOW_TYPES):  # MLflow's own 415 would not list the uploads
            unsupported = f"unsupported content type {content_type.decode('latin-1')[:60]!r}; the content types accepted: {ACCEPTED}"
            return await respond(send, 415, {"error_code": "BAD_REQUEST", "message": unsupported})
        if content_type in (FORM, OCTET_STREAM):
            try:
                images = await uploaded_images(headers[b"content-type"], body, self.limits.max_images)
            except Refused as refused:
                status, message = refused.args
                return await respond(send, status, {"error_code": error_code(status), "message": message})
            body = await asyncio.to_thread(as_json_request, images)  # base64 of up to the body limit: off the loop
            scope = with_json_headers(scope, len(body))
        # In a thread, as MLflow parses: a large body must not stall /ping and other requests.
        elif content_type == b"application/json" and (found := await asyncio.to_thread(problem, body, self.limits.max_images)):
            status, message = found
            return await respond(send, status, {"error_code": error_code(status), "message": message})
        if self.predicting >= self.limits.max_concurrent:
            busy = f"{self.predicting} requests are being answered, the most at once (SERVE_MAX_CONCURRENT); retry in a second"
            return await respond(send, 503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": busy}, ((b"retry-after", b"1"),))
        self.predicting += 1
        try:
            await self.predict(scope, body, receive, send)
        finally:
            self.predicting -= 1

    async def predict(self, scope, body: bytes, receive, send) -> None:
        """Hand the request to MLflow's app, its body replayed, its error bodies rewritten."""
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body, only a disconnect can come

        status, chunks = 200, []

        async def send_clean(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if status < 400:
                    await send(message)
            elif status < 400:
                await send(message)
            else:  # hold an error body until it is whole, then send it rewritten
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    await respond(send, status, error_body(status, b"".join(chunks)))

        await self.app(scope, replay, send_clean)

    async def read_body(self, receive) -> tuple[bytes, bool]:
        """The whole body, or (b"", True) once it passes the limit (the rest drained, as in drain)."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
            if size > self.limits.max_body_bytes + DRAIN_BYTES:
                break
            if size <= self.limits.max_body_bytes:
                chunks.append(message.get("body", b""))
        return (b"", True) if size > self.limits.max_body_bytes else (b"".join(chunks), False)

    async def drain(self, receive) -> None:
        """Read and drop a refused body, at most DRAIN_BYTES past the limit.

        A client still sending when the server answers and closes sees a reset, not the 413; uvicorn
        gives the app no body once it has answered. A larger body is refused unread: a client that
        sends `Expect: 100-continue` (curl does, for large bodies) gets the 413 before sending it.
        """
        size = 0
        for _ in range(100_000):  # bounded; the size limit ends it first
            message = await receive()
            size += len(message.get("body", b""))
            if message["type"] == "http.disconnect" or not message.get("more_body") or size > self.limits.max_body_bytes + DRAIN_BYTES:
                return


class HeadTimeoutProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, plus what it lacks: a connection whose request head has not
    arrived whole within SERVE_HEAD_SECONDS, from its opening or from the last answer, is closed.

    uvicorn times out only a kept-alive connection that sends nothing after an answer; a socket that
    never sends, or sends its headers a byte at a time, it holds for ever.
    """

    def __init__(self, *args, head_seconds: float = DEFAULT_HEAD_SECONDS, **kwargs):
        super().__init__(*args, **kwargs)
        self.head_seconds = head_seconds

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.wait_for_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.wait_for_head()

    def wait_for_head(self) -> None:
        waiting_since = self.cycle  # a new request's head makes a new cycle

        def close_if_still_waiting() -> None:
            if self.cycle is waiting_since and not self.transport.is_closing():
                self.transport.close()

        self.loop.call_later(self.head_seconds, close_if_still_waiting)


def main() -> None:
    """`python -m serve.asgi`: the guarded app on $HOST:$PORT (default 127.0.0.1:5000).

    The port is checked before the model loads (a busy port is said at once, not after the load),
    and SIGTERM ends the server within 2 s (a container's `docker stop`). Idle connections close
    after 5 s, and connections still sending a request head after SERVE_HEAD_SECONDS.
    """
    import functools
    import socket

    import uvicorn

    host, port = os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "5000"))
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise SystemExit(f"error: cannot listen on {host}:{port}: {err.strerror}") from None
    uvicorn.run(
        "serve.asgi:create_app",
        factory=True,
        host=host,
        port=port,
        http=functools.partial(HeadTimeoutProtocol, head_seconds=Limits.from_environment().head_seconds),
        timeout_keep_alive=5,
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
