"""The report as one self-contained HTML page: inline CSS, tables as HTML, figures as base64 PNG data URIs.

Nothing is fetched when the page opens (no external CSS, JS, fonts or images), so it can be mailed,
attached to a ticket or opened offline. The tables are ``raysweep.report.render``'s, with the detail columns
the terminal leaves out::

    page = html_page(report, draw_figures(report))
    Path("report.html").write_text(page)
"""

from __future__ import annotations

import base64
from html import escape

from raysweep.report.figures import FigureImage
from raysweep.report.records import Report
from raysweep.report.render import TextTable, tables
from raysweep.report.verdict import finding_one, verdict

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2430; max-width: 1200px;
       margin: 2em auto; padding: 0 1.2em; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { font-size: 1.15em; margin-top: 2em; }
.source { color: #5b6675; } .verdict { background: #eef4ff; border-left: 4px solid #3a6fd8; padding: .8em 1em; }
table { border-collapse: collapse; margin: .6em 0; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding-bottom: .4em; }
th, td { border-bottom: 1px solid #dde2ea; padding: .3em .7em; vertical-align: top; white-space: pre-line; }
th { background: #f4f6f9; text-align: left; } td.num { text-align: right; }
.note { color: #5b6675; font-size: .9em; margin: .2em 0; } .missing { color: #9a5b00; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #dde2ea; }
figcaption { color: #5b6675; font-size: .9em; }
"""


def _table(table: TextTable) -> str:
    header = "".join(f"<th>{escape(c.header)}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{escape(cell)}</td>' if column.numeric else f"<td>{escape(cell)}</td>"
                         for column, cell in zip(table.columns, row)) + "</tr>"
        for row in table.rows)
    notes = "".join(f'<p class="note">{escape(note)}</p>' for note in table.notes)
    return f"<table><caption>{escape(table.title)}</caption><tr>{header}</tr>{body}</table>{notes}"


def _figure(image: FigureImage) -> str:
    data = base64.b64encode(image.png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(image.caption)}">'
            f"<figcaption>{escape(image.filename)}: {escape(image.caption)}</figcaption></figure>")


def html_page(report: Report, figures: list[FigureImage]) -> str:
    """The whole page: verdict first, then tables, what is missing, and the figures."""
    terms = report.terms()
    units = f"losses in {terms.loss_unit}" + (" (bits/byte where recorded)" if report.main.bits_per_nat else "")
    if report.metric.is_task:
        units = f"{terms.target_score} in {terms.loss_unit}, higher first, for proxies and targets"
    elif terms.proxy_sign < 0:
        units += f" · proxies ranked by {terms.proxy_score} (dimensionless, higher first)"
    question = report.family.question
    kind = "task" if report.metric.is_task else "validation domain"
    missing = "".join(f'<li class="missing">{escape(line)}</li>' for line in report.missing)
    diverged = (f"<p>{report.num_diverged} run(s) diverged; their loss counts as +inf.</p>"
                if report.num_diverged else "")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>raysweep report: {escape(report.source)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(question)}</h1>",
        f'<p class="source">{escape(report.source)} · ranked by {kind} "{escape(report.main.domain)}" · '
        f"{escape(units)} · 95% bootstrap CIs over seeds</p>",
        f'<p class="verdict">{escape(verdict(report))}</p>',
        *[f"<p>{escape(line)}</p>" for line in finding_one(report)],
        "<h2>Tables</h2>", *[_table(t) for t in tables(report)],
        *(["<h2>Missing or left out</h2>", f"<ul>{missing}</ul>"] if missing else []), diverged,
        *(["<h2>Figures</h2>", *[_figure(f) for f in figures]] if figures else []),
        "</body></html>",
    ])
