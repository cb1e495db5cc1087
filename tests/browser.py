"""Headless Chromium for the browser tests (tests/test_cards.py, tests/test_lab_browser.py).

Debian's `chromium` and `chromium-driver` packages (`make test` installs them when it can, as it does
bubblewrap), driven by selenium (the project's test extra). Nothing is downloaded at test time: the
browser and driver paths are given explicitly and Selenium Manager is told to stay offline. A test that
needs the browser calls `need_browser()`, which skips it with the reason when something is missing.
"""
import contextlib
import os
import shutil
import tempfile

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = "apt-get install chromium chromium-driver; make test does it when it can"


def _find(names):
    return next((path for path in map(shutil.which, names) if path), None)


def need_browser():
    """(chromium path, chromedriver path); skips the calling test when selenium, chromium or the driver is
    missing."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed (it is in the test extra: pip install -e '.[test]')")
    browser = os.environ.get("ATTNLAB_CHROMIUM") or _find(CHROMIUM_NAMES)
    driver = os.environ.get("ATTNLAB_CHROMEDRIVER") or _find(("chromedriver",))
    if not browser:
        pytest.skip(f"no Chromium on PATH ({INSTALL_HINT})")
    if not driver:
        pytest.skip(f"no chromedriver on PATH ({INSTALL_HINT})")
    return browser, driver


@contextlib.contextmanager
def chromium(width=1280, height=1000):
    """A headless Chromium session with a fresh profile; browser console messages are recorded
    (`driver.get_log("browser")`). Quits the browser and removes the profile at the end."""
    browser, driver_path = need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager fetch a browser or a driver
    profile = tempfile.mkdtemp(prefix="attnlab-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--hide-scrollbars", f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver):
    """The SEVERE entries of the browser console since the last call."""
    return [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
