"""Write the trimmed API metadata localcloud checks requests and shapes responses by.

Input: the official OpenAPI metadata of R-kvstore 2015-01-01 and Dds 2015-12-01 as collected in
``research/api-meta/`` (mirrored from the metadata the official SDKs are generated from; see its
README). Output: ``localcloud/apimeta/<product>-<version>.json`` with only the facts localcloud uses:
per action the parameters' constraints, the response field tree (names and types) and the documented
error codes. Prose (``description``, ``example``) is dropped. The output depends on the input alone,
so running it twice writes the same bytes.

Example::

    python -m localcloud.apimeta.regenerate /work/shared/research/api-meta
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "research" / "api-meta"
SOURCES = ("r-kvstore-2015-01-01.json", "dds-2015-12-01.json")

# What a request parameter's constraints are made of, in the order they are written.
PARAMETER_KEYS = (
    "name", "in", "type", "required", "enum", "default", "minimum", "maximum", "format", "style",
    "maxItems", "minItems", "maxLength", "minLength", "items", "properties",
)  # fmt: skip
# What a response field (or a parameter's item/property schema) is made of.
SCHEMA_KEYS = ("type", "format", "required", "enum", "default", "items", "properties")


def _schema(node: dict[str, Any] | None, keys: tuple[str, ...] = SCHEMA_KEYS) -> dict[str, Any] | None:
    """``node`` with only ``keys``, its ``items`` and ``properties`` trimmed the same way."""
    if node is None:
        return None
    out: dict[str, Any] = {}
    for key in keys:
        if key not in node:
            continue
        value = node[key]
        if key == "items":
            value = _schema(value)
        elif key == "properties":
            value = {name: _schema(child) for name, child in value.items()}
        out[key] = value
    return out


def _error_codes(by_status: dict[str, list[dict[str, str]]]) -> list[dict[str, Any]]:
    return [
        {"status": int(status), "code": error["code"], "message": error["message"]}
        for status in sorted(by_status, key=int)
        for error in by_status[status]
    ]


def trim(metadata: dict[str, Any]) -> dict[str, Any]:
    """The facts of one product's metadata file: no prose, same action and field order."""
    return {
        "product": metadata["product"],
        "version": metadata["version"],
        "style": metadata["style"],
        "source": metadata["source"],
        "apis": {
            action: {
                "parameters": [_schema(p, PARAMETER_KEYS) for p in api["parameters"]],
                "response": _schema(api["response"]),
                "errorCodes": _error_codes(api.get("errorCodes") or {}),
            }
            for action, api in metadata["apis"].items()
        },
    }


def render(metadata: dict[str, Any]) -> str:
    return json.dumps(trim(metadata), indent=1, ensure_ascii=False) + "\n"


def regenerate(source: Path, target: Path = HERE) -> list[Path]:
    """Write one trimmed file per product from ``source``; return the paths written."""
    written = []
    for name in SOURCES:
        metadata = json.loads((source / name).read_text(encoding="utf-8"))
        path = target / name
        path.write_text(render(metadata), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_SOURCE, help="the api-meta folder")
    args = parser.parse_args(argv)
    for path in regenerate(args.source):
        print(path.relative_to(REPO_ROOT))


if __name__ == "__main__":
    main()
