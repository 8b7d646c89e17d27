"""Marking the written answers: a small local server for the report, or a merge of marks saved from it.

    python -m shared.grading.review serve GRADING_FOLDER [--port 8765]
    python -m shared.grading.review merge GRADING_FOLDER marks.json

``serve`` sends the report (rendered afresh, with the marks kept so far) and saves each Save marks into
marks.json and grades.csv. ``merge`` does the same for the marks.json that the report downloads when it was opened
straight from disk.

The server listens on 127.0.0.1 only. It answers only requests that name it as their host and come from its own
page, so another web page open in the same browser cannot save marks or read the class's results through it.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from shared.grading import records, report

MAX_BODY_BYTES = 1_000_000
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}
MARKS_SHAPE = 'a JSON object {answer key: {"mark": 0, 0.5 or 1, "comment": "..."}}'


def parse_marks(data) -> dict[str, dict]:
    """The marks an instructor sent, checked for shape; whether each key and mark is one this run knows is
    records.save_marks's to say."""
    if not isinstance(data, dict):
        raise ValueError(f"expected {MARKS_SHAPE}")
    for key, entry in data.items():
        if not isinstance(entry, dict) or "mark" not in entry:
            raise ValueError(f"{key!r}: give a mark (0, 0.5 or 1) for each answer: {MARKS_SHAPE}")
        mark = entry["mark"]
        if isinstance(mark, bool) or not isinstance(mark, (int, float, str)):
            raise ValueError(f"{key!r}: the mark {mark!r} is not a number; a mark is 0, 0.5 or 1")
        try:
            float(mark)
        except ValueError:
            raise ValueError(f"{key!r}: the mark {mark!r} is not a number; a mark is 0, 0.5 or 1") from None
        if not isinstance(entry.get("comment", ""), str):
            raise ValueError(f"{key!r}: a comment is text")
    return data


def save(folder: Path, marks: dict[str, dict]) -> dict:
    """Save marks against the run's results (marks.json, grades.csv) and write report.html again, so that the
    file on disk shows them too. Returns the reply the page shows."""
    results = records.read_results(folder)
    kept = records.save_marks(folder, marks, results)
    report.write_report(folder, results)
    keys = [records.answer_key(r, c) for r in results for c in r.written_answers()]
    # marks.json also keeps the marks of answers since rewritten: count only this run's answers
    return {"saved": len(marks), "marked": sum(key in kept for key in keys), "answers": len(keys)}


def merge_marks_file(folder: Path, path: Path) -> int:
    """Save the marks of a marks.json downloaded from the report (into marks.json, grades.csv and report.html).
    Returns how many marks the file held."""
    folder, path = Path(folder), Path(path)
    require_results(folder)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not JSON ({error}); use the marks.json the report's Save marks downloaded")
    marks = parse_marks(data)
    save(folder, marks)
    return len(marks)


# -- the server -------------------------------------------------------------------------------------------------

class ReviewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, folder: Path, address: tuple[str, int]):
        self.folder = Path(folder).resolve()
        self.lock = threading.Lock()   # two saves at once would each rewrite marks.json from what it read
        self.host_names = LOOPBACK_NAMES | {address[0]}
        super().__init__(address, ReviewHandler)

    @property
    def url(self) -> str:
        host = self.server_address[0]
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.server_port}/"


class ReviewHandler(BaseHTTPRequestHandler):
    server: ReviewServer
    server_version = "grading-review"

    def log_message(self, format, *args):
        """Quiet: the instructor watches the page, where every save's outcome shows."""

    def do_GET(self):
        if not self.trusted():
            return
        path = unquote(urlsplit(self.path).path)
        if path in ("/", "/report.html"):
            results = records.read_results(self.server.folder)
            page = report.render(results, records.read_marks(self.server.folder), served=True,
                                 folder=self.server.folder)
            return self.reply(200, page.encode("utf-8"), "text/html; charset=utf-8")
        file = file_inside(self.server.folder, path)
        if file is None:
            return self.reply_json(404, {"error": f"no file {path} in the grading folder"})
        # A log holds what a learner's notebook printed: sent as plain text in a sandbox, so that even an HTML
        # page among them cannot run script beside the marks.
        self.reply(200, file.read_bytes(), "text/plain; charset=utf-8", {"Content-Security-Policy": "sandbox"})

    def do_POST(self):
        if not self.trusted():
            return
        if urlsplit(self.path).path != "/marks":
            return self.reply_json(404, {"error": "POST marks to /marks"})
        try:
            marks = parse_marks(self.read_json())
            with self.server.lock:
                answer = save(self.server.folder, marks)
        except ValueError as error:
            return self.reply_json(400, {"error": str(error)})
        self.reply_json(200, answer)

    def read_json(self):
        if not self.headers.get("Content-Type", "").startswith("application/json"):
            raise ValueError("send the marks as JSON (Content-Type: application/json)")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise ValueError("the request has no Content-Length") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            raise ValueError(f"the marks are larger than {MAX_BODY_BYTES // 1_000_000} MB")
        try:
            return json.loads(self.rfile.read(length).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"the body is not JSON: {error}") from None

    def trusted(self) -> bool:
        """Only requests to this server by name (not a DNS name rebound to 127.0.0.1) and, when a browser says
        where it comes from, only from this server's own page."""
        host = self.headers.get("Host", "")
        origin = self.headers.get("Origin")
        name = urlsplit(f"//{host}").hostname or ""
        if name not in self.server.host_names or (origin is not None and origin != f"http://{host}"):
            self.reply_json(403, {"error": "only the report served here may use this server"})
            return False
        return True

    def reply_json(self, status: int, data: dict) -> None:
        self.reply(status, json.dumps(data, ensure_ascii=False).encode("utf-8"), "application/json")

    def reply(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def file_inside(folder: Path, url_path: str) -> Path | None:
    """The file a URL path names, if it is a file inside the folder (after .. and symlinks are resolved)."""
    try:
        candidate = (folder / url_path.lstrip("/")).resolve()
    except (OSError, ValueError):   # a NUL byte, a loop of links
        return None
    return candidate if candidate.is_relative_to(folder) and candidate.is_file() else None


def make_server(folder: Path, port: int = 8765, host: str = "127.0.0.1") -> ReviewServer:
    """A server for the folder's report, not yet serving; port 0 takes a free port (``server.server_port``)."""
    require_results(Path(folder))
    return ReviewServer(folder, (host, port))


def require_results(folder: Path) -> None:
    if not (folder / "results.json").exists():
        raise FileNotFoundError(f"no results.json in {folder}: grade the class first (make grade SUBMISSIONS=...)")


def serve(folder: Path, port: int = 8765, host: str = "127.0.0.1") -> None:
    server = make_server(folder, port, host)
    print(f"Marking {server.folder}: open {server.url}  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped; the marks saved are in marks.json and grades.csv")
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.grading.review", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serving = commands.add_parser("serve", help="serve the report and save marks from it")
    serving.add_argument("folder", type=Path, help="the grading folder (results.json, grades.csv)")
    serving.add_argument("--port", type=int, default=8765)
    merging = commands.add_parser("merge", help="save the marks of a marks.json the report downloaded")
    merging.add_argument("folder", type=Path)
    merging.add_argument("marks", type=Path, help="the downloaded marks.json")
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            serve(args.folder, args.port)
            return 0
        saved = merge_marks_file(args.folder, args.marks)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"saved {saved} marks into {args.folder / 'marks.json'}; grades.csv and report.html written again")
    return 0


if __name__ == "__main__":
    sys.exit(main())
