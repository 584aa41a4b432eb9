"""Stage `ingest`: data/<class>/* -> manifest.csv (usable images) + report.json (counts, skipped and why)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig
from tqdm import tqdm

from pipeline.cli import main_of
from pipeline.errors import UserError
from pipeline.io import write_atomic, write_json
from pipeline.served.images import ImageError, decode

MANIFEST_COLUMNS = ["path", "label", "sha256", "width", "height"]


class DataError(UserError, ValueError):
    """The data folder cannot feed the pipeline; the message says why."""


def scan(data_dir: Path, folders: list[str], max_pixels: int) -> tuple[pd.DataFrame, list[dict]]:
    """Decode every file once; keep the usable, unique images and list the rest with a reason."""
    rows, skipped, first_seen = [], [], {}
    files = [(label, path) for label in folders for path in sorted((data_dir / label).rglob("*")) if path.is_file()]
    for label, path in tqdm(files, desc="ingest", unit="file"):
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest in first_seen:
            skipped.append({"path": str(path), "reason": f"duplicate of {first_seen[digest]}"})
            continue
        try:
            image = decode(data, max_pixels=max_pixels)
        except ImageError as err:
            skipped.append({"path": str(path), "reason": str(err)})
            continue
        first_seen[digest] = str(path)
        rows.append({"path": str(path), "label": label, "sha256": digest, "width": image.width, "height": image.height})
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS), skipped


def run(cfg: DictConfig) -> dict:
    data_dir = Path(cfg.paths.data)
    folders = [*cfg.data.classes, cfg.data.reject_class]
    missing = [f for f in folders if not (data_dir / f).is_dir()]
    if missing:
        raise DataError(
            f"{data_dir} has no folder for {missing}; expected one folder per class: {folders} "
            f"(`dvc pull data.dvc` fetches the team data; paths.data chooses another folder)"
        )
    manifest, skipped = scan(data_dir, folders, cfg.data.max_pixels)
    counts = {f: int((manifest.label == f).sum()) for f in folders}
    empty = [f for f, n in counts.items() if n == 0]
    if empty:
        raise DataError(f"no usable image in {[str(data_dir / f) for f in empty]} (see the skipped files above)")
    for item in skipped:
        print(f"skipped {item['path']}: {item['reason']}")
    report = {"images": counts, "skipped": len(skipped), "skipped_files": skipped}
    write_atomic(cfg.paths.manifest, manifest.to_csv(index=False))
    write_json(cfg.paths.ingest_report, report)
    print(f"ingest: {counts}, skipped {len(skipped)}")
    return report


main = main_of(run, __doc__)


if __name__ == "__main__":
    main()
