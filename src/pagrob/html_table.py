"""The markdown the table steps write, as a small self-contained HTML page (standard library
only), so that `snakemake --report` shows every table as a table: its report renders HTML
results in the page, while Markdown and CSV results are only offered as downloads.

Understands what the table steps write: ``#`` headings, pipe tables, ``-`` and ``1.`` lists,
an image on a line of its own (``![alt](file.png)``: embedded, so the page stays
self-contained, where the step hands over its bytes), paragraphs (their line breaks kept), and
``**bold**`` / `` `code` `` inline. In a table, columns
headed ``... (paper)`` (the paper's numbers) and ``... Δ`` (ours − paper) are shaded so that they
read apart from ours. Any other line is kept as text.
"""

from __future__ import annotations

import base64
import html
import re

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5em;
       color: #1f2933; background: #fff; line-height: 1.4; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; max-width: 100%; }
th, td { border: 1px solid #cbd2d9; padding: 0.25em 0.45em; }
th { background: #e4e7eb; text-align: center; white-space: normal; max-width: 8.5em; }
td { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.label { text-align: left; }
th.paper, td.paper { background: #fdf3d8; }
th.delta, td.delta { background: #f5f7fa; color: #52606d; font-style: italic; }
tbody tr:hover td { background: #e6f0ff; }
p, li { max-width: 60em; }
img { max-width: 100%; }
code { background: #f0f2f5; padding: 0 0.2em; }
"""

_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
_SEPARATOR = re.compile(r"^\s*\|(\s*:?-{3,}:?\s*\|)+\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_BULLET = re.compile(r"^\s*[-*]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d+\.\s+(.*)$")
_IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)\s]+)\)\s*$")


def inline(text: str) -> str:
    """Escape ``text`` and turn **bold** and `code` into tags."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def column_class(header: str) -> str:
    """'paper' for the paper's numbers, 'delta' for ours − paper, '' otherwise."""
    header = header.strip()
    if header.endswith("(paper)"):
        return "paper"
    if header.endswith("Δ"):
        return "delta"
    return ""


def _table(rows: list[str]) -> str:
    header, body = _cells(rows[0]), [_cells(r) for r in rows[2:]]
    classes = [column_class(h) for h in header]

    def cls(i: int, first: bool = False) -> str:
        names = [classes[i]] if i < len(classes) and classes[i] else []
        names += ["label"] if first else []
        return f' class="{" ".join(names)}"' if names else ""

    head = "".join(f"<th{cls(i)}>{inline(h)}</th>" for i, h in enumerate(header))
    lines = [f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>"]
    for cells in body:
        tds = "".join(f"<td{cls(i, i == 0)}>{inline(c)}</td>" for i, c in enumerate(cells))
        lines.append(f"<tr>{tds}</tr>")
    lines.append("</tbody>\n</table>")
    return "\n".join(lines)


def _image(alt: str, src: str, images: dict) -> str:
    """An image: embedded as a data URI where ``images`` holds its PNG bytes, else linked."""
    if src in images:
        src = "data:image/png;base64," + base64.b64encode(images[src]).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="{html.escape(src)}"></p>'


def markdown_to_html(text: str, images: dict | None = None) -> str:
    """The HTML body of the markdown ``text`` (the subset the table steps write); ``images``:
    an image's path as the text names it -> its PNG bytes, to embed."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif _TABLE_ROW.match(line) and i + 1 < len(lines) and _SEPARATOR.match(lines[i + 1]):
            j = i + 2
            while j < len(lines) and _TABLE_ROW.match(lines[j]):
                j += 1
            out.append(_table(lines[i:j]))
            i = j
        elif m := _IMAGE.match(line):
            out.append(_image(m.group(1), m.group(2), images or {}))
            i += 1
        elif m := _HEADING.match(line):
            level = len(m.group(1))
            out.append(f"<h{level}>{inline(m.group(2))}</h{level}>")
            i += 1
        elif _BULLET.match(line) or _NUMBERED.match(line):
            pattern, tag = (_BULLET, "ul") if _BULLET.match(line) else (_NUMBERED, "ol")
            items = []
            while i < len(lines) and (m := pattern.match(lines[i])):
                items.append(f"<li>{inline(m.group(1))}</li>")
                i += 1
            out.append(f"<{tag}>\n" + "\n".join(items) + f"\n</{tag}>")
        else:  # a paragraph: this line (whatever it is: never stuck on it) and plain ones after it
            para = [line.strip()]
            i += 1
            while (
                i < len(lines)
                and lines[i].strip()
                and not (
                    _TABLE_ROW.match(lines[i])
                    or _HEADING.match(lines[i])
                    or _BULLET.match(lines[i])
                    or _NUMBERED.match(lines[i])
                )
            ):
                para.append(lines[i].strip())
                i += 1
            out.append("<p>" + "<br>\n".join(inline(x) for x in para) + "</p>")
    return "\n".join(out)


def page(text: str, title: str | None = None, images: dict | None = None) -> str:
    """A whole HTML document for the markdown ``text``; ``title`` (default: its first heading)
    is shown as a heading when the text has none; ``images`` as ``markdown_to_html``'s."""
    first = next((m.group(2) for line in text.splitlines() if (m := _HEADING.match(line))), None)
    heading = "" if first or not title else f"<h1>{inline(title)}</h1>\n"
    name = html.escape(first or title or "Table")
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{name}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"{heading}{markdown_to_html(text, images)}\n</body>\n</html>\n"
    )
