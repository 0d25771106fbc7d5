"""The web UI in a real browser: Debian's headless Chromium driven by selenium through Debian's
chromedriver (nothing downloaded), against a real `ragkit serve` on 127.0.0.1 started by the test.

It asks a question and watches the answer stream in, opens a citation and checks the cited passage
is highlighted inside its document with its source and offsets, applies a metadata filter (and
sees a bad one rejected with the field named), and uploads a file with the progress bar until the
ingest job is done, then asks about the new file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from server_support import CHROMEDRIVER, CHROMIUM, ROOT, copy_index, require_chromium, start_server

pytestmark = pytest.mark.slow

VOYAGER = "When was Voyager 1 launched?"
WAIT_S = 60


@pytest.fixture(scope="module")
def ui_server(data_index, tmp_path_factory):
    require_chromium()
    base = tmp_path_factory.mktemp("ui")
    server = start_server(copy_index(data_index, base), base)  # the upload test writes to it
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(ui_server):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ragkit-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # Flags this machine needs (see the environment notes): no sandbox as root, no GPU, and no
    # background networking (the closed network refuses it), in a fresh profile.
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--window-size=1280,900", "--no-proxy-server",
    ):
        options.add_argument(flag)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=os.path.join(profile, "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, condition, message: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(condition, message)


def _ask(browser, ui_server, question: str, filter_json: str = "") -> None:
    from selenium.webdriver.common.by import By

    browser.get(ui_server.url + "/")
    _wait(browser, lambda d: "documents" in d.find_element(By.ID, "index-status").text, "status line")
    browser.find_element(By.ID, "question").send_keys(question)
    if filter_json:
        browser.find_element(By.ID, "filter").send_keys(filter_json)
    browser.find_element(By.ID, "ask-button").click()


def test_ask_streams_the_answer_and_a_citation_opens_the_passage_in_its_document(browser, ui_server):
    from selenium.webdriver.common.by import By

    _ask(browser, ui_server, VOYAGER)
    answer = browser.find_element(By.ID, "answer")
    # The streamed text shows before the final answer arrives: at least one delta was rendered.
    _wait(browser, lambda d: int(answer.get_attribute("data-deltas")) >= 1, "a streamed delta")
    _wait(browser, lambda d: answer.get_attribute("data-state") == "done", "the final answer")
    assert "1977" in answer.text
    links = answer.find_elements(By.CSS_SELECTOR, "a.cite")
    assert links, "the [n] markers are links"
    sources = browser.find_elements(By.CSS_SELECTOR, "#sources li")
    assert sources and all("voyager_program.pdf" in li.text for li in sources)

    links[0].click()
    viewer = browser.find_element(By.ID, "viewer")
    _wait(browser, lambda d: viewer.is_displayed() and d.find_elements(By.ID, "passage"), "the citation viewer")
    meta = browser.find_element(By.ID, "viewer-meta")
    passage = browser.find_element(By.ID, "passage")
    chunk_id = links[0].get_attribute("data-chunk-id")
    status, expected = ui_server.json("GET", f"/v1/chunks/{chunk_id}")
    assert status == 200
    assert passage.text.strip() == expected["text"].strip()
    assert passage.tag_name == "mark" and passage.value_of_css_property("background-color") != "rgba(0, 0, 0, 0)"
    assert expected["source"] in meta.text and "page 1" in meta.text
    assert f"characters {expected['start']}–{expected['end']}" in meta.text
    assert (int(meta.get_attribute("data-start")), int(meta.get_attribute("data-end"))) == (
        expected["start"], expected["end"],
    )
    whole = browser.find_element(By.ID, "viewer-text").text
    assert len(whole) > len(passage.text), "the passage is shown inside its document"
    in_view = browser.execute_script(
        "const r = arguments[0].getBoundingClientRect(), v = arguments[1].getBoundingClientRect();"
        "return r.top < v.bottom && r.bottom > v.top;",
        passage, browser.find_element(By.ID, "viewer-text"),
    )
    assert in_view, "the highlighted passage is scrolled into view"


def test_a_metadata_filter_scopes_the_answer_and_a_bad_one_names_the_field(browser, ui_server):
    from selenium.webdriver.common.by import By

    titan = str(ROOT / "data" / "moons" / "titan.txt")
    _ask(browser, ui_server, "Which moon has a thick atmosphere?", json.dumps({"source": titan}))
    answer = browser.find_element(By.ID, "answer")
    _wait(browser, lambda d: answer.get_attribute("data-state") == "done", "the filtered answer")
    sources = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#sources li")]
    assert sources and all(titan in s for s in sources)

    _ask(browser, ui_server, "Which moon has a thick atmosphere?", '{"page": {"$gt": "2"}}')
    error = browser.find_element(By.ID, "error")
    _wait(browser, lambda d: error.is_displayed(), "the error message")
    assert 'filter: page: $gt needs a number, got "2"' in error.text


def test_upload_shows_progress_until_ingested_and_the_file_can_be_asked_about(browser, ui_server, tmp_path):
    from selenium.webdriver.common.by import By

    notes = tmp_path / "heron-station.md"
    notes.write_text(
        "# Heron Station\n\nHeron Station, the research base on the ice shelf, keeps 12 weather balloons "
        "and launched its first balloon in 2029.\n",
        encoding="utf-8",
    )
    browser.get(ui_server.url + "/")
    browser.find_element(By.ID, "files").send_keys(str(notes))
    browser.find_element(By.ID, "upload-button").click()
    status = browser.find_element(By.ID, "upload-status")
    _wait(browser, lambda d: status.get_attribute("data-done") == "true", "the ingest job to finish")
    assert status.text.startswith("Done: 1 file(s) indexed"), status.text
    assert browser.find_element(By.ID, "upload-progress").get_attribute("value") == "100"
    assert (ui_server.index_dir / "uploads" / notes.name).read_bytes() == notes.read_bytes()

    _ask(browser, ui_server, "How many weather balloons does Heron Station keep?")
    answer = browser.find_element(By.ID, "answer")
    _wait(browser, lambda d: answer.get_attribute("data-state") == "done", "the answer about the upload")
    assert "12" in answer.text
    sources = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#sources li")]
    assert any(str(Path("uploads") / notes.name) in s for s in sources), sources
