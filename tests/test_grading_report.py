"""The grading report and its marking server, on the made-up class of tests/grading_demo.py: what the page
shows, that learner text stays text, that every link lands, that marks reach grades.csv (through the server, and
through a downloaded marks.json), and -- in a real headless chromium -- that the page renders and its Save button
works."""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import http.client
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import grading_demo as demo
import pytest

from shared.grading import records, report, review

LEARNERS = sorted({r.learner for r in demo.demo_results()})
RUNGS = sorted({r.rung for r in demo.demo_results()})
WRITTEN = [(r, c) for r in demo.demo_results() for c in r.written_answers()]


# -- reading a page ---------------------------------------------------------------------------------------------

@dataclass
class Element:
    tag: str
    attrs: dict
    ancestors: tuple
    text: list = field(default_factory=list)

    def inside(self, element_id: str) -> bool:
        return any(a.attrs.get("id") == element_id for a in self.ancestors)

    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())


class Page(HTMLParser):
    """Every element of a page with its ancestors and text, enough to ask what a browser shows."""
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}

    def __init__(self, text: str):
        super().__init__()
        self.open: list[Element] = []
        self.elements: list[Element] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        element = Element(tag, dict(attrs), tuple(self.open))
        self.elements.append(element)
        if tag not in self.VOID:
            self.open.append(element)

    def handle_endtag(self, tag):
        for depth in range(len(self.open) - 1, -1, -1):
            if self.open[depth].tag == tag:
                del self.open[depth:]
                return

    def handle_data(self, data):
        for element in self.open:
            element.text.append(data)

    def find(self, tag: str = "", cls: str = "", inside: str = "") -> list[Element]:
        return [el for el in self.elements if (not tag or el.tag == tag) and (not cls or cls in el.classes())
                and (not inside or el.inside(inside))]

    def by_id(self, element_id: str) -> Element:
        return next(el for el in self.elements if el.attrs.get("id") == element_id)


def assert_links_resolve(page: Page) -> None:
    ids = [el.attrs["id"] for el in page.elements if "id" in el.attrs]
    assert len(ids) == len(set(ids)), f"ids used twice: {sorted({i for i in ids if ids.count(i) > 1})}"
    fragments = [el.attrs["href"][1:] for el in page.find("a") if el.attrs.get("href", "").startswith("#")]
    assert fragments, "the page has no in-page links"
    assert not set(fragments) - set(ids), f"links to no element: {sorted(set(fragments) - set(ids))}"
    assert {key for key, _ in report.SECTIONS} <= set(fragments), "the table of contents misses a section"


def text_of(page: Page, element_id: str) -> str:
    """An element's text, one space between pieces and between words."""
    return " ".join(" ".join(page.by_id(element_id).text).split())


# -- the class, graded ------------------------------------------------------------------------------------------

@pytest.fixture
def graded(tmp_path) -> Path:
    """A grading folder as a run leaves it: results, two marks, logs, grades.csv, report.html."""
    folder = tmp_path / "grading"
    demo.write_demo(folder)
    report.write_report(folder)
    return folder


def grade_row(folder: Path, learner: str, rung: str, criterion: str) -> dict:
    with (folder / "grades.csv").open(encoding="utf-8") as handle:
        return next(row for row in csv.DictReader(handle)
                    if (row["learner"], row["rung"], row["criterion"]) == (learner, rung, criterion))


def key_of(learner: str, rung: str) -> str:
    result, criterion = next((r, c) for r, c in WRITTEN if (r.learner, r.rung) == (learner, rung))
    return records.answer_key(result, criterion)


# -- the page ---------------------------------------------------------------------------------------------------

def test_learner_text_stays_text(graded):
    """Answers, details and names are escaped; only the report's own two script blocks exist, even with a
    "</script>" in the data handed to the script; the CSP names the hash of the script that is there."""
    page = report.render(records.read_results(graded), {}, folder="/tmp/</script><script>alert(3)</script>")
    for raw in ("<script>alert", "<img src=x", "<b>-100</b>"):
        assert raw not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;/script&gt;&lt;img src=x" in page
    assert page.count("<script") == 2 and page.count("</script>") == 2
    config = re.search(r'<script type="application/json" id="report-config">(.*?)</script>', page, re.S).group(1)
    assert json.loads(config)["mergeCommand"].endswith("'/tmp/</script><script>alert(3)</script>' marks.json")
    script = re.search(r"<script>(.*?)</script>", page, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in html.unescape(page)


def test_every_link_lands_and_logs_exist(graded):
    page = Page((graded / "report.html").read_text(encoding="utf-8"))
    assert_links_resolve(page)
    logs = [unquote(el.attrs["href"]) for el in page.find("a", cls="log")]
    assert len(logs) == sum(1 for r in demo.demo_results() if r.log) > 0
    assert all((graded / log).is_file() for log in logs), logs


def test_the_figures_the_page_shows(graded):
    page = Page((graded / "report.html").read_text(encoding="utf-8"))
    summary = text_of(page, "summary")
    for figure in ("8 Learners", "2 Rungs", "8 ✓ done", "3 ✗ not done", "2 ⚠ broken", "3 · missing", "3 ↻ reused",
                   "2 / 10 ⚑ answers marked", "heldout-questions-v2"):
        assert figure in summary
    criteria = text_of(page, "criteria")
    assert "written answer: learning rate and loss mask 5 written, 2 marked" in criteria
    assert "count_lora_parameters matches PEFT's count on unseen model configs 4 / 6 (1 not checked)" in criteria
    rows = page.find("tr", inside="matrix-table")[1:]
    assert [" ".join(row.text).split()[0] for row in rows] == LEARNERS
    failing = text_of(page, "failing")
    assert "hint: count A and B of each targeted module once" in failing and "900 s time limit" in failing
    names = ["".join(card.text) for card in page.find("strong", inside="failing")]
    assert names == ["alan", "edsger", "grace", "katherine", "zoë"]
    noted = report.render(demo.demo_results(), {}, hidden_note="Hidden tests used: held in ~/course-hidden <v2>")
    assert "Hidden tests used: held in ~/course-hidden &lt;v2&gt;" in noted


def test_marks_are_filled_in_and_every_answer_has_a_control(graded):
    page = Page((graded / "report.html").read_text(encoding="utf-8"))
    controls = page.find("fieldset", cls="mark-control", inside="answers")
    assert sorted(c.attrs["data-key"] for c in controls) == sorted(records.answer_key(r, c) for r, c in WRITTEN)
    ada = next(a for a in page.find("article", cls="answer") if a.attrs["data-key"] == key_of("ada", "02"))
    chosen = [el.attrs["value"] for el in page.elements if ada in el.ancestors and "checked" in el.attrs]
    assert chosen == ["1"] and "Clear, and the mask is right." in "".join(ada.text)


# -- the server -------------------------------------------------------------------------------------------------

@pytest.fixture
def server(graded):
    server = review.make_server(graded, port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def call(server, method: str, path: str, body=None, headers: dict | None = None) -> tuple[int, dict | str]:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    if body is not None and not isinstance(body, (str, bytes)):
        body, headers = json.dumps(body), {"Content-Type": "application/json", **(headers or {})}
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    data = response.read().decode("utf-8")
    connection.close()
    return response.status, json.loads(data) if response.getheader("Content-Type") == "application/json" else data


def test_server_saves_marks_into_grades_csv(server, graded):
    status, page = call(server, "GET", "/")
    assert status == 200 and '"served": true' in page and "zoë" in page
    status, reply = call(server, "POST", "/marks", {key_of("zoë", "03"): {"mark": 0.5, "comment": "why alpha = r?"}})
    assert (status, reply) == (200, {"saved": 1, "marked": 3, "answers": 10})
    row = grade_row(graded, "zoë", "03", demo.LORA_ANSWER)
    assert (row["score"], row["comment"]) == ("0.5", "why alpha = r?")
    assert grade_row(graded, "ada", "02", demo.SFT_ANSWER)["score"] == "1.0"   # the earlier marks are kept
    assert "why alpha = r?" in (graded / "report.html").read_text(encoding="utf-8")   # and the file shows it


@pytest.mark.parametrize("body, message", [
    ({"KEY": {"mark": 0.7}}, "a mark is one of 0.0, 0.5, 1.0; got 0.7"),
    ({"KEY": {"comment": "no mark"}}, "give a mark (0, 0.5 or 1)"),
    ({"KEY": {"mark": "full"}}, "the mark 'full' is not a number"),
    ({"ada|02|someone else's question|0": {"mark": 1}}, "no written answer"),
    ("not json", "the body is not JSON"),
    ([1, 2], "expected a JSON object"),
])
def test_server_refuses_bad_marks(server, graded, body, message):
    before = (graded / "marks.json").read_text(encoding="utf-8")
    if isinstance(body, dict) and "KEY" in body:
        body = {key_of("mallory", "02"): body["KEY"]}
    headers = {"Content-Type": "application/json"} if isinstance(body, str) else None
    status, reply = call(server, "POST", "/marks", body, headers)
    assert status == 400 and message in reply["error"], reply
    assert (graded / "marks.json").read_text(encoding="utf-8") == before


def test_server_sends_logs_and_nothing_outside_the_folder(server, graded):
    (graded.parent / "secret.txt").write_text("outside", encoding="utf-8")
    status, text = call(server, "GET", "/logs/ada-02.log")
    assert status == 200 and text.startswith("checking ada/02-sft.ipynb")
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/logs/../../secret.txt", "//etc/passwd", "/nope.log",
                 "/logs/%00"):
        assert call(server, "GET", path)[0] == 404, path
    # another site's page in the same browser, or a DNS name rebound to 127.0.0.1
    mark = {key_of("ada", "03"): {"mark": 1}}
    assert call(server, "POST", "/marks", mark, {"Origin": "http://evil.example"})[0] == 403
    assert call(server, "GET", "/", headers={"Host": f"evil.example:{server.server_port}"})[0] == 403


def test_a_downloaded_marks_file_merges(graded, tmp_path, capsys):
    downloaded = tmp_path / "marks.json"
    downloaded.write_text(json.dumps({key_of("mallory", "03"): {"mark": 0, "comment": "off topic"}}))
    assert review.main(["merge", str(graded), str(downloaded)]) == 0
    assert "saved 1 marks" in capsys.readouterr().out
    assert grade_row(graded, "mallory", "03", demo.LORA_ANSWER)["score"] == "0.0"
    assert "off topic" in (graded / "report.html").read_text(encoding="utf-8")   # the page shows it now
    downloaded.write_text("{not json")
    assert review.main(["merge", str(graded), str(downloaded)]) == 1
    assert "is not JSON" in capsys.readouterr().err


# -- in a browser -----------------------------------------------------------------------------------------------

@pytest.fixture
def profile(tmp_path) -> Path:
    """A fresh chromium profile; without chromium the test skips, or fails under CI where it must run."""
    if not demo.CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(demo.CHROMIUM_MISSING)
        pytest.skip(demo.CHROMIUM_MISSING)
    return tmp_path / "chromium-profile"


def assert_rendered(dom: str) -> None:
    page = Page(dom)
    assert len(page.find("tr", inside="matrix-table")) == 1 + len(LEARNERS)
    assert len(page.find("table", cls="criteria", inside="criteria")) == len(RUNGS)
    assert len(page.find("fieldset", cls="mark-control", inside="answers")) == len(WRITTEN)
    assert_links_resolve(page)
    assert text_of(page, "marked-count") == "2 of 10 marked"   # the report's script ran, under its own CSP
    assert not page.find("script", inside="answers")


def test_the_report_in_chromium(graded, profile, tmp_path):
    assert_rendered(demo.dump_dom((graded / "report.html").as_uri(), profile))
    png = demo.screenshot((graded / "report.html").as_uri(), tmp_path / "report.png", profile)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_the_served_report_in_chromium(server, profile):
    assert_rendered(demo.dump_dom(server.url, profile))


CHOOSE_AND_SAVE = """(() => {
  const answer = [...document.querySelectorAll("article.answer")].find(a => a.dataset.key.startsWith(%s));
  answer.querySelector('input[value="0.5"]').click();
  answer.querySelector("textarea").value = "from the browser </script>";
  document.querySelector("button.save-marks").click();
  return answer.dataset.key;
})()"""
SAVE_STATUS = """new Promise((resolve, reject) => {
  const started = Date.now();
  (function poll() {
    const status = document.getElementById("save-status");
    if (status.textContent) resolve(status.className + ": " + status.textContent);
    else if (Date.now() - started > 10000) reject(new Error("no reply shown"));
    else setTimeout(poll, 50);
  })();
})"""


def test_save_marks_from_the_browser(server, graded, profile, tmp_path):
    """Click a mark and Save: served, the marks reach grades.csv; from disk, the marks.json the page downloads
    merges into grades.csv."""
    downloads = tmp_path / "downloads"
    with demo.Browser(profile) as browser:
        browser.open(server.url)
        key = browser.evaluate(CHOOSE_AND_SAVE % json.dumps("zoë|03|"))
        assert browser.evaluate(SAVE_STATUS) == "ok: Saved 3 marks; 3 of 10 answers marked. grades.csv is up to date."
        row = grade_row(graded, "zoë", "03", demo.LORA_ANSWER)
        assert (row["score"], row["comment"]) == ("0.5", "from the browser </script>") and key == key_of("zoë", "03")

        browser.allow_downloads(downloads)
        browser.open((graded / "report.html").as_uri())   # written again by the save above: zoë's mark in it
        browser.evaluate(CHOOSE_AND_SAVE % json.dumps("mallory|02|"))
        assert browser.evaluate(SAVE_STATUS).startswith("ok: marks.json downloaded. To put the marks into")
        downloaded = downloads / "marks.json"
        deadline = time.monotonic() + 10
        while not downloaded.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert review.merge_marks_file(graded, downloaded) == 4   # ada, grace, zoë and now mallory
    assert grade_row(graded, "mallory", "02", demo.SFT_ANSWER)["score"] == "0.5"
