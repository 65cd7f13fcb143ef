"""The documentation: the MkDocs site under docs/ builds with --strict (mkdocs.yml's validation
makes a broken link, a link to a missing heading and a page left out of the nav errors), and
README.md stays a short front door whose every relative link and image resolves."""

import re
import subprocess
import sys
from urllib.parse import unquote

from markdown.extensions.toc import slugify

from conftest import ROOT

README_MAX_LINES = 150

# [text](target) and ![alt](target), with an optional "title" after the target
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def test_site_builds_strictly(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stderr[-5000:]}"
    assert (tmp_path / "site" / "index.html").is_file()


def prose_lines(text: str):
    """The lines of a Markdown text outside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def anchors(path) -> set[str]:
    """The ids MkDocs gives the headings of a Markdown file (Python-Markdown's toc slugs)."""
    ids = set()
    for line in prose_lines(path.read_text(encoding="utf-8")):
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            ids.add(slugify(re.sub(r"[`*_]", "", heading.group(1)), "-"))
    return ids


def readme_links() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [m.group(1) for line in prose_lines(text) for m in LINK.finditer(line)]


def test_readme_is_short_and_its_links_resolve():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines, at most {README_MAX_LINES}: move the detail into docs/"
    )
    links = readme_links()
    local = [t for t in links if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]
    assert any(t.startswith("docs/") for t in local), "README.md links no page of docs/"
    assert any(t.endswith(".png") for t in local), "README.md shows no figure"
    broken = []
    for target in local:
        path, _, anchor = target.partition("#")
        file = ROOT / unquote(path) if path else ROOT / "README.md"
        if not file.exists():
            broken.append(f"{target}: no file {file.relative_to(ROOT)}")
        elif anchor and file.suffix == ".md" and unquote(anchor) not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(ROOT)}")
    assert not broken, "README.md has broken links:\n" + "\n".join(broken)
