"""The serving guard's helpers (serve/asgi.py), without a server: which bodies are refused, and how errors are cleaned."""

import base64
import json

from pipeline.serving_settings import IMAGE_COLUMN
from serve.asgi import clean, error_body, image_column, problem

IMAGE = base64.b64encode(b"\x89PNG not really").decode()


def body(request) -> bytes:
    return json.dumps(request).encode()


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
