"""summary.md: a short Markdown summary for pull-request comments."""

from __future__ import annotations


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(document: dict) -> str:
    s = document["summary"]
    counts = ", ".join(f"{k} {v}" for k, v in s["counts"].items())
    lines = [f"## swiglu-audit: {s['verdict']}", "",
             f"{counts}. Profile `{document['config']['profile']}`, seeds "
             f"{document['config']['seeds']}.", ""]
    flagged = [f for f in document["findings"] if f["status"] != "PASS"]
    if flagged:
        lines += ["| status | finding | value | why |", "|---|---|---|---|"]
        for f in flagged:
            value = "" if f["value"] is None else f"{f['value']:.3f}"
            lines.append(f"| {f['status']} | {_cell(f['id'])} | {value} | {_cell(f['reason'])} |")
    else:
        lines.append("No finding above PASS.")
    return "\n".join(lines) + "\n"
