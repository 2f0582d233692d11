"""GitHub-flavoured Markdown of Driftboard's own PR comments, as safe HTML for the artifact page.

CommonMark with tables (markdown-it-py). Text is always escaped. Raw HTML is too, except the few tags the
comment itself writes: `<details><summary>…</summary>` openers and `</details>` closers on lines of their
own (each closer only after an opener; any left open are closed at the end), while an HTML comment (the
comment's marker) is left out, as GitHub hides it. Whatever came from a model, a judge or a dataset was
entity-escaped by the comment's writer, so it reaches this renderer as text, never as a tag. Images are not
rendered and links are kept only when they are http(s).
"""

import html
import re

from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

DETAILS_OPEN = re.compile(r"^<details><summary>(?P<summary>[^<>]*)</summary>$")
DETAILS_CLOSE = "</details>"
HTML_COMMENT = re.compile(r"^<!--.*-->$", re.DOTALL)
OPEN_DETAILS = "open_details"


def _html_block(renderer, tokens, idx, options, env) -> str:
    return "".join(_allowed_line(line.strip(), env) for line in tokens[idx].content.splitlines())


def _allowed_line(line: str, env: dict) -> str:
    if not line or HTML_COMMENT.match(line):
        return ""
    if opener := DETAILS_OPEN.match(line):
        env[OPEN_DETAILS] = env.get(OPEN_DETAILS, 0) + 1
        return f"<details><summary>{html.escape(html.unescape(opener['summary']))}</summary>\n"
    if line == DETAILS_CLOSE and env.get(OPEN_DETAILS, 0) > 0:
        env[OPEN_DETAILS] -= 1
        return "</details>\n"
    return f"<p>{html.escape(line)}</p>\n"


def _html_inline(renderer, tokens, idx, options, env) -> str:
    return html.escape(tokens[idx].content)


def _http_only(url: str) -> bool:
    return url.strip().lower().startswith(("http://", "https://"))


def _renderer() -> MarkdownIt:
    renderer = MarkdownIt("commonmark", {"html": True}).enable("table").disable("image")
    renderer.add_render_rule("html_block", _html_block)
    renderer.add_render_rule("html_inline", _html_inline)
    renderer.validateLink = _http_only
    return renderer


RENDERER = _renderer()


def markdown_html(text: str) -> SafeString:
    env: dict = {}
    rendered = RENDERER.render(text, env)
    return mark_safe(
        rendered + "</details>\n" * env.get(OPEN_DETAILS, 0)
    )  # text and tags were escaped by the rules above
