"""Imports TensorFlow with its C++ start-up lines kept off stderr: the stages import this before keras.

TensorFlow prints its oneDNN and CPU notices through absl before absl's logging is set up, where
TF_CPP_MIN_LOG_LEVEL cannot reach them, and they buried each stage's own output. Only the import is
quiet: later warnings and every Python error still show. PIPELINE_TF_CHATTER=1 shows it all.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's own C++ info and warnings, after start-up
if not os.environ.get("PIPELINE_TF_CHATTER"):
    saved_stderr, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved_stderr, 2)
        os.close(devnull)
        os.close(saved_stderr)
