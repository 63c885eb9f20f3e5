"""A trial's memory for its data: reading the whole shard set against streaming its prefix, at two set sizes.

Run by hand: ``python tests/bench/bench_trial_memory.py [PREFIX] [SEQ_LEN]`` (default 6000 and 512, ~1 minute on
2 cores). It builds one recipe (three synthetic components at uneven weights) twice, as shard sets holding PREFIX
and 10 x PREFIX sequences (a shard set is built for its recipe's largest trial), then runs, each in a fresh
process, one epoch of a trial's batches over the same first PREFIX sequences:

* whole set: the former reader (read every file, sort by order key, slice, cast to int64), batches indexed from it;
* stream: ``SequenceReader``, one ``take`` per batch;
* stream, small cache: the same with the cache capped below the prefix's size, as for a paper-size prefix.

Each process reports its peak RSS and its anonymous memory (``RssAnon``) once the epoch is done, both also less
what it held before reading (interpreter, torch, pyarrow). The peak is given twice: ``ru_maxrss``, which Linux
carries over fork and exec, so that it cannot fall below this script's own peak (Ray, a build), and ``VmHWM``,
restarted just before reading (``/proc/self/clear_refs``), from which peak-start is taken. Data memory is
independent of the set's size when the 10x / 1x ratio is ~1; the whole-set read grows with it. The checksum column
shows that every mode gave the same batches.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import ray
import torch

from raysweep.config import SyntheticSource, TokenizerConfig
from raysweep.recipes import sequences
from raysweep.recipes.build import Component, build_shards
from raysweep.recipes.sequences import SequenceReader
from raysweep.recipes.streams import Stream

BATCH_SIZE = 32
SMALL_CACHE_BYTES = 4 * 2**20
MODES = {"whole": "whole set (former)", "stream": "stream", "small": "stream, 4 MiB cache"}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def whole_set_read(path: Path, num_sequences: int) -> np.ndarray:
    """The former ``read_sequences``: every sequence of the set, sorted into mixture order, then sliced."""
    table = pq.read_table(Path(path) / "data")
    table = table.sort_by([("order_key", "ascending"), ("component", "ascending")]).slice(0, num_sequences)
    column = table.column("input_ids").combine_chunks()
    return column.flatten().to_numpy().reshape(num_sequences, column.type.list_size)


def measure(mode: str, path: Path, num_sequences: int) -> dict:
    """One epoch of a trial's batches over the set's first `num_sequences`, as ``train._train`` draws them."""
    # Load pyarrow's Parquet code and thread pool first: a fixed cost of either mode, not memory for data.
    pq.ParquetFile(next((path / "data").rglob("*.parquet"))).read_row_group(0, columns=["component"])
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM restarts from here
    start_rss, start_anon = _status_kib("VmRSS"), _status_kib("RssAnon")
    start = time.perf_counter()
    order = torch.randperm(num_sequences, generator=torch.Generator().manual_seed(0))
    checksum = 0
    if mode == "whole":
        data = torch.from_numpy(whole_set_read(path, num_sequences).astype(np.int64))
        batches = (data[order[i:i + BATCH_SIZE]] for i in range(0, num_sequences, BATCH_SIZE))
    else:
        if mode == "small":
            sequences.CACHE_BYTES = SMALL_CACHE_BYTES
        reader = SequenceReader(path, num_sequences)
        batches = (torch.from_numpy(reader.take(order[i:i + BATCH_SIZE].numpy())).long()
                   for i in range(0, num_sequences, BATCH_SIZE))
    for position, batch in enumerate(batches):
        checksum += (position + 1) * int(batch.sum())
    return {"seconds": time.perf_counter() - start, "checksum": checksum,
            "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_mib": _status_kib("VmHWM") / 1024, "start_rss_mib": start_rss / 1024,
            "anon_mib": _status_kib("RssAnon") / 1024, "start_anon_mib": start_anon / 1024}


def main() -> None:
    prefix = int(sys.argv[1]) if len(sys.argv) > 1 else 6000
    seq_len = int(sys.argv[2]) if len(sys.argv) > 2 else 512
    components = [Component(domain, Stream(SyntheticSource(type="synthetic", domain=domain)), weight)
                  for domain, weight in (("web", 5.0), ("code", 2.0), ("math", 0.5))]
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="warning", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    with tempfile.TemporaryDirectory() as tmp:
        sets = {}
        for scale in (1, 10):
            start = time.perf_counter()
            shards = build_shards("bench", components, TokenizerConfig(), seq_len, scale * prefix,
                                  Path(tmp) / f"{scale}x")
            size = sum(f.stat().st_size for f in (shards.path / "data").rglob("*.parquet"))
            sets[scale] = shards.path
            print(f"built {scale * prefix:,} sequences x {seq_len} ({size / 2**20:.0f} MiB of Parquet) in "
                  f"{time.perf_counter() - start:.0f} s")
        ray.shutdown()
        print(f"trial: the first {prefix:,} sequences ({prefix * seq_len * 4 / 2**20:.1f} MiB as int32), one epoch "
              f"in batches of {BATCH_SIZE}; each row a fresh process; MiB")
        print(f"{'set':>4} {'mode':20} {'ru_maxrss':>9} {'VmHWM':>6} {'peak-start':>10} {'RssAnon':>8} "
              f"{'anon-start':>10} {'seconds':>8} {'checksum':>14}")
        results = {}
        for scale, path in sets.items():
            for mode, label in MODES.items():
                run = subprocess.run([sys.executable, __file__, "measure", mode, str(path), str(prefix)],
                                     check=True, capture_output=True, text=True)
                r = results[scale, mode] = json.loads(run.stdout.splitlines()[-1])
                print(f"{f'{scale}x':>4} {label:20} {r['maxrss_mib']:9.0f} {r['peak_mib']:6.0f} "
                      f"{r['peak_mib'] - r['start_rss_mib']:10.1f} {r['anon_mib']:8.0f} "
                      f"{r['anon_mib'] - r['start_anon_mib']:10.1f} {r['seconds']:8.2f} {r['checksum']:>14}")
        print("10x set / 1x set, same prefix:")
        for mode, label in MODES.items():
            small, large = results[1, mode], results[10, mode]
            peak = (large["peak_mib"] - large["start_rss_mib"]) / (small["peak_mib"] - small["start_rss_mib"])
            anon = (large["anon_mib"] - large["start_anon_mib"]) / (small["anon_mib"] - small["start_anon_mib"])
            print(f"  {label:20} peak-start {peak:5.2f}x   anon-start {anon:5.2f}x   "
                  f"seconds {large['seconds'] / small['seconds']:5.2f}x")
        whole, stream = results[10, "whole"], results[10, "stream"]
        print(f"10x set, whole / stream: peak-start "
              f"{(whole['peak_mib'] - whole['start_rss_mib']) / (stream['peak_mib'] - stream['start_rss_mib']):.1f}x, "
              f"seconds {whole['seconds'] / stream['seconds']:.2f}x")


if __name__ == "__main__":
    if sys.argv[1:2] == ["measure"]:
        print(json.dumps(measure(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]))))
    else:
        main()
