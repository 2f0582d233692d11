"""An in-process stand-in for the GitHub REST v3 and GitLab v4 endpoints Driftboard calls.

It answers with the shapes of the providers' REST documentation ("Create a commit status",
"Create / Update an issue comment", GitLab "Notes" and "Commits → Set the pipeline status of a
commit"), sends GitHub's rate-limit headers, refuses a wrong token, reproduces GitLab's 400 on a
status that does not change, and records every call. `answer_next` scripts failures such as rate limits.
"""

import itertools
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

GITHUB_TOKEN = "ghp_test0123456789abcdefghijklmnopqrstuv"
GITLAB_TOKEN = "glpat-test0123456789abcd"
GITHUB_STATES = {"error", "failure", "pending", "success"}
GITLAB_EVENTS = {
    "pending": "enqueue",
    "running": "run",
    "success": "succeed",
    "failed": "drop",
    "canceled": "cancel",
    "skipped": "skip",
}
BOT = {
    "login": "driftboard[bot]",
    "id": 41898282,
    "node_id": "BOT_kgDOAn9RKg",
    "type": "Bot",
    "site_admin": False,
    "avatar_url": "https://avatars.githubusercontent.com/in/15368?v=4",
    "html_url": "https://github.com/apps/driftboard",
}
GITLAB_BOT = {
    "id": 77,
    "username": "driftboard-bot",
    "name": "Driftboard",
    "state": "active",
    "avatar_url": None,
    "web_url": "https://gitlab.acme.example/driftboard-bot",
}
# Someone else on the pull request, who may paste Driftboard's marker into a comment of their own.
GITHUB_OTHER_USER = {
    "login": "mallory",
    "id": 9_001,
    "node_id": "U_kgDOAAAjKQ",
    "type": "User",
    "site_admin": False,
    "avatar_url": "https://avatars.githubusercontent.com/u/9001?v=4",
    "html_url": "https://github.com/mallory",
}
GITLAB_OTHER_USER = {
    "id": 78,
    "username": "mallory",
    "name": "Mallory",
    "state": "active",
    "avatar_url": None,
    "web_url": "https://gitlab.acme.example/mallory",
}
NOW = "2025-06-04T12:00:00Z"


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: object
    status: int = 0
    at: float = field(default_factory=time.monotonic)


@dataclass
class Answer:
    status: int
    body: object
    headers: dict[str, str] = field(default_factory=dict)


class FakeForge:
    def __init__(self):
        self.calls: list[Call] = []
        self.github_comments: dict[tuple[str, int], list[dict]] = {}
        self.github_statuses: list[dict] = []
        self.gitlab_notes: dict[tuple[str, int], list[dict]] = {}
        self.gitlab_statuses: list[dict] = []
        self.scripted: list[Answer] = []
        self.rate_remaining = 5000
        self.ids = itertools.count(2_147_483_701)
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def start(self) -> "FakeForge":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer_next(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        """The next request, whatever it is, gets this answer instead of the real one."""
        self.scripted.append(Answer(status, body, headers or {}))

    def calls_to(self, method: str, pattern: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and re.search(pattern, c.path)]

    # --- routing ---

    def handle(self, call: Call) -> tuple[Answer, dict[str, str]]:
        with self.lock:
            answer = self._answer(call)
            call.status = answer.status
            self.calls.append(call)
            return answer, {**self.response_headers(call), **answer.headers}

    def _answer(self, call: Call) -> Answer:
        if self.scripted:
            return self.scripted.pop(0)
        if call.path.startswith("/api/v4/"):
            return self._gitlab(call)
        return self._github(call)

    def _github(self, call: Call) -> Answer:
        if call.headers.get("authorization") != f"Bearer {GITHUB_TOKEN}":
            return Answer(
                401,
                {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"},
            )
        for method, pattern, route in (
            ("POST", r"^/repos/(?P<repo>[^/]+/[^/]+)/statuses/(?P<sha>[0-9a-f]{40})$", self._github_status),
            ("GET", r"^/repos/(?P<repo>[^/]+/[^/]+)/issues/(?P<number>\d+)/comments$", self._github_list),
            ("POST", r"^/repos/(?P<repo>[^/]+/[^/]+)/issues/(?P<number>\d+)/comments$", self._github_create),
            ("GET", r"^/repos/(?P<repo>[^/]+/[^/]+)/issues/comments/(?P<id>\d+)$", self._github_get),
            ("PATCH", r"^/repos/(?P<repo>[^/]+/[^/]+)/issues/comments/(?P<id>\d+)$", self._github_update),
            ("GET", r"^/user$", self._github_user),
        ):
            match = re.match(pattern, call.path)
            if match and call.method == method:
                return route(call, **match.groupdict())
        return Answer(404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})

    def _github_status(self, call: Call, repo: str, sha: str) -> Answer:
        body = call.body or {}
        if body.get("state") not in GITHUB_STATES or len(body.get("description") or "") > 140:
            return Answer(
                422,
                {
                    "message": "Validation Failed",
                    "errors": [{"resource": "Status", "code": "custom"}],
                    "documentation_url": "https://docs.github.com/rest/commits/statuses",
                },
            )
        status_id = next(self.ids)
        status = {
            "url": f"{self.url}/repos/{repo}/statuses/{sha}",
            "avatar_url": BOT["avatar_url"],
            "id": status_id,
            "node_id": f"SC_kwDO{status_id}",
            "state": body["state"],
            "description": body.get("description"),
            "target_url": body.get("target_url"),
            "context": body.get("context", "default"),
            "created_at": NOW,
            "updated_at": NOW,
            "creator": BOT,
            "sha": sha,
            "repository": repo,
        }
        self.github_statuses.append(status)
        return Answer(201, {k: v for k, v in status.items() if k not in ("sha", "repository")})

    def _github_user(self, call: Call) -> Answer:
        """GET /user: the account the token belongs to (a user token; an App's token gets 403 here)."""
        return Answer(200, {**BOT, "name": "Driftboard", "created_at": NOW})

    def github_comment_as(self, user: dict, repo: str, number: int, body: str) -> dict:
        """A comment someone else wrote on the pull request."""
        comment = self._github_comment(repo, number, next(self.ids), body, user)
        self.github_comments.setdefault((repo, number), []).append(comment)
        return comment

    def _github_comment(self, repo: str, number: int, comment_id: int, body: str, user: dict = BOT) -> dict:
        return {
            "id": comment_id,
            "node_id": f"IC_kwDO{comment_id}",
            "url": f"{self.url}/repos/{repo}/issues/comments/{comment_id}",
            "html_url": f"https://github.com/{repo}/pull/{number}#issuecomment-{comment_id}",
            "body": body,
            "user": user,
            "created_at": NOW,
            "updated_at": NOW,
            "issue_url": f"{self.url}/repos/{repo}/issues/{number}",
            "author_association": "NONE",
            "performed_via_github_app": None,
            "reactions": {"url": f"{self.url}/repos/{repo}/issues/comments/{comment_id}/reactions", "total_count": 0},
        }

    def _page(self, call: Call, items: list[dict]) -> list[dict]:
        per_page = int(call.query.get("per_page", ["30"])[0])
        page = int(call.query.get("page", ["1"])[0])
        return items[(page - 1) * per_page : page * per_page]

    def _github_list(self, call: Call, repo: str, number: str) -> Answer:
        return Answer(200, self._page(call, self.github_comments.get((repo, int(number)), [])))

    def _github_create(self, call: Call, repo: str, number: str) -> Answer:
        if not (call.body or {}).get("body"):
            return Answer(422, {"message": "Validation Failed", "documentation_url": "https://docs.github.com/rest"})
        comment = self._github_comment(repo, int(number), next(self.ids), call.body["body"])
        self.github_comments.setdefault((repo, int(number)), []).append(comment)
        return Answer(201, comment)

    def _find_github_comment(self, repo: str, comment_id: str) -> dict | None:
        return next(
            (
                c
                for (r, _), comments in self.github_comments.items()
                if r == repo
                for c in comments
                if c["id"] == int(comment_id)
            ),
            None,
        )

    def _github_get(self, call: Call, repo: str, id: str) -> Answer:
        comment = self._find_github_comment(repo, id)
        return Answer(200, comment) if comment else Answer(404, {"message": "Not Found"})

    def _github_update(self, call: Call, repo: str, id: str) -> Answer:
        comment = self._find_github_comment(repo, id)
        if comment is None:
            return Answer(404, {"message": "Not Found"})
        comment.update(body=call.body["body"], updated_at="2025-06-04T12:30:00Z")
        return Answer(200, comment)

    def delete_github_comment(self, repo: str, comment_id: str) -> None:
        for comments in self.github_comments.values():
            comments[:] = [c for c in comments if c["id"] != int(comment_id)]

    def _gitlab(self, call: Call) -> Answer:
        if call.headers.get("private-token") != GITLAB_TOKEN:
            return Answer(401, {"message": "401 Unauthorized"})
        base = r"^/api/v4/projects/(?P<project>[^/]+)"
        for method, pattern, route in (
            ("POST", base + r"/statuses/(?P<sha>[0-9a-f]{40})$", self._gitlab_status),
            ("GET", base + r"/merge_requests/(?P<iid>\d+)/notes$", self._gitlab_list),
            ("POST", base + r"/merge_requests/(?P<iid>\d+)/notes$", self._gitlab_create),
            ("GET", base + r"/merge_requests/(?P<iid>\d+)/notes/(?P<id>\d+)$", self._gitlab_get),
            ("PUT", base + r"/merge_requests/(?P<iid>\d+)/notes/(?P<id>\d+)$", self._gitlab_update),
            ("GET", r"^/api/v4/user$", self._gitlab_user),
        ):
            match = re.match(pattern, call.path)
            if match and call.method == method:
                return route(call, **match.groupdict())
        return Answer(404, {"message": "404 Not found"})

    def _gitlab_status(self, call: Call, project: str, sha: str) -> Answer:
        body = call.body or {}
        state, name = body.get("state"), body.get("name") or body.get("context") or "default"
        if state not in GITLAB_EVENTS:
            return Answer(400, {"error": "state does not have a valid value"})
        current = next(
            (
                s["status"]
                for s in reversed(self.gitlab_statuses)
                if s["project"] == project and s["sha"] == sha and s["name"] == name
            ),
            None,
        )
        if current == state:
            event = GITLAB_EVENTS[state]
            return Answer(
                400,
                {
                    "message": f"Cannot transition status via :{event} from :{current} "
                    f'(Reason(s): Status cannot transition via "{event}")'
                },
            )
        status = {
            "id": next(self.ids),
            "sha": sha,
            "ref": "support-tickets",
            "status": state,
            "name": name,
            "target_url": body.get("target_url"),
            "description": body.get("description"),
            "created_at": NOW,
            "started_at": None,
            "finished_at": None if state == "pending" else NOW,
            "allow_failure": False,
            "coverage": None,
            "pipeline_id": 412871,
            "author": GITLAB_BOT,
            "project": project,
        }
        self.gitlab_statuses.append(status)
        return Answer(201, {k: v for k, v in status.items() if k != "project"})

    def _gitlab_user(self, call: Call) -> Answer:
        return Answer(200, {**GITLAB_BOT, "created_at": NOW, "bot": True})

    def gitlab_note_as(self, author: dict, project: str, iid: int, body: str) -> dict:
        """A note someone else wrote on the merge request."""
        note = self._gitlab_note(project, iid, next(self.ids), body, author)
        self.gitlab_notes.setdefault((project, iid), []).append(note)
        return note

    def _gitlab_note(self, project: str, iid: int, note_id: int, body: str, author: dict = GITLAB_BOT) -> dict:
        return {
            "id": note_id,
            "type": None,
            "body": body,
            "author": author,
            "created_at": NOW,
            "updated_at": NOW,
            "system": False,
            "noteable_id": 99214,
            "noteable_type": "MergeRequest",
            "project_id": 1843,
            "resolvable": False,
            "confidential": False,
            "internal": False,
            "noteable_iid": iid,
            "commands_changes": {},
        }

    def _gitlab_list(self, call: Call, project: str, iid: str) -> Answer:
        return Answer(200, self._page(call, self.gitlab_notes.get((project, int(iid)), [])))

    def _gitlab_create(self, call: Call, project: str, iid: str) -> Answer:
        note = self._gitlab_note(project, int(iid), next(self.ids), (call.body or {}).get("body", ""))
        self.gitlab_notes.setdefault((project, int(iid)), []).append(note)
        return Answer(201, note)

    def _find_note(self, project: str, iid: str, note_id: str) -> dict | None:
        return next((n for n in self.gitlab_notes.get((project, int(iid)), []) if n["id"] == int(note_id)), None)

    def _gitlab_get(self, call: Call, project: str, iid: str, id: str) -> Answer:
        note = self._find_note(project, iid, id)
        return Answer(200, note) if note else Answer(404, {"message": "404 Not found"})

    def _gitlab_update(self, call: Call, project: str, iid: str, id: str) -> Answer:
        note = self._find_note(project, iid, id)
        if note is None:
            return Answer(404, {"message": "404 Not found"})
        note.update(body=call.body["body"], updated_at="2025-06-04T12:30:00Z")
        return Answer(200, note)

    def response_headers(self, call: Call) -> dict[str, str]:
        if call.path.startswith("/api/v4/"):
            return {"Content-Type": "application/json", "RateLimit-Limit": "2000", "RateLimit-Remaining": "1999"}
        self.rate_remaining -= 1
        return {
            "Content-Type": "application/json; charset=utf-8",
            "X-GitHub-Media-Type": "github.v3; format=json",
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": str(self.rate_remaining),
            "X-RateLimit-Reset": str(int(time.time()) + 3600),
            "X-RateLimit-Used": str(5000 - self.rate_remaining),
            "X-RateLimit-Resource": "core",
            "X-GitHub-Request-Id": "C0DE:1F2E:3D4C:5B6A:7980",
        }


def _handler(forge: FakeForge) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            call = Call(
                self.command,
                parts.path,
                parse_qs(parts.query),
                {k.lower(): v for k, v in self.headers.items()},
                json.loads(raw) if raw else None,
            )
            answer, headers = forge.handle(call)
            payload = json.dumps(answer.body).encode()
            self.send_response(answer.status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PATCH = do_PUT = _serve  # noqa: N815 - the http.server API

        def log_message(self, *args) -> None:
            pass

    return Handler


@contextmanager
def running_forge(settings) -> Iterator[FakeForge]:
    """A started FakeForge with Driftboard's settings pointing at it for both providers."""
    forge = FakeForge().start()
    settings.DRIFTBOARD_GITHUB_API_URL = forge.url
    settings.DRIFTBOARD_GITHUB_TOKEN = GITHUB_TOKEN
    settings.DRIFTBOARD_GITLAB_URL = forge.url
    settings.DRIFTBOARD_GITLAB_TOKEN = GITLAB_TOKEN
    settings.DRIFTBOARD_PUBLIC_URL = "https://driftboard.acme.example"
    try:
        yield forge
    finally:
        forge.stop()


def run_tasks_eagerly(settings) -> None:
    """Celery tasks run in the calling thread, exceptions propagating, as a worker would run them.

    Through Django settings: the app reads its configuration from them under the CELERY_ namespace.
    """
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.CELERY_TASK_EAGER_PROPAGATES = True
