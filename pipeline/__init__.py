"""The DVC stages of the pipeline: ingest -> split -> train -> evaluate -> register."""
