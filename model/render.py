"""The report's renderers: blocks (model/report.py) to Markdown and to one self-contained
HTML page. The index of runs (model/runs.py) is rendered here too, with the same styles
(model/report.css, shipped in the package).

A block is a tuple: ("h1" | "h2" | "h3" | "p", text), ("list", items), ("status", passed,
text), ("box", anchor, title, blocks), ("details", summary, blocks), ("toc",), ("img", file,
caption), ("table", header, rows[, row classes]). Cells are text or a Link.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from importlib.resources import files

# The styles of every page capest writes (reports and the index), inlined: each page is one
# file that makes no requests. A file, so that it reads and diffs as CSS.
CSS = files("model").joinpath("report.css").read_text(encoding="utf-8").rstrip("\n")


@dataclass(frozen=True)
class Link:
    text: str
    url: str


_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`(.+?)`")
# Links go to http(s) addresses (sources) or to a path beside the page (the index's reports);
# anything else (javascript:, data:) is shown as text.
_SAFE_URL = re.compile(r"^(https?://[^\s\"'<>]+|[A-Za-z0-9_.-][A-Za-z0-9_./-]*)$")


# Characters that Markdown (CommonMark and GitHub's tables) or the HTML it passes through
# would read as markup. Ledger text and titles come from sources and analysts: in report.md
# they must stay text (no raw <script>, no [link](javascript:...), no ![tracking image]).
_MD_SPECIAL = re.compile(
    r"[\\`*\[\]<>|~&]"  # always markup (links, images, raw HTML, code, emphasis, tables)
    r"|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])"  # emphasis; inside a word (date_code) it is text
)


def md_text(text) -> str:
    """Input text as literal Markdown text on one line: every mark backslash-escaped."""
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), " ".join(str(text).splitlines()))


def _md_cell(cell) -> str:
    if isinstance(cell, Link):
        text = md_text(cell.text)
        if _SAFE_URL.match(cell.url):  # <...> so that a ')' cannot end the address
            return f"[{text}](<{cell.url}>)"
        return f"{text} ({md_text(cell.url)})"
    return md_text(cell)


def _anchor(text: str) -> str:
    """A heading's id for the table of contents (the same in HTML and on GitHub)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _contents(blocks: list[tuple]) -> list[tuple[int, str]]:
    """(level, title) of every h2 and h3 after the table of contents, in order."""
    return [(2 if kind == "h2" else 3, rest[0]) for kind, *rest in blocks if kind in ("h2", "h3")]


def _status_word(passed: bool) -> str:
    return "PASSED" if passed else "FAILED"


def to_markdown(blocks: list[tuple]) -> str:
    out = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2", "h3"):  # headings are text (a case or plant title is input)
            out.append(f"{'#' * int(kind[1])} {md_text(rest[0])}")
        elif kind == "p":
            out.append(rest[0])
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in rest[0]))
        elif kind == "status":
            out.append(f"> **{_status_word(rest[0])}**: {rest[1]}")
        elif kind == "box":  # the key judgments: a heading and its blocks
            _, title, inner = rest
            out.append(f"## {title}\n\n" + to_markdown(inner).rstrip("\n"))
        elif kind == "details":  # collapsed in HTML; Markdown shows it in full
            summary_text, inner = rest
            out.append(f"*{summary_text.replace(' (click to open)', '')}*\n\n")
            out[-1] += to_markdown(inner).rstrip("\n")
        elif kind == "toc":
            out.append(
                "**Contents**\n\n"
                + "\n".join(
                    f"{'  ' * (level - 2)}- [{title}](#{_anchor(title)})"
                    for level, title in _contents(blocks)
                )
            )
        elif kind == "img":
            out.append(f"![{rest[1]}]({rest[0]})\n\n*{rest[1]}*")
        elif kind == "table":
            header, rows, *_ = rest
            lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    """Escape first, then allow the two inline marks the report itself uses."""
    text = html.escape(text)
    text = _BOLD.sub(r"<strong>\1</strong>", text)
    return _CODE.sub(r"<code>\1</code>", text)


def _html_cell(cell) -> str:
    if isinstance(cell, Link):
        if _SAFE_URL.match(cell.url):
            url = html.escape(cell.url, quote=True)
            return f'<a href="{url}" rel="noopener noreferrer">{html.escape(cell.text)}</a>'
        return f"{html.escape(cell.text)} ({html.escape(cell.url)})"
    return html.escape(str(cell))


def _html_blocks(blocks: list[tuple], figures: dict[str, bytes], contents) -> list[str]:
    body = []
    for kind, *rest in blocks:
        if kind == "h1":
            body.append(f"<h1>{html.escape(rest[0])}</h1>")
        elif kind in ("h2", "h3"):
            body.append(f'<{kind} id="{_anchor(rest[0])}">{html.escape(rest[0])}</{kind}>')
        elif kind == "p":
            body.append(f"<p>{_inline(rest[0])}</p>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in rest[0]) + "</ul>")
        elif kind == "status":  # in words, not colour alone
            cls = "passed" if rest[0] else "failed"
            body.append(
                f'<div class="status {cls}" id="status"><strong>{_status_word(rest[0])}</strong>: '
                f"{_inline(rest[1])}</div>"
            )
        elif kind == "box":
            anchor, title, inner = rest
            body.append(
                f'<section class="judgments" id="{anchor}"><h2>{html.escape(title)}</h2>'
                + "\n".join(_html_blocks(inner, figures, contents))
                + "</section>"
            )
        elif kind == "details":
            summary_text, inner = rest
            body.append(
                f"<details><summary>{html.escape(summary_text)}</summary>"
                + "\n".join(_html_blocks(inner, figures, contents))
                + "</details>"
            )
        elif kind == "toc":
            items = "".join(
                f'<li class="l{level}"><a href="#{_anchor(t)}">{html.escape(t)}</a></li>'
                for level, t in contents
            )
            body.append(f'<nav class="toc"><strong>Contents</strong><ul>{items}</ul></nav>')
        elif kind == "img":
            data = base64.b64encode(figures[rest[0]]).decode()
            body.append(
                f'<figure><img alt="{html.escape(rest[1], quote=True)}" '
                f'src="data:image/png;base64,{data}"><figcaption>{html.escape(rest[1])}'
                "</figcaption></figure>"
            )
        elif kind == "table":
            header, rows, *classes = rest  # classes: one CSS class per row (the index's status)
            head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
            opens = [f'<tr class="{c}">' for c in classes[0]] if classes else ["<tr>"] * len(rows)
            cells = "".join(
                tr + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>"
                for tr, row in zip(opens, rows, strict=True)
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
    return body


def to_html(blocks: list[tuple], figures: dict[str, bytes], title: str) -> str:
    """One self-contained page: styles inline, figures as data URIs, no external requests."""
    body = _html_blocks(blocks, figures, _contents(blocks))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">"
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
