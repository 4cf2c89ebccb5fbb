"""`make help` lists every target of the Makefile, each with its description."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_help_lists_every_target_with_a_description() -> None:
    # Given the targets the Makefile declares (.PHONY) and defines (a name, a colon, not a variable's :=)
    makefile = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.MULTILINE)
    assert phony is not None
    targets = set(phony.group(1).split()) | set(re.findall(r"^([a-z0-9][a-z0-9-]*):(?!=)", makefile, re.MULTILINE))
    # When make help runs
    listed = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    described = {line.split()[0]: line.split(None, 1)[1:] for line in listed.splitlines() if line.strip()}
    # Then each one is listed with a description (e2e's digit once hid it)
    assert targets <= set(described), sorted(targets - set(described))
    assert all(described[target] for target in targets)
