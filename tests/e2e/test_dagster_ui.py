"""A person's view: `dagster dev` serves the project and the asset graph shows the lineage raw → marts.

Needs Debian's Chromium (`apt-get install chromium`; `.ci/run` installs it). Playwright drives that binary:
its own browser download is not possible on these machines.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OUTPUT_DIR = REPO / "test-output"
pytestmark = [pytest.mark.browser, pytest.mark.slow]

LINEAGE_PAGE = "/assets/marts/fct_orders?view=lineage&lineageScope=upstream&lineageDepth=10"
LINEAGE_QUERY = "{ assetNodes { assetKey { path } dependencyKeys { path } } }"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_server(url: str, process: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dagster dev exited early with code {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/server_info", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"dagster dev did not answer at {url} within {timeout:.0f}s")


def _graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(
        url + "/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory):
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    port = _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ONEID_DATABASE": str(home / "oneid.duckdb"),
    }
    log = open(home / "dagster-dev.log", "w")
    # its own process group: dagster dev starts a webserver and a code server, and all must go at the end
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1",
         "-p", str(port)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(url, process)
        # the code location loads after the webserver answers
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            nodes = (_graphql(url, LINEAGE_QUERY) or {}).get("assetNodes") or []
            if nodes:
                break
            time.sleep(2)
        yield url
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def test_graphql_lineage_connects_ingest_to_marts(dagster_ui):
    nodes = _graphql(dagster_ui, LINEAGE_QUERY)["assetNodes"]
    parents = {"/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]} for n in nodes}
    children: dict[str, set[str]] = {}
    for child, deps in parents.items():
        for parent in deps:
            children.setdefault(parent, set()).add(child)
    seen, stack = {"raw/orders"}, ["raw/orders"]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in seen:
                seen.add(child)
                stack.append(child)
    assert "identity/record_map" in seen
    assert "marts/fct_orders" in seen
    assert "marts/dim_users" in seen
    assert "publish/analyst_db" in seen  # the last step: the analyst database, after every mart


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (apt-get install chromium)")
def test_asset_graph_page_shows_lineage(dagster_ui):
    from playwright.sync_api import sync_playwright

    OUTPUT_DIR.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        try:
            page = browser.new_page(viewport={"width": 1800, "height": 1100})
            # the upstream lineage of a mart: every node from the ingest assets to it, drawn by group
            page.goto(dagster_ui + LINEAGE_PAGE, wait_until="domcontentloaded")
            skip = page.get_by_role("button", name="Skip")
            try:
                skip.click(timeout=15_000)
            except Exception:  # the community dialog only shows on a first visit
                pass
            for name in ("ingest", "identity", "staging", "marts", "orders", "record_map", "stg_shop__orders",
                         "fct_orders"):
                page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
            page.screenshot(path=str(OUTPUT_DIR / "dagster-asset-graph.png"), full_page=True)
        finally:
            browser.close()
    assert (OUTPUT_DIR / "dagster-asset-graph.png").stat().st_size > 10_000
