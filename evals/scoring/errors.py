"""Errors that make a scoring run fail permanently; the message is shown to the user as is."""


class ScoringError(Exception):
    """The weights or samples cannot be scored; retrying will not help."""


class WeightsFormatError(ScoringError):
    """The weights file or folder cannot be read."""


class UnsafeWeightsError(WeightsFormatError):
    """A pickled `.bin` file holds objects other than tensors (it could run code when loaded)."""


class WeightsMismatchError(ScoringError):
    """Tensor names or shapes do not match the model configuration."""


class VocabularyMismatchError(WeightsMismatchError):
    """The embedding rows of the weights do not fit the tokenizer."""


class SampleError(ScoringError):
    """A sample lacks what the scorer needs (for example a reference for similarity)."""
