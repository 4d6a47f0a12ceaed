"""`make ui-screenshot`: a headless Chromium picture of the demo's import flow run in the UI.

Takes the latest completed run of the import-csv deployment on the server at PREFECT_API_URL
(default the local one; run `make demo` first) and writes docs/flow-run.png.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx

from deployments.local import API_URL, ui_url
from deployments.processes import ROOT

OUTPUT = ROOT / "docs" / "flow-run.png"


def latest_import_run(api_url: str = API_URL) -> str:
    """The id of the newest completed import-csv flow run."""
    body = {
        "flows": {"name": {"any_": ["import-csv"]}},
        "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
        "sort": "END_TIME_DESC",
        "limit": 1,
    }
    response = httpx.post(f"{api_url}/flow_runs/filter", json=body, timeout=10)
    response.raise_for_status()
    runs = response.json()
    if not runs:
        raise SystemExit(f"no completed import-csv flow run at {api_url}: run `make demo` first")
    return str(runs[0]["id"])


def screenshot(url: str, output: Path = OUTPUT) -> Path:
    """Render `url` headless (15 s of page time for the UI to load its data) into `output`."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium is not installed (Debian: apt-get install -y chromium)")
    output.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={output}",
            "--window-size=1400,1000",
            "--virtual-time-budget=15000",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return output


def main() -> None:
    url = ui_url(latest_import_run())
    print(f"{screenshot(url).relative_to(ROOT)}: {url}", file=sys.stderr)


if __name__ == "__main__":
    main()
