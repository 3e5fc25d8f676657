"""The web page in headless Debian Chromium (selenium, /usr/bin/chromium + /usr/bin/chromedriver,
all three from apt via `make deps`): GET / as a browser, type a prompt, press Enter, watch the
progress bar move, get the ranked images with scores and download links.

A screenshot of the page after the generation is written to $BUILD/screenshot.png, or to
$DALLE_SCREENSHOT when set (docs/screenshot.sh uses that to refresh docs/screenshot.png).
"""
import base64
import json
import os
import pathlib
import re
import shutil

import pytest

from conftest import ROOT, Server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
PAGE_TIMEOUT = 300  # CI: 2 slow cores, maybe ASan


@pytest.fixture(scope="module")
def browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("chromium / chromium-driver are not installed (make deps installs them)")
    webdriver = pytest.importorskip("selenium.webdriver",
                                    reason="python3-selenium is not installed (make deps)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1100,900", "--hide-scrollbars", "--force-device-scale-factor=1"):
        opts.add_argument(a)
    from selenium.webdriver.chrome.service import Service
    drv = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(PAGE_TIMEOUT)
    drv.set_script_timeout(PAGE_TIMEOUT)
    yield drv
    drv.quit()


@pytest.fixture(scope="module")
def page_server():
    s = Server("--max-batch", "8", "--max-images", "8", "--queue", "16")
    yield s
    assert s.stop() == 0


# Records every value the progress bar takes: the tiny model decodes 256 steps in a fraction
# of a second, faster than a WebDriver round trip could poll, so the page itself keeps the log.
# HTMLProgressElement.value reflects the content attribute, so each assignment is a mutation.
WATCH_BAR = """
window.__bar = [];
new MutationObserver(() => {
  const b = document.getElementById('bar');
  window.__bar.push({value: b.value, max: b.max, hidden: b.hidden});
}).observe(document.getElementById('bar'), {attributes: true});
"""


def test_page_generates_in_chromium(browser, page_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page_server.url("/"))
    assert browser.title == "dalle-server"
    wait = WebDriverWait(browser, PAGE_TIMEOUT)
    # /info sets the image-count maximum from --max-images
    wait.until(lambda d: d.find_element(By.ID, "n").get_attribute("max") == "8")
    browser.execute_script(WATCH_BAR)

    n = browser.find_element(By.ID, "n")
    n.clear()
    n.send_keys("6")
    browser.find_element(By.ID, "seed").send_keys("7")
    prompt = browser.find_element(By.ID, "prompt")
    prompt.send_keys("a red bicycle leaning against a brick wall", Keys.ENTER)

    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#grid figure")) == 6)
    wait.until(lambda d: not d.find_element(By.ID, "go").get_property("disabled"))
    status = browser.find_element(By.ID, "status")
    assert status.get_attribute("class") != "error", status.text
    assert re.fullmatch(r"seed 7 · [0-9.]+ s", status.text), status.text

    # the progress bar was shown, then moved forward at least once, then hidden again
    log = browser.execute_script("return window.__bar")
    values = [e["value"] for e in log if not e["hidden"]]
    assert any(b > a for a, b in zip(values, values[1:])), log
    assert max(values) <= 256 and max(values) >= 16, log
    assert browser.find_element(By.ID, "bar").get_property("hidden")

    # the images, best first, with a score and a download link each
    figures = browser.find_elements(By.CSS_SELECTOR, "#grid figure")
    scores = []
    for k, fig in enumerate(figures):
        img = fig.find_element(By.TAG_NAME, "img")
        assert img.get_attribute("src").startswith("data:image/jpeg;base64,")
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth",
                                      img) > 0
        caption = fig.find_element(By.TAG_NAME, "figcaption").text
        m = re.match(rf"#{k + 1} · score (-?[0-9.]+)", caption)
        assert m, caption
        scores.append(float(m.group(1)))
        link = fig.find_element(By.TAG_NAME, "a")
        assert link.text == "download"
        assert re.fullmatch(r"dalle-7-[0-5]\.jpg", link.get_attribute("download"))
        data = link.get_attribute("href").split(",", 1)[1]
        assert base64.b64decode(data)[:2] == b"\xff\xd8"
    assert scores == sorted(scores, reverse=True)

    out = pathlib.Path(os.environ.get("DALLE_SCREENSHOT")
                       or ROOT / os.environ.get("BUILD", "build") / "screenshot.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_page_shows_server_error(browser, page_server):
    """A refused request (here 422: more images than --max-images, bypassing the input's max)
    shows the server's message in the error style, and the button comes back."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page_server.url("/"))
    wait = WebDriverWait(browser, PAGE_TIMEOUT)
    wait.until(lambda d: d.find_element(By.ID, "n").get_attribute("max") == "8")
    browser.execute_script("document.getElementById('n').removeAttribute('max');"
                           "document.getElementById('n').value = '9';")
    browser.find_element(By.ID, "prompt").send_keys("a cat", Keys.ENTER)
    wait.until(lambda d: d.find_element(By.ID, "status").get_attribute("class") == "error")
    text = browser.find_element(By.ID, "status").text
    assert "Error 422." in text and "n" in text
    assert not browser.find_element(By.ID, "go").get_property("disabled")


def test_page_shows_the_model_and_its_examples(browser):
    """models/demo: the model line, the description and the example prompts are shown; a
    click on an example fills the prompt; no key field (the server needs no key)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    s = Server("--model", str(ROOT / "models" / "demo"))
    try:
        browser.get(s.url("/"))
        wait = WebDriverWait(browser, PAGE_TIMEOUT)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#examples button"))
        res = json.loads((ROOT / "models" / "demo" / "config.json").read_text())["vqgan"]["resolution"]
        assert browser.find_element(By.ID, "model").text == f"demo-shapes · {res}×{res} images"
        assert f"{res}x{res} pictures of one or two flat shapes" in \
            browser.find_element(By.ID, "description").text
        buttons = browser.find_elements(By.CSS_SELECTOR, "#examples button")
        assert len(buttons) >= 3
        buttons[1].click()
        assert browser.find_element(By.ID, "prompt").get_property("value") == buttons[1].text
        assert not browser.find_element(By.ID, "keybox").is_displayed()
    finally:
        assert s.stop() == 0


def test_page_key_field_is_kept_in_local_storage(browser):
    """With --api-key the key field shows; what is typed there is kept in localStorage
    across reloads and the generation it sends is accepted."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    s = Server("--api-key", "sesame", "--max-batch", "2")
    try:
        browser.get(s.url("/"))
        wait = WebDriverWait(browser, PAGE_TIMEOUT)
        wait.until(lambda d: d.find_element(By.ID, "keybox").is_displayed())
        browser.find_element(By.ID, "key").send_keys("sesame")
        browser.refresh()
        wait.until(lambda d: d.find_element(By.ID, "keybox").is_displayed())
        assert browser.find_element(By.ID, "key").get_property("value") == "sesame"
        n = browser.find_element(By.ID, "n")
        n.clear()
        n.send_keys("1")
        browser.find_element(By.ID, "prompt").send_keys("a cat", Keys.ENTER)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#grid figure")) == 1)
        browser.execute_script("localStorage.clear()")
    finally:
        assert s.stop() == 0
