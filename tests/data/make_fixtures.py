"""Regenerate the vendored test data in this folder from the published data.

    python tests/data/make_fixtures.py --shared PATH/TO/shared

``PATH/TO/shared`` is the folder that holds ``data/profiles/*.jsonl`` (the published
memory logger's per-layer profiles) and ``data/accuracy/*.jsonl`` (the published
accuracy records). Every record of every file is kept, in its original order, one
compact JSON object per line; the files are gzip-compressed with a zero timestamp so
that regenerating them from the same data gives the same bytes.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
KINDS = ("profiles", "accuracy")


def read_jsonl(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl_gz(path: Path, records: list[dict]) -> None:
    text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
        gz.write(text.encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", required=True, type=Path, help="the published data folder (holds data/)")
    parser.add_argument("--out", default=HERE, type=Path, help="where to write <kind>/<name>.jsonl.gz")
    args = parser.parse_args(argv)
    for kind in KINDS:
        src = args.shared / "data" / kind
        files = sorted(src.glob("*.jsonl"))
        if not files:
            parser.error(f"no {kind} files: {src}/*.jsonl not found")
        (args.out / kind).mkdir(parents=True, exist_ok=True)
        for path in files:
            records = read_jsonl(path)
            dest = args.out / kind / (path.name + ".gz")
            write_jsonl_gz(dest, records)
            print(f"{dest}: {len(records)} records, {dest.stat().st_size} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
