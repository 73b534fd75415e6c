"""localcloud/apimeta: the vendored metadata is exactly what regenerate.py makes of the research copy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localcloud.apimeta import regenerate

# The research copy of the official metadata (outside the repository: present on the build machine).
RESEARCH = Path("/work/shared/research/api-meta")


@pytest.mark.parametrize("name", regenerate.SOURCES)
def test_the_vendored_file_is_regenerated_byte_for_byte(name, tmp_path):
    if not (RESEARCH / name).exists():
        pytest.skip(f"no research copy at {RESEARCH}")
    written = regenerate.regenerate(RESEARCH, tmp_path)

    assert (tmp_path / name).read_bytes() == (regenerate.HERE / name).read_bytes()
    assert tmp_path / name in written


def test_trimming_keeps_the_facts_and_drops_the_prose():
    source = {
        "product": "Dds",
        "version": "2015-12-01",
        "style": "RPC",
        "source": "test",
        "apis": {
            "DescribeDBInstances": {
                "parameters": [
                    {"name": "PageSize", "in": "query", "type": "integer", "required": False,
                     "enum": ["30", "50"], "default": "30", "format": "int32", "example": "30",
                     "description": "prose"},
                ],
                "response": {"type": "object", "description": "prose", "properties": {
                    "Items": {"type": "array", "example": "x", "items": {"type": "string", "description": "p"}},
                }},
                "errorCodes": {"404": [{"code": "B", "message": "b"}], "400": [{"code": "A", "message": "a"}]},
            }
        },
    }  # fmt: skip

    trimmed = json.loads(regenerate.render(source))["apis"]["DescribeDBInstances"]

    assert trimmed["parameters"] == [
        {"name": "PageSize", "in": "query", "type": "integer", "required": False, "enum": ["30", "50"],
         "default": "30", "format": "int32"},
    ]  # fmt: skip
    assert trimmed["response"] == {
        "type": "object",
        "properties": {"Items": {"type": "array", "items": {"type": "string"}}},
    }
    assert trimmed["errorCodes"] == [
        {"status": 400, "code": "A", "message": "a"},
        {"status": 404, "code": "B", "message": "b"},
    ]
