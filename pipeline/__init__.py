"""The DVC stages of the pipeline: ingest -> split -> embed -> train -> evaluate -> compare -> register."""
