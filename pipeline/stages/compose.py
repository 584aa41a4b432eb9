"""Stage `compose`: conf/ -> params.yaml, the composed config every other stage reads.

Under `dvc exp run` DVC has just composed params.yaml itself, with the -S overrides, so this stage
only validates it; if an override is bad, params.yaml is put back to what conf/ composes, so the
bad value is not left behind. Under `dvc repro` it recomposes from conf/, so an edit there is never
ignored.
"""

import os
import sys

from pipeline import config
from pipeline.errors import EXIT_CODE, UserError

PARAMS_FILE = "params.yaml"


def compose_from_conf(params_file: str) -> None:
    from dvc.utils.hydra import compose_and_dump  # the very function `dvc exp run` uses

    config.compose()  # validate first: never write a params file the stages would reject
    compose_and_dump(params_file, str(config.CONF_DIR), None, "config", ".", [])


def run(params_file: str = PARAMS_FILE) -> None:
    if os.environ.get("DVC_EXP_NAME") and os.path.exists(params_file):
        try:
            config.from_params(params_file)  # fail now on a bad -S override, not in a later stage
        except UserError:
            compose_from_conf(params_file)
            raise
        print(f"{params_file}: composed by `dvc exp run`; valid")
        return
    compose_from_conf(params_file)
    print(f"{params_file}: composed from conf/")


def main() -> None:
    if len(sys.argv) > 1:
        sys.exit("usage: python -m pipeline.stages.compose  (edit conf/, or use `dvc exp run -S key=value`)")
    try:
        run()
    except UserError as err:
        if os.environ.get("PIPELINE_TRACEBACK"):
            raise
        print(f"error: {err}\n{PARAMS_FILE} is as conf/ composes it again.", file=sys.stderr)
        sys.exit(EXIT_CODE)


if __name__ == "__main__":
    main()
