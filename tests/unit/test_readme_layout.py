"""The README's layout section names every folder of the tree, and nothing that is not there."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from connectors.registry import VENUES

REPO = Path(__file__).resolve().parents[2]
ENTRY = re.compile(r"^( *)([A-Za-z_][\w.-]*)/ ")


def layout_entries(readme: str) -> dict[str, set[str]]:
    """Map each top-level folder of the README's layout block to the subfolders listed under it."""
    block = readme.split("## Layout", 1)[1].split("```", 2)[1]
    entries: dict[str, set[str]] = {}
    parent = ""
    for line in block.splitlines():
        match = ENTRY.match(line)
        if match is None:
            continue
        indent, name = match.groups()
        if indent:
            entries.setdefault(parent, set()).add(name)
        else:
            parent = name
            entries.setdefault(name, set())
    return entries


def tracked_folders() -> dict[str, set[str]]:
    """Map each tracked top-level folder (not hidden) to its tracked subfolders."""
    listing = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    folders: dict[str, set[str]] = {}
    for parts in (Path(name).parts for name in listing):
        if len(parts) > 1 and not parts[0].startswith("."):
            children = folders.setdefault(parts[0], set())
            if len(parts) > 2:
                children.add(parts[1])
    return folders


def test_the_layout_lists_every_top_level_folder_and_no_other() -> None:
    listed = layout_entries((REPO / "README.md").read_text(encoding="utf-8"))

    assert set(listed) == set(tracked_folders())


def test_the_layout_lists_every_subpackage_but_the_venue_folders() -> None:
    listed = layout_entries((REPO / "README.md").read_text(encoding="utf-8"))
    tracked = tracked_folders()

    for package in ("connectors", "router", "daemon"):
        subpackages = {name for name in tracked[package] if (REPO / package / name / "__init__.py").is_file()}
        venue_folders = set(VENUES) if package == "connectors" else set()
        assert listed[package] == subpackages - venue_folders, package


def test_the_layout_parser_reads_nesting() -> None:
    readme = "## Layout\n\n```\na/   first\n  b/ nested\n     more words/ not an entry\nc/   second\n```\n"

    assert layout_entries(readme) == {"a": {"b"}, "c": set()}
