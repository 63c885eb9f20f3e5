"""Tokenizers turn documents into one stream of token ids, each document closed by an end-of-text id.

The built-in byte-level tokenizer needs no files and no network: ids 0-255 are the UTF-8 bytes and 256
closes a document. Its loss in nats per token converts to bits per byte by dividing by ln 2.

`HFTokenizer` wraps a Hugging Face tokenizer from a local directory or the local hub cache; it never
downloads, and it pickles as its name so Ray Data workers load their own copy::

    tokenizer = HFTokenizer("/models/gpt2-tokenizer")     # or "gpt2" once `hf download gpt2` has run
    ids = tokenizer.encode_documents(["a b", "c"])        # int32, tokenizer.eos_id after each document
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raysweep.config import TokenizerConfig
from raysweep.errors import DataError


class _Encoder:
    """``encode_documents`` for any tokenizer that can encode a batch of documents into one stream."""

    eos_id: int

    def encode_batch(self, documents: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The documents as one int32 stream, an end-of-text id after each, and each document's length in it.

        One flat array rather than an array per document: the build moves millions of documents, and a
        Python object per document costs more than tokenizing it."""
        raise NotImplementedError

    def encode_documents(self, documents: list[str]) -> np.ndarray:
        """All documents as one int32 stream, an end-of-text id after each."""
        return self.encode_batch(documents)[0]

    def encode_texts(self, texts: list[str]) -> list[np.ndarray]:
        """Each text's ids, no end-of-text: how an evaluation harness encodes a context and its continuation."""
        ids, lengths = self.encode_batch(texts)
        return [piece[:-1] for piece in np.split(ids, np.cumsum(lengths)[:-1])]


def _closed(ids: np.ndarray, lengths: np.ndarray, eos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """`ids` (the documents back to back, `lengths` each) with `eos_id` after each document."""
    ends = np.cumsum(lengths + 1)
    stream = np.full(int(ends[-1]) if len(ends) else 0, eos_id, dtype=np.int32)
    keep = np.ones(len(stream), dtype=bool)
    keep[ends - 1] = False
    stream[keep] = ids
    return stream, (lengths + 1).astype(np.int64)


@dataclass(frozen=True)
class ByteTokenizer(_Encoder):
    vocab_size: int = 257
    eos_id: int = 256

    def encode_batch(self, documents: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Each document's UTF-8 bytes as ids, closed by the end-of-text id."""
        encoded = [doc.encode("utf-8") for doc in documents]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        return _closed(np.frombuffer(b"".join(encoded), dtype=np.uint8), lengths, self.eos_id)


class TokenizerError(DataError):
    """A tokenizer cannot be loaded or used; the message says which one and how to fix it."""


class HFTokenizer(_Encoder):
    """A Hugging Face tokenizer with ByteTokenizer's interface, loaded with ``local_files_only=True``."""

    def __init__(self, name_or_path: str):
        # A local folder is kept as an absolute path: Ray workers may run in another working directory.
        self.name_or_path = str(Path(name_or_path).absolute()) if Path(name_or_path).is_dir() else name_or_path
        self._tokenizer = _load_hf_tokenizer(self.name_or_path)
        if self._tokenizer.eos_token_id is None:
            raise TokenizerError(f"tokenizer {name_or_path!r} has no end-of-text token; set `eos_token` in its "
                                 "tokenizer_config.json (documents are separated by it)")
        self.eos_id: int = int(self._tokenizer.eos_token_id)
        self.vocab_size: int = len(self._tokenizer)  # counts added tokens too, unlike `.vocab_size`

    def encode_batch(self, documents: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Each document's ids (no other special tokens), closed by the end-of-text id; one batched call."""
        if not documents:  # transformers fails on an empty batch
            return _closed(np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64), self.eos_id)
        encoded = self._tokenizer(list(documents), add_special_tokens=False, return_attention_mask=False,
                                  verbose=False)["input_ids"]  # verbose=False: long documents are expected
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        ids = np.fromiter(itertools.chain.from_iterable(encoded), dtype=np.int32, count=int(lengths.sum()))
        return _closed(ids, lengths, self.eos_id)

    def __getstate__(self) -> dict:
        return {"name_or_path": self.name_or_path}  # the loaded tokenizer is rebuilt where it lands

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["name_or_path"])


def _load_hf_tokenizer(name_or_path: str):
    # Deferred on purpose: transformers pulls in torch, seconds in every Ray Data worker that reads a byte-level
    # recipe; only a Hugging Face tokenizer needs it.
    from transformers import AutoTokenizer

    path = Path(name_or_path)
    if (path.is_absolute() or name_or_path.startswith(".")) and not path.is_dir():
        raise TokenizerError(f"tokenizer folder {name_or_path!r} does not exist")
    try:
        return AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
    except (OSError, ValueError) as err:  # ValueError: a folder without files a fast tokenizer loads from
        if path.is_dir():
            raise TokenizerError(f"tokenizer folder {name_or_path!r} holds no loadable tokenizer ({err}); "
                                 "write one with `save_pretrained(<folder>)`") from None
        raise TokenizerError(
            f"tokenizer {name_or_path!r} is neither a local folder nor in the local Hugging Face cache. "
            f"Fetch it on a machine with network with `hf download {name_or_path}` and copy the cache "
            "(HF_HOME), or save it with `AutoTokenizer.from_pretrained(...).save_pretrained(<folder>)` and "
            "give the folder's path; raysweep never downloads.") from None


def load_tokenizer(config: TokenizerConfig) -> ByteTokenizer | HFTokenizer:
    return HFTokenizer(config.name) if config.type == "hf" else ByteTokenizer()
