"""summary.md: a short Markdown summary for pull-request comments."""

from __future__ import annotations


def _cell(text) -> str:
    """Text for one GitHub-flavoured Markdown table cell: on one line, with the characters that
    would end the cell (`|`), escape the next one (`\\`) or start markup (`<`, `*`, `_`, a
    backtick, `[`) escaped, so that a reason or a model name cannot break the table."""
    text = " ".join(str(text).split())
    for char in "\\`*_[]|":
        text = text.replace(char, "\\" + char)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_markdown(document: dict) -> str:
    s = document["summary"]
    counts = ", ".join(f"{k} {v}" for k, v in s["counts"].items())
    lines = [f"## swiglu-audit: {s['verdict']}", "",
             f"{counts}. Profile `{document['config']['profile']}`, seeds "
             f"{document['config']['seeds']}.", ""]
    if auto := s.get("auto_seeds"):
        lines += [f"Seeds added where a comparison was open: {auto['decided_with_more_seeds']} of "
                        f"{auto['comparisons']} comparisons decided with more seeds, {auto['still_open']} still "
                        f"open, {auto['extra_seconds']:.0f} s extra.", ""]
    flagged = [f for f in document["findings"] if f["status"] != "PASS"]
    if flagged:
        lines += ["| status | finding | value | why |", "|---|---|---|---|"]
        for f in flagged:
            value = "" if f["value"] is None else f"{f['value']:.3f}"
            lines.append(f"| {f['status']} | {_cell(f['id'])} | {value} | {_cell(f['reason'])} |")
    else:
        lines.append("No finding above PASS.")
    return "\n".join(lines) + "\n"
