import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from evals.services import dataset_import
from evals.services.pipeline import family_create


class AlertReceiver(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def alert_receiver():
    AlertReceiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), AlertReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/alerts", AlertReceiver.received
    server.shutdown()


@pytest.fixture
def demo_imports(demo_build, import_root) -> dict[str, Path]:
    """The demo model folders copied under the import root, so they can be registered by path."""
    paths = {}
    for name in ("base", "improved", "drifted"):
        target = import_root / f"demo-{name}"
        if not target.exists():
            shutil.copytree(getattr(demo_build, name), target)
        paths[name] = target
    return paths


@pytest.fixture
def demo_family(transactional_db, demo_build):
    dataset_import(name="demo-golden", filename="golden.jsonl", source=demo_build.golden)
    return family_create(slug="demo", kind="causal-lm", base_path=str(demo_build.base), datasets=["demo-golden"])
