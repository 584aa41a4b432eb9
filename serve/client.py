"""python -m serve.client PHOTO_OR_FOLDER... [--url URL] -> one line per photo: path, answer, confidence."""

from __future__ import annotations

import argparse
import base64
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

from PIL import Image

from pipeline.served.schema import IMAGE_COLUMN
from serve import confidence, demo_warning, reason

DEFAULT_URL = "http://127.0.0.1:5000/invocations"


class ServingError(Exception):
    """The endpoint refused the request or could not be reached; str() says why."""


def predict(url: str, images: list[bytes], timeout: float = 120) -> list[dict]:
    """Image file bytes -> one verdict row per image, from the REST endpoint."""
    columns = {"columns": [IMAGE_COLUMN], "data": [[base64.b64encode(data).decode("ascii")] for data in images]}
    request = urllib.request.Request(
        url, data=json.dumps({"dataframe_split": columns}).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)["predictions"]
    except urllib.error.HTTPError as err:
        body = err.read().decode("utf-8", "replace")
        try:
            message = json.loads(body)["message"]
        except (ValueError, KeyError, TypeError):
            message = body[:300]
        raise ServingError(f"HTTP {err.code}: {message}") from None
    except (urllib.error.URLError, OSError) as err:  # refused, timed out, reset
        raise ServingError(f"cannot reach {url}: {getattr(err, 'reason', err)}") from None


def photos(arguments: list[str]) -> list[Path]:
    """Files as given; folders -> the image files in them (by extension), recursively, sorted."""
    extensions = set(Image.registered_extensions())
    found = []
    for argument in map(Path, arguments):
        if argument.is_dir():
            found += sorted(p for p in argument.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
        else:
            found.append(argument)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("paths", nargs="+", metavar="PHOTO_OR_FOLDER")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the model's /invocations URL (default {DEFAULT_URL})")
    args = parser.parse_args(argv)
    failed, warned = 0, False
    # One request per photo: a bad file then costs only its own line, not the whole batch.
    for path in photos(args.paths):
        try:
            row = predict(args.url, [path.read_bytes()])[0]
        except (ServingError, OSError) as err:
            print(f"{path}\terror: {err}")
            failed += 1
            continue
        if (warning := demo_warning(row)) and not warned:
            print(f"warning: {row['model_name']} v{row['model_version']}: {warning}", file=sys.stderr)
            warned = True
        why = reason(row)
        print(f"{path}\t{row['answer']}\t{confidence(row):.3f}" + (f"\t({why})" if why else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
