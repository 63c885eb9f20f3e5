"""Plan a sweep's trials and run the unfinished ones on Ray Tune.

Modules, in the order a launch uses them: ``launch`` (a family's trials, ``raysweep.families``), ``trainable``
(Tune), ``search`` (per-recipe TPE and ASHA), ``early_stop`` (proxy rounds), ``progress``.

``plan_trials`` expands a sweep file into trial specs: the proxy grid (recipe × proxy model × learning
rate × seed) and, per recipe, the target grid (learning rate × batch size × weight decay × seed), unless a
TPE searcher proposes the targets during the run (``search``). ``launch`` skips every trial
whose result is already stored, builds the shards the rest need with Ray Data, and runs them on Tune, in
experiments of at most ``TRIALS_PER_EXPERIMENT`` trials (with ``proxy.early_stop``, per round of evaluations
too); each trial stores its own rows when it ends and checkpoints after every evaluation, so an interrupted
launch resumes where it stopped::

    cluster, sweep = load_cluster("cluster/local.yaml"), load_sweep("search_spaces/demo.yaml")
    outcome = launch(cluster, sweep, console)     # trains what is missing; a second call trains nothing
"""

from raysweep.sweep.launch import LaunchOutcome, launch, start_ray

__all__ = ["LaunchOutcome", "launch", "start_ray"]
