"""The DVC stages, one file per stage of dvc.yaml (`run(cfg)` + `main`): compose -> ingest -> split -> embed -> train -> evaluate -> compare -> register."""
