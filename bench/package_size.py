"""Zipped package sizes: the FC layer, each function's code, and the layer's dependency closure.

When ``make package`` has built ``dist/*.zip``, those are measured as they are. The closure is
always measured too, offline: every distribution ``layers/dbupgrade/requirements.txt`` pulls in
(recursively, markers evaluated for this interpreter), taken file by file from this environment's
install records (the same wheels ``pip install --target`` would lay out, .pyc included) and zipped
with deflate beside ``dbupgrade`` itself, the way the README's deploy step builds the layer.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterable
from importlib.metadata import Distribution, PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "layers" / "dbupgrade" / "requirements.txt"
MIB = 1024 * 1024


def _requirements(lines: Iterable[str]) -> list[Requirement]:
    found = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            found.append(Requirement(line))
    return found


def closure() -> list[Distribution]:
    """The installed distributions the layer's requirements need, each once."""
    seen: dict[str, Distribution] = {}
    pending = _requirements(REQUIREMENTS.read_text().splitlines())
    while pending:
        requirement = pending.pop()
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if name in seen:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        try:
            dist = distribution(requirement.name)
        except PackageNotFoundError:
            continue
        seen[name] = dist
        pending.extend(_requirements(dist.requires or []))
    return list(seen.values())


def _zip(files: Iterable[tuple[str, Path]]) -> list[zipfile.ZipInfo]:
    """Deflate ``(name in archive, path)`` pairs into one in-memory zip; its entries."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in files:
            archive.write(path, name)
        return archive.infolist()


def _size(entries: Iterable[zipfile.ZipInfo]) -> float:
    """MiB the entries take in a zip: compressed data plus local and central headers."""
    return sum(e.compress_size + 2 * len(e.filename) + 76 for e in entries) / MIB


def _dist_files(dist: Distribution) -> list[tuple[str, Path]]:
    files = []
    for entry in dist.files or []:
        if entry.parts[0] == "..":  # console scripts land in bin/, not in the layer
            continue
        path = Path(str(dist.locate_file(entry)))
        if path.is_file():
            files.append((f"python/{entry}", path))
    return files


def _tree(directory: Path, prefix: str) -> list[tuple[str, Path]]:
    return [
        (f"{prefix}/{path.relative_to(directory)}", path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    ]


def measure() -> dict[str, Any]:
    dists = {str(dist.metadata["Name"]): _dist_files(dist) for dist in closure()}
    ours = _tree(ROOT / "layers" / "dbupgrade" / "python" / "dbupgrade", "python/dbupgrade")
    entries = {e.filename: e for e in _zip([f for files in dists.values() for f in files] + ours)}
    per_dist = {name: _size(entries[n] for n, _ in files) for name, files in dists.items()}
    result: dict[str, Any] = {
        "closure_source": "this environment's installed wheels (offline), zipped with deflate",
        "layer_closure_mib": _size(entries.values()),
        "dependencies_mib": sum(per_dist.values()),
        "dbupgrade_mib": _size(entries[n] for n, _ in ours),
        "largest_mib": dict(sorted(per_dist.items(), key=lambda kv: -kv[1])[:6]),
        "functions_mib": {
            path.name: _size(_zip(_tree(path, path.name)))
            for path in sorted((ROOT / "functions").iterdir())
            if path.is_dir()
        },
    }
    built = sorted((ROOT / "dist").glob("*.zip")) if (ROOT / "dist").is_dir() else []
    if built:
        result["make_package_mib"] = {path.name: path.stat().st_size / MIB for path in built}
    return result
