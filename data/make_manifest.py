"""Write the manifests of seglab's data sets: one JSON file per data set listing every
data file with its size and SHA-256.

The manifest is what makes downloads trustworthy: ``seglab download`` keeps a file
only when its size and hash match, so a dropped connection, a proxy error page or a
changed mirror can never leave a wrong file behind. Run this once, on a folder that
holds exactly the published files, whenever the pinned source changes:

    python data/make_manifest.py --camvid /path/to/camvid --isbi-em /path/to/isbi-em

Each folder defaults to ``$SEGLAB_DATA`` / ``$SEGLAB_ISBI_DATA``, else ``data/<name>``.
The manifests hold names, sizes and hashes only, never data, and are committed.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "seglab" / "manifests"
# data set name -> (environment variable naming its folder, manifest file name)
DATASETS = {"camvid": ("SEGLAB_DATA", "camvid.json"),
            "isbi-em": ("SEGLAB_ISBI_DATA", "isbi-em.json")}
SKIP_NAMES = {"README.md", ".seglab-download.lock"}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def scan(root: Path) -> list[dict]:
    """Every data file under ``root`` (sorted, posix paths), without the README, hidden
    files and leftovers of an interrupted download (``*.part-*``)."""
    entries = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if not path.is_file() or rel.as_posix() in SKIP_NAMES:
            continue
        if any(part.startswith(".") for part in rel.parts) or ".part-" in path.name:
            continue
        entries.append({"path": rel.as_posix(), "size": path.stat().st_size,
                        "sha256": sha256_file(path)})
    return sorted(entries, key=lambda e: e["path"])


def write_manifest(name: str, root: Path, out: Path) -> Path:
    """Scan ``root`` and write ``out`` with one file entry per line (readable diffs)."""
    entries = scan(root)
    if not entries:
        raise SystemExit(f"make_manifest: no data files found in {root}; pass --{name} DIR "
                         f"with the folder that holds the {name} files.")
    lines = ",\n".join("  " + json.dumps(e) for e in entries)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f'{{"dataset": {json.dumps(name)}, "files": [\n{lines}\n]}}\n')
    json.loads(out.read_text())  # refuse to leave a manifest that does not parse
    total = sum(e["size"] for e in entries)
    print(f"{out.relative_to(REPO) if out.is_relative_to(REPO) else out}: "
          f"{len(entries)} files, {total / 1e6:.1f} MB, from {root}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, (env, _) in DATASETS.items():
        parser.add_argument(f"--{name}", metavar="DIR", type=Path, default=None,
                            help=f"folder holding the {name} files (default: ${env}, else data/{name})")
    parser.add_argument("--only", choices=list(DATASETS), default=None,
                        help="write one manifest only")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the JSON files")
    args = parser.parse_args(argv)
    for name, (env, filename) in DATASETS.items():
        if args.only and name != args.only:
            continue
        root = getattr(args, name.replace("-", "_"))
        if root is None:
            root = Path(os.environ[env]) if os.environ.get(env) else REPO / "data" / name
        root = root.expanduser().resolve()
        if not root.is_dir():
            print(f"make_manifest: {root} is not a folder; pass --{name} DIR.", file=sys.stderr)
            return 1
        write_manifest(name, root, args.out / filename)
    return 0


if __name__ == "__main__":
    sys.exit(main())
