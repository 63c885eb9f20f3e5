"""Tokenizers turn documents into one stream of token ids, each document closed by an end-of-text id.

The built-in byte-level tokenizer needs no files and no network: ids 0-255 are the UTF-8 bytes and 256
closes a document. Its loss in nats per token converts to bits per byte by dividing by ln 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raysweep.config import TokenizerConfig


@dataclass(frozen=True)
class ByteTokenizer:
    vocab_size: int = 257
    eos_id: int = 256

    def encode_documents(self, documents: list[str]) -> np.ndarray:
        """All documents as one int32 stream, an end-of-text id after each."""
        encoded = [np.frombuffer(doc.encode("utf-8"), dtype=np.uint8) for doc in documents]
        eos = np.array([self.eos_id], dtype=np.int32)
        parts = [piece for doc in encoded for piece in (doc.astype(np.int32), eos)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)


def load_tokenizer(config: TokenizerConfig) -> ByteTokenizer:
    return ByteTokenizer()
