"""Regenerate the demo corpus from a CPython 3.11 installation (see README.md).

Run with the interpreter whose standard library is the source, e.g.
``python3.11 evals/demo_data/extract_corpus.py``. The shipped files were made with
CPython 3.11.7; another version gives slightly different text.
"""

import ast
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path
from pydoc_data.topics import topics

PASSAGE_MAX_CHARS = 600
PASSAGE_MIN_CHARS = 50
PASSAGE_SEPARATOR = "\n\f\n"
REFERENCE_TOPIC_MAX_CHARS = 12_000
DOCSTRING_MIN_CHARS = 80

DOCSTRING_MODULES = (
    "argparse calendar configparser contextlib copy dataclasses datetime enum "
    "functools gettext os pathlib pickle random shutil string subprocess tarfile "
    "tempfile threading urllib/parse uuid warnings zipfile"
).split()
CODE_MODULES = "bisect colorsys csv fnmatch fractions glob graphlib heapq queue reprlib sched shlex textwrap".split()

DOCUMENTED_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
OUT_DIR = Path(__file__).resolve().parent
STDLIB = Path(sysconfig.get_paths()["stdlib"])


def clean(text: str) -> str:
    """Form feeds separate passages in the output files, so none may remain inside."""
    lines = text.expandtabs(4).replace("\f", "").splitlines()
    return "\n".join(line.rstrip() for line in lines).strip("\n")


def split_long(block: str) -> Iterator[str]:
    """Cut a block longer than a passage at line ends, then at spaces."""
    piece = ""
    for line in block.split("\n"):
        while len(line) > PASSAGE_MAX_CHARS:
            space = line.rfind(" ", 0, PASSAGE_MAX_CHARS)
            cut = space if space > 0 else PASSAGE_MAX_CHARS
            yield line[:cut]
            line = line[cut:].lstrip()
        if piece and len(piece) + 1 + len(line) > PASSAGE_MAX_CHARS:
            yield piece
            piece = ""
        piece = f"{piece}\n{line}" if piece else line
    if piece:
        yield piece


def passages(document: str, seen: set[str]) -> Iterator[str]:
    """Pack consecutive paragraphs of one document into passages of bounded length.

    A paragraph met before is skipped: reference topics quote each other, and a golden sample
    must not reappear inside training text.
    """
    paragraphs = [clean(block) for block in document.split("\n\n")]
    fresh = [p for p in paragraphs if len(p) < PASSAGE_MIN_CHARS or p not in seen]
    seen.update(fresh)
    current = ""
    for block in (piece for paragraph in fresh for piece in split_long(paragraph)):
        if current and len(current) + 2 + len(block) > PASSAGE_MAX_CHARS:
            yield current
            current = ""
        current = f"{current}\n\n{block}" if current else block
    if current:
        yield current


def write_corpus(name: str, documents: Iterable[str], seen: set[str]) -> None:
    texts = (p.strip("\n") for doc in documents for p in passages(doc, seen))
    kept = [text for text in texts if len(text.strip()) >= PASSAGE_MIN_CHARS]
    path = OUT_DIR / f"{name}.txt"
    path.write_text(PASSAGE_SEPARATOR.join(kept) + "\n", encoding="utf-8")
    print(f"{path.name}: {len(kept)} passages, {path.stat().st_size} bytes")


def reference_topics() -> Iterator[str]:

    for key in sorted(topics):
        if len(topics[key]) <= REFERENCE_TOPIC_MAX_CHARS:
            yield topics[key]


def docstrings(module: str) -> Iterator[str]:
    tree = ast.parse((STDLIB / f"{module}.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, DOCUMENTED_NODES):
            text = ast.get_docstring(node, clean=True)
            if text and len(text) >= DOCSTRING_MIN_CHARS:
                yield text


def changelog_entries() -> Iterator[str]:
    for name in ("NEWS.txt", "NEWS2x.txt"):
        yield (STDLIB / "idlelib" / name).read_text(encoding="utf-8")


def source_without_docstrings(module: str) -> str:
    """Python code with its comments; docstrings go, as they belong to another file."""
    source = (STDLIB / f"{module}.py").read_text(encoding="utf-8")
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, DOCUMENTED_NODES) and ast.get_docstring(node, clean=False):
            first = node.body[0]
            for index in range(first.lineno - 1, first.end_lineno):
                lines[index] = ""
    return "\n".join(lines)


def main() -> None:
    if sys.version_info[:2] != (3, 11):
        print(f"warning: shipped files came from CPython 3.11, this is {sys.version}")
    seen: set[str] = set()
    write_corpus("python_reference", reference_topics(), seen)
    write_corpus("python_docstrings", (d for m in DOCSTRING_MODULES for d in docstrings(m)), seen)
    write_corpus("idle_changelog", changelog_entries(), seen)
    write_corpus("python_code", (source_without_docstrings(m) for m in CODE_MODULES), seen)


if __name__ == "__main__":
    main()
