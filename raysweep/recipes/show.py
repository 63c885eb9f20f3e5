"""What a recipe is and what its build did: the mix, and what every curation operator removed.

``raysweep recipes show CLUSTER [RECIPE]`` prints one Rich table per recipe from the build manifest of its
shard set (``<storage>/shards/<recipe>-<hash>/manifest.json``): per source its token share, the sequences
and tokens built, the documents read and kept, and the documents and tokens each operator removed, by
reason. A recipe that has not been built yet (or whose inputs changed since) shows its mix only.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from raysweep.config import Recipe, SweepConfig
from raysweep.recipes.build import Manifest, read_manifest, recipe_components, shard_dir, shard_key
from raysweep.recipes.sources import SourceError


def show_recipes(sweep: SweepConfig, shards_root: Path, console: Console, only: str | None = None) -> int:
    """Print every recipe (or `only`); 2 when `only` names no recipe, else 0."""
    recipes = [r for r in sweep.recipes if only in (None, r.name)]
    if not recipes:
        print(f"raysweep recipes show: no recipe {only!r} in {sweep.name} (recipes: "
              f"{', '.join(r.name for r in sweep.recipes)})", file=sys.stderr)
        return 2
    for recipe in recipes:
        components = recipe_components(recipe, sweep)
        try:
            key = shard_key(components, sweep.tokenizer, sweep.seq_len, recipe.epochs)
        except SourceError as err:
            console.print(_mix_table(recipe, sweep, f"cannot read its sources: {err}"))
            continue
        manifest = read_manifest(shard_dir(shards_root, recipe.name, key))
        if manifest is None:
            console.print(_mix_table(recipe, sweep, "not built yet with these inputs (a launch builds it)"))
        else:
            console.print(_manifest_table(manifest))
    return 0


def _mix_table(recipe: Recipe, sweep: SweepConfig, status: str) -> Table:
    table = Table(title=f"{recipe.name}: {status}", title_justify="left")
    table.add_column("source")
    table.add_column("token share", justify="right")
    table.add_column("definition")
    for component in recipe.mix:
        table.add_row(component.source, f"{component.weight:.1%}", repr(sweep.sources[component.source]))
    return table


def _manifest_table(manifest: Manifest) -> Table:
    title = (f"{manifest.name}: {manifest.num_sequences:,} sequences × {manifest.seq_len} = "
             f"{manifest.num_tokens:,} tokens, {manifest.bytes_per_token:.2f} bytes/token, "
             f"epochs {manifest.epochs}, built in {manifest.build_s:.1f} s")
    table = Table(title=title, title_justify="left")
    for name in ("source", "share", "sequences", "tokens of kept documents", "documents read", "documents kept"):
        table.add_column(name, justify="left" if name == "source" else "right")
    table.add_column("removed (documents / tokens), by reason")
    for component in manifest.components:
        removed = "\n".join(f"{reason}: {r['documents']:,} / {r['tokens']:,}"
                            for reason, r in sorted(component.removed.items(), key=lambda kv: -kv[1]["documents"]))
        operators = ", ".join(next(iter(op)) for op in component.stream["operators"]) or "none"
        table.add_row(f"{component.source}\n[dim]operators: {operators}[/dim]", f"{component.weight:.1%}",
                      f"{component.num_sequences:,}", f"{component.tokens_kept:,}",
                      f"{component.documents_read:,}", f"{component.documents_kept:,}", removed or "-")
    return table
