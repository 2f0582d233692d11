"""Generation engine: the answers a causal LM gives to prompts, greedy unless sampling is asked for.

The answers are those of lm-evaluation-harness's `generate_until` on the same model:

- a plain prompt is tokenised without special tokens and left-truncated to the context minus
  `max_new_tokens`; chat `messages` (and plain prompts when `chat_template` is set) go through the
  tokenizer's chat template with the generation prompt, then are tokenised the same way (the
  template writes its own special tokens);
- the answer is the decoded continuation (special tokens skipped), cut before the first stop
  string; decoding ends at an EOS token, a stop string or `max_new_tokens`.

The computation is organised for throughput, and every sample's tokens stay those of decoding it
alone (fp32 on CPU):

- prompts are tokenised per group, sorted longest first and cut into token-budget batches of
  rows × (longest prompt + `max_new_tokens`), which bounds the KV cache of a batch;
- a batch is left-padded; padding is masked out and position ids count real tokens only, so each
  row sees exactly the positions it would see alone;
- one forward pass per new token reuses the KV cache, and only the last position goes through
  the output head;
- freed rows are refilled (continuous batching): consecutive batches form a pool (up to
  `_POOL_BATCHES`), decoded as one batch. A row that is done (EOS, stop string, `max_new_tokens`)
  leaves it, and the pool's next waiting prompts join once they fill a quarter of its rows, as long
  as rows × (the widest row's prompt + `max_new_tokens`) stays within the budget; so the batch does
  not shrink to its slowest row. Joining prompts run their prompt pass together, then their cache
  rows are merged into the batch's (`kv_rows.merged`: left-padded, columns no row uses cut off);
- a prefix of at least `_SHARED_PREFIX_MIN` tokens shared by two or more prompts of a pool (few-shot
  examples, a system prompt, a chat template's preamble) is computed once and its keys and values
  are copied into each row that extends it, so the prompt pass covers each row's own suffix, its
  positions counting on after the prefix (`kv_rows.SharedPrefixes`);
- on CPU, pools run side by side in single-threaded streams (`batching.map_batches`): a group is cut
  into at least two pools per stream where it has that many batches.

Greedy answers may be drafted: given, per prompt, an answer believed to be right (the stored
answer of the baseline's weights), a row feeds its next draft tokens after its last accepted token
and the model's own greedy choice at every fed position decides. The agreeing prefix plus the
model's own token where it first disagrees are accepted in one forward pass; the rejected positions
stay in the KV cache but are masked out of the attention for good, so rows that accepted different
numbers of tokens share a batch. After a disagreement a row finds its place in the draft again by
looking up its last tokens there. Drafting changes how many forward passes an answer takes, never
the answer: EOS, stop strings and `max_new_tokens` apply token by token as in plain decoding.
Drafting composes with shared prefixes and refilling: a joining row drafts from its first pass, and
a row whose draft departed early no longer holds the batch back, its place being refilled.

Sampling draws every row from its own generator, seeded by the recorded seed and the prompt's
tokens, so a sampled answer does not depend on which other prompts shared its batch.

The modules: `settings` (how answers are generated, stop strings), `prompts` (what the model reads),
`drafts` (drafts and how a row follows one), `steps` (one forward pass and what each row accepts of
it), `pools` (batches refilled as rows finish, shared prefixes), `batched` (`generate`) and `cached`
(`generate_cached`: answers keyed, stored, drafted from stored ones and audited). `cached` takes the
engine as a `GenerationBackend`: this package's `generate` in the process (`LOCAL_ENGINE`) is the one
built; a served engine would be another backend with its own `engine_version` in the answers' keys.
"""

from evals.scoring.generation.batched import Generations, default_token_budget, generate
from evals.scoring.generation.cached import (
    DEFAULT_AUDIT_EVERY,
    DEFAULT_CHUNK_PROMPTS,
    ENGINE_VERSION,
    LOCAL_ENGINE,
    CachedGenerations,
    Drafting,
    Generation,
    GenerationBackend,
    GenerationKey,
    GenerationStore,
    InMemoryGenerationStore,
    generate_cached,
    generation_config_sha256,
    generation_keys,
)
from evals.scoring.generation.drafts import Draft, DraftStats
from evals.scoring.generation.prompts import Messages, Prompt, chat_template_sha256, messages_of, prompt_token_ids
from evals.scoring.generation.settings import (
    EOS,
    GENERATION_SETTING_KEYS,
    LENGTH,
    MAX_NEW_TOKENS_LIMIT,
    MAX_STOP_CHARS,
    MAX_STOP_STRINGS,
    STOP,
    GenerationSettings,
    cut_at_stop,
)

__all__ = [
    "DEFAULT_AUDIT_EVERY",
    "DEFAULT_CHUNK_PROMPTS",
    "ENGINE_VERSION",
    "EOS",
    "LOCAL_ENGINE",
    "GENERATION_SETTING_KEYS",
    "LENGTH",
    "MAX_NEW_TOKENS_LIMIT",
    "MAX_STOP_CHARS",
    "MAX_STOP_STRINGS",
    "STOP",
    "CachedGenerations",
    "Draft",
    "DraftStats",
    "Drafting",
    "Generation",
    "GenerationBackend",
    "GenerationKey",
    "GenerationSettings",
    "GenerationStore",
    "Generations",
    "InMemoryGenerationStore",
    "Messages",
    "Prompt",
    "chat_template_sha256",
    "cut_at_stop",
    "default_token_budget",
    "generate",
    "generate_cached",
    "generation_config_sha256",
    "generation_keys",
    "messages_of",
    "prompt_token_ids",
]
