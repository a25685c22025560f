"""Every link and image in the README and docs/ points at a file the repository tracks, and
every ``#anchor`` at a heading of its page (GitHub's slugs). A figure kept out by .gitignore,
or a page renamed, fails here instead of showing a broken image."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def tracked() -> set[Path]:
    """The files git tracks (every file under ROOT when this is not a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return {p for p in ROOT.rglob("*") if p.is_file()}
    return {ROOT / name for name in out.decode().split("\0") if name}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading.

    >>> slug("The record: `lammps-stream.suggestion/1`")
    'the-record-lammps-streamsuggestion1'
    """
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of ``page``'s headings."""
    text = FENCE.sub("", page.read_text())
    return {slug(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M)}


def links(page: Path) -> list[str]:
    """The link targets in ``page`` outside code blocks, web addresses left out."""
    text = FENCE.sub("", page.read_text())
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_reach_tracked_files_and_headings(page: Path) -> None:
    files = tracked()
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if dest.is_dir():
            ok = any(f.is_relative_to(dest) for f in files)
        else:
            ok = dest in files and (not anchor or dest.suffix != ".md" or anchor in anchors(dest))
        if not ok:
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"
