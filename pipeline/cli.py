"""A stage's command line -> its composed config -> the stage's run(cfg); a UserError -> one paragraph and exit code 2.

Every stage's main() runs through `main_of`; any other exception is a bug and keeps its traceback.
PIPELINE_TRACEBACK=1 shows the traceback of UserErrors too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from pipeline import config
from pipeline.errors import EXIT_CODE, UserError


def main_of(run: Callable, description: str) -> Callable[[], None]:
    """A stage's main(): compose the config from the command line, run the stage, and turn a
    UserError into one readable paragraph and exit code 2."""

    def main() -> None:
        try:
            run(config.from_argv(description=description))
        except UserError as err:
            if os.environ.get("PIPELINE_TRACEBACK"):
                raise
            print(f"error: {err}\n(PIPELINE_TRACEBACK=1 shows where it was raised)", file=sys.stderr)
            sys.exit(EXIT_CODE)

    return main
