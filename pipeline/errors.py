"""What a person can fix: errors whose message names the key or file and what to do -> one paragraph, exit 2.

Every stage's main() runs through `main_of`; any other exception is a bug and keeps its traceback.
PIPELINE_TRACEBACK=1 shows the traceback of these too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

EXIT_CODE = 2  # as argparse: the command was given something it cannot use


class UserError(Exception):
    """Bad input from the person running the pipeline (config, data, weights); str() says what to do."""


def main_of(run: Callable, description: str) -> Callable[[], None]:
    """A stage's main(): compose the config from the command line, run the stage, and turn a
    UserError into one readable paragraph and exit code 2."""

    def main() -> None:
        from pipeline import config  # here, not at import: this module stays free of config code

        try:
            run(config.from_argv(description=description))
        except UserError as err:
            if os.environ.get("PIPELINE_TRACEBACK"):
                raise
            print(f"error: {err}\n(PIPELINE_TRACEBACK=1 shows where it was raised)", file=sys.stderr)
            sys.exit(EXIT_CODE)

    return main
