"""The HTML report in a real browser: headless Chromium (Debian's), driven by Playwright.

Renders a report made by a real (tiny) audit, checks every section is visible, that the page logs
no console error and makes no network request of any kind, and leaves a screenshot in the test's
temporary folder.
"""

import json
import os
import shutil

import pytest

from swiglu_audit.report.html import render_html

CHROMIUM = os.environ.get("SWIGLU_AUDIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")

SECTIONS = ["overview", "summary", "comparison", "suite-adversarial", "suite-poisoning", "suite-ood",
            "suite-numerical", "suite-efficiency", "coverage", "policy", "reproducibility"]


PLOTS = ["PGD-Linf robust accuracy against budget", "Clean accuracy against the share of labels flipped",
         "Source-class test inputs sent to the target class", "Backdoor attack success against the poison rate",
         "ROC curves, near OOD", "ROC curves, far OOD", "Accuracy against corruption severity", "Risk-coverage curves",
         "Validation accuracy against training FLOPs", "Validation accuracy against training steps",
         "Efficiency against robustness"]

HOSTILE = '<script>window.__pwned = 1</script><img src="https://example.invalid/x.png" onerror="window.__pwned = 2">'


def test_report_renders_offline_without_errors(tiny_audit_report, tmp_path):
    from playwright.sync_api import sync_playwright

    doc = json.loads(json.dumps(tiny_audit_report))
    doc["findings"][0]["reason"] += HOSTILE  # strings a user or a model could supply
    doc["findings"][0]["models"][0] += HOSTILE
    doc["config"]["dataset"] = HOSTILE
    # a baseline's name, everywhere it appears: overview columns, plot legends, the trade-off plot
    baseline = next(f for f in doc["findings"] if len(f["models"]) == 2)["models"][1]
    for f in doc["findings"]:  # as the audit would have named them: in the models and in the ids
        if baseline in f["models"]:
            f["id"] = f["id"].replace(baseline, baseline + HOSTILE)
            f["models"] = [m + HOSTILE if m == baseline else m for m in f["models"]]
    html_path = tmp_path / "report.html"
    html_path.write_text(render_html(doc))
    url = html_path.as_uri()
    requests, errors = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.wait_for_load_state("networkidle")
            for section in SECTIONS:
                assert page.locator(f"#{section}").is_visible(), section
            assert page.locator("svg").count() >= 3  # inline plots
            for plot in PLOTS:  # the curve plots of every suite, as inline SVG
                assert page.locator(f'svg[aria-label^="{plot}"]').first.is_visible(), plot
            assert page.evaluate("() => document.querySelectorAll('script').length") == 0
            # the efficiency-robustness trade-off: a point per (baseline, robustness measure), and its sentence
            assert page.locator("#suite-efficiency svg.tradeoff circle").count() >= 3
            assert "training FLOPs to reach the target accuracy" in page.inner_text("#suite-efficiency .tradeoff-summary")
            assert HOSTILE in page.inner_text("#suite-efficiency")  # the hostile baseline in the plots' legends, as text
            # the first screen answers the question: the verdict and the overview need no scrolling
            box = page.locator("#overview").bounding_box()
            assert box is not None and box["y"] < 900
            assert page.locator("#overview .verdict").bounding_box()["y"] < 900
            assert page.locator("#overview table.overview td").count() >= 1
            assert HOSTILE in page.inner_text("#overview")  # escaped, shown as text
            assert page.locator("nav a[href='#overview']").count() == 1  # a table of contents
            # folding: what needs attention is open, PASS is closed, and a click opens it
            states = page.evaluate("""() => [...document.querySelectorAll('section details')]
                .filter(d => d.querySelector('summary .badge'))
                .map(d => [d.querySelector('summary .badge').textContent, d.open])""")
            assert states and all(is_open == (status != "PASS") for status, is_open in states)
            closed = page.locator("section[id^=suite] details:not([open]) > summary").first
            closed.click()
            assert page.evaluate("() => document.querySelectorAll('section[id^=suite] details[open]').length") >= 1
            title = page.title()
            assert page.evaluate("() => window.__pwned") is None  # nothing injected ran
            assert HOSTILE in page.inner_text("body")  # it is shown as text instead
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            # the standard zoo's 8 baselines: the whole overview matrix still fits the first screen
            wide = json.loads(json.dumps(tiny_audit_report))
            comparisons = [f for f in wide["findings"] if len(f["models"]) == 2]
            for i in range(1, 8):
                for f in comparisons:
                    wide["findings"].append({**f, "id": f["id"].replace(f["models"][1], f"baseline-{i}"),
                                             "models": [f["models"][0], f"baseline-{i}"]})
            (tmp_path / "wide.html").write_text(render_html(wide))
            page.goto(wide_url := (tmp_path / "wide.html").as_uri())
            box = page.locator("#overview table.overview").bounding_box()
            assert page.locator("#overview table.overview tr th").count() == 9  # the check column and 8 baselines
            assert box is not None and box["y"] + box["height"] <= 900 and box["x"] + box["width"] <= 1200
        finally:
            browser.close()
    assert errors == []
    assert requests == [url, wide_url], f"the report made network requests: {requests}"
    assert title.startswith("swiglu-audit report")
    assert (tmp_path / "report.png").stat().st_size > 10_000
