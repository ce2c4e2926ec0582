"""The Dagster UI in a real browser, opened after `make demo`'s materialisation.

The demo (tests/demo_run.py: ``pipelines.demo`` without training) materialises every asset
into a Dagster home; the webserver then serves that same home, as ``make ui`` does after
``make demo``. On the rendered pages: no onboarding dialog, every stage asset
materialised, a plot renders, the checks are green, the runs are listed. The screenshots
the docs use are saved under docs/img/ (docs/first-hour.md).

Needs Debian `chromium` and `chromium-driver`. Every wait is bounded (the server start,
each page), so a broken UI fails in about a minute instead of hanging CI.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dagster_project.definitions import STAGE_KEYS
from demo_run import shared_demo

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ROOT = Path(__file__).resolve().parent.parent
IMG = ROOT / "docs" / "img"
SHOT_WIDTH = 1100  # docs screenshots are downscaled to this width (small PNGs)

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
def demo(tmp_path_factory):
    return shared_demo(tmp_path_factory)


@pytest.fixture(scope="module")
def server(demo, tmp_path_factory):
    """A webserver over the demo's Dagster home and corpus config, as `make ui` runs it."""
    tmp = tmp_path_factory.mktemp("ui")
    port = _free_port()
    env = dict(os.environ, DAGSTER_HOME=str(demo.home), SOCIALCORPUS_CONFIG=str(demo.config))
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
              "--hide-scrollbars", f"--user-data-dir={tmp / 'chromium-profile'}"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _wait_text(driver, needles, timeout=45.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = driver.find_element("tag name", "body").text
        if all(n in text for n in needles):
            return text
        time.sleep(0.5)
    raise AssertionError(f"page never showed {needles}; it shows:\n{text[:2000]}")


def _wait(driver, find, what: str, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = find()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"page never showed {what}; it shows:\n{driver.find_element('tag name', 'body').text[:2000]}")


def _shot(driver, name: str) -> Path:
    """Save a screenshot for the docs, downscaled to SHOT_WIDTH and palette-compressed."""
    from PIL import Image

    IMG.mkdir(parents=True, exist_ok=True)
    raw = IMG / f".{name}.raw.png"
    driver.save_screenshot(str(raw))
    with Image.open(raw) as im:
        im = im.convert("RGB")
        im = im.resize((SHOT_WIDTH, round(im.height * SHOT_WIDTH / im.width)), Image.LANCZOS)
        im.quantize(colors=128).save(IMG / f"{name}.png", optimize=True)
    raw.unlink()
    return IMG / f"{name}.png"


def _show_markdown(driver, row_label: str):
    """Open the ``[Show Markdown]`` dialog of the metadata row ``row_label``."""
    link = _wait(driver, lambda: driver.find_elements(
        "xpath", f"//tr[td[normalize-space()='{row_label}']]//*[normalize-space()='[Show Markdown]']"
                 f"[not(*[normalize-space()='[Show Markdown]'])]"), f"the {row_label} metadata row")[0]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", link)
    link.click()
    return _wait(driver, lambda: driver.find_elements("css selector", "[role=dialog]"), "the Markdown dialog")[0]


def test_no_onboarding_dialog_covers_the_first_page(server, browser):
    url, _ = server
    browser.get(f"{url}/")
    _wait_text(browser, ["Overview", "Catalog"])
    time.sleep(3)  # the onboarding dialog, when enabled, opens after the first queries return
    dialogs = [d for d in browser.find_elements("css selector", "[role=dialog]") if d.is_displayed()]
    assert not dialogs, dialogs[0].text[:500]


def test_catalog_shows_every_stage_asset_materialised(server, browser):
    url, _ = server
    browser.get(f"{url}/assets")
    text = _wait_text(browser, ["messages_raw", *STAGE_KEYS, "Materialized"])
    assert "Never materialized" not in text
    for key in STAGE_KEYS:
        # The catalog is a virtualised grid of divs: the row is the name's nearest ancestor that
        # also holds the code location.
        row = browser.find_element("xpath", f"//*[normalize-space()='{key}']"
                                            "/ancestor::div[contains(., 'dagster_project.definitions')][1]")
        assert "Materialized" in row.text, row.text


def test_asset_graph_shows_the_lineage_materialised(server, browser):
    url, _ = server
    browser.get(f"{url}/assets/token_shards?view=lineage&lineageScope=upstream&lineageDepth=10")
    _wait_text(browser, ["ingest", "clean", "corpus", "training", *STAGE_KEYS, "telegram"])
    time.sleep(1.5)  # the graph lays itself out after the text is in
    _shot(browser, "ui-asset-graph")


def test_asset_page_shows_metadata_and_a_plot_renders(server, browser):
    url, _ = server
    browser.get(f"{url}/assets/timeline")
    _wait_text(browser, ["rows_in", "rows_out", "rows_by_timeline", "plot_messages_per_day"])
    _shot(browser, "ui-asset-metadata")
    dialog = _show_markdown(browser, "plot_messages_per_day")
    img = _wait(browser, lambda: [i for i in dialog.find_elements("tag name", "img")
                                  if browser.execute_script("return arguments[0].naturalWidth", i) > 100],
                "a rendered plot image")[0]
    assert img.get_attribute("src").startswith("data:image/png;base64,")
    assert "Messages per day per platform" in dialog.text
    _shot(browser, "ui-asset-plot")


def test_the_checks_are_green(server, browser):
    url, _ = server
    browser.get(f"{url}/assets/messages_anon?view=checks")
    text = _wait_text(browser, ["no_pii_leak_check", "counts_conserved", "Passed"])
    assert text.count("Succeeded") >= 2 and "Failed" not in text
    _shot(browser, "ui-asset-checks")


def test_token_shards_metadata_shows_a_decoded_example(server, browser):
    url, _ = server
    browser.get(f"{url}/assets/token_shards")
    _wait_text(browser, ["tokens_per_split", "example"])
    dialog = _show_markdown(browser, "example")
    _wait(browser, lambda: "interlocutor stream" in dialog.text, "the decoded example")
    assert "conversation window" in dialog.text and "loss mask = 1 on these" in dialog.text
    # The dialog opens scrolled to its Close button; the docs show its top (header and window).
    browser.set_window_size(1400, 1300)
    browser.execute_script("""
        for (let e = arguments[0]; e; e = e.parentElement) e.scrollTop = 0;
        arguments[0].querySelectorAll('*').forEach(e => { if (e.scrollHeight > e.clientHeight) e.scrollTop = 0; });
    """, dialog)
    time.sleep(0.5)
    _shot(browser, "ui-example")
    browser.set_window_size(1400, 1000)


def test_raw_partition_page_shows_its_row_count(server, browser):
    url, _ = server
    browser.get(f"{url}/assets/messages_raw/telegram")
    text = _wait_text(browser, ["records", "quarantined"])
    assert "Row count" in text and "rows_out" in text


def test_the_demo_runs_are_in_the_run_list(server, browser):
    url, _ = server
    browser.get(f"{url}/runs")
    text = _wait_text(browser, ["Success"])
    assert "__ephemeral_asset_job__" in text and "Failure" not in text
