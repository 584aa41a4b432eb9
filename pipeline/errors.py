"""What a person can fix: errors whose message names the key or file and what to do (pipeline.cli prints them as one paragraph, exit 2)."""

from __future__ import annotations

EXIT_CODE = 2  # as argparse: the command was given something it cannot use


class UserError(Exception):
    """Bad input from the person running the pipeline (config, data, weights); str() says what to do."""
