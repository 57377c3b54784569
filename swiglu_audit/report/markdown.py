"""summary.md: a short Markdown summary for pull-request comments."""

from __future__ import annotations

from pathlib import Path


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
    lines += comparison_lines(document.get("comparison"))
    flagged = [f for f in document["findings"] if f["status"] != "PASS"]
    if flagged:
        lines += ["| status | finding | value | why |", "|---|---|---|---|"]
        for f in flagged:
            value = "" if f["value"] is None else f"{f['value']:.3f}"
            lines.append(f"| {f['status']} | {_cell(f['id'])} | {value} | {_cell(f['reason'])} |")
    else:
        lines.append("No finding above PASS.")
    return "\n".join(lines) + "\n"


def comparison_lines(comp: dict | None) -> list[str]:
    """The gate's outcome: a job summary must not read as passed when the gate failed the job."""
    if not comp:
        return []
    lines = []
    if comp.get("error"):
        lines += [f"**The gate could not run, so this audit fails it (exit 1):** {_cell(comp.get('note'))}", ""]
    elif comp.get("baseline") is None:
        lines += [_cell(comp.get("note")), ""]
    if comp.get("baseline") is not None:
        n = comp.get("regressions", 0)
        lines += [f"Compared with {_cell(Path(comp['baseline']).parent.name)}: {len(comp.get('changes', []))} "
                  f"finding(s) changed, **{n} regression(s)**" + (" (exit 1)" if n else "") + ".", ""]
        lines += [f"- REGRESSION {_cell(c['id'])}: {_cell(c['why'])}" for c in comp.get("changes", [])
                  if c.get("regression")]
    notes = [f"- {_cell(n)}" for n in comp.get("history_notes", [])]
    return lines + ([""] if lines and lines[-1] else []) + (notes + [""] if notes else [])
