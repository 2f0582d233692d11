"""The artifact page previews the pull-request comment: the very markdown the forge receives, as source and
rendered, with whatever a model wrote kept inert; and it says whether and where it was posted."""

import html
import re

import pytest

from registry.models import Artifact
from registry.tasks import publish_artifact
from tests.factories import ArtifactFactory, PullRequestFactory, VerdictFactory
from tests.publishing.test_comment_answers import HOSTILE_ANSWER, answered_candidate

SOURCE = re.compile(r'<pre[^>]*id="pr-comment-source"[^>]*>(?P<text>.*?)</pre>', re.DOTALL)
RENDERED = re.compile(r'<div[^>]*id="pr-comment-rendered"[^>]*>(?P<html>.*?)</div>', re.DOTALL)


def preview(content: str) -> tuple[str, str]:
    """(the markdown source as the page shows it, unescaped; the rendered HTML as served)."""
    return html.unescape(SOURCE.search(content)["text"]), RENDERED.search(content)["html"]


@pytest.fixture
def judged(db):
    pull_request = PullRequestFactory(repository="acme/weights", number=7)
    baseline = ArtifactFactory(stage=Artifact.Stage.PRODUCTION, status=Artifact.Status.PROMOTED)
    artifact = ArtifactFactory(
        family=baseline.family, pull_request=pull_request, drift_flag="red", status=Artifact.Status.HALTED
    )
    VerdictFactory(
        artifact=artifact,
        baseline=baseline,
        outcome="red",
        delta=-0.08,
        ci_low=-0.09,
        ci_high=-0.07,
        reasons=["bits per byte 8.0 % worse than the baseline"],
    )
    return artifact


def test_it_previews_the_very_comment_the_forge_received(judged, forge, reader_client):
    publish_artifact.apply(args=[judged.pk], throw=True)
    [comment] = forge.github_comments[("acme/weights", 7)]

    content = reader_client.get(judged.get_absolute_url()).content.decode()
    source, rendered = preview(content)

    assert source == comment["body"]
    assert 'Posted to <a href="https://github.com/acme/weights/pull/7"' in content
    assert "<h3>" in rendered and "<table>" in rendered and "is <strong>red</strong>" in rendered


def test_it_previews_the_comment_when_no_forge_is_configured(judged, settings, reader_client):
    settings.DRIFTBOARD_GITHUB_TOKEN = settings.DRIFTBOARD_GITLAB_TOKEN = ""

    content = reader_client.get(judged.get_absolute_url()).content.decode()
    source, rendered = preview(content)

    assert "Not posted: no forge is configured" in content
    assert source.startswith(f"<!-- driftboard:{judged.family.slug} -->\n\n### 🔴 Driftboard:")
    assert f"]({settings.DRIFTBOARD_PUBLIC_URL or 'http://127.0.0.1:8000'}/artifacts/{judged.pk}/)" in source
    assert "<!--" not in rendered


def test_it_says_the_comment_waits_for_the_verdict(db, forge, reader_client):
    artifact = ArtifactFactory(pull_request=PullRequestFactory(), status=Artifact.Status.SCORING)

    content = reader_client.get(artifact.get_absolute_url()).content.decode()

    assert "Not posted yet: the comment is written once the verdict is in" in content
    assert f"pending: v{artifact.version} scoring: waiting for its verdict" in content
    assert 'id="pr-comment-source"' not in content


def test_it_keeps_a_hostile_answer_escaped_on_the_page(db, reader_client):
    candidate, *_ = answered_candidate()

    content = reader_client.get(candidate.get_absolute_url()).content.decode()
    source, rendered = preview(content)

    assert "</details></summary><script>alert(1)</script>" in html.unescape(html.unescape(source))
    assert "<script>alert(1)" not in content and "<img src=x" not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered and "&lt;img src=x onerror=alert(1)&gt;" in rendered
    assert rendered.count("<details>") == rendered.count("</details>") == 2
    assert rendered.count("<summary>") == rendered.count("</summary>") == 2
    assert "<b>" not in rendered and "<strong>shout</strong>" not in rendered and 'href="https://evil' not in rendered
    assert HOSTILE_ANSWER not in content
