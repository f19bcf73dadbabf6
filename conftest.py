"""Test-session settings for the whole repository (core and first-party plugins).

No test may reach the Hugging Face Hub: models are built from configs, saved
with save_pretrained and loaded back from local folders. huggingface_hub reads
these variables once, when it is first imported, so they are set here, before
any test module imports it.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"


# -- a real browser for the report and web-UI tests ------------------------------------
#
# Playwright drives the system Chromium (Debian's `chromium`; `.ci/run` installs
# it where apt-get is available), so no browser is downloaded. The tests that
# use the fixture skip, saying why, only where no Chromium can be found.

import shutil  # noqa: E402

import pytest  # noqa: E402

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _find_chromium() -> str | None:
    explicit = os.environ.get("DEFECTKIT_CHROMIUM")
    if explicit:
        return explicit
    return next((path for name in CHROMIUM_CANDIDATES if (path := shutil.which(name))), None)


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium (playwright ``Browser``) for the whole test session."""
    executable = _find_chromium()
    if executable is None:
        pytest.skip(
            "no Chromium found (looked for " + ", ".join(CHROMIUM_CANDIDATES) + " and $DEFECTKIT_CHROMIUM); "
            "install Debian's `chromium` (apt-get install chromium) to run the browser tests"
        )
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency: pip install -e '.[dev]'")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser page (closed after the test)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()
