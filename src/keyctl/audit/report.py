"""Audit reports: findings grouped by severity, with an inventory of what was audited (keys, or a server's
models and passkeys), as JSON, CSV (findings only) or one self-contained HTML page.

An inventory is named lists of flat rows, e.g. ``{"models": [...], "passkeys": [...]}``.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from itertools import groupby

from keyctl.audit.findings import Finding, Severity

FIELDS = ("severity", "code", "subject", "message", "fix")
Inventory = Mapping[str, Sequence[Mapping[str, object]]]


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (-f.severity, f.subject, f.code))


def grouped(findings: Iterable[Finding]) -> list[tuple[Severity, list[Finding]]]:
    """Most severe group first; within a group, by subject."""
    return [
        (severity, list(group)) for severity, group in groupby(sort_findings(findings), lambda f: f.severity)
    ]


def cell(value: object) -> str:
    """One inventory value as people read it."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} ({v})" for k, v in sorted(value.items())) or "none"
    return str(value)


def counts(findings: Iterable[Finding]) -> dict[str, int]:
    tally = {severity.name.lower(): 0 for severity in reversed(Severity)}
    for finding in findings:
        tally[finding.severity.name.lower()] += 1
    return tally


def _row(finding: Finding) -> dict[str, str]:
    return {
        "severity": finding.severity.name.lower(),
        "code": finding.code,
        "subject": finding.subject,
        "message": finding.message,
        "fix": finding.fix,
    }


def json_lines(findings: list[Finding], summary: Mapping[str, object], inventory: Inventory) -> Iterator[str]:
    """The JSON report, one line at a time (one row a line), so a server's 30,000 passkeys are never one
    string in memory."""
    yield "{"
    yield f'  "summary": {json.dumps({**summary, "counts": counts(findings)})},'
    lists: list[tuple[str, Iterable[Mapping[str, object]]]] = [
        *inventory.items(),
        ("findings", (_row(f) for f in findings)),
    ]
    for index, (name, rows) in enumerate(lists):
        yield f"  {json.dumps(name)}: ["
        previous: str | None = None
        for row in rows:
            if previous is not None:
                yield previous + ","
            previous = "    " + json.dumps(row)
        if previous is not None:
            yield previous
        yield "  ]" + ("," if index < len(lists) - 1 else "")
    yield "}"


def to_csv(findings: list[Finding]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_row(f) for f in findings)
    return buffer.getvalue()


_COLOURS = {
    "critical": "#7f1d1d",
    "high": "#b91c1c",
    "medium": "#b45309",
    "low": "#1d4ed8",
    "info": "#4b5563",
}


def _badge(severity: str, text: str) -> str:
    return f'<span class="badge" style="background:{_COLOURS[severity]}">{html.escape(text)}</span>'


def _html_table(name: str, rows: Sequence[Mapping[str, object]]) -> str:
    if not rows:
        return f"<h2>{html.escape(name)}</h2><p>None.</p>"
    head = "".join(f"<th>{html.escape(column)}</th>" for column in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in row.values()) + "</tr>" for row in rows
    )
    return (
        f"<h2>{html.escape(name)} ({len(rows)})</h2>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def to_html(
    findings: list[Finding],
    title: str,
    summary: Mapping[str, object],
    generated: datetime,
    inventory: Inventory,
) -> str:
    """One page with inline CSS and no external resources, so it can be mailed as it is."""
    tally = counts(findings)
    badges = " ".join(_badge(name, f"{name}: {count}") for name, count in tally.items())
    facts = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in summary.items()
    )
    rows = "".join(
        "<tr>"
        f"<td>{_badge(r['severity'], r['severity'])}</td>"
        + "".join(f"<td>{html.escape(r[key])}</td>" for key in FIELDS[1:])
        + "</tr>"
        for r in (_row(f) for f in findings)
    )
    body = rows or '<tr><td colspan="5">No findings.</td></tr>'
    inventories = "".join(_html_table(name, listed) for name, listed in inventory.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#111}}
table{{border-collapse:collapse;width:100%;margin-top:1em}}
th,td{{border:1px solid #ddd;padding:.4em .6em;text-align:left;vertical-align:top}}
th{{background:#f3f4f6}}
.badge{{color:#fff;border-radius:.3em;padding:.1em .5em;font-size:.85em}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Generated {generated:%Y-%m-%d %H:%M} UTC by keyctl. {badges}</p>
<table>{facts}</table>
<h2>Findings ({len(findings)})</h2>
<table><thead><tr><th>severity</th><th>finding</th><th>subject</th><th>what</th><th>fix</th></tr></thead>
<tbody>{body}</tbody></table>
{inventories}
</body></html>
"""
