#!/usr/bin/env python3
"""Packages the chart for a release: the version stamped, the image pinned by digest.

Copies charts/datasync-operator to a build folder, sets ``image.repository`` and
``image.digest`` in its values.yaml (the comments stay) and the image in Chart.yaml's Artifact
Hub annotation, then runs ``helm package --version V --app-version V`` into ``dist/``. The
source chart is never changed. Called by ``make chart-package`` (the release workflow's step).

Usage: package_chart.py --helm PATH --version 0.1.0 [--dest dist]
                        [--image-repository R --image-digest sha256:...]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "datasync-operator"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def pin(chart: Path, repository: str, digest: str) -> None:
    values = chart / "values.yaml"
    text = values.read_text()
    text, repos = re.subn(r"(?m)^(  repository: ).*$", rf"\g<1>{repository}", text, count=1)
    text, digests = re.subn(r'(?m)^(  digest: ).*$', rf'\g<1>"{digest}"', text, count=1)
    if repos != 1 or digests != 1:
        raise SystemExit("package_chart: values.yaml has no image.repository/image.digest line")
    values.write_text(text)
    meta = chart / "Chart.yaml"
    pinned = rf"\g<1>{repository}@{digest}"
    text, images = re.subn(r"(?m)^(      image: ).*$", pinned, meta.read_text())
    if images != 1:
        raise SystemExit("package_chart: Chart.yaml's artifacthub.io/images names no image")
    meta.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--helm", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--image-repository", default="")
    parser.add_argument("--image-digest", default="")
    parser.add_argument("--dest", type=Path, default=ROOT / "dist")
    args = parser.parse_args(argv)
    if bool(args.image_repository) != bool(args.image_digest):
        parser.error("give both --image-repository and --image-digest, or neither")
    if args.image_digest and not DIGEST.match(args.image_digest):
        parser.error(f"--image-digest must be sha256:<64 hex>, got {args.image_digest!r}")
    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / CHART.name
        shutil.copytree(CHART, chart)
        if args.image_digest:
            pin(chart, args.image_repository, args.image_digest)
        args.dest.mkdir(parents=True, exist_ok=True)
        subprocess.run([args.helm, "package", str(chart), "--version", args.version,
                        "--app-version", args.version, "--destination", str(args.dest)], check=True)
    print(args.dest / f"{CHART.name}-{args.version}.tgz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
