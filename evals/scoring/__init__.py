"""Scoring engine: weights and samples in, per-sample arrays out.

Plain Python (torch + transformers, never Django) so that Celery workers, the command-line client
and the benchmarks share it. Import the submodules you need: `loading` (weights to a model),
`causal` and `embedding` (the scorers), `cache` (reuse of per-sample results) and `hashing`
(content hashes, importable without torch).
"""
