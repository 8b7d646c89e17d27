"""A made-up class, graded: eight learners, rungs 02 and 03, every status, written answers (some hostile), hidden
tests, reused results and log files. tests/test_grading_report.py grades its report; the docs' screenshots of
the report are of this class:

    .venv/bin/python tests/grading_demo.py            # /tmp/grading-demo/report.html and docs/grading-*.png
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from shared.grading import records
from shared.grading.records import BROKEN, DONE, MISSING, NOT_DONE, Result

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_MISSING = "the report's browser tests need chromium: apt-get install -y chromium"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")
REPO = Path(__file__).resolve().parents[1]

HOSTILE_ANSWER = ("I wrote <script>alert(1)</script> here to see whether the report escapes it. A learning "
                  "rate of 2e-5 kept the loss falling without the spikes 1e-4 gave, and masking the prompt "
                  "means the loss only counts the answer tokens, which is what we want the model to learn.")
SCRIPT_CLOSING_ANSWER = ("</script><img src=x onerror=alert(2)> Rank 8 with alpha 16 (a scale of 2) on the "
                         "attention projections q_proj and v_proj was enough: rank 32 was no better on the "
                         "held-out split and trained four times the parameters.\n\n"
                         "Adding the MLP layers helped a little, at the cost of memory.")

SFT = ("02", "02-sft", ["heldout-questions-v2", "sft-example-cases"])
LORA = ("03", "03-lora", ["lora-shapes-v3"])
SFT_ANSWER = "written answer: learning rate and loss mask"
LORA_ANSWER = "written answer: rank, alpha and target modules"


def sft_criteria(answer: str | None, example=True, accuracy=True) -> list[dict]:
    """Rung 02's checker, as lines: the written answer first, as the real checker records it."""
    return [
        criterion("the notebook runs top to bottom"),
        written(SFT_ANSWER, answer),
        criterion("build_sft_example builds TRL's training sequence, loss on the answer only", example,
                  "the label of token 7 was <b>-100</b>; expected the answer's first token",
                  "mask the prompt's tokens with -100, not the answer's"),
        criterion("is_correct scores like the course metric on unseen answers"),
        criterion("held-out accuracy, recomputed by the checker, reaches 0.40", accuracy,
                  "0.31 on 64 held-out questions", "train for the profile's full number of steps"),
        criterion("not trained on the held-out split (new questions at check time)"),
    ]


def lora_criteria(answer: str | None, count=True) -> list[dict]:
    return [
        criterion("the notebook runs top to bottom"),
        written(LORA_ANSWER, answer),
        criterion("lora_forward matches PEFT's LoRA layer on unseen shapes and values"),
        criterion("count_lora_parameters matches PEFT's count on unseen model configs", count,
                  "counted 2,359,296 for rank 8 on a 4-layer model; PEFT counts 294,912",
                  "count A and B of each targeted module once, not once per layer twice"),
        criterion("held-out accuracy of the adapter, recomputed by the checker, reaches 0.35"),
    ]


def criterion(name: str, passed: bool = True, detail: str = "", hint: str = "") -> dict:
    if passed:
        return {"name": name, "status": "pass", "detail": "", "hint": "", "answer": ""}
    return {"name": name, "status": "fail", "detail": detail, "hint": hint, "answer": ""}


def written(name: str, answer: str | None) -> dict:
    if answer is None:  # what the checker records for a placeholder left in place
        return {"name": name, "status": "fail", "detail": "12 words written; at least 25 expected",
                "hint": "answer in your own words, in the cell under the question", "answer": ""}
    words = len(answer.split())
    return {"name": name, "status": "review", "detail": f"{words} words -- present; an instructor reviews the "
            "content", "hint": "", "answer": answer}


def not_checked(criteria: list[dict], after: int) -> list[dict]:
    """A notebook that stopped: the lines after `after` were not checked (one cause, one ✗)."""
    return [c if i < after else {**c, "status": "not checked", "detail": "", "hint": ""}
            for i, c in enumerate(criteria)]


def result(learner: str, rung: tuple, status: str, criteria: list[dict] | None = None, seconds=0.0,
           reason="", reused=False) -> Result:
    number, folder, hidden = rung
    checked = status != MISSING
    return Result(
        learner=learner, rung=number, rung_folder=folder, status=status, reason=reason,
        notebook=f"{learner}/{folder}.ipynb" if checked else "", seconds=seconds,
        notebook_seconds=round(seconds * 0.8, 1) if criteria else None, criteria=criteria or [],
        hidden=list(hidden) if criteria else [], content_hash=f"demo-{learner}-{number}", reused=reused,
        log=f"logs/{records_safe(learner)}-{number}.log" if checked else "")


def records_safe(learner: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in learner)


def demo_results() -> list[Result]:
    """The class: every status on both rungs, three written answers per question, one hostile learner."""
    answer = ("A learning rate of {lr} {why}. The loss mask sets the prompt's labels to -100 so only the "
              "answer's tokens count: the model learns to answer, not to repeat questions.")
    lora = ("Rank {rank} and alpha {alpha} on {modules}: {why}. The adapter keeps the base frozen, so the "
            "parameters trained stay a small share of the model.")
    broken_lora = not_checked(lora_criteria(None), after=0)
    broken_lora[0] = {**broken_lora[0], "status": "fail", "detail": "cell 7 raised ModuleNotFoundError: No "
                      "module named 'peft_extra'", "hint": "restart the kernel and run every cell in order"}
    return [
        result("ada", SFT, DONE, sft_criteria(answer.format(lr="2e-5", why="kept the loss falling smoothly, "
               "where 1e-4 made it jump after 40 steps")), 212.4, reused=True),
        result("ada", LORA, DONE, lora_criteria(lora.format(rank=8, alpha=16, modules="q_proj and v_proj",
               why="rank 32 scored the same on the held-out split")), 185.0),
        result("alan", SFT, NOT_DONE, sft_criteria(None, accuracy=False), 240.8),
        result("alan", LORA, MISSING, reason="no notebook for rung 03 in the submission"),
        result("d'arcy", SFT, MISSING, reason="no notebook for rung 02 in the submission"),
        result("d'arcy", LORA, MISSING, reason="no notebook for rung 03 in the submission"),
        result("edsger", SFT, DONE, sft_criteria(answer.format(lr="5e-5", why="was the largest that did not "
               "diverge")), 198.2, reused=True),
        result("edsger", LORA, BROKEN, broken_lora, 31.5, reason="the notebook raised an error at cell 7"),
        result("grace", SFT, DONE, sft_criteria(answer.format(lr="1e-5", why="was slow but steady; 3e-5 "
               "reached the same loss in half the steps")), 264.1),
        result("grace", LORA, NOT_DONE, lora_criteria(lora.format(rank=16, alpha=32, modules="every linear "
               "layer", why="more modules adapted gave the best held-out accuracy"), count=False), 171.9),
        result("katherine", SFT, BROKEN, seconds=900.0, reason="the notebook did not finish within the 900 s "
               "time limit (stopped at cell 12 of 31)"),
        result("katherine", LORA, DONE, lora_criteria(lora.format(rank=4, alpha=8, modules="q_proj, k_proj, "
               "v_proj and o_proj", why="a small rank on all attention projections beat a large one on two")),
               203.3, reused=True),
        result("mallory", SFT, DONE, sft_criteria(HOSTILE_ANSWER, example=True), 221.7),
        result("mallory", LORA, DONE, lora_criteria(SCRIPT_CLOSING_ANSWER), 190.6),
        result("zoë", SFT, NOT_DONE, sft_criteria(answer.format(lr="3e-4", why="was the fastest I tried"),
               example=False), 233.0),
        result("zoë", LORA, DONE, lora_criteria(lora.format(rank=8, alpha=8, modules="q_proj and v_proj",
               why="alpha equal to rank keeps the update's scale at one")), 178.4),
    ]


def demo_marks(results: list[Result]) -> dict[str, dict]:
    """Two answers already marked, so the report shows both states."""
    by_learner = {(r.learner, r.rung): r for r in results}
    ada, grace = by_learner[("ada", "02")], by_learner[("grace", "02")]
    return {
        records.answer_key(ada, ada.written_answers()[0]): {"mark": 1.0, "comment": "Clear, and the mask is right."},
        records.answer_key(grace, grace.written_answers()[0]): {"mark": 0.5, "comment": "Say why 3e-5 was not "
                                                                "chosen in the end."},
    }


def write_demo(folder: Path) -> list[Result]:
    """results.json, marks.json, grades.csv and each check's log, as a grading run leaves them."""
    folder.mkdir(parents=True, exist_ok=True)
    results = demo_results()
    for res in results:
        if res.log:
            log = folder / res.log
            log.parent.mkdir(parents=True, exist_ok=True)
            lines = [f"  {c['status']}: {c['name']}" for c in res.criteria] or [res.reason]
            log.write_text(f"checking {res.notebook}\n" + "\n".join(lines) + "\n", encoding="utf-8")
    records.write_results(folder, results)
    records.save_marks(folder, demo_marks(results), results)
    return results


# -- chromium ---------------------------------------------------------------------------------------------------

def chromium(*args: str, profile: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run headless chromium once with a fresh profile; its stderr (dbus noise) is kept for a failure message."""
    command = [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True)


def dump_dom(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran."""
    return chromium("--dump-dom", url, profile=profile).stdout


def screenshot(url: str, png: Path, profile: Path, width: int = 1280, height: int = 2400) -> Path:
    chromium(f"--screenshot={png}", f"--window-size={width},{height}", url, profile=profile)
    return png


class Browser:
    """Headless chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe: commands in on fd 3,
    replies out on fd 4, each a JSON message ended by a NUL byte) -- enough to click the report's Save button and
    to screenshot a scrolled page, which --screenshot cannot (it paints a scrolled page blank)."""

    def __init__(self, profile: Path, width: int = 1280, height: int = 900, timeout: float = 30):
        to_browser, self.commands = os.pipe()
        self.replies, from_browser = os.pipe()
        # The browser wants its ends as fds 3 and 4; numbered 10 and up first, so that moving one onto 3 or 4
        # cannot overwrite the other (under pytest's capture the pipes may well be 3 or 4 already).
        to_browser, from_browser = (self.renumber(fd) for fd in (to_browser, from_browser))
        shell = f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser}'
        self.process = subprocess.Popen(
            ["bash", "-c", shell, str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
             "--remote-debugging-pipe", "about:blank"],
            pass_fds=(to_browser, from_browser), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self.timeout, self.buffer, self.events, self.next_id = timeout, b"", [], 0
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Page.enable", session=True)
        self.send("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    @staticmethod
    def renumber(fd: int) -> int:
        high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
        os.close(fd)
        return high

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(timeout=10)
        os.close(self.commands)
        os.close(self.replies)

    def send(self, method: str, session: bool = False, **params) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self.read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def read(self) -> dict:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self.buffer:
            if not select.select([self.replies], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise TimeoutError(f"chromium did not answer within {self.timeout} s")
            chunk = os.read(self.replies, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed its pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def open(self, url: str) -> None:
        """Load a page and wait until its load event (its scripts have run)."""
        self.events.clear()
        self.send("Page.navigate", session=True, url=url)
        while not any(event.get("method") == "Page.loadEventFired" for event in self.events):
            self.events.append(self.read())

    def evaluate(self, expression: str):
        """The value of a JS expression in the page; a promise is awaited."""
        reply = self.send("Runtime.evaluate", session=True, expression=expression, awaitPromise=True,
                          returnByValue=True)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression[:80]}...: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def allow_downloads(self, folder: Path) -> None:
        self.send("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(folder))

    def screenshot(self, png: Path) -> Path:
        png.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", session=True, format="png")["data"]))
        return png


def main() -> int:
    """The report of the demo class and the docs' two screenshots of it."""
    from shared.grading import report

    folder = Path("/tmp/grading-demo")
    write_demo(folder)
    page = report.write_report(folder, title="Grading report — demo class")
    docs = REPO / "docs"
    docs.mkdir(exist_ok=True)
    profile = folder / "chromium-profile"
    screenshot(page.as_uri(), docs / "grading-report.png", profile, height=1700)
    with Browser(profile, height=1250) as browser:
        browser.open(page.as_uri())
        browser.evaluate("document.getElementById('answers').scrollIntoView()")
        browser.screenshot(docs / "grading-answers.png")
    print(f"{page}\n{docs / 'grading-report.png'}\n{docs / 'grading-answers.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
