"""Stage `compose`: conf/ -> params.yaml, the composed config every other stage reads.

Under `dvc exp run` DVC has just composed params.yaml itself, with the -S overrides, so this stage
only validates it. Under `dvc repro` it recomposes from conf/, so an edit there is never ignored.
"""

import os
import sys

from pipeline import config

PARAMS_FILE = "params.yaml"


def run(params_file: str = PARAMS_FILE) -> None:
    if os.environ.get("DVC_EXP_NAME") and os.path.exists(params_file):
        config.from_params(params_file)  # fail now on a bad -S override, not in a later stage
        print(f"{params_file}: composed by `dvc exp run`; valid")
        return
    from dvc.utils.hydra import compose_and_dump  # the very function `dvc exp run` uses

    config.compose()  # validate first: never write a params file the stages would reject
    compose_and_dump(params_file, str(config.CONF_DIR), None, "config", ".", [])
    print(f"{params_file}: composed from conf/")


def main() -> None:
    if len(sys.argv) > 1:
        sys.exit("usage: python -m pipeline.compose  (edit conf/, or use `dvc exp run -S key=value`)")
    run()


if __name__ == "__main__":
    main()
