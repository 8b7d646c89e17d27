"""The grading run's report: one HTML file an instructor opens from disk (or through ``review.serve``) to see how
the class did and to mark the written answers.

The file is self-contained (inline CSS and JS, no fonts or scripts from elsewhere) so it works offline and can be
mailed or archived beside grades.csv. Everything a learner wrote -- names, answers, a checker's detail quoting
their output -- is untrusted: it is escaped wherever it lands, the only data handed to the script sits in a JSON
block with ``<`` escaped, and the page's Content-Security-Policy lets only the report's own script run, so text
that slipped past the escaping still could not execute.

Sections: summary, criteria (pass rates per rung), matrix (learner x rung), failing, slowest, answers (marking),
details (every criterion of every submission).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import shlex
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from shared.grading.records import (BROKEN, DONE, MISSING, NOT_DONE, Result, answer_key, read_marks,
                                    read_results)

STATUS_SYMBOL = {DONE: "✓", NOT_DONE: "✗", BROKEN: "⚠", MISSING: "·"}
STATUS_ORDER = (DONE, NOT_DONE, BROKEN, MISSING)
CRITERION_SYMBOL = {"pass": "✓", "fail": "✗", "review": "⚑", "not checked": "·"}
SECTIONS = (("summary", "Summary"), ("criteria", "Criteria"), ("matrix", "Learners × rungs"),
            ("failing", "Failing"), ("slowest", "Slowest"), ("answers", "Written answers"),
            ("details", "Submissions"))
MARK_CHOICES = (("0", "0"), ("0.5", "½"), ("1", "1"))
SLOWEST_SHOWN = 10


def e(value) -> str:
    """Escape for HTML text and quoted attributes alike."""
    return html.escape(str(value), quote=True)


def slug(text: str) -> str:
    """A fragment-safe form of a name. Two names may sanitise alike ("a b", "a-b"): a short hash of the original
    then tells them apart."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "x"
    if cleaned != text:
        cleaned += "-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:6]
    return cleaned


def css_name(status: str) -> str:
    """A status as a class name ("not done" -> "not-done"): statuses are the grader's words, never a learner's."""
    return re.sub(r"[^a-z0-9]+", "-", status.lower()).strip("-")


def submission_id(learner: str, rung: str) -> str:
    return f"sub-{slug(learner)}-{slug(rung)}"


def learner_id(learner: str) -> str:
    return f"learner-{slug(learner)}"


def answer_id(result: Result, criterion: dict) -> str:
    return f"ans-{slug(result.learner)}-{slug(result.rung)}-{slug(criterion['name'])}"


def question_id(rung: str, name: str) -> str:
    return f"q-{slug(rung)}-{slug(name)}"


def seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 90:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def status_badge(status: str) -> str:
    return f'<span class="badge st-{css_name(status)}">{STATUS_SYMBOL.get(status, "?")} {e(status)}</span>'


# -- the page ---------------------------------------------------------------------------------------------------

def render(results: list[Result], marks: dict[str, dict], *, title: str = "Grading report", served: bool = False,
           hidden_note: str = "", folder: str | Path | None = None) -> str:
    """The whole report as one HTML page. ``served``: the page was sent by review.serve, so Save marks posts to it;
    otherwise Save marks downloads marks.json for ``review merge``. ``folder`` only names the grading folder in the
    merge command the page shows."""
    results = sorted(results, key=lambda r: (r.learner, r.rung))
    generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    sections = [
        summary_section(results, marks, hidden_note, generated),
        criteria_section(results, marks),
        matrix_section(results),
        failing_section(results),
        slowest_section(results),
        answers_section(results, marks, served, folder),
        details_section(results),
    ]
    config = {"served": served, "saveUrl": "/marks", "mergeCommand": merge_command(folder)}
    toc = "".join(f'<a href="#{key}">{e(label)}</a>' for key, label in SECTIONS)
    return PAGE.format(
        title=e(title), csp=e(content_security_policy()), css=CSS, toc=toc, body="\n".join(sections),
        config=json_for_script(config), script=SCRIPT,
    )


def write_report(folder: Path, results: list[Result] | None = None, **options) -> Path:
    """Write folder/report.html from results (read from folder/results.json when None) and folder/marks.json.
    ``options`` go to render (title, hidden_note)."""
    folder = Path(folder)
    results = read_results(folder) if results is None else results
    options.setdefault("folder", folder.resolve())
    page = render(results, read_marks(folder), **options)
    path = folder / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def merge_command(folder: str | Path | None) -> str:
    where = shlex.quote(str(folder)) if folder else "GRADING_FOLDER"
    return f".venv/bin/python -m shared.grading.review merge {where} marks.json"


def json_for_script(data) -> str:
    """JSON that cannot end its <script> block early: every < > & becomes a \\u escape, so "</script>" or "<!--"
    in a value stays inside the string."""
    text = json.dumps(data, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def content_security_policy() -> str:
    """Only this report's own script runs (by its hash); nothing is loaded from elsewhere; the page may talk only
    to the server that sent it (POST /marks)."""
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode("utf-8")).digest()).decode()
    return (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; img-src data:; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'")


# -- summary ----------------------------------------------------------------------------------------------------

def summary_section(results: list[Result], marks: dict, hidden_note: str, generated: str) -> str:
    counts = Counter(r.status for r in results)
    written = [(r, c) for r in results for c in r.written_answers()]
    marked = sum(answer_key(r, c) in marks for r, c in written)
    cards = [("Learners", len({r.learner for r in results}), ""), ("Rungs", len({r.rung for r in results}), "")]
    cards += [(f"{STATUS_SYMBOL[s]} {s}", counts.get(s, 0), f"st-{css_name(s)}") for s in STATUS_ORDER]
    cards += [("⊘ reached outside", sum(bool(r.refused) for r in results), "st-broken"),
              ("↻ reused", sum(r.reused for r in results), ""),
              ("⚑ answers marked", f"{marked} / {len(written)}", "st-review")]
    tiles = "".join(f'<div class="tile {cls}"><div class="n">{e(n)}</div><div class="label">{e(label)}</div></div>'
                    for label, n, cls in cards)
    reused = sum(r.reused for r in results)
    line = (f"Generated {generated}. {len(results)} results; {reused} reused from an earlier run (nothing they "
            "depend on changed, so they were not graded again).")
    note = hidden_note or default_hidden_note(results)
    hidden = f'<p class="note">{e(note)}</p>' if note else ""
    return (f'<section id="summary"><h2>Summary</h2><div class="tiles">{tiles}</div>'
            f'<p class="muted">{e(line)}</p>{hidden}{hidden_table(results)}</section>')


def default_hidden_note(results: list[Result]) -> str:
    tests = sorted({name for r in results for name in r.hidden})
    return f"Hidden tests used: {', '.join(tests)}." if tests else ""


def hidden_table(results: list[Result]) -> str:
    """Which submissions were graded with which hidden tests: a rung graded with two sets (a test added between
    runs, a reused result) shows both."""
    groups: dict[tuple, list[Result]] = defaultdict(list)
    for result in results:
        if result.hidden:
            groups[(result.rung, tuple(result.hidden))].append(result)
    if not groups:
        return ""
    rows = []
    for (rung, tests), members in sorted(groups.items()):
        who = ", ".join(f'<a href="#{submission_id(r.learner, r.rung)}">{e(r.learner)}</a>' for r in members)
        rows.append(f"<tr><td>{e(rung)}</td><td>{e(', '.join(tests))}</td><td>{who}</td></tr>")
    return ('<table class="plain hidden-tests"><thead><tr><th>Rung</th><th>Hidden tests</th>'
            f'<th>Submissions graded with them</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


# -- pass rates per criterion -------------------------------------------------------------------------------------

def by_rung(results: list[Result]) -> dict[str, list[Result]]:
    rungs: dict[str, list[Result]] = defaultdict(list)
    for result in results:
        rungs[result.rung].append(result)
    return dict(sorted(rungs.items()))


def criterion_names(results: list[Result]) -> list[str]:
    """Every criterion name of one rung, in the checker's order (the first submission that has it decides)."""
    names: dict[str, None] = {}
    for result in results:
        for criterion in result.criteria:
            names.setdefault(criterion["name"], None)
    return list(names)


def criteria_section(results: list[Result], marks: dict) -> str:
    parts = ['<section id="criteria"><h2>Criteria</h2>'
             '<p class="muted">How many of the checked submissions met each criterion. A written answer '
             '(⚑) counts as written, not passed, until an instructor marks it.</p>']
    for rung, members in by_rung(results).items():
        checked = [r for r in members if r.criteria]
        rows = "".join(criterion_row(name, checked, marks) for name in criterion_names(checked))
        rows = rows or '<tr><td colspan="3" class="muted">No submission of this rung was checked.</td></tr>'
        parts.append(f'<h3 id="criteria-{slug(rung)}">Rung {e(rung)} · {e(members[0].rung_folder)}</h3>'
                     f'<p class="muted">{len(checked)} of {len(members)} submissions checked.</p>'
                     '<table class="criteria"><thead><tr><th>Criterion</th><th class="num">Result</th>'
                     f'<th class="barcol">Rate</th></tr></thead><tbody>{rows}</tbody></table>')
    parts.append("</section>")
    return "".join(parts)


def criterion_row(name: str, checked: list[Result], marks: dict) -> str:
    entries = [(r, c) for r in checked for c in r.criteria if c["name"] == name]
    statuses = Counter(c["status"] for _, c in entries)
    total = len(entries)
    if statuses["review"]:
        written = statuses["review"]
        marked = sum(answer_key(r, c) in marks for r, c in entries if c["status"] == "review")
        text = f"{written} written, {marked} marked"
        label = f"⚑ {e(name)}"
        bar = bar_html([(marked, "fill-marked"), (written - marked, "fill-written")], total,
                       f"{written} of {total} written, {marked} marked")
    else:
        passed = statuses["pass"]
        text = f"{passed} / {total}"
        label = e(name)
        low = total and passed / total < 0.5   # a criterion most of the class missed: the lesson to look at
        bar = bar_html([(passed, "fill-low" if low else "fill-pass")], total, f"{passed} of {total} passed")
        if statuses["not checked"]:
            text += f' <span class="muted">({statuses["not checked"]} not checked)</span>'
    return f'<tr><td>{label}</td><td class="num">{text}</td><td class="barcol">{bar}</td></tr>'


def bar_html(segments: list[tuple[int, str]], total: int, label: str) -> str:
    fills = "".join(f'<span class="{cls}" style="width:{100 * n / total:.1f}%"></span>'
                    for n, cls in segments if total and n)
    return f'<div class="bar" role="img" aria-label="{e(label)}" title="{e(label)}">{fills}</div>'


# -- learner x rung matrix --------------------------------------------------------------------------------------

def matrix_section(results: list[Result]) -> str:
    rungs = by_rung(results)
    learners = sorted({r.learner for r in results})
    cell = {(r.learner, r.rung): r for r in results}
    head = "".join(f'<th class="center" title="{e(members[0].rung_folder)}">{e(rung)}<br>'
                   f'<span class="muted small">{e(members[0].rung_folder.split("-", 1)[-1])}</span></th>'
                   for rung, members in rungs.items())
    rows = []
    for learner in learners:
        mine = [cell.get((learner, rung)) for rung in rungs]
        cells = "".join(matrix_cell(result) for result in mine)
        done = sum(1 for r in mine if r is not None and r.status == DONE)
        rows.append(f'<tr><th scope="row"><a href="#{learner_id(learner)}">{e(learner)}</a></th>{cells}'
                    f'<td class="num">{done} / {len(rungs)}</td></tr>')
    legend = " ".join(f'<span class="badge st-{css_name(s)}">{STATUS_SYMBOL[s]} {e(s)}</span>' for s in STATUS_ORDER)
    return (f'<section id="matrix"><h2>Learners × rungs</h2><p class="legend">{legend}</p>'
            f'<table id="matrix-table" class="matrix"><thead><tr><th>Learner</th>{head}<th class="num">Done</th>'
            f'</tr></thead><tbody>{"".join(rows)}</tbody></table></section>')


def matrix_cell(result: Result | None) -> str:
    if result is None:  # not even recorded as missing: there is no detail to link to
        return f'<td class="cell st-missing" title="no result">{STATUS_SYMBOL[MISSING]}</td>'
    return (f'<td class="cell st-{css_name(result.status)}"><a href="#{submission_id(result.learner, result.rung)}" '
            f'title="{e(result.learner)}, rung {e(result.rung)}: {e(result.status)}">'
            f'{STATUS_SYMBOL.get(result.status, "?")}</a></td>')


# -- failing and slowest ----------------------------------------------------------------------------------------

def refused_block(result: Result) -> str:
    """What the grading jail refused this notebook's code: a notebook that reached for another learner's files
    shows here even when its code caught the error and went on."""
    if not result.refused:
        return ""
    items = "".join(f"<li>{e(line)}</li>" for line in result.refused)
    return (f'<div class="reason refused"><strong>⊘ Reached outside its folder</strong> (refused while it was '
            f'graded):<ul>{items}</ul></div>')


def failing_section(results: list[Result]) -> str:
    failing = [r for r in results if r.status in (NOT_DONE, BROKEN) or r.refused]
    if not failing:
        return '<section id="failing"><h2>Failing</h2><p class="muted">No submission failed.</p></section>'
    cards = "".join(failing_card(r) for r in failing)
    return (f'<section id="failing"><h2>Failing</h2><p class="muted">{len(failing)} submissions not done, '
            f'broken, or reaching outside their folder, with the criteria they missed.</p>{cards}</section>')


def failing_card(result: Result) -> str:
    reason = (f'<p class="reason reason-{css_name(result.status)}">{e(result.reason)}</p>'
              if result.reason else "")
    items = "".join(criterion_item(c) for c in result.failed_criteria())
    listing = f'<ul class="crit">{items}</ul>' if items else ""
    return (f'<div class="card"><div class="card-head"><strong>{e(result.learner)}</strong> · '
            f'{e(result.rung_folder)} {status_badge(result.status)}'
            f'<a class="more" href="#{submission_id(result.learner, result.rung)}">details</a></div>'
            f'{reason}{refused_block(result)}{listing}</div>')


def slowest_section(results: list[Result]) -> str:
    checked = sorted((r for r in results if r.seconds > 0), key=lambda r: -r.seconds)[:SLOWEST_SHOWN]
    rows = "".join(
        f'<tr><td><a href="#{submission_id(r.learner, r.rung)}">{e(r.learner)}</a></td><td>{e(r.rung_folder)}</td>'
        f'<td>{status_badge(r.status)}</td><td class="num">{seconds_text(r.seconds)}</td>'
        f'<td class="num">{seconds_text(r.notebook_seconds)}</td><td>{"↻ reused" if r.reused else ""}</td></tr>'
        for r in checked)
    return ('<section id="slowest"><h2>Slowest</h2><p class="muted">The longest checks: a notebook near the time '
            'limit is the next one to break.</p><table class="plain"><thead><tr><th>Learner</th><th>Rung</th>'
            '<th>Status</th><th class="num">Check</th><th class="num">Notebook</th><th></th></tr></thead>'
            f'<tbody>{rows}</tbody></table></section>')


# -- written answers --------------------------------------------------------------------------------------------

def answers_section(results: list[Result], marks: dict, served: bool, folder) -> str:
    questions: dict[tuple[str, str], list[tuple[Result, dict]]] = defaultdict(list)
    for result in results:
        for criterion in result.written_answers():
            questions[(result.rung, criterion["name"])].append((result, criterion))
    if not questions:
        return '<section id="answers"><h2>Written answers</h2><p class="muted">No written answers.</p></section>'
    blocks = []
    for (rung, name), answers in sorted(questions.items()):
        marked = sum(answer_key(r, c) in marks for r, c in answers)
        articles = "".join(answer_article(r, c, marks.get(answer_key(r, c))) for r, c in answers)
        blocks.append(f'<h3 id="{question_id(rung, name)}">Rung {e(rung)} · {e(name)}</h3>'
                      f'<p class="muted">{len(answers)} answers, {marked} marked.</p>{articles}')
    if served:
        how = ("Save marks writes them into marks.json and grades.csv in the grading folder; the server's reply "
               "shows beside the button.")
    else:
        how = ("This page was opened from disk: Save marks downloads marks.json. Then put the marks into "
               f"grades.csv with <code>{e(merge_command(folder))}</code> (give the downloaded file's path).")
    bar = ('<div class="savebar"><button type="button" class="save-marks">Save marks</button>'
           '<span id="marked-count" class="muted"></span><span id="save-status" role="status"></span></div>')
    return (f'<section id="answers"><h2>Written answers</h2><p class="muted">Mark each answer 0, ½ or 1; a '
            f'comment is kept with the mark in grades.csv. {how}</p>{"".join(blocks)}{bar}</section>')


def answer_article(result: Result, criterion: dict, mark: dict | None) -> str:
    key = answer_key(result, criterion)
    field = answer_id(result, criterion)
    chosen = "" if mark is None else mark["mark"]
    radios = "".join(
        f'<label><input type="radio" name="mark-{field}" value="{value}"'
        f'{" checked" if chosen != "" and float(value) == float(chosen) else ""}> {label}</label>'
        for value, label in MARK_CHOICES)
    comment = "" if mark is None else mark.get("comment", "")
    words = len(criterion.get("answer", "").split())
    return (f'<article class="answer" id="{field}" data-key="{e(key)}">'
            f'<div class="answer-head"><a href="#{submission_id(result.learner, result.rung)}">'
            f'{e(result.learner)}</a><span class="muted small">{words} words</span></div>'
            f'<div class="answer-text">{e(criterion.get("answer", ""))}</div>'
            f'<div class="marking"><fieldset class="mark-control" data-key="{e(key)}"><legend>Mark</legend>'
            f'{radios}</fieldset><label class="comment">Comment<textarea name="comment-{field}" rows="2">'
            f'{e(comment)}</textarea></label></div></article>')


# -- per-submission details -------------------------------------------------------------------------------------

def details_section(results: list[Result]) -> str:
    learners: dict[str, list[Result]] = defaultdict(list)
    for result in results:
        learners[result.learner].append(result)
    blocks = [f'<h3 id="{learner_id(learner)}">{e(learner)}</h3>{"".join(submission_block(r) for r in mine)}'
              for learner, mine in sorted(learners.items())]
    return f'<section id="details"><h2>Submissions</h2>{"".join(blocks)}</section>'


def submission_block(result: Result) -> str:
    facts = [f"check {seconds_text(result.seconds)}"] if result.seconds > 0 else []
    if result.notebook_seconds is not None:
        facts.append(f"notebook {seconds_text(result.notebook_seconds)}")
    if result.reused:
        facts.append("↻ reused from an earlier run")
    if result.hidden:
        facts.append(f"hidden tests: {', '.join(result.hidden)}")
    meta = " · ".join(e(fact) for fact in facts)
    if result.log:
        meta += f' · <a class="log" href="{e(quote(result.log))}">log</a>'
    notebook = f'<div class="muted small">{e(result.notebook)}</div>' if result.notebook else ""
    reason = (f'<p class="reason reason-{css_name(result.status)}">{e(result.reason)}</p>'
              if result.reason else "")
    items = "".join(criterion_item(c, link=answer_id(result, c) if c["status"] == "review" else "")
                    for c in result.criteria)
    listing = f'<ul class="crit">{items}</ul>' if items else ""
    return (f'<div class="submission" id="{submission_id(result.learner, result.rung)}">'
            f'<div class="card-head"><strong>{e(result.rung_folder)}</strong> {status_badge(result.status)}'
            f'<span class="muted small">{meta}</span></div>{notebook}{reason}{refused_block(result)}{listing}</div>')


def criterion_item(criterion: dict, link: str = "") -> str:
    status = criterion["status"]
    detail = f' <span class="detail">— {e(criterion["detail"])}</span>' if criterion.get("detail") else ""
    hint = (f'<div class="hint">hint: {e(criterion["hint"])}</div>'
            if status == "fail" and criterion.get("hint") else "")
    answer = f' <a class="small" href="#{link}">answer</a>' if link else ""
    return (f'<li class="c-{css_name(status)}"><span class="sym" title="{e(status)}">'
            f'{CRITERION_SYMBOL.get(status, "?")}</span><span>{e(criterion["name"])}{detail}{answer}{hint}'
            '</span></li>')


# -- page template, style and script ----------------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header class="top"><div class="wrap"><h1>{title}</h1>
<nav class="toc">{toc}</nav></div></header>
<main class="wrap">
{body}
</main>
<script type="application/json" id="report-config">{config}</script>
<script>{script}</script>
</body>
</html>
"""

CSS = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; --accent: #0969da;
  --done: #1a7f37; --done-bg: #dafbe1; --fail: #cf222e; --fail-bg: #ffebe9; --broken: #9a6700;
  --broken-bg: #fff8c5; --missing: #59636e; --missing-bg: #eff2f5; --review: #8250df; --review-bg: #fbefff; }
* { box-sizing: border-box; }
html { scroll-padding-top: 96px; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.5;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
.wrap { max-width: 1120px; margin: 0 auto; padding: 0 24px; }
header.top { position: sticky; top: 0; z-index: 2; background: #fff; border-bottom: 1px solid var(--line);
  box-shadow: 0 1px 3px rgba(31, 35, 40, .06); }
header.top .wrap { display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 16px; padding-top: 12px;
  padding-bottom: 10px; }
h1 { font-size: 21px; margin: 0; }
nav.toc { display: flex; flex-wrap: wrap; gap: 6px; width: 100%; }
nav.toc a { font-size: 13px; padding: 2px 10px; border: 1px solid var(--line); border-radius: 999px;
  color: var(--ink); text-decoration: none; background: var(--soft); }
nav.toc a:hover { border-color: var(--accent); color: var(--accent); }
section { padding: 8px 0 20px; border-bottom: 1px solid var(--line); }
section:last-child { border-bottom: 0; }
h2 { font-size: 19px; margin: 20px 0 6px; }
h3 { font-size: 16px; margin: 20px 0 4px; }
a { color: var(--accent); }
code { font: 13px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--soft);
  padding: 1px 5px; border-radius: 4px; }
.muted { color: var(--muted); }
.small { font-size: 13px; }
.note { background: var(--soft); border-left: 3px solid var(--accent); padding: 6px 12px; margin: 8px 0; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(82px, 1fr)); gap: 8px; margin: 10px 0; }
.tile { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; background: #fff; }
.tile .n { font-size: 24px; font-weight: 600; font-variant-numeric: tabular-nums; }
.tile .label { font-size: 13px; color: var(--muted); }
.tile.st-done { border-top: 3px solid var(--done); } .tile.st-not-done { border-top: 3px solid var(--fail); }
.tile.st-broken { border-top: 3px solid var(--broken); } .tile.st-missing { border-top: 3px solid var(--missing); }
.tile.st-review { border-top: 3px solid var(--review); }
table { border-collapse: collapse; width: 100%; margin: 8px 0; font-size: 14px; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
thead th { background: var(--soft); font-weight: 600; font-size: 13px; color: var(--muted);
  border-bottom: 1px solid var(--line); }
tbody tr:hover { background: #fafbfc; }
td.num, th.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.center { text-align: center; }
table.criteria td:first-child { width: 62%; }
.barcol { width: 22%; min-width: 120px; }
.bar { display: flex; height: 12px; margin-top: 5px; border-radius: 6px; background: var(--missing-bg);
  overflow: hidden; border: 1px solid var(--line); }
.bar span { display: block; height: 100%; }
.fill-pass { background: var(--done); } .fill-low { background: var(--fail); }
.fill-marked { background: var(--review); } .fill-written { background: #d8b9ff; }
table.matrix { width: auto; min-width: 420px; }
table.matrix th[scope=row] { font-weight: 500; }
td.cell { text-align: center; font-size: 17px; font-weight: 700; padding: 3px 14px; }
td.cell a { display: block; text-decoration: none; color: inherit; border-radius: 5px; padding: 2px 0; }
td.cell a:hover { outline: 2px solid currentColor; }
.st-done { color: var(--done); } td.cell.st-done a { background: var(--done-bg); }
.st-not-done { color: var(--fail); } td.cell.st-not-done a { background: var(--fail-bg); }
.st-broken { color: var(--broken); } td.cell.st-broken a { background: var(--broken-bg); }
.st-missing { color: var(--missing); } td.cell.st-missing a { background: var(--missing-bg); }
.badge { display: inline-block; font-size: 12px; font-weight: 600; padding: 0 8px; border-radius: 999px;
  border: 1px solid currentColor; white-space: nowrap; line-height: 20px; }
.badge.st-done { background: var(--done-bg); } .badge.st-not-done { background: var(--fail-bg); }
.badge.st-broken { background: var(--broken-bg); } .badge.st-missing { background: var(--missing-bg); }
.legend { display: flex; gap: 8px; flex-wrap: wrap; margin: 6px 0; }
.card, .submission { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; margin: 10px 0; }
.submission:target, .answer:target { outline: 2px solid var(--accent); outline-offset: 2px; }
.card-head { display: flex; flex-wrap: wrap; align-items: center; gap: 8px; }
.card-head .more { margin-left: auto; font-size: 13px; }
.reason { margin: 8px 0 0; padding: 6px 10px; background: var(--broken-bg); border-radius: 6px; }
.reason-missing { background: var(--missing-bg); }
.refused ul { margin: 4px 0 0; padding-left: 20px; font-family: ui-monospace, monospace; font-size: 12px; }
ul.crit { list-style: none; margin: 8px 0 0; padding: 0; }
ul.crit li { display: flex; gap: 8px; padding: 3px 0; border-top: 1px dashed #e6eaef; }
ul.crit li:first-child { border-top: 0; }
ul.crit .sym { width: 18px; flex: none; text-align: center; font-weight: 700; }
.c-pass .sym { color: var(--done); } .c-fail .sym { color: var(--fail); }
.c-review .sym { color: var(--review); } .c-not-checked .sym, .c-not-checked { color: var(--muted); }
.detail { color: var(--muted); }
.hint { font-size: 13px; margin-top: 2px; padding: 3px 8px; background: var(--fail-bg); border-radius: 5px; }
.answer { border: 1px solid var(--line); border-left: 4px solid var(--review); border-radius: 8px;
  padding: 10px 14px; margin: 10px 0; }
.answer-head { display: flex; gap: 10px; align-items: baseline; font-weight: 600; }
.answer-text { white-space: pre-wrap; overflow-wrap: anywhere; margin: 6px 0 10px; padding: 8px 12px;
  background: var(--soft); border-radius: 6px; font-size: 14px; }
.marking { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
fieldset.mark-control { border: 1px solid var(--line); border-radius: 6px; padding: 2px 10px 6px; margin: 0;
  display: flex; gap: 14px; }
fieldset.mark-control legend { font-size: 12px; color: var(--muted); padding: 0 4px; }
fieldset.mark-control label { cursor: pointer; font-weight: 600; }
label.comment { flex: 1; min-width: 260px; display: flex; flex-direction: column; font-size: 12px;
  color: var(--muted); }
label.comment textarea { font: inherit; font-size: 14px; color: var(--ink); padding: 5px 8px;
  border: 1px solid var(--line); border-radius: 6px; resize: vertical; }
.savebar { position: sticky; bottom: 0; display: flex; flex-wrap: wrap; gap: 12px; align-items: center;
  padding: 10px 14px; margin-top: 14px; background: #fff; border: 1px solid var(--line); border-radius: 8px;
  box-shadow: 0 -2px 8px rgba(31, 35, 40, .08); }
.savebar button { font: inherit; font-weight: 600; color: #fff; background: var(--done); border: 0;
  border-radius: 6px; padding: 6px 16px; cursor: pointer; }
.savebar button:hover { filter: brightness(1.1); }
#save-status.ok { color: var(--done); } #save-status.error { color: var(--fail); font-weight: 600; }
"""

# Reads only the JSON config and the form; writes only textContent (never HTML), so nothing a learner wrote can
# become markup or code here.
SCRIPT = """
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("report-config").textContent);
  const answers = Array.from(document.querySelectorAll("article.answer"));
  const counter = document.getElementById("marked-count");
  const status = document.getElementById("save-status");
  let unsaved = false;

  function collectMarks() {
    const marks = {};
    let commentsWithoutMark = 0;
    for (const answer of answers) {
      const chosen = answer.querySelector("input[type=radio]:checked");
      const comment = answer.querySelector("textarea").value;
      if (chosen) marks[answer.dataset.key] = {mark: Number(chosen.value), comment: comment};
      else if (comment.trim()) commentsWithoutMark += 1;
    }
    return {marks: marks, commentsWithoutMark: commentsWithoutMark};
  }

  function showCount() {
    if (counter) counter.textContent = Object.keys(collectMarks().marks).length + " of " + answers.length + " marked";
  }

  function say(text, ok) {
    status.textContent = text;
    status.className = ok ? "ok" : "error";
  }

  // `left` names the comments that were not sent, so the instructor sees them whatever the outcome.
  async function saveToServer(marks, left) {
    try {
      const response = await fetch(config.saveUrl, {method: "POST", body: JSON.stringify(marks),
                                                    headers: {"Content-Type": "application/json"}});
      const reply = await response.json().catch(function () { return {error: response.statusText}; });
      if (!response.ok) return say("Not saved: " + (reply.error || response.status) + left, false);
      unsaved = false;
      say("Saved " + reply.saved + " marks; " + reply.marked + " of " + reply.answers + " answers marked. " +
          "grades.csv is up to date." + left, !left);
    } catch (error) {
      say("Not saved: the server did not answer (is review serve still running?)" + left, false);
    }
  }

  function download(marks, left) {
    const blob = new Blob([JSON.stringify(marks, null, 1)], {type: "application/json"});
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "marks.json";
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(function () { URL.revokeObjectURL(link.href); }, 2000);
    unsaved = false;
    say("marks.json downloaded. To put the marks into grades.csv run: " + config.mergeCommand + left, !left);
  }

  function save() {
    const collected = collectMarks();
    if (!Object.keys(collected.marks).length) return say("Nothing to save: choose a mark (0, ½ or 1) first.", false);
    const left = collected.commentsWithoutMark ?
      " " + collected.commentsWithoutMark + " comments without a mark were left out: give them a mark." : "";
    if (config.served) saveToServer(collected.marks, left); else download(collected.marks, left);
  }

  document.querySelectorAll("button.save-marks").forEach(function (button) {
    button.addEventListener("click", save);
  });
  const section = document.getElementById("answers");
  if (section) {
    section.addEventListener("change", function () { unsaved = true; showCount(); });
    section.addEventListener("input", function () { unsaved = true; });
  }
  window.addEventListener("beforeunload", function (event) {
    if (unsaved) { event.preventDefault(); event.returnValue = ""; }
  });
  showCount();
})();
"""
