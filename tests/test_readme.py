"""The README's curl examples, run in order against a live server, outputs compared.

In the README, ``$ command`` lines are run with bash (the address replaced by the test
server's); the lines after one, up to the next command, are its expected output. JSON
outputs are compared as JSON; ``…`` stands for any value (or any text within a line).
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import orjson
import pytest
from liveserver import LiveServer

README = Path(__file__).resolve().parents[1] / "README.md"
ADDRESS = "http://127.0.0.1:5984"


def examples() -> list[tuple[str, str]]:
    pairs, command, expected = [], None, []
    in_block = False
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            in_block = line.strip() == "```console"
            if not in_block and command is not None:
                pairs.append((command, "\n".join(expected)))
                command, expected = None, []
            continue
        if not in_block:
            continue
        if line.startswith("$ "):
            if command is not None:
                pairs.append((command, "\n".join(expected)))
            command, expected = line[2:], []
        else:
            expected.append(line)
    return pairs


def like(pattern: str, text: str) -> bool:
    regex = ".*".join(re.escape(part) for part in pattern.split("…"))
    return re.fullmatch(regex, text, re.S) is not None


def matches(expected, actual) -> bool:
    if expected == "…":
        return True
    if isinstance(expected, str) and "…" in expected:
        return isinstance(actual, str) and like(expected, actual)
    if isinstance(expected, dict):
        return (isinstance(actual, dict) and expected.keys() == actual.keys()
                and all(matches(v, actual[k]) for k, v in expected.items()))
    if isinstance(expected, list):
        return (isinstance(actual, list) and len(expected) == len(actual)
                and all(matches(e, a) for e, a in zip(expected, actual)))
    return expected == actual and type(expected) is type(actual)


def test_the_readme_has_examples_for_every_endpoint_family():
    commands = " ".join(c for c, _ in examples())
    for path in ("/_uuids", "/_all_dbs", "/_up", "/invoices/inv1", "_bulk_docs", "_all_docs",
                 "_changes", "_bulk_get", "_compact", "-X DELETE", "application/yaml",
                 "/_replicate", "/_replicator/", "/_scheduler/"):
        assert path in commands, path


def test_readme_examples_run_as_shown(tmp_path):
    with LiveServer(tmp_path / "data", workers=2, SETTEE_EXAMPLES="invoices") as server:
        for command, expected in examples():
            run = command.replace(ADDRESS, server.url)
            out = subprocess.run(["bash", "-c", run], capture_output=True, text=True,
                                 timeout=30).stdout.strip()
            try:
                want = orjson.loads(expected)
            except orjson.JSONDecodeError:
                lines = out.splitlines()
                assert len(lines) == len(expected.splitlines()), (command, out)
                for pattern, line in zip(expected.splitlines(), lines):
                    assert like(pattern, line), (command, out)
                continue
            try:
                got = orjson.loads(out)
            except orjson.JSONDecodeError:
                pytest.fail(f"{command}\nanswered non-JSON: {out!r}")
            assert matches(want, got), f"{command}\nexpected {expected}\ngot      {out}"


def test_every_setting_is_in_the_configuration_table():
    from settee.config import DEFAULTS
    text = (README.parent / "docs" / "CONFIGURATION.md").read_text()
    missing = [key for key in DEFAULTS if f"| `{key}` |" not in text]
    assert not missing, missing
