"""What the registered model ships and runs (its code_paths): image bytes -> verdict rows. Imports nothing of pipeline/ outside this folder."""
