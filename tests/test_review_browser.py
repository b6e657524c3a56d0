"""The review page end to end in Debian's chromium driven by Selenium (Debian's chromium-driver; nothing is
downloaded): edit a field, bulk-rename a tag over a filter and undo it, approve three images from the keyboard,
reload and see the state; then `imgtag export --format csv,xmp` and a rerun keep the edits. Hostile model text
stays text. Takes the screenshot docs/review.md shows (copied to docs/review.png with IMGTAG_DOCS_SCREENSHOT=1)."""

from __future__ import annotations

import csv
import itertools
import json
import os
import shutil
from pathlib import Path

import pytest

from exportrows import HOSTILE
from imagegen import run_cli
from reviewfix import ReviewServer, answer, tagged_folder

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                reason="chromium and chromium-driver are not installed (.ci/system-deps installs them)")
HOSTILE_ANSWER = {**HOSTILE, "description": "<img src=x onerror=alert(1)>]]>"}
DOCS_SHOT = Path(__file__).resolve().parent.parent / "docs" / "review.png"


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,900", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def wait(driver, condition, timeout: float = 20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: condition(d))


def fill(driver, selector: str, text: str, *keys: str) -> None:
    """Type into a field of the editor, finding it again if a re-render replaced it meanwhile."""
    from selenium.common.exceptions import ElementNotInteractableException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def attempt(d) -> bool:
        try:
            node = d.find_element(By.CSS_SELECTOR, selector)
            d.execute_script("arguments[0].scrollIntoView({block: 'center'})", node)
            node.clear()
            node.send_keys(text)
            if keys:
                node.send_keys(*keys)
            return True
        except (ElementNotInteractableException, StaleElementReferenceException):
            return False

    wait(driver, attempt)


def renders_of(driver) -> int:
    from selenium.webdriver.common.by import By

    return int(driver.find_element(By.ID, "detail").get_attribute("data-renders") or 0)


def test_review_page_end_to_end(tmp_path, fake_anthropic_factory, monkeypatch, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    counter = itertools.count()

    def respond(ctx):
        n = next(counter)
        return {"text": json.dumps(HOSTILE_ANSWER if n == 0 else answer(n), ensure_ascii=False)}

    images, out, run_args = tagged_folder(tmp_path, fake_anthropic_factory, monkeypatch, n=6, respond=respond)
    server = ReviewServer(out)
    try:
        d = browser
        d.get(server.url)
        wait(d, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
        cards = d.find_elements(By.CSS_SELECTOR, ".card")
        assert len(cards) == 6
        # Hostile model text is shown as text: no element was injected, no script ran.
        assert d.find_elements(By.CSS_SELECTOR, "#grid img[src='x']") == []
        assert "<img src=x onerror=alert(1)>]]>" in d.find_element(By.ID, "grid").text
        body = d.find_element(By.TAG_NAME, "body")

        # 1. Edit a field from the keyboard: focus the second image, e opens the editor, Ctrl+Enter saves.
        body.send_keys("j")
        second = server.json("GET", "/api/images")["items"][1]
        body.send_keys("e")
        wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#editor [data-field='category']"))
        renders = renders_of(d)
        fill(d, "#editor [data-field='category']", "裙子")
        d.find_element(By.CSS_SELECTOR, "#editor [data-field='category']").send_keys(Keys.CONTROL, Keys.ENTER)
        wait(d, lambda d: server.json("GET", f"/api/images/{second['id']}")["fields"]["category"] == "裙子")
        wait(d, lambda d: renders_of(d) > renders)  # the editor shows the saved state
        # An invalid value is refused with the reason on the page and never stored.
        fill(d, "#editor [data-field='description']", "x" * 51)
        description = d.find_element(By.CSS_SELECTOR, "#editor [data-field='description']")
        assert "51 / 50" in d.find_element(By.ID, "editor").text
        description.send_keys(Keys.CONTROL, Keys.ENTER)
        wait(d, lambda d: "longer than 50 characters" in d.find_element(By.ID, "editor-problem").text)
        assert server.json("GET", f"/api/images/{second['id']}")["fields"]["description"] != "x" * 51
        description.send_keys(Keys.ESCAPE)
        body.send_keys(Keys.ESCAPE)
        wait(d, lambda d: not d.find_element(By.ID, "detail").is_displayed())

        # 2. Bulk-rename a tag over a filter, with the count shown before it is applied; then undo it.
        cotton = server.json("GET", "/api/images?tag=cotton")["total"]
        assert 0 < cotton < 6
        d.find_element(By.ID, "tag").send_keys("cotton")
        wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card")) == cotton)
        Select(d.find_element(By.ID, "bulk-op")).select_by_value("rename_tag")
        d.find_element(By.ID, "bulk-a").send_keys("t-shirt")
        d.find_element(By.ID, "bulk-b").send_keys("T恤")
        d.find_element(By.ID, "bulk-preview").click()
        wait(d, lambda d: f"will change {cotton} images" in d.find_element(By.ID, "bulk-count").text)
        assert server.json("GET", "/api/images?tag=T%E6%81%A4")["total"] == 0  # the preview changed nothing
        # The filter field losing focus fires `change` with the value already loaded: that is no new filter,
        # so the preview (and the Apply it enabled) stays. It used to be reset 200 ms later, which made Apply
        # a no-op for a user who clicked it within that time.
        d.execute_script("document.getElementById('tag').dispatchEvent(new Event('change'))")
        d.execute_script("return new Promise((done) => setTimeout(done, 400))")
        assert d.find_element(By.ID, "bulk-apply").is_enabled()
        assert f"will change {cotton} images" in d.find_element(By.ID, "bulk-count").text
        d.find_element(By.ID, "bulk-apply").click()
        wait(d, lambda d: server.json("GET", "/api/images?tag=T%E6%81%A4")["total"] == cotton)
        wait(d, lambda d: f"Changed {cotton} images" in d.find_element(By.ID, "toast").text)
        d.find_element(By.ID, "toast-undo").click()
        wait(d, lambda d: server.json("GET", "/api/images?tag=T%E6%81%A4")["total"] == 0)
        assert server.json("GET", f"/api/images/{second['id']}")["fields"]["category"] == "裙子"

        # 3. Approve three images from the keyboard (a approves and moves on).
        tag = d.find_element(By.ID, "tag")
        tag.send_keys(Keys.CONTROL, "a")
        tag.send_keys(Keys.BACKSPACE)
        tag.send_keys(Keys.ESCAPE)
        wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card")) == 6)
        body.send_keys("a", "a", "a")  # as fast as a person types: each press approves the next image
        wait(d, lambda d: server.json("GET", "/api/images?reviewed=true")["total"] == 3)
        approved = [i["path"] for i in server.json("GET", "/api/images?reviewed=true")["items"]]
        assert approved == ["img_0000.jpg", "img_0001.jpg", "img_0002.jpg"]

        # 4. Reload: the state is the store's.
        d.refresh()
        wait(d, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
        wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".badge.reviewed")) == 3)
        assert "裙子" in d.find_elements(By.CSS_SELECTOR, ".card")[1].text
        assert d.find_elements(By.CSS_SELECTOR, ".card dd.edited")
        d.find_element(By.TAG_NAME, "body").send_keys("j", "e")
        wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#history li")) >= 2)
        shot = tmp_path / "review.png"
        d.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
        if os.environ.get("IMGTAG_DOCS_SCREENSHOT"):
            shutil.copyfile(shot, DOCS_SHOT)
        assert d.find_elements(By.CSS_SELECTOR, "#grid img[src='x']") == []
    finally:
        code, stdout, _ = server.stop()
    assert code == 0 and stdout.strip().splitlines()[-1] == "imgtag review stopped"

    # 5. Exports and a rerun keep the edits.
    code, output = run_cli(["export", "--out", str(out), "--format", "csv,xmp"], {}, monkeypatch)
    assert code == 0, output
    with (out / "results.csv").open(encoding="utf-8-sig", newline="") as f:
        rows = {r["path"]: r for r in csv.DictReader(f)}
    edited = rows[second["path"]]
    assert edited["category"] == "裙子" and edited["edited_fields"] == "category"
    assert sum(r["reviewed"] == "true" for r in rows.values()) == 3
    xmp = (images / (second["path"] + ".xmp")).read_text(encoding="utf-8")
    assert "裙子" in xmp
    fake = fake_anthropic_factory(respond=lambda ctx: {"text": json.dumps(answer(99), ensure_ascii=False)})
    code, output = run_cli([*run_args, "--format", "csv,xmp"], fake.env(), monkeypatch)
    assert code == 0, output
    with (out / "results.csv").open(encoding="utf-8-sig", newline="") as f:
        assert {r["path"]: r for r in csv.DictReader(f)}[second["path"]]["category"] == "裙子"
    assert "裙子" in (images / (second["path"] + ".xmp")).read_text(encoding="utf-8")
