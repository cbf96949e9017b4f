#!/usr/bin/env python3
"""The project's one version, and a check that everything that carries it agrees.

pyproject.toml's ``project.version`` is the source. The chart's ``version`` and ``appVersion``,
the image named in its Artifact Hub annotation, the newest release in CHANGELOG.md and (when
given) the release tag must all say the same; the image is tagged with it by the release
workflow, and ``make chart-package`` stamps it again when packaging.

Usage:
    python tools/release/version.py                 # print the version
    python tools/release/version.py --check [--tag v0.1.0]
    python tools/release/version.py --notes         # the CHANGELOG section of this version
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "datasync-operator" / "Chart.yaml"
CHANGELOG = ROOT / "CHANGELOG.md"
_RELEASE = re.compile(r"^## \[(?P<version>[^\]]+)\] - (?P<date>\d{4}-\d{2}-\d{2})$", re.M)


def version(root: Path = ROOT) -> str:
    with (root / "pyproject.toml").open("rb") as file:
        return str(tomllib.load(file)["project"]["version"])


def changelog_section(text: str, wanted: str) -> str | None:
    matches = list(_RELEASE.finditer(text))
    for index, match in enumerate(matches):
        if match.group("version") == wanted:
            end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
            section = text[match.end():end]
            return section.split("\n[", 1)[0].strip()  # stop at the link references
    return None


def problems(root: Path = ROOT, tag: str | None = None) -> list[str]:
    import yaml  # only the check needs it (`make version` runs with a bare python3)

    found: list[str] = []
    current = version(root)
    chart = yaml.safe_load((root / CHART.relative_to(ROOT)).read_text())
    for field in ("version", "appVersion"):
        if str(chart.get(field)) != current:
            found.append(
                f"Chart.yaml {field} is {chart.get(field)!r}, pyproject.toml says {current!r}"
            )
    images = yaml.safe_load((chart.get("annotations") or {}).get("artifacthub.io/images") or "[]")
    for image in images or []:
        if not str(image.get("image", "")).endswith(f":{current}"):
            found.append(
                f"Chart.yaml artifacthub.io/images names {image.get('image')!r}, not :{current}"
            )
    text = (root / CHANGELOG.relative_to(ROOT)).read_text()
    releases = [m.group("version") for m in _RELEASE.finditer(text)]
    if not releases or releases[0] != current:
        found.append(f"CHANGELOG.md's newest release is {releases[:1]}, not [{current}]")
    if tag is not None and tag != f"v{current}":
        found.append(f"the tag {tag!r} is not v{current}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="print or check the project's version")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--tag", default=None, help="the release tag, e.g. v0.1.0")
    parser.add_argument("--notes", action="store_true", help="print this version's CHANGELOG")
    args = parser.parse_args(argv)
    current = version()
    if args.notes:
        section = changelog_section(CHANGELOG.read_text(), current)
        if section is None:
            print(f"version: no CHANGELOG section for {current}", file=sys.stderr)
            return 1
        print(section)
        return 0
    if args.check:
        found = problems(tag=args.tag or None)
        for problem in found:
            print(f"version-check: {problem}", file=sys.stderr)
        if found:
            return 1
        print(f"version-check: {current} everywhere", file=sys.stderr)
        return 0
    print(current)
    return 0


if __name__ == "__main__":
    sys.exit(main())
