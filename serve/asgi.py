"""HTTP requests -> MLflow's own scoring app for the champion, behind a guard: body size limit, clean 4xx errors.

Run:  uvicorn --factory serve.asgi:create_app --host 127.0.0.1 --port 5000
      (MODEL_URI, MLFLOW_TRACKING_URI and SERVE_MAX_BODY_BYTES are read from the environment)

MLflow's app (the one `mlflow models serve` runs) still does all the work: /ping, /version, JSON
and Parquet parsing, base64 decoding, the signature check and predict. The guard only adds what
MLflow cannot be told to do: it refuses bodies over a size limit and CSV (which cannot carry bytes),
checks a JSON batch item by item so an error names the item, and rewrites error bodies, in which
MLflow echoes the input back (image bytes included) and, for unexpected errors, its stack trace.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os

from pipeline.serving_settings import IMAGE_COLUMN  # numpy and pandas: the guard loads no TensorFlow

DEFAULT_MAX_BODY_BYTES = 20 * 2**20
MAX_MESSAGE_CHARS = 300  # an error message longer than this is not one a person reads


def create_app(model_uri: str | None = None, max_body_bytes: int | None = None):
    """MLflow's scoring app for the model, wrapped in the guard."""
    from mlflow.pyfunc import scoring_server

    from serve import model_uri as default_model_uri
    from serve import use_tracking_store

    use_tracking_store()
    model = scoring_server.load_model_with_mlflow_config(model_uri or default_model_uri())
    limit = max_body_bytes or int(os.environ.get("SERVE_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))
    return Guard(scoring_server.init(model), limit)


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


def problem(body: bytes) -> str | None:
    """What is wrong with a JSON request body, or None to let MLflow read it (and name any other problem)."""
    try:
        request = json.loads(body)
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError; their text quotes no input
        return f"the body is not valid JSON: {err}"
    if not isinstance(request, dict):
        return "the body must be a JSON object with a dataframe_split or dataframe_records field"
    if "inputs" in request or "instances" in request:
        # MLflow does not base64-decode these, so the model would see base64 text, not an image.
        return "send images in dataframe_split or dataframe_records; inputs and instances are not base64-decoded"
    images = image_column(request)
    if images is None:
        return None
    if not images:
        return "empty batch: send at least one image"
    for i, value in enumerate(images):
        if not isinstance(value, str):
            return f"image {i}: expected the image file as base64 text, got {type(value).__name__}"
        try:
            base64.b64decode(value)  # as lenient as MLflow's base64.decodebytes
        except binascii.Error:
            return f"image {i}: not valid base64"
    return None


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


async def respond(send, status: int, error: dict) -> None:
    body = json.dumps(error).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware around MLflow's app; touches only POST /invocations."""

    def __init__(self, app, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != "/invocations":
            return await self.app(scope, receive, send)
        body, too_large = await self.read_body(receive)
        if too_large:
            limit = f"the body is over the limit of {self.max_body_bytes} bytes; send fewer or smaller images"
            return await respond(send, 413, {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": limit})
        content_type = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type == b"text/csv":
            # CSV cannot carry bytes: the model would get text, and today reads a str as a file path here.
            csv = "CSV cannot carry image bytes; send JSON (dataframe_split or dataframe_records, base64)"
            return await respond(send, 415, {"error_code": "BAD_REQUEST", "message": csv})
        # In a thread, as MLflow parses: a large body must not stall /ping and other requests.
        if content_type == b"application/json" and (message := await asyncio.to_thread(problem, body)):
            return await respond(send, 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": message})

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
        """The whole body, or (b"", True) once it passes the limit.

        Past the limit the rest is still read, up to ten times the limit, and dropped: a client
        still sending when the server answers and closes would see a reset instead of the 413.
        """
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
            if size > 10 * self.max_body_bytes:
                break
            if size <= self.max_body_bytes:
                chunks.append(message.get("body", b""))
        return (b"", True) if size > self.max_body_bytes else (b"".join(chunks), False)
