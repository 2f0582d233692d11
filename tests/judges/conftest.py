"""A local OpenAI-compatible judge: an HTTP server speaking the real chat-completions JSON.

Each test gives it a `replier(body, call_number) -> (status, headers, payload)`; a payload that is
a dict is sent as JSON, bytes as they are (malformed bodies). Every request is recorded with its
headers. Helpers build judges that read the answers out of the pairwise prompt.
"""

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from evals.label_selectors import JudgeConfiguration
from evals.scoring.judges import TEMPLATE_VERSION, EndpointSettings, OpenAIJudge
from evals.scoring.loading import CAUSAL_LM, load_model
from evals.services.labels import judge_trust

_ANSWER = re.compile(r"\[The Start of Assistant (A|B)'s Answer\]\n(.*?)\n\[The End of Assistant \1's Answer\]", re.S)


def chat_reply(content: str, *, prompt_tokens: int = 100, completion_tokens: int = 20) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "judge-test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def answers_in(body: dict) -> dict[str, str]:
    """The `A` and `B` answers of a pairwise prompt."""
    return dict(_ANSWER.findall(body["messages"][-1]["content"]))


def trusted(family, *, mode: str, identity: str = "", template: int | None = TEMPLATE_VERSION) -> None:
    """Staff trust the family's judge configuration: its verdicts may go past amber without labels."""
    configuration = JudgeConfiguration(identity=identity, template=template, mode=mode, rubric=None)
    judge_trust(family=family, configuration=configuration, actor=None, reason="These tests are about the verdict.")


def ok(content: str):
    return 200, {}, chat_reply(content)


@dataclass
class FakeJudgeServer:
    url: str
    requests: list[dict] = field(default_factory=list)
    headers: list[dict] = field(default_factory=list)
    replier: object = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def calls(self) -> int:
        return len(self.requests)

    def judge(self, **options) -> OpenAIJudge:
        options.setdefault("concurrency", 4)
        api_key = options.pop("api_key", None)
        return OpenAIJudge(EndpointSettings(url=self.url, model="judge-test", **options), api_key=api_key)


@pytest.fixture
def judge_server():
    server_state = FakeJudgeServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with server_state.lock:
                server_state.requests.append(body)
                server_state.headers.append(dict(self.headers))
                number = len(server_state.requests)
            if self.path != "/v1/chat/completions":
                status, headers, payload = 404, {}, {"error": {"message": "not found"}}
            else:
                status, headers, payload = server_state.replier(body, number)
            raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield server_state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def demo_lm(demo_build):
    return load_model(demo_build.base, kind=CAUSAL_LM, device="cpu")
