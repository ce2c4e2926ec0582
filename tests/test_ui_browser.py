"""The Dagster UI in a real browser: the asset graph lists the assets, and a materialised
asset's page shows its row-count metadata. Needs Debian `chromium` and `chromium-driver`."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, materialize

from dagster_project.definitions import STAGE_KEYS, build_defs, make_resources
from test_dagster_materialize import write_config

pytestmark = pytest.mark.browser

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ROOT = Path(__file__).resolve().parent.parent
SECRET = "browser-test-secret"

if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip(f"needs {CHROMIUM} and {CHROMEDRIVER} (Debian packages chromium, chromium-driver)",
                allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dagster-webserver exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


@pytest.fixture(scope="module")
def server(real, tmp_path_factory):
    """A webserver over an instance in which the Telegram source was materialised."""
    tmp = tmp_path_factory.mktemp("ui")
    home = tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    cfg = write_config(tmp / "corpus.toml", tmp / "out",
                       [{"format": "reddit", "paths": [f"{real}/reddit/RC_*.zst"]},
                        {"format": "telegram", "paths": [f"{real}/telegram/*.json"]}])
    with DagsterInstance.from_config(str(home)) as instance:
        d = build_defs(cfg, secret=SECRET)
        raw = d.get_assets_def(AssetKey(["messages_raw", "telegram"]))
        materialize([raw], partition_key="telegram", instance=instance,
                    resources=make_resources(cfg, secret=SECRET))
    port = _free_port()
    env = dict(os.environ, DAGSTER_HOME=str(home), SOCIALCORPUS_CONFIG=cfg, SOCIALCORPUS_SECRET=SECRET)
    webserver = str(Path(sys.executable).parent / "dagster-webserver")
    log = open(tmp / "webserver.log", "wb")
    # Its own process group: it ignores SIGTERM from non-interactive shells, so we kill the group.
    proc = subprocess.Popen([webserver, "-h", "127.0.0.1", "-p", str(port), "-m", "dagster_project.definitions"],
                            cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_http(f"http://127.0.0.1:{port}/server_info", proc)
        yield f"http://127.0.0.1:{port}", tmp
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def browser(server):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    _, tmp = server
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
              "--no-first-run", "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
              f"--user-data-dir={tmp / 'chromium-profile'}"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def _dismiss_prompts(driver) -> None:
    """Close the UI's first-visit newsletter prompt if it is up (it covers the page)."""
    for b in driver.find_elements("xpath", "//button[normalize-space()='Skip']"):
        if b.is_displayed():
            b.click()


def _wait_text(driver, needles, timeout=45.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        _dismiss_prompts(driver)
        text = driver.find_element("tag name", "body").text
        if all(n in text for n in needles):
            return text
        time.sleep(0.5)
    raise AssertionError(f"page never showed {needles}; it shows:\n{text[:2000]}")


def test_asset_catalog_lists_every_asset(server, browser):
    url, tmp = server
    browser.get(f"{url}/assets")
    _wait_text(browser, ["messages_raw", *STAGE_KEYS])
    browser.save_screenshot(str(tmp / "assets.png"))


def test_asset_graph_shows_the_lineage(server, browser):
    url, tmp = server
    # The global lineage draws one box per stage group (collapsed); a group's own graph
    # draws its assets with their edges.
    browser.get(f"{url}/asset-groups")
    _wait_text(browser, ["Global asset lineage", "ingest", "clean", "corpus", "training"])
    browser.get(f"{url}/locations/__repository__@dagster_project.definitions/asset-groups/clean/lineage")
    _wait_text(browser, ["messages_anon", "messages_dedup"])
    time.sleep(1)
    browser.save_screenshot(str(tmp / "graph.png"))


def test_materialised_asset_page_shows_row_count(server, browser):
    url, tmp = server
    browser.get(f"{url}/assets/messages_raw/telegram")
    text = _wait_text(browser, ["records", "quarantined"])
    browser.save_screenshot(str(tmp / "asset.png"))
    assert "Row count" in text and "rows_out" in text
