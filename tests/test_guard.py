"""The serving guard's helpers (serve/asgi.py), without a server: which bodies are refused, and how errors are cleaned."""

import base64
import json

from pipeline.served.schema import IMAGE_COLUMN
from serve.asgi import clean, error_body, image_column
from serve.asgi import problem as guard_problem

IMAGE = base64.b64encode(b"\x89PNG not really").decode()


def body(request) -> bytes:
    return json.dumps(request).encode()


def problem(data: bytes, max_images: int = 64) -> str | None:
    """The guard's verdict on a body, as its message (the status is checked where it matters)."""
    found = guard_problem(data, max_images)
    return found and found[1]


def test_well_formed_requests_pass_to_mlflow():
    assert problem(body({"dataframe_split": {"columns": [IMAGE_COLUMN], "data": [[IMAGE], [IMAGE]]}})) is None
    assert problem(body({"dataframe_records": [{IMAGE_COLUMN: IMAGE}]})) is None


def test_bad_requests_are_named_item_by_item():
    assert "not valid JSON" in problem(b"{nope")
    assert "JSON object" in problem(body([1, 2]))
    assert "dataframe_split or dataframe_records" in problem(body({"inputs": {IMAGE_COLUMN: [IMAGE]}}))
    assert problem(body({"dataframe_records": []})) == "empty batch: send at least one image"
    split = {"dataframe_split": {"columns": [IMAGE_COLUMN], "data": [[IMAGE], ["@@not base64@@!"]]}}
    assert problem(body(split)) == "image 1: not valid base64"
    assert problem(body({"dataframe_records": [{IMAGE_COLUMN: 7}]})).startswith("image 0: expected the image file as base64")


def test_a_batch_over_the_image_limit_or_json_nested_too_deep_is_refused_before_mlflow_reads_it():
    records = {"dataframe_records": [{}] * 1_000_000}  # a million empty items, about 4 MB: refused unparsed
    assert guard_problem(body(records), 64) == (
        413, "1000002 JSON arrays and objects in one request, more than 64 images (SERVE_MAX_IMAGES) need; send several requests"
    )
    split = {"dataframe_split": {"columns": [IMAGE_COLUMN], "data": [[IMAGE]] * 65}}
    assert guard_problem(body(split), 64)[0] == 413 and problem(body(split), 65) is None
    assert guard_problem(body({"dataframe_records": [{IMAGE_COLUMN: IMAGE}] * 64}), 64) is None  # the limit itself passes
    few = {"dataframe_split": {"columns": [IMAGE_COLUMN], "data": [[IMAGE]] * 100}}  # under the count, over the limit
    assert guard_problem(body(few), 64) == (413, "100 images in one request, over the limit of 64 (SERVE_MAX_IMAGES); send several requests")
    status, message = guard_problem(b"[" * 100_000 + b"]" * 100_000, 64)
    assert status == 400 and "nested too deeply" in message


def test_image_column_reads_both_dataframe_forms():
    assert image_column({"dataframe_split": {"columns": ["x", IMAGE_COLUMN], "data": [[1, "a"], [2]]}}) == ["a", None]
    assert image_column({"dataframe_records": [{IMAGE_COLUMN: "a"}, "junk"]}) == ["a", None]
    assert image_column({"dataframe_split": {"columns": ["x"], "data": [[1]]}}) is None


def test_errors_lose_the_echoed_input_and_the_trace():
    echoed = f"Failed to predict data '{{'image': b'{'A' * 5000}'}}'. \nError: image 0: not an image"
    assert clean(echoed) == "image 0: not an image"
    error = error_body(400, json.dumps({"error_code": "BAD_REQUEST", "message": echoed, "stack_trace": "Traceback ..."}).encode())
    assert error == {"error_code": "BAD_REQUEST", "message": "image 0: not an image"}
    assert error_body(500, b"Internal Server Error" + b"x" * 1000)["error_code"] == "INTERNAL_ERROR"
    assert len(error_body(500, b"x" * 1000)["message"]) <= 300
