"""The answers explorer shows a judged conversation turn by turn with the judge's reply about it, judge output
kept as text, as the review page does."""

from django.urls import reverse

from tests.factories import ArtifactFactory
from tests.judges.conftest import judge_server  # noqa: F401 (fixture)
from tests.judges.test_judge_conversations import (
    CANDIDATE,
    store_conversation_answers,
    talking_family,  # noqa: F401 (fixture)
)
from tests.judges.test_judge_preference_verdicts import judged, scored


def test_a_judged_conversation_shows_its_turns_and_the_judges_reply(talking_family, client, user):  # noqa: F811
    family, dataset, baseline = talking_family
    judged(baseline, dataset)
    candidate = ArtifactFactory(family=family, status="scoring", parent=baseline)
    scored(candidate, dataset)
    store_conversation_answers(candidate, dataset, CANDIDATE)
    judged(candidate, dataset)
    client.force_login(user)

    url = reverse("artifact-answers", args=[candidate.pk])
    content = client.get(url, {"metric": "judge_score", "order": "position"}).content.decode()

    article = content[content.index('data-sample-id="s3"') :]
    article = article[: article.index("</article>")]
    assert 'data-turn="1"' in article and 'data-turn="2"' in article
    judged_part = article[article.index('data-part="conversation-judged"') :]
    assert 'data-judged="candidate"' in judged_part
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt; The last answer is wrong." in judged_part
    assert "&lt;b&gt;Seven&lt;/b&gt; moons." in article
    assert "<script>window.pwned" not in content and "<b>Seven</b>" not in content
    assert 'id="judge-caption"' in content
