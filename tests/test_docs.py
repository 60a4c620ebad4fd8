"""docs/: every `docs/<page>.md#<anchor>` that code, configs, deploy files or the docs themselves cite exists,
and nothing cites documents that are not in the repository."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SOURCES = ("*.py", "*.md", "*.yaml", "*.json", "Dockerfile", "Makefile", "*.toml")
SKIP = {".git", ".venv", "runs", "__pycache__", ".pytest_cache"}
CITATION = re.compile(r"docs/([a-z_]+)\.md#([a-z0-9-]+)")
LOCAL_LINK = re.compile(r"\]\((?:([a-z_]+)\.md)?#([a-z0-9-]+)\)")


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, fenced = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            found.add(slug(line.lstrip("#")))
    return found


def project_files():
    for pattern in SOURCES:
        for path in ROOT.rglob(pattern):
            if not SKIP & set(path.relative_to(ROOT).parts):
                yield path


def test_slug_rule():
    assert slug(" GRPO-CARE: reference model") == "grpo-care-reference-model"
    assert slug("MMR1 VAS") == "mmr1-vas"
    assert slug("Departures from the released code") == "departures-from-the-released-code"


def test_every_cited_anchor_exists():
    pages = {p.stem: anchors(p) for p in DOCS.glob("*.md")}
    assert {"algorithms", "architecture", "data"} <= set(pages)
    broken, cited = [], 0
    for path in project_files():
        text = path.read_text(errors="replace")
        refs = CITATION.findall(text)
        if path.parent == DOCS:
            refs += [(page or path.stem, anchor) for page, anchor in LOCAL_LINK.findall(text)]
        for page, anchor in refs:
            cited += 1
            if anchor not in pages.get(page, ()):
                broken.append(f"{path.relative_to(ROOT)}: docs/{page}.md#{anchor}")
    assert cited > 20
    assert not broken, broken


def test_no_citation_of_documents_outside_the_repository():
    outside = re.compile(r"\b(ALGORITHMS|DESIGN|ENVIRONMENT)\.md\b|\.\./shared/")
    hits = [str(p.relative_to(ROOT)) for p in project_files()
            if p.name != "test_docs.py" and outside.search(p.read_text(errors="replace"))]
    assert not hits, sorted(hits)
