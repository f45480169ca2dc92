"""Headless Chromium for the browser tests (the formgrader, the course website)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable

import pytest


def browser(extra_args: Iterable[str] = (), logging_prefs: dict[str, str] | None = None):
    """Headless Chromium from Debian's packages (`.ci/run` installs them), else a skip (a
    failure where COURSE_REQUIRE_BROWSER=1, as in CI). ``extra_args`` are more Chromium
    switches; ``logging_prefs`` sets which logs the driver keeps (``goog:loggingPrefs``)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("COURSE_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium and chromium-driver are not installed (apt-get install "
                        "chromium chromium-driver)")
        pytest.skip("no chromium / chromedriver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", *extra_args):
        options.add_argument(arg)
    if logging_prefs:
        options.set_capability("goog:loggingPrefs", logging_prefs)
    return webdriver.Chrome(service=Service(driver), options=options)
