"""The efficiency-robustness trade-off, per family: what the candidate buys (fewer training FLOPs to
the target accuracy than each baseline) against what it costs (its change in each robustness
measure against the same baseline), each point with both intervals, and one sentence saying it.

Drawn from the comparison findings of the report, so it needs no measurement of its own.
"""

from __future__ import annotations

from html import escape

from .ticks import nice_ticks, tick_label

# (label, check, id suffix, sign): sign turns each difference into "up = the candidate is more robust"
ROBUSTNESS_MEASURES = (
    ("worst-case robust accuracy (Linf)", "worst_case_robust_accuracy_vs_baseline", "[linf]", 1.0),
    ("far-OOD AUROC", "ood_auroc_vs_baseline", "[far]", 1.0),
    ("backdoor success (sign flipped)", "backdoor_attack_success_vs_baseline", "", -1.0),
    ("accuracy under corruptions", "corruption_accuracy_vs_baseline", "", 1.0),
)
COLOURS = ("#0969da", "#cf222e", "#8250df", "#1a7f37")
GAIN_CHECK = "flops_to_target_vs_baseline"


def _aspect(f: dict) -> str:
    """The "[linf]" or "[far]" after a finding id's models (finding ids: suite.check[models][aspect])."""
    prefix = f"{f['suite']}.{f['check']}[{'-vs-'.join(f['models'])}]"
    return f["id"][len(prefix):] if f["id"].startswith(prefix) else ""


def _points(findings: list[dict], candidate: str) -> list[dict]:
    """One point per (baseline, robustness measure) where both findings have a value and interval."""
    by_key = {(f["check"], f["models"][1], _aspect(f)): f
              for f in findings if len(f["models"]) == 2 and f["models"][0] == candidate}
    points = []
    for (check, baseline, _), gain in by_key.items():
        if check != GAIN_CHECK or gain.get("value") is None or gain.get("ci_low") is None:
            continue
        for i, (label, robust_check, suffix, sign) in enumerate(ROBUSTNESS_MEASURES):
            r = by_key.get((robust_check, baseline, suffix))
            if r is None or r.get("value") is None or r.get("ci_low") is None:
                continue
            y_ends = sorted((sign * r["ci_low"], sign * r["ci_high"]))
            points.append({"baseline": baseline, "measure": label, "colour": COLOURS[i],
                           "x": -gain["value"], "x_lo": -gain["ci_high"], "x_hi": -gain["ci_low"],
                           "y": sign * r["value"], "y_lo": y_ends[0], "y_hi": y_ends[1],
                           "significant": (r.get("details") or {}).get("comparison", {}).get("significant")})
    return points


def _padded(lo: float, hi: float) -> tuple[float, float]:
    """The range with a tenth of its width added on each side (a point never sits on the frame)."""
    width = hi - lo if hi > lo else 1.0
    return lo - width / 10, hi + width / 10


def _svg(points: list[dict], title: str) -> str:
    left, top, width, height, legend_w = 60, 10, 440, 300, 260
    xs = [v for p in points for v in (p["x_lo"], p["x_hi"])] + [0.0]
    ys = [v for p in points for v in (p["y_lo"], p["y_hi"])] + [0.0]
    x_lo, x_hi, y_lo, y_hi = _padded(min(xs), max(xs)) + _padded(min(ys), max(ys))

    def px(v):
        return left + (v - x_lo) / (x_hi - x_lo) * width

    def py(v):
        return top + (1 - (v - y_lo) / (y_hi - y_lo)) * height

    parts = [f'<svg role="img" aria-label="{escape(title)}" class="tradeoff" xmlns="http://www.w3.org/2000/svg" '
             f'width="{left + width + legend_w}" height="{top + height + 44}" font-size="11">',
             f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="none" stroke="#d0d7de"/>',
             f'<line x1="{px(0):.1f}" y1="{top}" x2="{px(0):.1f}" y2="{top + height}" stroke="#8c959f" stroke-dasharray="3,3"/>',
             f'<line x1="{left}" y1="{py(0):.1f}" x2="{left + width}" y2="{py(0):.1f}" stroke="#8c959f" stroke-dasharray="3,3"/>']
    for v in nice_ticks(x_lo, x_hi):
        parts.append(f'<text x="{px(v):.1f}" y="{top + height + 14}" text-anchor="middle">{v:+.0%}</text>')
    for v in nice_ticks(y_lo, y_hi):
        parts.append(f'<text x="{left - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{tick_label(v)}</text>')
    parts.append(f'<text x="{left + width / 2}" y="{top + height + 32}" text-anchor="middle">'
                 'training FLOPs to target saved, share of the baseline\'s (right: fewer)</text>')
    parts.append(f'<text x="14" y="{top + height / 2}" transform="rotate(-90 14 {top + height / 2})" text-anchor="middle">'
                 'robustness change (up: more robust)</text>')
    for p in points:
        tip = (f"vs {p['baseline']}: {p['measure']} {p['y']:+.3f} [{p['y_lo']:+.3f}, {p['y_hi']:+.3f}]; "
               f"FLOPs saved {p['x']:+.1%} [{p['x_lo']:+.1%}, {p['x_hi']:+.1%}]")
        parts.append(f'<line x1="{px(p["x_lo"]):.1f}" y1="{py(p["y"]):.1f}" x2="{px(p["x_hi"]):.1f}" y2="{py(p["y"]):.1f}" '
                     f'stroke="{p["colour"]}" stroke-opacity="0.6"/>')
        parts.append(f'<line x1="{px(p["x"]):.1f}" y1="{py(p["y_lo"]):.1f}" x2="{px(p["x"]):.1f}" y2="{py(p["y_hi"]):.1f}" '
                     f'stroke="{p["colour"]}" stroke-opacity="0.6"/>')
        fill = p["colour"] if p["significant"] else "#fff"
        parts.append(f'<circle cx="{px(p["x"]):.1f}" cy="{py(p["y"]):.1f}" r="4" fill="{fill}" stroke="{p["colour"]}" '
                     f'stroke-width="1.5"><title>{escape(tip)}</title></circle>')
    for i, (label, *_rest) in enumerate(ROBUSTNESS_MEASURES):
        parts.append(f'<text x="{left + width + 12}" y="{top + 14 + 16 * i}" fill="{COLOURS[i]}">{escape(label)}</text>')
    parts.append(f'<text x="{left + width + 12}" y="{top + 14 + 16 * len(ROBUSTNESS_MEASURES) + 6}" fill="#59636e">'
                 'filled: significant; open: not</text>')
    parts.append("</svg>")
    return "".join(parts)


def _sentence(candidate: str, points: list[dict]) -> str:
    """What the candidate buys and what it costs here, in words, from the same points."""
    gains = {p["baseline"]: (p["x"], p["x_lo"], p["x_hi"]) for p in points}
    sure = [b for b, (_, lo, hi) in gains.items() if lo > 0]
    worse = [b for b, (_, lo, hi) in gains.items() if hi < 0]
    changes = sorted(-g[0] for g in gains.values())  # relative FLOPs change: negative = fewer
    buys = (f"Against {len(gains)} baseline(s), {candidate} needs {changes[0]:+.0%} to {changes[-1]:+.0%} "
            f"of the baselines' training FLOPs to reach the target accuracy (negative: fewer); significantly "
            f"fewer against {len(sure)}, significantly more against {len(worse)}.")
    costs = []
    for label, *_rest in ROBUSTNESS_MEASURES:
        ys = [p for p in points if p["measure"] == label]
        if not ys:
            continue
        down = sum(1 for p in ys if p["y_hi"] < 0)
        up = sum(1 for p in ys if p["y_lo"] > 0)
        costs.append(f"{label}: {min(p['y'] for p in ys):+.3f} to {max(p['y'] for p in ys):+.3f} "
                     f"({down} significantly worse, {up} significantly better)")
    return buys + (" Robustness change against the same baselines: " + "; ".join(costs) + "." if costs else
                   " No robustness comparison with intervals is in this report to weigh it against.")


def tradeoff_section(findings: list[dict], candidates: set[str]) -> str:
    """One plot and sentence per candidate (one candidate per family), or nothing without the data."""
    html = ""
    for candidate in sorted(candidates):
        points = _points(findings, candidate)
        if not points:
            continue
        title = f"Efficiency against robustness, {candidate} vs its baselines"
        html += (f'<h3 id="tradeoff-{escape(candidate)}">{escape(title)}</h3>'
                 f'<p class="tradeoff-summary">{escape(_sentence(candidate, points))}</p>' + _svg(points, title))
    return html
