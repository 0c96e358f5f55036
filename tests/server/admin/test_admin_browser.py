"""The web admin in a real browser (headless Chromium, tests/browser.py) against a real
server (gunicorn): sign in, a database, a document created, edited, in conflict and
deleted, an attachment, a view and a Mango query, 5,000 documents paged, an index
build's progress, _changes live. Each page's screenshot is written under
build/screenshots/admin/ (not committed)."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import browser
import orjson
import pytest
import requests
from liveserver import LiveServer

reason = browser.missing()
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(reason is not None, reason=reason or "")]

SHOTS = Path(__file__).resolve().parents[3] / "build" / "screenshots" / "admin"
ADMIN = ("admin", "correct horse")
WAIT = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LiveServer(tmp_path_factory.mktemp("data"), workers=1, threads=8,
                    SETTEE_ADMIN_USER=ADMIN[0], SETTEE_ADMIN_PASSWORD=ADMIN[1]) as live:
        yield live


@pytest.fixture(scope="module")
def api(server):
    session = requests.Session()
    session.auth = ADMIN
    session.headers["Content-Type"] = "application/json"
    return session


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    SHOTS.mkdir(parents=True, exist_ok=True)
    chrome = browser.chrome(str(tmp_path_factory.mktemp("chromium-profile")))
    chrome.set_page_load_timeout(60)
    yield chrome
    chrome.quit()


def by(css):
    from selenium.webdriver.common.by import By
    return By.CSS_SELECTOR, css


def wait(driver, condition, timeout=WAIT):
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait
    # a page being replaced under a check (stale elements, nodes gone): check again
    return WebDriverWait(driver, timeout, ignored_exceptions=(WebDriverException,)
                         ).until(condition)


def shows(css, text=None):
    def check(driver):
        found = driver.find_elements(*by(css))
        return found and (text is None or any(text in f.text for f in found)) and found[0]
    return check


def submit(driver, css):
    """Click ``css`` and wait for the page it loads."""
    from selenium.webdriver.support import expected_conditions
    page = driver.find_element(*by("html"))
    driver.find_element(*by(css)).click()
    wait(driver, expected_conditions.staleness_of(page))


def shot(driver, name):
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def fill(driver, css, text):
    field = driver.find_element(*by(css))
    field.clear()
    field.send_keys(text)
    return field


def set_editor(driver, text):
    """The editor's text, set as a paste would (send_keys would auto-indent nothing, but
    is slow for long text); an input event lets the page check it."""
    driver.execute_script("const e = document.getElementById('editor'); e.value = arguments[0];"
                          "e.dispatchEvent(new Event('input'));", text)


def test_sign_in(driver, server):
    driver.get(server.url + "/_utils")
    wait(driver, shows("form[action='/_utils/sign-in']"))
    fill(driver, "input[name=name]", ADMIN[0])
    fill(driver, "input[name=password]", ADMIN[1])
    shot(driver, "01-sign-in")
    submit(driver, "form[action='/_utils/sign-in'] button")
    wait(driver, shows("header .who", "Signed in as admin"))
    assert driver.current_url.endswith("/_utils")


def test_create_a_database(driver, server):
    fill(driver, "#create-db input[name=name]", "shop")
    submit(driver, "#create-db button")
    wait(driver, shows("h1", "shop"))
    assert driver.current_url.endswith("/shop")
    driver.get(server.url + "/_utils")
    wait(driver, shows("#databases", "shop"))
    shot(driver, "02-databases")


def test_create_edit_conflict_and_delete_a_document(driver, server, api):
    driver.get(server.url + "/shop")
    submit(driver, "nav.tabs a.new")
    wait(driver, shows("#editor"))
    fill(driver, "input[name=id]", "chair <b>1</b>")
    set_editor(driver, '{"kind": "chair", "price": ')
    wait(driver, shows("#feedback.bad", "Not valid JSON"))          # checked as typed
    set_editor(driver, '{"kind": "chair", "price": 40, "note": "<script>alert(1)</script>"}')
    wait(driver, shows("#feedback.ok", "Valid JSON"))
    shot(driver, "03-new-document")
    submit(driver, "#save")
    wait(driver, shows("h1", "chair <b>1</b>"))                     # the id, as text
    assert driver.find_elements(*by("h1 b")) == []
    url = server.url + "/shop/chair%20%3Cb%3E1%3C%2Fb%3E"
    assert api.get(url).json()["price"] == 40
    # edited: the next revision
    set_editor(driver, '{"kind": "chair", "price": 45}')
    submit(driver, "#save")
    wait(driver, shows("#rev", "2-"))
    shot(driver, "04-document")
    # in conflict: someone else saves first; both are shown, and mine is kept
    current = api.get(url).json()
    api.put(url, data=orjson.dumps({**current, "price": 50, "by": "them"}))
    set_editor(driver, '{"kind": "chair", "price": 47, "by": "me"}')
    submit(driver, "#save")
    wait(driver, shows("#conflict", "Someone saved this document first"))
    assert '"them"' in driver.find_element(*by("#conflict")).text
    shot(driver, "05-conflict")
    submit(driver, "#save-mine")
    wait(driver, shows("#rev", "4-"))
    assert api.get(url).json()["by"] == "me"
    # deleted, after a confirmation
    driver.find_element(*by("#delete")).click()
    wait(driver, lambda d: d.switch_to.alert).accept()
    wait(driver, shows("h1", "shop"))
    assert api.get(url).status_code == 404


def test_upload_an_attachment(driver, server, api, tmp_path):
    api.put(server.url + "/shop/table", data=b'{"kind": "table"}')
    upload = tmp_path / "photo notes.txt"
    upload.write_bytes(b"oak, 2 m")
    driver.get(server.url + "/shop/table")
    driver.find_element(*by("#upload input[type=file]")).send_keys(str(upload))
    submit(driver, "#upload button")
    wait(driver, shows("#attachments a", "photo notes.txt"))
    shot(driver, "06-attachment")
    link = driver.find_element(*by("#attachments a")).get_attribute("href")
    assert requests.get(link, auth=ADMIN).content == b"oak, 2 m"


def test_run_a_view_and_a_mango_query(driver, server, api):
    docs = [{"_id": f"item{i:02d}", "kind": ["chair", "table", "lamp"][i % 3], "price": i}
            for i in range(30)]
    docs.append({"_id": "_design/shop", "views": {"by_kind": {
        "map": "function (doc) { if (doc.kind) emit(doc.kind, doc.price || 0); }",
        "reduce": "_sum"}}})
    api.post(server.url + "/shop/_bulk_docs", data=orjson.dumps({"docs": docs}))
    driver.get(server.url + "/shop/_design/shop/_view/by_kind")
    wait(driver, shows("#view-query"))
    from selenium.webdriver.support.ui import Select
    Select(driver.find_element(*by("select[name=group_level]"))).select_by_value("exact")
    submit(driver, "#run-view")
    wait(driver, shows("#rows", '"lamp"'))
    assert len(driver.find_elements(*by("#rows tbody tr"))) == 3
    shot(driver, "07-view")
    driver.get(server.url + "/shop/_index")
    set_editor(driver, '{"selector": {"kind": "lamp", "price": {"$gt": 10}}}')
    submit(driver, "#run-find")
    wait(driver, shows("#found"))
    assert len(driver.find_elements(*by("#found tbody tr"))) == 7
    fill(driver, "#create-index input[name=fields]", "kind, price")
    fill(driver, "#create-index input[name=name]", "kind-price")
    submit(driver, "#create-index button")
    wait(driver, shows("#indexes", "kind-price"))
    set_editor(driver, '{"selector": {"kind": "lamp", "price": {"$gt": 10}}}')
    submit(driver, "#run-explain")
    wait(driver, shows("#explain", "kind-price"))
    shot(driver, "08-mango")


def test_page_through_5000_documents(driver, server, api):
    api.put(server.url + "/big")
    docs = [{"_id": f"d{i:05d}", "n": i} for i in range(5000)]
    api.post(server.url + "/big/_bulk_docs", data=orjson.dumps({"docs": docs}))
    driver.get(server.url + "/big")
    wait(driver, shows("#docs", "d00000"))
    first = [a.text for a in driver.find_elements(*by("#docs tbody a"))]
    assert first == [f"d{i:05d}" for i in range(100)]
    for page in range(1, 4):
        submit(driver, "a[rel=next]")
        wait(driver, shows("#docs tbody a", f"d{page * 100:05d}"))
    shot(driver, "09-paging")
    driver.back()
    wait(driver, shows("#docs tbody a", "d00200"))
    submit(driver, "a[rel=prev]")
    wait(driver, shows("#docs tbody a", "d00100"))
    fill(driver, "#search input[name=prefix]", "d049")
    submit(driver, "#search button")
    wait(driver, shows("#docs tbody a", "d04900"))
    assert len(driver.find_elements(*by("#docs tbody a"))) == 100


def test_see_an_index_build_progress(driver, server, api):
    slow = ("function (doc) { var x = 0; for (var i = 0; i < 400000; i++) { x += i; } "
            "emit(doc.n, x); }")
    api.put(server.url + "/big/_design/slow", data=orjson.dumps(
        {"views": {"busy": {"map": slow}}}))
    builder = threading.Thread(target=lambda: requests.get(
        server.url + "/big/_design/slow/_view/busy?limit=1", auth=ADMIN, timeout=600))
    builder.start()
    try:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and not api.get(server.url + "/_active_tasks").json():
            time.sleep(0.05)
        driver.get(server.url + "/_active_tasks")
        bar = wait(driver, shows("#tasks progress"))
        first = int(bar.get_attribute("value"))
        assert "slow" in driver.find_element(*by("#tasks")).text
        shot(driver, "10-active-tasks")
        # the page polls: the bar moves, or the finished build leaves the table
        wait(driver, lambda d: not d.find_elements(*by("#tasks progress")) or
             int(d.find_element(*by("#tasks progress")).get_attribute("value")) > first, 60)
    finally:
        builder.join(600)


def test_changes_follow_live(driver, server, api):
    driver.get(server.url + "/shop/_changes")
    wait(driver, shows("#changes"))
    time.sleep(0.5)                          # the event source connects
    api.put(server.url + "/shop/fresh%20one", data=b'{"new": true}')
    wait(driver, shows("#changes tr.fresh", "fresh one"))
    shot(driver, "11-changes")


def test_security_and_users_by_an_admin(driver, server, api):
    driver.get(server.url + "/shop/_security")
    fill(driver, "input[name=members_names]", "zoe")
    submit(driver, "#security button")
    assert api.get(server.url + "/shop/_security").json()["members"]["names"] == ["zoe"]
    driver.get(server.url + "/_users")
    fill(driver, "#new-user input[name=name]", "zoe")
    fill(driver, "#new-user input[name=password]", "pw")
    submit(driver, "#new-user button")
    wait(driver, shows("#docs", "org.couchdb.user:zoe"))
    shot(driver, "12-users")
    assert requests.get(server.url + "/shop", auth=("zoe", "pw")).status_code == 200


def test_sign_out(driver, server):
    driver.get(server.url + "/_utils")
    submit(driver, "header form[action='/_utils/sign-out'] button")
    wait(driver, shows("form[action='/_utils/sign-in']"))
    driver.get(server.url + "/shop")
    wait(driver, shows("h1", "401"))
