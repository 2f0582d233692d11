"""The engine seam: `generate_cached` asks a `GenerationBackend` for the answers its store lacks. The
in-process engine is the default; another backend's answers are keyed by its own engine version, so
the answers of two engines are never taken for each other."""

from evals.scoring.generation import (
    ENGINE_VERSION,
    LOCAL_ENGINE,
    Draft,
    Drafting,
    GenerationSettings,
    InMemoryGenerationStore,
    generate,
    generate_cached,
)

SETTINGS = GenerationSettings(max_new_tokens=8)


class RecordingBackend:
    """A backend that answers with the in-process engine and records what it was asked."""

    engine_version = 1000 + ENGINE_VERSION

    def __init__(self) -> None:
        self.calls: list[tuple[int, bool]] = []

    def __call__(self, lm, prompts, settings, *, token_budget=None, progress=None, drafts=None):
        self.calls.append((len(prompts), drafts is not None))
        return generate(lm, prompts, settings, token_budget=token_budget, progress=progress, drafts=drafts)


def test_the_default_backend_is_the_in_process_engine(demo_lm, prompts):
    store = InMemoryGenerationStore()
    cached = generate_cached(demo_lm, prompts[:6], store, SETTINGS)
    assert LOCAL_ENGINE.engine_version == ENGINE_VERSION
    assert {key.engine_version for key in cached.keys} == {ENGINE_VERSION}
    assert cached.texts == generate(demo_lm, prompts[:6], SETTINGS).texts


def test_another_backend_answers_what_the_store_lacks_under_its_own_engine_version(demo_lm, prompts):
    store = InMemoryGenerationStore()
    generate_cached(demo_lm, prompts[:6], store, SETTINGS)
    backend = RecordingBackend()

    served = generate_cached(demo_lm, prompts[:6], store, SETTINGS, backend=backend)

    assert backend.calls == [(6, False)], "the local engine's answers are not the backend's"
    assert {key.engine_version for key in served.keys} == {backend.engine_version}
    assert served.texts == generate(demo_lm, prompts[:6], SETTINGS).texts
    again = generate_cached(demo_lm, prompts[:6], store, SETTINGS, backend=backend)
    assert again.generated == 0 and backend.calls == [(6, False)], "its own answers are reused"


def test_a_backend_gets_the_drafts_and_the_audit_s_plain_rows_in_one_call(demo_lm, prompts):
    plain = generate(demo_lm, prompts[:8], SETTINGS)

    def lookup(keys):
        return {key: Draft(text, "length", "baseline") for key, text in zip(keys, plain.texts, strict=True)}

    backend = RecordingBackend()
    drafting = Drafting(lookup=lookup, audit_every=1)
    drafted = generate_cached(
        demo_lm, prompts[:8], InMemoryGenerationStore(), SETTINGS, drafting=drafting, backend=backend
    )

    assert backend.calls == [(16, True)], "the audit's plain rows ride along with the drafted ones"
    assert drafted.texts == plain.texts and drafting.stats.audit_mismatches == 0
    assert drafting.stats.audited_answers == 8
