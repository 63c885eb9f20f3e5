"""Multiple-choice scores inside a trial, computed as the LM Evaluation Harness computes them (App. D.1.3).

Each choice's score is the summed log-probability of its continuation's tokens after the context. The pair is
tokenized as the harness's Hugging Face wrapper does (trailing spaces of the context move to the continuation; the
whole text is encoded and split after the context's tokens; at most ``seq_len`` + 1 tokens are kept, cut from the
left), and every item gives

- ``acc``: the highest-scoring choice is the gold one;
- ``acc_norm``: the same with each score divided by the choice's length in characters;
- ``acc_bytes``: divided by its length in UTF-8 bytes;
- ``gold_logprob_per_byte``: the gold choice's score over its bytes (nats per byte; higher is better).

A task is encoded once, in the driver (``encode_task``), and scored in every trial at each evaluation
(``score_tasks``), batched like the validation loss::

    encoded = encode_task("hellaswag", items, tokenizer.encode_texts, seq_len, tokenizer.eos_id)
    score_tasks(model, {"hellaswag": encoded}, device)   # {"hellaswag": {"acc": 0.27, "acc_norm": ..., ...}}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from raysweep.tasks.items import TaskError, TaskItem

METRICS = ("acc", "acc_norm", "acc_bytes", "gold_logprob_per_byte")
"""What a trial stores per task and evaluation (higher is better for each)."""
DESCRIPTIONS = ("chance", "items", "items_in_task")
"""Stored beside them, the same at every evaluation: a uniform guess's expected accuracy, the items scored, and the
items the task holds (more when ``max_items`` took a subsample)."""
BATCH_SIZE = 64


@dataclass(frozen=True)
class EncodedTask:
    """A task's requests as token ids, one row per (item, choice), the choices of an item consecutive."""

    tokens: np.ndarray
    """int32 [requests, width]: (context + continuation)[-(seq_len + 1):], right-padded with 0."""
    lengths: np.ndarray
    """int64 [requests]: tokens of each row before the padding."""
    continuation_lengths: np.ndarray
    """int64 [requests]: the row's last tokens that are its continuation (the ones scored)."""
    item_of: np.ndarray
    """int64 [requests]: the item each row belongs to."""
    choice_chars: np.ndarray
    choice_bytes: np.ndarray
    gold: np.ndarray
    """int64 [items]: the gold choice of each item."""
    items_in_task: int
    """Items of the whole task, of which these were scored."""

    @property
    def chance(self) -> float:
        return float(np.mean(1.0 / np.bincount(self.item_of)))


def encode_task(name: str, items: list[TaskItem], encode_texts: Callable[[list[str]], list[np.ndarray]],
                seq_len: int, prefix_id: int, items_in_task: int | None = None) -> EncodedTask:
    """Tokenize every request as the harness does (``TemplateLM._encode_pair``, an empty context becoming
    ``prefix_id``); ``TaskError`` when a continuation alone is longer than ``seq_len`` tokens."""
    contexts, continuations = [], []
    for item in items:
        for context, continuation in item.requests:
            spaces = len(context) - len(context.rstrip())
            if spaces:
                context, continuation = context[:-spaces], context[-spaces:] + continuation
            contexts.append(context)
            continuations.append(continuation)
    whole = encode_texts([c + k for c, k in zip(contexts, continuations)])
    context_ids = encode_texts(contexts)
    rows = []
    for context, ids, context_enc in zip(contexts, whole, context_ids):
        if context:
            context_enc, continuation_enc = ids[:len(context_enc)], ids[len(context_enc):]
        else:  # the continuation alone, after the prefix id
            context_enc, continuation_enc = np.array([prefix_id], dtype=np.int32), ids
        if len(continuation_enc) > seq_len:
            raise TaskError(f"task {name}: a choice is {len(continuation_enc)} tokens long, more than seq_len "
                            f"({seq_len}); the harness cannot score it either")
        rows.append((np.concatenate([context_enc, continuation_enc])[-(seq_len + 1):], len(continuation_enc)))
    lengths = np.array([len(r) for r, _ in rows], dtype=np.int64)
    tokens = np.zeros((len(rows), int(lengths.max())), dtype=np.int32)
    for i, (row, _) in enumerate(rows):
        tokens[i, :len(row)] = row
    choices = [choice for item in items for choice in item.choices]
    return EncodedTask(tokens, lengths, np.array([n for _, n in rows], dtype=np.int64),
                       np.repeat(np.arange(len(items)), [len(item.requests) for item in items]),
                       np.array([len(c) for c in choices], dtype=np.float64),
                       np.array([len(c.encode("utf-8")) for c in choices], dtype=np.float64),
                       np.array([item.gold for item in items], dtype=np.int64), items_in_task or len(items))


@torch.no_grad()
def loglikelihoods(model: torch.nn.Module, task: EncodedTask, device: torch.device) -> np.ndarray:
    """float64 [requests]: each continuation's summed log-probability, longest rows batched first (less
    padding; padding on the right never changes a causal model's earlier positions). The output layer and the
    softmax run on the scored positions only: the continuation is a small part of each row."""
    out = np.empty(len(task.lengths))
    order = np.argsort(-task.lengths, kind="stable")
    head = model.get_output_embeddings()
    for batch in np.array_split(order, max(1, -(-len(order) // BATCH_SIZE))):
        width = int(task.lengths[batch].max())
        tokens = torch.from_numpy(task.tokens[batch, :width]).long().to(device)
        hidden = model.base_model(input_ids=tokens[:, :-1]).last_hidden_state  # position t predicts token t + 1
        positions = torch.arange(1, width, device=device)
        lengths = torch.from_numpy(task.lengths[batch]).to(device)
        first = lengths - torch.from_numpy(task.continuation_lengths[batch]).to(device)
        scored = (positions >= first[:, None]) & (positions < lengths[:, None])
        logprobs = torch.log_softmax(head(hidden[scored]).float(), dim=-1)
        picked = logprobs.gather(-1, tokens[:, 1:][scored][:, None])[:, 0].double()
        rows = torch.arange(len(batch), device=device)[:, None].expand_as(scored)[scored]
        out[batch] = torch.zeros(len(batch), dtype=torch.float64, device=device).index_add_(0, rows, picked).cpu()
    return out


def item_scores(lls: np.ndarray, task: EncodedTask) -> dict[str, np.ndarray]:
    """Per item, each of ``METRICS`` (1.0/0.0 for the accuracies), ties going to the first choice (``np.argmax``,
    as in the harness)."""
    starts = np.flatnonzero(np.r_[True, task.item_of[1:] != task.item_of[:-1]])
    ends = np.r_[starts[1:], len(lls)]

    def picks(scores: np.ndarray) -> np.ndarray:
        return np.array([np.argmax(scores[s:e]) for s, e in zip(starts, ends)])

    gold_rows = starts + task.gold
    return {"acc": (picks(lls) == task.gold).astype(float),
            "acc_norm": (picks(lls / task.choice_chars) == task.gold).astype(float),
            "acc_bytes": (picks(lls / task.choice_bytes) == task.gold).astype(float),
            "gold_logprob_per_byte": lls[gold_rows] / task.choice_bytes[gold_rows]}


def score_tasks(model: torch.nn.Module, tasks: dict[str, EncodedTask], device: torch.device) -> dict[str, dict]:
    """task → each of ``METRICS`` averaged over its items, with ``DESCRIPTIONS``; the model is left in train mode."""
    model.eval()
    scores = {}
    for name, task in tasks.items():
        per_item = item_scores(loglikelihoods(model, task, device), task)
        scores[name] = {**{m: float(v.mean()) for m, v in per_item.items()}, "chance": task.chance,
                        "items": float(len(task.gold)), "items_in_task": float(task.items_in_task)}
    model.train()
    return scores
