"""Every relative link in the README, the changelog, docs/ and bench/README.md
points at a file that exists (anchors are not checked, only the file)."""

from __future__ import annotations

import os
import re

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def documents() -> list[str]:
    docs = os.path.join(ROOT, "docs")
    return [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "CHANGELOG.md"),
            os.path.join(ROOT, "bench", "README.md")] + sorted(
        os.path.join(docs, name) for name in os.listdir(docs) if name.endswith(".md"))


def relative_links(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [target for target in LINK.findall(text)
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target) and not target.startswith("#")]


def test_the_documents_have_links_to_check():
    # Positive control: the pattern finds the README's links into docs/.
    assert "docs/verification.md" in relative_links(os.path.join(ROOT, "README.md"))


@pytest.mark.parametrize("path", documents(), ids=lambda p: os.path.relpath(p, ROOT))
def test_every_relative_link_resolves(path):
    missing = [target for target in relative_links(path)
               if not os.path.exists(os.path.join(os.path.dirname(path), target.split("#", 1)[0]))]
    assert missing == []
