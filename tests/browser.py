"""A real browser for the web admin's tests: Debian's ``chromium``, driven through
``chromium-driver`` by selenium.

``chrome(profile_dir)`` starts a headless Chromium with a fresh profile and the flags
that keep it quiet on a machine without a network (no background requests, no
component updates, no sync: without them it waits on the closed network);
``missing()`` says why one cannot be started, or None.

As a script, ``python tests/browser.py --install`` installs ``chromium`` and
``chromium-driver`` with apt when they are missing (as root; ``make test`` runs it),
as tests/pgserver.py does for PostgreSQL. Without them the browser tests skip,
saying why.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

PACKAGES = ("chromium", "chromium-driver")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1200,800", "--lang=en-US")


def binaries() -> tuple[str | None, str | None]:
    return (shutil.which("chromium") or shutil.which("chromium-browser"),
            shutil.which("chromedriver"))


def missing() -> str | None:
    """Why no browser can be driven here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    browser, driver = binaries()
    if not browser or not driver:
        return ("chromium and chromium-driver are not installed (as root: "
                "python tests/browser.py --install, or apt-get install chromium chromium-driver)")
    return None


def install() -> str | None:
    """Install the browser and its driver with apt when missing (root only)."""
    if all(binaries()) or os.geteuid() != 0 or not shutil.which("apt-get"):
        return missing()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE,
             "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}}
    command = ["apt-get", "install", "-y", "-qq", *PACKAGES]
    if subprocess.run(command, **quiet).returncode:
        subprocess.run(["apt-get", "update", "-qq"], **quiet)
        subprocess.run(command, **quiet)
    return missing()


def chrome(profile_dir: str):
    """A headless Chromium with a fresh profile in ``profile_dir``, driven by selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    browser, driver = binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


if __name__ == "__main__":
    if "--install" in sys.argv:
        reason = install()
        print(reason or "chromium and chromium-driver are installed")
        sys.exit(0)
    print(missing() or "a browser can be driven")
