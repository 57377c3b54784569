"""Size of a report.html and its time to render in Chromium (Debian's chromium, through Playwright).

    python bench/bench_report_render.py REPORT_HTML [--runs 5] [--out bench/report-render.json]

Each run opens the file in a fresh page (viewport 1200 x 900) and reads the Navigation Timing of
the load: `domContentLoaded` (parsed) and `loadEventEnd` (everything laid out and painted once),
relative to the navigation's start. Reported: the median of the runs, and the page's full height.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("report")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    path = Path(args.report).resolve()
    timings = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox", "--disable-gpu"])
        try:
            for _ in range(args.runs):
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                page.goto(path.as_uri())
                page.wait_for_load_state("load")
                timings.append(page.evaluate("""() => { const t = performance.getEntriesByType('navigation')[0];
                    return {dom_content_loaded_ms: t.domContentLoadedEventEnd, load_ms: t.loadEventEnd,
                            height_px: document.documentElement.scrollHeight}; }"""))
                page.close()
        finally:
            browser.close()
    result = {"bytes": path.stat().st_size, "runs": timings,
              "median_dom_content_loaded_ms": statistics.median(t["dom_content_loaded_ms"] for t in timings),
              "median_load_ms": statistics.median(t["load_ms"] for t in timings),
              "height_px": timings[0]["height_px"]}
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
