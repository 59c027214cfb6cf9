"""The built website, as a reader's browser shows it (run `make book` first).

Serves _build/html on 127.0.0.1 and opens the home page, the first chapter page of _toc.yml and the
catalog in headless Chromium (Debian's chromium + chromium-driver, driven by selenium==4.51.0). Checks that MathJax typeset the math (and hit
no TeX errors), that every <img> loaded, and that the console logged no error (SEVERE), which also
catches resources that failed to load, such as anything still pointing at a CDN: the network is closed
here, so the site must be self-contained. Full-page screenshots go to _build/screenshots/.
"""
from __future__ import annotations

import base64
import functools
import http.server
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
HTML = REPO / "_build" / "html"
SHOTS = REPO / "_build" / "screenshots"
# Debian's packages by default; the variables let another machine point at its own matching pair.
CHROMIUM = os.environ.get("PAPERBOOK_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("PAPERBOOK_CHROMEDRIVER", "/usr/bin/chromedriver")
APT = "apt-get update && apt-get install -y chromium chromium-driver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,900", "--hide-scrollbars"]
TIMEOUT = 30  # seconds for a page, its images and MathJax


def first_chapter() -> str:
    """The first chapters/ page in _toc.yml, as a site path (chapters/01-foundations/x.html)."""
    def files(node):
        if isinstance(node, dict):
            for k, v in node.items():
                yield from ([v] if k == "file" and isinstance(v, str) else files(v))
        elif isinstance(node, list):
            for item in node:
                yield from files(item)
    toc = yaml.safe_load((REPO / "_toc.yml").read_text(encoding="utf-8"))
    chapters = [f for f in files(toc) if f.startswith("chapters/")]
    assert chapters, "_toc.yml lists no chapter under chapters/"
    first = chapters[0]
    for suffix in (".ipynb", ".md"):
        first = first[: -len(suffix)] if first.endswith(suffix) else first
    return first + ".html"


# The fixtures hand back a reason instead of failing themselves, so that a missing build or browser
# makes the tests FAIL (not error out in setup, and never skip).
MISSING_BUILD = f"{HTML.relative_to(REPO)} has no index.html: run `make book` first"


def ready(site, browser):
    for thing in (site, browser):
        if isinstance(thing, str) and not thing.startswith("http"):
            pytest.fail(thing)


@pytest.fixture(scope="module")
def site():
    if not (HTML / "index.html").is_file():
        yield MISSING_BUILD
        return

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(HTML)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    if missing:
        yield f"{' and '.join(missing)} not found: install Debian's Chromium with `{APT}`"
        return
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        yield "selenium is not installed: `.venv/bin/pip install -r requirements.txt` (selenium==4.51.0)"
        return
    profile = tempfile.mkdtemp(prefix="paperbook-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Both paths are given, so selenium never runs Selenium Manager (which would try to download a driver).
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver, script: str, what: str, timeout: float = TIMEOUT):
    """Poll a JS expression until it is truthy; fail with `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script("return " + script)
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what} on {driver.current_url}")
        time.sleep(0.2)


def open_page(driver, url: str) -> None:
    driver.get_log("browser")  # drop messages of the previous page
    driver.get(url)
    wait_for(driver, "document.readyState === 'complete'", "the page to load")
    # MathJax 3 sets MathJax.startup.promise; wait until its first typesetting pass has finished
    if driver.execute_script("return !!(window.MathJax && MathJax.startup && MathJax.startup.promise)"):
        driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "MathJax.startup.promise.then(() => done(true), (e) => done(String(e)));")
    # bring every image into view once (lazy images load only then), then wait until all have loaded
    driver.execute_script("window.scrollTo(0, document.body.scrollHeight); window.scrollTo(0, 0);")
    wait_for(driver, "Array.from(document.images).every(i => i.complete)", "images to finish loading")


def broken_images(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.currentSrc || i.src || i.outerHTML.slice(0, 120));")


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def screenshot(driver, name: str) -> Path:
    """Full-page PNG through the DevTools protocol (captures beyond the window)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    path = SHOTS / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def check_page(driver, url: str, name: str) -> dict:
    open_page(driver, url)
    found = {
        "title": driver.title,
        "math": driver.execute_script("return document.querySelectorAll('mjx-container').length"),
        "tex_errors": driver.execute_script(
            "return Array.from(document.querySelectorAll('mjx-merror')).map(e => e.textContent)"),
        "images": driver.execute_script("return document.images.length"),
        "broken_images": broken_images(driver),
        "errors": console_errors(driver),
        "shot": screenshot(driver, name),
    }
    assert not found["errors"], f"console errors on {url}:\n" + "\n".join(found["errors"])
    assert not found["broken_images"], f"images that did not load on {url}: {found['broken_images']}"
    assert not found["tex_errors"], f"MathJax could not typeset on {url}: {found['tex_errors']}"
    return found


def test_home_page(site, browser):
    ready(site, browser)
    found = check_page(browser, site + "/", "home")
    assert browser.current_url.endswith("/book/intro.html"), f"/ should redirect to the intro, got {browser.current_url}"
    assert "paperbook" in found["title"]
    assert found["math"] > 0, "the intro's attention formula was not typeset by MathJax"
    assert found["shot"].stat().st_size > 10_000


def test_chapter_page(site, browser):
    ready(site, browser)
    page = first_chapter()
    assert (HTML / page).is_file(), f"{page} was not built: is it missing from the repo? run `make book`"
    found = check_page(browser, f"{site}/{page}", "chapter")
    assert found["math"] > 0, f"no mjx-container on {page}: MathJax did not typeset the chapter's math"
    assert found["images"] > 0, f"{page} shows no image: the chapter's plot is missing"
    # the Colab launch button points at this notebook on GitHub
    colab = browser.execute_script(
        "return Array.from(document.querySelectorAll('a')).map(a => a.href).filter(h => h.includes('colab'))")
    assert any(page.replace(".html", ".ipynb") in h for h in colab), f"no Colab link to the notebook: {colab}"


def test_catalog_page(site, browser):
    """The generated catalog (long tables, links, status symbols) loads cleanly too."""
    ready(site, browser)
    check_page(browser, f"{site}/book/catalog.html", "catalog")
    rows = browser.execute_script("return document.querySelectorAll('article table tbody tr').length")
    assert rows > 0, "the catalog page shows no table rows"
