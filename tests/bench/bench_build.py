"""Recipe build throughput and memory, beside the tokenizer alone on the same text, in one run.

Run by hand: ``python tests/bench/bench_build.py [CORPUS_MB] [OBJECT_STORE_MB]`` (default 600 and 150).
It writes a JSON-lines corpus of CORPUS_MB of synthetic web text to a temporary folder, then measures:

1. the byte tokenizer alone on every document of it, in this process (the floor any pipeline pays);
2. a full build (read → tokenize → pack → Parquet) of the whole corpus on a local Ray started with an
   object store of OBJECT_STORE_MB, sampling the resident memory of the driver and every Ray process
   it starts (``/proc``), so the peak can be compared with the corpus size;
3. the same build with the Gopher repetition filter, the most common curation operator.

The build streams when its peak memory stays flat while the corpus is several times larger than the
object store it was given.
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
from raysweep.recipes.tokenizer import ByteTokenizer

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


def _rss_bytes(pids: set[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


class PeakMemory:
    """Samples the summed RSS of this process and its descendants (Ray's raylet, workers, store)."""

    def __init__(self):
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, _rss_bytes(_descendants(os.getpid())))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main() -> None:
    import ray

    corpus_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 600
    store_mb = int(sys.argv[2]) if len(sys.argv) > 2 else 150
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "corpus").mkdir()
        write_corpus(folder / "corpus", corpus_mb * 10**6)
        corpus_bytes = sum(p.stat().st_size for p in (folder / "corpus").iterdir())
        sources = {"web": FileSource("jsonl", str(folder / "corpus" / "*.jsonl")),
                   "web_gopher": FilteredSource("filtered", "web", repetition=RepetitionFilter("default"))}

        start = time.perf_counter()
        text_bytes = num_tokens = 0
        batch: list[str] = []
        for doc in iter_documents(sources["web"]):
            batch.append(doc)
            if len(batch) == 256:
                num_tokens += len(ByteTokenizer().encode_documents(batch))
                text_bytes += sum(len(d) for d in batch)
                batch = []
        num_tokens += len(ByteTokenizer().encode_documents(batch))
        text_bytes += sum(len(d) for d in batch)
        tokenize_s = time.perf_counter() - start
        num_sequences = num_tokens // SEQ_LEN

        ray.init(address="local", num_cpus=2, object_store_memory=store_mb * 2**20, include_dashboard=False, logging_level="warning")
        ray.data.DataContext.get_current().enable_progress_bars = False
        idle = _rss_bytes(_descendants(os.getpid()))
        print(f"corpus: {corpus_bytes / 1e6:.0f} MB of JSON lines ({text_bytes / 1e6:.0f} MB of text, "
              f"{num_tokens / 1e6:.0f} M byte tokens); Ray object store {store_mb} MB, 2 CPUs; "
              f"Ray idle RSS {idle / 2**20:.0f} MiB")
        print(f"{'':34} {'seconds':>8} {'MB/s text':>10} {'M tokens/s':>11} {'peak RSS MiB':>13}")
        print(f"{'tokenizer alone (1 core)':34} {tokenize_s:8.1f} {text_bytes / 1e6 / tokenize_s:10.1f} "
              f"{num_tokens / 1e6 / tokenize_s:11.2f} {'-':>13}")
        for name, label in (("web", "build: read, tokenize, pack, write"), ("web_gopher", "build + Gopher repetition")):
            sequences = num_sequences if name == "web" else num_sequences // 2  # the filter drops a few %
            component = [Component(name, resolve_stream(name, sources), 1.0)]
            with PeakMemory() as memory:
                start = time.perf_counter()
                build_shards(name, component, TokenizerConfig(), SEQ_LEN, sequences, folder / "shards")
                seconds = time.perf_counter() - start
            used_bytes = sequences * SEQ_LEN / num_tokens * text_bytes
            print(f"{label:34} {seconds:8.1f} {used_bytes / 1e6 / seconds:10.1f} "
                  f"{sequences * SEQ_LEN / 1e6 / seconds:11.2f} {memory.peak / 2**20:13.0f}")
        print(f"build / tokenizer-alone speed: see the MB/s column; corpus / object store = "
              f"{corpus_bytes / (store_mb * 2**20):.1f}x")
        ray.shutdown()


if __name__ == "__main__":
    main()
