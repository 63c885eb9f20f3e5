"""Recipe build throughput and memory, beside the tokenizer alone on the same text, in one run.

Run by hand: ``python tests/bench/bench_build.py [CORPUS_MB] [OBJECT_STORE_MB]`` (default 100 and 100; a few
minutes on 2 cores). It writes JSON-lines corpora of synthetic web text of CORPUS_MB / 4, CORPUS_MB and
4 × CORPUS_MB, trains a byte-level BPE tokenizer (4,096 ids) on other synthetic text with Hugging Face
``tokenizers`` and saves it as a folder that ``AutoTokenizer`` loads (the real-tokenizer path, offline), then
measures, for the byte tokenizer on the two larger corpora and for that BPE (30× slower) on the smallest:

1. the tokenizer alone on every document of the corpus, reading included, in this process (the floor any
   pipeline pays; the byte tokenizer runs on one core, Hugging Face's batch encoding on every core);
2. a full build (read → tokenize → pack → Parquet) of the whole corpus on a local Ray with 2 CPUs and an object
   store of OBJECT_STORE_MB, sampling the proportional set size (PSS: shared pages, such as the object store's,
   counted once) of the driver and every Ray process it starts, so the peak can be compared between the corpus
   and the one 4 × larger;
3. the build's stages alone, one after the other in this process, in core-seconds per MB of text: what bounds
   the build on 2 cores whatever the scheduling;
4. the byte build with the Gopher repetition filter, the most common curation operator, on a quarter of the
   corpus (it is Python per document).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from raysweep.config import FileSource, FilteredSource, RepetitionFilter, TokenizerConfig
from raysweep.recipes.build import Component, build_shards
from raysweep.recipes.streams import iter_documents, resolve_stream
from raysweep.recipes.synthetic import generate_documents
from raysweep.recipes.tokenizer import ByteTokenizer, load_tokenizer

SEQ_LEN = 1024


def write_corpus(folder: Path, num_bytes: int, num_files: int = 8) -> None:
    per_file = num_bytes // num_files
    for i in range(num_files):
        with open(folder / f"part-{i:02d}.jsonl", "w") as out:
            written, seed = 0, 1000 * i
            while written < per_file:
                for doc in generate_documents("web", 8_000_000, seed):
                    out.write(json.dumps({"text": doc}) + "\n")
                    written += len(doc)
                seed += 1


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += children.get(pid, [])
    return found


def _pss_bytes(pids: set[int]) -> int:
    """Summed PSS: a page shared by n processes counts 1/n in each, so the object store is counted once."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


class PeakMemory:
    """Samples the summed PSS of this process and its descendants (Ray's raylet, workers, store)."""

    def __init__(self):
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, _pss_bytes(_descendants(os.getpid())))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def train_bpe(folder: Path) -> Path:
    """A byte-level BPE of 4,096 ids trained on synthetic text unlike the corpus' seeds, saved as a hub folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=4096, special_tokens=["<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator((d for domain in ("web", "code") for d in generate_documents(domain, 4 * 10**6, 99)),
                                  trainer)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<eos>").save_pretrained(folder)
    return folder


def tokenize_alone(source: FileSource, encoder) -> tuple[float, int, int]:
    """Seconds, text bytes and tokens of reading and tokenizing every document, 256 at a time."""
    start = time.perf_counter()
    text_bytes = num_tokens = 0
    batch: list[str] = []
    for doc in iter_documents(source):
        batch.append(doc)
        if len(batch) == 256:
            num_tokens += len(encoder.encode_documents(batch))
            text_bytes += sum(len(d.encode()) for d in batch)
            batch = []
    num_tokens += len(encoder.encode_documents(batch))
    text_bytes += sum(len(d.encode()) for d in batch)
    return time.perf_counter() - start, text_bytes, num_tokens


def stage_costs(source: FileSource, config: TokenizerConfig, limit_bytes: int, folder: Path) -> dict[str, float]:
    """Core-seconds per MB of text of each build stage run alone, in order, on the corpus' first `limit_bytes`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from raysweep.recipes import build

    documents, size = [], 0
    start = time.perf_counter()
    for doc in iter_documents(source):
        documents.append(doc)
        size += len(doc.encode())
        if size >= limit_bytes:
            break
    costs = {"read": time.perf_counter() - start}
    chunks = [documents[i:i + 1000] for i in range(0, len(documents), 1000)]
    start = time.perf_counter()
    tokenized = [build._tokenize(build._unmarked(chunk), config) for chunk in chunks]
    costs["tokenize"] = time.perf_counter() - start
    count = sum(int(t.column("num_tokens").to_numpy().sum()) for t in tokenized) // SEQ_LEN
    pack = build._Pack(0, 1.0, SEQ_LEN, count, str(folder / "stats.json"))
    start = time.perf_counter()
    packed = pa.concat_tables([pack(t) for t in tokenized])
    costs["pack"] = time.perf_counter() - start
    start = time.perf_counter()
    pq.write_table(packed, folder / "stage.parquet", row_group_size=max(1, build.ROW_GROUP_BYTES // (4 * SEQ_LEN)))
    costs["Parquet write"] = time.perf_counter() - start
    return {stage: seconds / (size / 1e6) for stage, seconds in costs.items()}


def main() -> None:
    import ray

    corpus_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    store_mb = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        corpora = {}
        for scale in (0.25, 1, 4):
            (folder / f"corpus{scale}").mkdir()
            write_corpus(folder / f"corpus{scale}", int(scale * corpus_mb * 10**6))
            corpora[scale] = FileSource("jsonl", str(folder / f"corpus{scale}" / "*.jsonl"))
        # tokenizer, corpus scales, text bytes for the stages alone
        runs = {"byte": (TokenizerConfig(), (1, 4), 5 * 10**6),
                "BPE 4096": (TokenizerConfig("hf", str(train_bpe(folder / "bpe"))), (0.25,), 25 * 10**5)}

        ray.init(address="local", num_cpus=2, object_store_memory=store_mb * 2**20, include_dashboard=False,
                 logging_level="warning")
        ray.data.DataContext.get_current().enable_progress_bars = False
        idle = _pss_bytes(_descendants(os.getpid()))
        print(f"corpora: {corpus_mb / 4:g}, {corpus_mb} and {4 * corpus_mb} MB of JSON lines of synthetic web text; "
              f"Ray object store {store_mb} MB, 2 CPUs; Ray idle PSS {idle / 2**20:.0f} MiB")
        print(f"{'':44} {'seconds':>8} {'MB/s text':>10} {'M tokens/s':>11} {'x alone':>8} {'peak PSS MiB':>13}")
        stages = {}
        for label, (config, scales, stage_bytes) in runs.items():
            encoder = load_tokenizer(config)
            for scale in scales:
                source = corpora[scale]
                seconds, text_bytes, num_tokens = tokenize_alone(source, encoder)
                alone = text_bytes / seconds
                print(f"{f'{label}, {scale * corpus_mb:g} MB: tokenizer alone':44} {seconds:8.1f} "
                      f"{alone / 1e6:10.1f} {num_tokens / 1e6 / seconds:11.2f} {'1.00':>8} {'-':>13}")
                sequences = num_tokens // SEQ_LEN
                component = [Component("web", resolve_stream("web", {"web": source}), 1.0)]
                with PeakMemory() as memory:
                    start = time.perf_counter()
                    build_shards(f"web{scale}", component, config, SEQ_LEN, sequences, folder / "shards")
                    seconds = time.perf_counter() - start
                used_bytes = sequences * SEQ_LEN / num_tokens * text_bytes
                print(f"{f'{label}, {scale * corpus_mb:g} MB: build':44} {seconds:8.1f} "
                      f"{used_bytes / 1e6 / seconds:10.1f} {sequences * SEQ_LEN / 1e6 / seconds:11.2f} "
                      f"{used_bytes / seconds / alone:8.2f} {memory.peak / 2**20:13.0f}")
            stages[label] = stage_costs(corpora[scales[0]], config, stage_bytes, folder)
        sources = {"web": corpora[0.25],
                   "web_gopher": FilteredSource("filtered", "web", repetition=RepetitionFilter("default"))}
        seconds, text_bytes, num_tokens = tokenize_alone(sources["web"], ByteTokenizer())
        sequences = num_tokens // SEQ_LEN // 2  # the filter drops some documents
        with PeakMemory() as memory:
            start = time.perf_counter()
            build_shards("gopher", [Component("web_gopher", resolve_stream("web_gopher", sources), 1.0)],
                         TokenizerConfig(), SEQ_LEN, sequences, folder / "shards")
            build_s = time.perf_counter() - start
        used_bytes = sequences * SEQ_LEN / num_tokens * text_bytes  # roughly: the filter's removals are read too
        print(f"{f'byte, {corpus_mb / 4:g} MB: build + Gopher repetition':44} {build_s:8.1f} "
              f"{used_bytes / 1e6 / build_s:10.1f} {sequences * SEQ_LEN / 1e6 / build_s:11.2f} "
              f"{used_bytes / build_s / (text_bytes / seconds):8.2f} {memory.peak / 2**20:13.0f}")
        print("\nStages alone, one after the other in this process (byte: 5 MB of text, BPE: 2.5 MB): core-seconds "
              "per MB of text, and the build speed 2 cores would reach if they shared the stages perfectly")
        print(f"{'':10} " + " ".join(f"{stage:>14}" for stage in next(iter(stages.values()))) + f" {'bound MB/s':>11}")
        for label, costs in stages.items():
            print(f"{label:10} " + " ".join(f"{c:14.4f}" for c in costs.values()) + f" {2 / sum(costs.values()):11.1f}")
        ray.shutdown()


if __name__ == "__main__":
    main()
