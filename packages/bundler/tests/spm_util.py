"""Re-exported from core so that every package's tests share one tiny tokenizer."""

from edge_models.testing import SPECIALS, SYLLABLES, corpus, train_sentencepiece

__all__ = ["SPECIALS", "SYLLABLES", "corpus", "train_sentencepiece"]
