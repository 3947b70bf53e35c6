"""`report.html` (one self-contained page, images embedded as data: URIs) and `report.md` (images as
relative links) from the same content."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass

from orchestrator.report.tables import Table, to_markdown


@dataclass(frozen=True)
class FigureEntry:
    filename: str
    caption: str
    png: bytes


@dataclass(frozen=True)
class ExperimentSection:
    name: str
    tables: tuple[Table, ...]
    figures: tuple[FigureEntry, ...]


@dataclass(frozen=True)
class SourceInfo:
    path: str
    sha256: str
    records: int
    experiments: tuple[str, ...]


@dataclass(frozen=True)
class Provenance:
    """What the report knows about where its numbers come from, and what it does not know."""

    sources: tuple[SourceInfo, ...]
    settings: tuple[tuple[str, str], ...]  # (name, value) of the report's own settings
    fields_present: tuple[str, ...]
    fields_absent: tuple[str, ...]
    not_recorded: tuple[str, ...]  # what the sources cannot tell (configuration, lineage, ...)


@dataclass(frozen=True)
class ReportContent:
    title: str
    summary: tuple[str, ...]
    comparison: Table | None
    overview_figures: tuple[FigureEntry, ...]
    experiments: tuple[ExperimentSection, ...]
    provenance: Provenance


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
caption { font-weight: bold; text-align: left; padding: 0.3em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f0f0f0; }
tfoot td { font-weight: bold; background: #fafafa; }
ul.notes { font-size: 0.85em; color: #555; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in table.headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>"
                   for row in table.rows)
    foot = ("<tfoot><tr>" + "".join(f"<td>{_e(c)}</td>" for c in table.total) + "</tr></tfoot>"
            if table.total else "")
    notes = ("<ul class=\"notes\">" + "".join(f"<li>{_e(n)}</li>" for n in table.notes) + "</ul>"
             if table.notes else "")
    return (f"<table><caption>{_e(table.caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody>{foot}</table>\n{notes}\n")


def _html_figure(fig: FigureEntry) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    return (f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{_e(fig.caption)}\">"
            f"<figcaption>{_e(fig.caption)}</figcaption></figure>\n")


def _html_provenance(p: Provenance) -> str:
    parts = ["<h2>Configuration, protocol and lineage</h2>", "<h3>Sources</h3>", "<ul>"]
    for s in p.sources:
        parts.append(f"<li><code>{_e(s.path)}</code>: {s.records} candidate records of "
                     f"{_e(', '.join(s.experiments))}; sha256 <code>{_e(s.sha256)}</code></li>")
    parts += ["</ul>", "<h3>Report settings</h3>", "<ul>"]
    parts += [f"<li>{_e(k)}: {_e(v)}</li>" for k, v in p.settings]
    parts += ["</ul>", "<h3>Fields in the logs</h3>",
              f"<p>With values: {_e(', '.join(p.fields_present))}.</p>",
              f"<p>Without any value: {_e(', '.join(p.fields_absent) or 'none')}.</p>",
              "<h3>Not recorded in these sources</h3>", "<ul>"]
    parts += [f"<li>{_e(item)}</li>" for item in p.not_recorded]
    parts.append("</ul>")
    return "\n".join(parts) + "\n"


def render_html(content: ReportContent) -> str:
    parts = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>{_e(content.title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{_e(content.title)}</h1>"]
    parts += [f"<p>{_e(line)}</p>" for line in content.summary]
    if content.comparison is not None:
        parts += ["<h2>Experiments compared (Table 3)</h2>", _html_table(content.comparison)]
    if content.overview_figures:
        parts.append("<h2>Across cycles</h2>")
        parts += [_html_figure(f) for f in content.overview_figures]
    for section in content.experiments:
        parts.append(f"<h2>Experiment {_e(section.name)}</h2>")
        parts += [_html_table(t) for t in section.tables]
        parts += [_html_figure(f) for f in section.figures]
    parts += [_html_provenance(content.provenance), "</body></html>"]
    return "\n".join(parts) + "\n"


def _md_figure(fig: FigureEntry) -> str:
    return f"![{fig.caption}]({fig.filename})\n\n*{fig.caption}*\n"


def render_markdown(content: ReportContent) -> str:
    parts = [f"# {content.title}", ""]
    parts += [line + "\n" for line in content.summary]
    if content.comparison is not None:
        parts += ["## Experiments compared (Table 3)", "", to_markdown(content.comparison)]
    if content.overview_figures:
        parts += ["## Across cycles", ""]
        parts += [_md_figure(f) for f in content.overview_figures]
    for section in content.experiments:
        parts += [f"## Experiment {section.name}", ""]
        parts += [to_markdown(t) for t in section.tables]
        parts += [_md_figure(f) for f in section.figures]
    p = content.provenance
    parts += ["## Configuration, protocol and lineage", "", "Sources:", ""]
    parts += [f"- `{s.path}`: {s.records} candidate records of {', '.join(s.experiments)}; "
              f"sha256 `{s.sha256}`" for s in p.sources]
    parts += ["", "Report settings:", ""]
    parts += [f"- {k}: {v}" for k, v in p.settings]
    parts += ["", f"Fields with values: {', '.join(p.fields_present)}.", "",
              f"Fields without any value: {', '.join(p.fields_absent) or 'none'}.", "",
              "Not recorded in these sources:", ""]
    parts += [f"- {item}" for item in p.not_recorded]
    return "\n".join(parts) + "\n"
