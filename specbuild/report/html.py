"""The pieces of a report page: escaped text, tables, inline images, sections, the page itself.

Everything read from a run folder is text to escape (a spec's doc or a layer's name may
hold `<script>`): only these helpers build markup, and each escapes what it is given,
so a page module never writes a raw string into the page.  The page carries its CSS in
a <style> tag, its images as data: URLs and no script, and a Content-Security-Policy
that forbids loading anything, so it opens anywhere without a network and runs nothing.
"""
from __future__ import annotations

import base64
import math
from html import escape

# no script, no fetch: only inline styles and data: images (and data: for the empty favicon)
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1d2330;
       margin: 0; background: #f4f5f7; }
header { background: #1f3b57; color: #fff; padding: 18px 28px 14px; }
header h1 { margin: 0 0 4px; font-size: 22px; font-weight: 600; }
header .sub { color: #c9d6e3; font-size: 13px; }
nav { background: #fff; border-bottom: 1px solid #dde1e6; padding: 8px 28px; position: sticky; top: 0; }
nav a { color: #1f5a93; margin-right: 16px; text-decoration: none; font-size: 13px; }
main { max-width: 1180px; margin: 0 auto; padding: 8px 28px 40px; }
section { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; margin: 18px 0; padding: 6px 20px 16px; }
h2 { font-size: 17px; margin: 12px 0 10px; color: #1f3b57; }
h3 { font-size: 14px; margin: 14px 0 6px; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { border: 1px solid #dde1e6; padding: 3px 9px; text-align: left; vertical-align: top; }
th { background: #eef1f5; font-weight: 600; }
thead th { vertical-align: bottom; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: 600; background: #f7f8fa; }
.scroll { overflow: auto; max-width: 100%; }
.tall { max-height: 560px; }
.note { color: #6b5300; background: #fff8e1; border-left: 3px solid #e0b400; padding: 6px 10px; margin: 8px 0; }
.bad { color: #8a1c1c; background: #fdecec; border-left-color: #c62828; }
.muted { color: #69707d; }
pre { background: #f6f8fa; border: 1px solid #dde1e6; padding: 10px; overflow: auto; max-height: 480px;
      font-size: 12px; white-space: pre; }
.doc { white-space: pre-wrap; max-width: 900px; }
img.plot { max-width: 100%; height: auto; border: 1px solid #eef1f5; }
img.grid { width: 300px; height: auto; image-rendering: pixelated; border: 1px solid #dde1e6; }
figure { display: inline-block; margin: 6px 18px 6px 0; vertical-align: top; }
figcaption { font-size: 12px; color: #69707d; text-align: center; }
table.matrix td { text-align: right; min-width: 30px; font-variant-numeric: tabular-nums; }
table.matrix th.corner { font-weight: 400; color: #69707d; font-size: 11px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 8px 0; }
.card { border: 1px solid #dde1e6; border-radius: 5px; padding: 6px 12px; min-width: 110px; background: #fafbfc; }
.card .k { font-size: 11px; color: #69707d; } .card .v { font-size: 18px; font-weight: 600; }
svg.graph { font: 11px system-ui, Helvetica, Arial, sans-serif; }
svg.graph text.net { font-weight: 600; font-size: 13px; }
"""


def text(value) -> str:
    return escape(str(value), quote=True)


def number(value) -> str:
    """A figure as a person reads it: whole numbers with separators, others to four decimals
    (so a column of metrics lines up), a small one (a learning rate) to three significant digits."""
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and abs(value) < 0.01:
            return f"{value:.3g}"
        return f"{value:,.1f}" if abs(value) >= 1e4 else f"{value:.4f}"
    return str(value)


def attrs(**pairs) -> str:
    """Escaped attributes for those given a value (`cls` is `class`)."""
    return "".join(f' {"class" if k == "cls" else k}="{text(v)}"' for k, v in pairs.items() if v)


def cell(value, *, tag: str = "td", style: str = "", title: str = "") -> str:
    """One table cell; numbers right-aligned, everything escaped."""
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    shown = number(value) if numeric or value is None else str(value)
    return f"<{tag}{attrs(cls='num' if numeric else '', style=style, title=title)}>{text(shown)}</{tag}>"


def table(headers: list, rows: list, *, id: str = "", cls: str = "", total_rows: int = 0) -> str:
    """A table of plain values; the last `total_rows` rows are shown as totals (averages).  A long
    header (val_fc2_precision) may wrap after its underscores, so many columns still fit."""
    head = "".join(f"<th>{text(h).replace('_', '_<wbr>')}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        total = total_rows and i >= len(rows) - total_rows
        body.append(f'<tr{" class=total" if total else ""}>' + "".join(cell(v) for v in row) + "</tr>")
    return f"<table{attrs(id=id, cls=cls)}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def key_values(pairs: list, *, id: str = "") -> str:
    """A two-column table of (name, value) pairs."""
    rows = "".join(f"<tr>{cell(k, tag='th')}<td>{text(number(v))}</td></tr>" for k, v in pairs)
    return f"<table{attrs(id=id)}><tbody>{rows}</tbody></table>"


def png(data: bytes, alt: str, *, id: str = "", cls: str = "plot") -> str:
    """A PNG inline, as a data: URL, so the page needs no file beside it."""
    url = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return f"<img{attrs(id=id, cls=cls, alt=alt, src=url)}>"


def figure(inner: str, caption: str) -> str:
    return f"<figure>{inner}<figcaption>{text(caption)}</figcaption></figure>"


def note(message: str, *, bad: bool = False) -> str:
    return f"<p{attrs(cls='note bad' if bad else 'note')}>{text(message)}</p>"


def para(message: str, cls: str = "") -> str:
    return f"<p{attrs(cls=cls)}>{text(message)}</p>"


def h3(heading: str) -> str:
    return f"<h3>{text(heading)}</h3>"


def pre(content: str, cls: str = "") -> str:
    return f"<pre{attrs(cls=cls)}>{text(content)}</pre>"


def cards(pairs: list) -> str:
    """A row of headline figures."""
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="k">{text(k)}</div><div class="v">{text(number(v))}</div></div>'
        for k, v in pairs) + "</div>"


def link(href: str, label: str) -> str:
    return f"<a{attrs(href=href)}>{text(label)}</a>"


class Page:
    """A page of sections, each listed in the navigation bar; `raw` markup comes from the helpers above."""

    def __init__(self, title: str, subtitle: str = ""):
        self.title, self.subtitle, self.sections = title, subtitle, []

    def add(self, id: str, heading: str, *raw: str) -> None:
        self.sections.append((id, heading, "".join(raw)))

    def render(self) -> str:
        nav = "".join(link(f"#{id}", heading) for id, heading, _ in self.sections)
        body = "".join(f'<section id="{text(id)}"><h2>{text(heading)}</h2>{raw}</section>'
                       for id, heading, raw in self.sections)
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
                '<meta name="viewport" content="width=device-width, initial-scale=1">'
                '<link rel="icon" href="data:,">'
                f"<title>{text(self.title)}</title><style>{CSS}</style></head><body>"
                f'<header><h1>{text(self.title)}</h1><div class="sub">{text(self.subtitle)}</div></header>'
                f"<nav>{nav}</nav><main>{body}</main></body></html>\n")
