"""report.html: one self-contained file (inline CSS and SVG, no script, no network request).

Every string that comes from the user or a model (names, config values, reasons) goes through
`esc`; numbers are formatted here. Nothing is inserted raw.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from ..checks.suite_catalog import SUITES
from ..verdicts.risk import error_groups, level_words
from .ticks import nice_ticks, tick_label
from .tradeoff import tradeoff_section

STATUS_COLOURS = {"PASS": "#1a7f37", "WARN": "#9a6700", "FAIL": "#cf222e", "ERROR": "#8250df"}

CSS = """
body{font:15px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
main{max-width:1100px;margin:0 auto;padding:24px}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px 20px;margin:16px 0}
h1{margin:0 0 4px}h2{margin-top:0}table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #d8dee4;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-weight:600;font-size:12px}
.verdict{font-size:22px;font-weight:700}.muted{color:#59636e}code,pre{font-family:ui-monospace,monospace;font-size:12px}
pre{background:#f6f8fa;padding:8px;overflow:auto;max-height:400px}details{margin:6px 0}
nav{font-size:13px;margin:8px 0}.overview td{white-space:nowrap;font-size:12px;line-height:1.2;padding:2px 5px}
.overview th{font-size:12px;padding:3px 5px}.overview td:first-child{white-space:normal}
.tag{display:inline-block;background:#ddf4ff;border-radius:4px;padding:0 6px;margin:1px;font-size:12px}
"""


def esc(value) -> str:
    return escape(str(value), quote=True)


def badge(status: str) -> str:
    colour = STATUS_COLOURS.get(status, "#59636e")
    return f'<span class="badge" style="background:{colour}">{esc(status)}</span>'


def num(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def interval(f: dict) -> str:
    if f.get("ci_low") is None:
        return ""
    return f"[{num(f['ci_low'])}, {num(f['ci_high'])}]"


def row_label(f: dict) -> str:
    """The models of a finding, plus its aspect (near/far, a detector) when the check has several."""
    label = " vs ".join(f["models"]) or f["id"]
    tail = f["id"].split("]", 1)[1] if "]" in f["id"] else ""
    return label + (f" {tail}" if tail else "")


def interval_plot(rows: list[dict], title: str) -> str:
    """Horizontal dot-and-whisker plot of findings' values with their intervals, as inline SVG."""
    rows = [r for r in rows if r.get("value") is not None]
    if not rows:
        return ""
    lows = [r["ci_low"] if r.get("ci_low") is not None else r["value"] for r in rows]
    highs = [r["ci_high"] if r.get("ci_high") is not None else r["value"] for r in rows]
    lo, hi = min(lows + [0.0]), max(highs + [0.0])
    if hi - lo < 1e-9:
        hi = lo + 1.0
    label_w, plot_w, row_h = 280, 520, 22
    height = row_h * len(rows) + 40

    def x(v):
        return label_w + (v - lo) / (hi - lo) * plot_w

    parts = [f'<svg role="img" aria-label="{esc(title)}" xmlns="http://www.w3.org/2000/svg" '
             f'width="{label_w + plot_w + 20}" height="{height}" font-size="12">',
             f'<line x1="{x(0):.1f}" y1="10" x2="{x(0):.1f}" y2="{height - 25}" stroke="#8c959f" stroke-dasharray="3,3"/>']
    for i, (r, low, high) in enumerate(zip(rows, lows, highs)):
        y = 20 + i * row_h
        colour = STATUS_COLOURS.get(r["status"], "#59636e")
        parts.append(f'<text x="{label_w - 8}" y="{y + 4}" text-anchor="end">{esc(row_label(r))}</text>')
        parts.append(f'<line x1="{x(low):.1f}" y1="{y}" x2="{x(high):.1f}" y2="{y}" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<circle cx="{x(r["value"]):.1f}" cy="{y}" r="4" fill="{colour}"><title>'
                     f'{esc(r["id"])}: {num(r["value"])} {esc(interval(r))}</title></circle>')
    for tick in nice_ticks(lo, hi):
        parts.append(f'<text x="{x(tick):.1f}" y="{height - 8}" text-anchor="middle">{tick_label(tick)}</text>')
    parts.append("</svg>")
    return "".join(parts)


PALETTE = ("#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#1b7c83", "#57606a", "#bc4c00",
           "#e85aad", "#0a3069")  # ten: the built-in zoo's ten models each get their own colour


def line_plot(series: dict[str, list[tuple[float, float]]], title: str, x_label: str, y_label: str,
              diagonal: bool = False, highlight: frozenset[str] | set[str] = frozenset(),
              markers: tuple[tuple[float, str], ...] = ()) -> str:
    """Several named (x, y) lines in one inline SVG, y from 0, with a legend. The `highlight`ed
    series (the candidate) are drawn thick and first in the legend; the others thin and muted.
    `markers`: (x, label) vertical lines, such as the accepted baseline on a trend plot."""
    series = {k: v for k, v in series.items() if v}
    if not series:
        return ""
    xs = [x for pts in series.values() for x, _ in pts]
    x_lo, x_hi = min(xs), max(xs)
    x_hi = x_hi if x_hi > x_lo else x_lo + 1
    # y from 0 to the smallest of these that holds every point: small risks stay readable
    y_max = max(y for pts in series.values() for _, y in pts)
    y_hi = next(t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, float("inf")) if y_max <= t)
    y_hi = y_max if y_hi == float("inf") else y_hi
    left, top, width, height, legend_w = 50, 10, 420, 220, 220

    def px(x):
        return left + (x - x_lo) / (x_hi - x_lo) * width

    def py(y):
        return top + (1 - y / y_hi) * height

    parts = [f'<svg role="img" aria-label="{esc(title)}" xmlns="http://www.w3.org/2000/svg" '
             f'width="{left + width + legend_w}" height="{top + height + 40}" font-size="11">',
             f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="none" stroke="#d0d7de"/>']
    for tick in nice_ticks(0, y_hi):
        parts.append(f'<text x="{left - 6}" y="{py(tick) + 4:.1f}" text-anchor="end">{tick_label(tick)}</text>')
    for tick in nice_ticks(x_lo, x_hi):
        parts.append(f'<text x="{px(tick):.1f}" y="{top + height + 14}" text-anchor="middle">{tick_label(tick)}</text>')
    parts.append(f'<text x="{left + width / 2}" y="{top + height + 30}" text-anchor="middle">{esc(x_label)}</text>')
    parts.append(f'<text x="12" y="{top + height / 2}" transform="rotate(-90 12 {top + height / 2})" '
                 f'text-anchor="middle">{esc(y_label)}</text>')
    if diagonal:
        parts.append(f'<line x1="{px(x_lo)}" y1="{py(0)}" x2="{px(x_hi)}" y2="{py(1)}" stroke="#8c959f" stroke-dasharray="3,3"/>')
    for k, (x, label) in enumerate(markers):
        parts.append(f'<line x1="{px(x):.1f}" y1="{top}" x2="{px(x):.1f}" y2="{top + height}" stroke="#6e7781" '
                     f'stroke-dasharray="4,3"/><text x="{px(x) + 3:.1f}" y="{top + 12 + 12 * k}" '
                     f'fill="#57606a">{esc(label)}</text>')
    ordered = sorted(series.items(), key=lambda kv: (kv[0] not in highlight, kv[0]))
    for i, (name, pts) in enumerate(ordered):
        colour = PALETTE[i % len(PALETTE)]
        strong = name in highlight
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in sorted(pts))
        style = 'stroke-width="3"' if strong else 'stroke-width="1.2" stroke-opacity="0.55"'
        parts.append(f'<polyline fill="none" stroke="{colour}" {style} points="{path}"/>')
        label = f"{name} (candidate)" if strong else name
        weight = ' font-weight="bold"' if strong else ""
        parts.append(f'<text x="{left + width + 10}" y="{top + 12 + 14 * i}" fill="{colour}"{weight}>{esc(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def suite_curves(suite: str, findings: list[dict], highlight: frozenset[str] | set[str] = frozenset()) -> str:
    """The suite's curve plots, drawn from the findings' details."""
    html = ""
    info = SUITES.get(suite)
    for plot in info.curves if info else ():
        check, key, x_field, heading, level = plot.check, plot.key, plot.x_field, plot.heading, plot.level
        series = {}
        for f in findings:
            if f["check"] != check or (level and f["details"].get("level") != level):
                continue
            points = f["details"].get(key)
            pairs = [tuple(p) if x_field is None else (p[x_field], p["value"]) for p in points or ()]
            # a point without a number (an infinite ratio is stored as null) has no place on the plot
            pairs = [(x, y) for x, y in pairs if isinstance(x, (int, float)) and isinstance(y, (int, float))]
            if pairs:
                series[f["models"][0]] = pairs
        if series:
            html += f"<h3>{esc(heading)}</h3>" + line_plot(series, heading, plot.x_label, plot.y_label,
                                                            diagonal=plot.diagonal, highlight=highlight)
    return html


def findings_table(findings: list[dict]) -> str:
    rows = "".join(
        f"<tr><td>{badge(f['status'])}</td><td><code>{esc(f['id'])}</code></td>"
        f"<td>{esc(f['metric'])}</td><td>{num(f['value'])} <span class=muted>{esc(interval(f))}</span></td>"
        f"<td>{esc(f['severity'])}</td><td>{esc(f['reason'])}</td></tr>" for f in findings)
    return ("<table><tr><th>status</th><th>finding</th><th>metric</th><th>value [CI]</th>"
            f"<th>severity</th><th>why</th></tr>{rows}</table>")


def finding_detail(f: dict, rmf: dict) -> str:
    tags = "".join(f'<span class="tag" title="{esc(rmf["subcategories"].get(r, {}).get("summary", ""))}">'
                   f"{esc(r)}</span>" for r in f["rmf"])
    tags += f'<span class="tag">{esc(rmf["characteristics"].get(f["characteristic"], f["characteristic"]))}</span>'
    if f.get("attack_class"):
        tags += f'<span class="tag">{esc(rmf["attack_classes"].get(f["attack_class"], f["attack_class"]))}</span>'
    level = "" if f.get("ci_level") is None else f" ({level_words(f['ci_level'])} interval)"
    opened = " open" if f["status"] != "PASS" else ""  # what needs attention is unfolded
    return (f"<details{opened}><summary>{badge(f['status'])} <code>{esc(f['id'])}</code> {esc(f['title'])}</summary>"
            f"<p>{tags}</p><p><b>Result.</b> {esc(f['metric'])} = {num(f['value'])} {esc(interval(f))}"
            f"{level}. "
            f"{esc(f['reason'])}.</p><p><b>Threshold.</b> {esc(f['threshold'])}</p>"
            f"<p><b>Severity.</b> {esc(f['severity'])} (likelihood {esc(f['likelihood'])}, impact "
            f"{esc(f['impact'])}; NIST SP 800-30 matrix)</p>"
            f"<p><b>What it means.</b> {esc(f['explanation'])}</p><p><b>Mitigation.</b> {esc(f['mitigation'])}</p>"
            f"{records_table(f['details'].get('table'))}{trigger_picture(f['details'].get('trigger_image'))}"
            f"<pre>{esc(json.dumps({k: v for k, v in f['details'].items() if k not in ('table', 'trigger_image')}, indent=2))}</pre></details>")


def trigger_picture(image) -> str:
    """The trigger the training-set scan recovered (mask x pattern), as a small grey-level grid."""
    if not image or not isinstance(image, list) or not all(isinstance(row, list) for row in image):
        return ""
    h, w = len(image), max(len(row) for row in image)
    cell = max(4, min(16, 160 // max(h, w)))
    cells = []
    for i, row in enumerate(image):
        for j, v in enumerate(row):
            try:
                level = int(255 * (1 - min(1.0, max(0.0, float(v)))))
            except (TypeError, ValueError):
                return ""
            cells.append(f'<rect x="{j * cell}" y="{i * cell}" width="{cell}" height="{cell}" '
                         f'fill="rgb({level},{level},{level})"/>')
    return (f"<p><b>Recovered trigger</b> (mask x pattern; dark = strong): </p>"
            f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="Recovered trigger" '
            f'width="{w * cell}" height="{h * cell}" style="border:1px solid #d0d7de">{"".join(cells)}</svg>')


def records_table(rows) -> str:
    """A details table (a list of records, e.g. detector x OOD set x metric) as an HTML table."""
    if not rows or not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return ""
    columns = list(rows[0])
    cell = lambda v: num(v, 4) if isinstance(v, float) else esc(v)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return "<table>" + "<tr>" + "".join(f"<th>{esc(c)}</th>" for c in columns) + f"</tr>{body}</table>"


def _candidates(doc: dict) -> set[str]:
    """The candidate models (role "candidate"), to highlight them in plots and the overview."""
    models = (doc.get("environment") or {}).get("models") or {}
    named = {name for name, m in models.items() if (m.get("spec") or {}).get("role") == "candidate"}
    return named or {f["models"][0] for f in doc["findings"] if len(f["models"]) == 2}


def overview_section(doc: dict) -> str:
    """The first screen: is the SwiGLU candidate worse than its baselines, and where? A matrix of
    check x baseline, each cell the candidate-minus-baseline difference with its interval,
    coloured by status (bold when significant); beside it the verdict, the counts per status and
    what was not measured."""
    s = doc["summary"]
    comps = [f for f in doc["findings"] if len(f["models"]) == 2 and _in_overview(f)]
    baselines = sorted({f["models"][1] for f in comps})
    rows: dict[str, dict[str, dict]] = {}
    for f in comps:
        label = f["check"].removesuffix("_vs_baseline") + (f["id"].split("]", 1)[1] if "]" in f["id"] else "")
        rows.setdefault(label, {})[f["models"][1]] = f

    def cell(f):
        if f is None:
            return "<td class=muted>-</td>"
        sig = (f["details"].get("comparison") or {}).get("significant")
        value = num(f["value"])
        text = f"<b>{value}</b>" if sig else value
        colour = STATUS_COLOURS.get(f["status"], "#59636e")
        return (f'<td style="background:{colour}1f;border-left:4px solid {colour}" '
                f'title="{esc(f["status"])}: {esc(f["reason"])}">{text}<br><span class=muted>'
                f'[{num(f["ci_low"], 2)}, {num(f["ci_high"], 2)}]</span></td>')

    head = "".join(f"<th>{esc(b)}</th>" for b in baselines)
    # the first screen shows what needs a look; a check that PASSes against every baseline it was
    # compared with is named in one closing row (its cells are in "All comparisons")
    settled = sorted(label for label, cols in rows.items() if all(f["status"] == "PASS" for f in cols.values()))
    body = "".join(f"<tr><td><code>{esc(label)}</code></td>" + "".join(cell(cols.get(b)) for b in baselines) + "</tr>"
                   for label, cols in sorted(rows.items()) if label not in settled)
    if settled:
        body += (f'<tr><td colspan={1 + len(baselines)} class=muted>{badge("PASS")} against every baseline: '
                 + ", ".join(f"<code>{esc(label)}</code>" for label in settled) + "</td></tr>")
    matrix = (f"<table class=overview><tr><th>check (candidate - baseline)</th>{head}</tr>{body}</table>"
              if comps else "<p>No candidate-vs-baseline comparison ran.</p>")
    counts = " ".join(f"{badge(k)} {v}" for k, v in s["counts"].items())
    coverage = [c for c in doc.get("coverage", []) if not c["measured"] and c.get("applicable", True)]
    missing = [c["area"] for c in coverage if not c["note"].startswith(_NEEDS)]
    # rows that need the user's input, one mention per input, not one per row
    needs: dict[str, int] = {}
    for c in coverage:
        if c["note"].startswith(_NEEDS):
            needs[c["note"].removeprefix(_NEEDS)] = needs.get(c["note"].removeprefix(_NEEDS), 0) + 1
    wanting = "; ".join(f"{what} ({n} check{'s' if n > 1 else ''})" for what, n in needs.items())
    candidates = ", ".join(sorted(_candidates(doc))) or "-"
    # the matrix right under the verdict, the legend after it: the first screen holds the answer
    return (f'<section id="overview"><h2>Overview: is the candidate ({esc(candidates)}) worse than its baselines?</h2>'
            f'<p><span class="verdict">Verdict: {badge(s["verdict"])}</span> &nbsp; {counts}</p>'
            f"{_auto_seeds_line(s.get('auto_seeds'))}{matrix}"
            f"<p class=muted>Each cell: candidate minus baseline, with its interval over seeds and examples; "
            f"its colour is the status ({' '.join(badge(k) for k in STATUS_COLOURS)}): PASS only when the whole "
            f"interval lies within the tolerance, FAIL only when the whole interval lies beyond it, WARN "
            f"(inconclusive) otherwise; bold when the interval excludes no difference; "
            f"hover for the sentence. Efficiency: the claim (FLOPs to target) and clean accuracy here, the rest "
            f"in its section; FFN outliers (an indicator) in the deployment section. Not measured here: "
            f"{esc('; '.join(missing)) or 'nothing'}."
            + (f" Needs your input: {esc(wanting)}." if wanting else "") + "</p></section>")


_NEEDS = "needs user input: "  # how the coverage matrix notes a row that needs the user's input


def _auto_seeds_line(auto: dict | None) -> str:
    if not auto:
        return ""
    return (f"<p>Seeds added where a comparison was open (seeds = \"auto\"): of {auto['comparisons']} comparisons, "
            f"{auto['decided_at_configured_seeds']} were decided at the configured seeds, "
            f"{auto['decided_with_more_seeds']} with more seeds (up to {auto['most_seeds_used']} per architecture), "
            f"{auto['still_open']} stayed open; the extra looks took {auto['extra_seconds']:.0f} s.</p>")


# The efficiency comparisons in the first screen: the claim and clean accuracy; the others
# (steps, seconds, latency, throughput, memory) are in the efficiency section, with the trade-off.
_OVERVIEW_EFFICIENCY = frozenset({"clean_accuracy_vs_baseline", "flops_to_target_vs_baseline"})


# Indicators that cannot FAIL (they say where to look; the accuracy comparisons judge): in their section.
_OVERVIEW_INDICATORS = frozenset({"ffn_outliers_vs_baseline"})


def _in_overview(f: dict) -> bool:
    if "comparison" not in f["details"] or f["check"] in _OVERVIEW_INDICATORS:
        return False  # a two-model finding that is no comparison (the training set's verdict), or an indicator
    return f["suite"] != "efficiency" or f["check"] in _OVERVIEW_EFFICIENCY


def contents(doc: dict, suites: list[str]) -> str:
    """A table of contents: plain links, no script."""
    links = [("overview", "Overview"), ("summary", "Summary")]
    if doc.get("comparison"):
        links.append(("changes", "Changed since the last run"))
    links.append(("comparison", "All comparisons"))
    links += [(f"suite-{s}", SUITES[s].title if s in SUITES else s) for s in suites]
    links += [("coverage", "Coverage"), ("policy", "Policy"), ("reproducibility", "Reproducibility")]
    return "<nav>" + " | ".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t in links) + "</nav>"


def summary_section(doc: dict) -> str:
    s = doc["summary"]
    counts = " ".join(f"{badge(k)} {v}" for k, v in s["counts"].items())
    def risk_table(title, data):
        rows = "".join(f"<tr><td>{esc(doc['rmf']['characteristics'].get(k, k))}</td>"
                       + "".join(f"<td>{v.get(st, 0)}</td>" for st in STATUS_COLOURS) + "</tr>"
                       for k, v in data.items())
        head = "".join(f"<th>{st}</th>" for st in STATUS_COLOURS)
        return f"<h3>{esc(title)}</h3><table><tr><th></th>{head}</tr>{rows}</table>"
    note = ("<p><b>This run was interrupted; the report holds the findings made before the "
            "interruption.</b></p>" if s["interrupted"] else "")
    note += "".join(f"<p>{badge('ERROR')} <b>{esc(g['model'])}</b> could not be evaluated: "
                    f"{len(g['ids'])} checks, first error: {esc(g['reason'])}</p>"
                    for g in error_groups(doc["findings"]))
    return (f'<section id="summary"><h2>Executive summary</h2><p class="verdict">Verdict: {badge(s["verdict"])}</p>'
            f"<p>{counts}</p>{note}<p class=muted>Findings provide evidence for the NIST AI RMF 1.0 "
            "subcategories they are tagged with; they do not by themselves satisfy them. Thresholds "
            "are the user's risk tolerance (MAP 1.5), echoed in the policy section.</p>"
            + risk_table("Risk by trustworthiness characteristic", s["by_characteristic"])
            + risk_table("Risk by RMF function", s["by_rmf_function"]) + "</section>")


def changes_section(doc: dict) -> str:
    """"Changed since the baseline": the saved audit this run was compared with, what differs in
    the setup, and every finding whose status or value changed (regressions first)."""
    comp = doc.get("comparison")
    if not comp:
        return ""
    notes = "".join(f"<p>{esc(n)}</p>" for n in comp.get("history_notes", []))
    if comp.get("error"):  # the gate could not run: this run fails, whatever the count below says
        notes = f"<p>{badge('ERROR')} <b>{esc(comp.get('note'))}</b></p>" + notes
    if comp.get("baseline") is None:
        note = "" if comp.get("error") else f"<p>{esc(comp.get('note'))}</p>"
        return f'<section id="changes"><h2>Changed since the last run</h2>{notes}{note}</section>'
    setup = "".join(f"<li>{esc(d)}</li>" for d in comp.get("environment_differences", []))
    setup = (f"<p>{badge('WARN')} The two runs differ in their setup, so some changes may come from it:</p>"
             f"<ul>{setup}</ul>") if setup else ""
    if comp.get("partial"):  # findings this run did not make on purpose: listed, not gated
        setup += f"<p>Findings of the baseline missing here are not gated: {esc(comp['partial'])}.</p>"
    changes = sorted(comp.get("changes", []), key=lambda c: (not c["regression"], c["id"]))
    fmt = lambda v: "-" if v is None else f"{v:.4g}"
    rows = "".join(
        f"<tr><td>{badge('FAIL') + ' regression' if c['regression'] else esc(c['kind'])}</td>"
        f"<td><code>{esc(c['id'])}</code></td><td>{esc(c['old_status'] or '-')} &rarr; {esc(c['new_status'] or '-')}</td>"
        f"<td>{fmt(c['old_value'])} &rarr; {fmt(c['new_value'])}</td><td>{esc(c['why'])}</td></tr>"
        for c in changes)
    table = ("<table><tr><th>change</th><th>finding</th><th>status</th><th>value</th><th>gate</th></tr>"
             f"{rows}</table>") if rows else "<p>No finding changed.</p>"
    return (f'<section id="changes"><h2>Changed since the last run</h2><p>Compared with '
            f"<code>{esc(comp['baseline'])}</code> ({esc(comp.get('baseline_generated_at') or '-')}): "
            f"{len(changes)} finding(s) changed, <b>{comp.get('regressions', 0)} regression(s)</b> "
            f"against the gates {esc(comp.get('gates') or {})}.</p>{notes}{setup}{table}</section>")


def trend_section(doc: dict) -> str:
    """Each suite's main per-model metric across the saved audits and this one."""
    data = doc.get("trend") or {}
    # saved runs whose report was damaged, left out of the plots: said even where none is left to plot
    skipped = "".join(f"<p>{esc(n)}</p>" for n in data.get("notes", []))
    if len(data.get("runs", [])) < 2:
        return f'<section id="trend"><h2>Trend over saved runs</h2>{skipped}</section>' if skipped else ""
    plots = ""
    comp = doc.get("comparison") or {}
    ids = data.get("run_ids") or []
    baseline_id = Path(comp["baseline"]).parent.name if comp.get("baseline") else None
    marks = [(ids.index(run) + 1, label) for run, label in ((baseline_id, "baseline"), (comp.get("anchor"), "anchor"))
             if run in ids]
    trend_flagged = {c["id"] for c in comp.get("changes", []) if c.get("regression") and "Mann-Kendall" in c.get("why", "")}
    for suite, series in sorted((data.get("series") or {}).items()):
        info = SUITES.get(suite)
        name = f"{info.trend_check}{info.trend}" if info else suite
        title = f"{info.title if info else suite}: {name} across {len(data['runs'])} runs"
        flagged = any(f"{info.trend_check}[" in i and i.endswith(info.trend or "") for i in trend_flagged) if info else False
        plots += f"<h3>{esc(title)}</h3>" + line_plot({m: [tuple(p) for p in pts] for m, pts in series.items()},
                                                       title, "saved run (oldest first, this run last)", "value",
                                                       highlight=_candidates(doc),
                                                       markers=tuple(marks) + ((len(data["runs"]), "trend flagged"),)
                                                       if flagged else tuple(marks))
    return f'<section id="trend"><h2>Trend over saved runs</h2>{skipped}{plots}</section>' if plots or skipped else ""


def comparison_section(doc: dict) -> str:
    comps = [f for f in doc["findings"] if len(f["models"]) == 2]
    if not comps:
        return ('<section id="comparison"><h2>SwiGLU vs baselines</h2><p>No comparison was run '
                "(an audit needs a candidate and at least one baseline).</p></section>")
    return ('<section id="comparison"><h2>SwiGLU vs baselines</h2><p class=muted>Candidate minus '
            "baseline, with intervals over training seeds and test examples. PASS: the whole interval lies "
            "within the tolerance (non-inferiority shown); FAIL: the whole interval lies beyond it; WARN: "
            "inconclusive, the sentence says what would decide it. A difference is called significant when "
            "the interval excludes zero.</p><details><summary>All " + str(len(comps)) + " candidate-vs-baseline findings</summary>"
            + findings_table(sorted(comps, key=lambda f: f["id"])) + "</details></section>")


def suite_section(doc: dict, suite: str) -> str:
    fs = sorted((f for f in doc["findings"] if f["suite"] == suite), key=lambda f: f["id"])
    info = SUITES.get(suite)
    title = info.title if info else suite
    if not fs:
        return f'<section id="suite-{esc(suite)}"><h2>{esc(title)}</h2><p>Not run in this audit.</p></section>'
    plots = f"<p>{esc(info.note)}</p>" if info and info.note else ""
    if suite == "efficiency":
        plots += tradeoff_section(doc["findings"], _candidates(doc))
    plots += suite_curves(suite, fs, _candidates(doc))
    for check in sorted({f["check"] for f in fs if f.get("ci_low") is not None}):
        rows = [f for f in fs if f["check"] == check]
        plots += f"<h3>{esc(rows[0]['title'])}</h3>" + interval_plot(rows, rows[0]["title"])
    details = "".join(finding_detail(f, doc["rmf"]) for f in fs)
    return (f'<section id="suite-{esc(suite)}"><h2>{esc(title)}</h2>{plots}'
            f"<h3>Findings</h3>{findings_table(fs)}{details}</section>")


def coverage_section(doc: dict) -> str:
    rows = "".join(f"<tr><td>{esc(c['area'])}</td><td>{esc(', '.join(c['rmf']))}</td>"
                   f"<td>{'measured' if c['measured'] else 'not applicable' if c.get('applicable') is False else '<b>not measured</b>'}</td>"
                   f"<td>{esc(c['note'])}</td></tr>"
                   for c in doc["coverage"])
    return ('<section id="coverage"><h2>Coverage (MEASURE 1.1)</h2><table><tr><th>area</th><th>RMF</th>'
            f"<th>status</th><th>note</th></tr>{rows}</table></section>")


def policy_section(doc: dict) -> str:
    rows = "".join(f"<tr><td><code>{esc(k)}</code></td><td>{esc(v)}</td></tr>" for k, v in doc["policy"].items())
    return ('<section id="policy"><h2>Policy (risk tolerance, MAP 1.5)</h2><p class=muted>The thresholds '
            "every finding was held to, from [tool.swiglu_audit.policy] and the defaults. FAIL and "
            "ERROR findings fail the audit"
            + (", and so do WARN findings (fail_on_warn)" if doc["policy"].get("fail_on_warn") else "")
            + f".</p><table><tr><th>setting</th><th>value</th></tr>{rows}</table></section>")


def reproducibility_section(doc: dict) -> str:
    env = doc["environment"]
    data = env.get("data") or {}
    hashes = "".join(f"<tr><td>{esc(k)}</td><td><code>{esc(v)}</code></td></tr>"
                     for k, v in (data.get("sha256") or {}).items())
    models = "".join(
        f"<tr><td>{esc(name)}</td><td>{esc(m.get('n_parameters', '-'))}</td><td>"
        + esc("; ".join(f"{tag}: seeds {[r['seed'] for r in runs]}, cached {[r['cached'] for r in runs]}"
                        for tag, runs in m.get("runs", {}).items())) + "</td></tr>"
        for name, m in (env.get("models") or {}).items())
    facts = ("versions", "device", "cache", "recipe", "workers")
    return ('<section id="reproducibility"><h2>Reproducibility</h2>'
            f"<p>swiglu-audit {esc(doc['tool']['version'])}, generated {esc(doc['generated_at'])}, "
            f"commit <code>{esc(env.get('commit') or 'unknown')}</code>.</p>"
            f"<h3>Data: {esc(data.get('name', '-'))}</h3><table><tr><th>split</th><th>sha256</th></tr>{hashes}</table>"
            f"<h3>Models (parameters, seeds, cache)</h3><table><tr><th>model</th><th>parameters</th>"
            f"<th>runs</th></tr>{models}</table>"
            + _plan_paragraph(doc.get("plan")) +
            f"<h3>Versions and device</h3><pre>{esc(json.dumps({k: env.get(k) for k in facts}, indent=2))}</pre>"
            f"<h3>Configuration and policy</h3><pre>{esc(json.dumps(doc['config'], indent=2))}</pre></section>")


def _plan_paragraph(plan: dict | None) -> str:
    """The plan's estimate beside the time the audit took (plan.py)."""
    if not plan:
        return ""
    trainings = sum(sum(m["trainings"].values()) for m in plan["models"])
    cached = sum(m["cached_trainings"] for m in plan["models"])
    return (f"<h3>Plan</h3><p>Estimated before training: {num(plan['estimated_seconds'], 1)} s for {trainings} "
            f"trainings ({cached} cached) on {esc(plan['workers'])} worker(s); the audit took "
            f"{num(plan.get('actual_seconds'), 1)} s. Per model: in report.json under <code>plan</code>.</p>")


def render_html(doc: dict) -> str:
    suites = list(SUITES) + sorted({f["suite"] for f in doc["findings"]} - set(SUITES))
    body = (contents(doc, suites) + overview_section(doc) + summary_section(doc) + changes_section(doc)
            + trend_section(doc) + comparison_section(doc)
            + "".join(suite_section(doc, s) for s in suites)
            + coverage_section(doc) + policy_section(doc) + reproducibility_section(doc))
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
            f"<title>swiglu-audit report: {esc(doc['summary']['verdict'])}</title><style>{CSS}</style></head>"
            f"<body><main><h1>swiglu-audit report</h1><p class=muted>Profile {esc(doc['config']['profile'])}, "
            f"seeds {esc(doc['config']['seeds'])}, device {esc((doc['environment'].get('device') or {}).get('type', '-'))}</p>"
            f"{body}</main></body></html>\n")
