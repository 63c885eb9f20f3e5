"""Opt-in tracking through Ray Tune's own logger callbacks (the profile's ``tracking:``): MLflow, Weights & Biases,
TensorBoard. Every trial is a tracked run named as on the dashboard, its entry (role, recipe, seed,
configuration) as parameters and what it reports to Tune (loss, step, tokens, evaluation) as metrics, grouped by
proxy setting (``proxy opt-nano lr 0.0001``) or, for targets, by recipe (``target balanced``); after a launch the
report's summary is a run of its own (``<sweep> report``)::

    tracking:
      mlflow: {tracking_uri: runs/mlruns}              # a folder (file store) or a server's URL
      wandb: {project: data-recipes, mode: offline}
      tensorboard: true
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from ray import tune

from raysweep.config import MLflowTracking, Tracking
from raysweep.plain import to_json

REPORT_GROUP = "report"


def _mlflow_uri(config: MLflowTracking) -> str:
    """A server or database URL as given; a folder as an absolute file URI (trials may run in another working
    directory), MLflow's file store, which MLflow 3 keeps in maintenance mode and opens only when asked to."""
    uri = config.tracking_uri
    if urlparse(uri).scheme:
        return uri
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return Path(uri).absolute().as_uri()


def tracking_callbacks(tracking: Tracking, sweep_name: str, run_path: Path) -> list[tune.Callback]:
    """The Tune callbacks the profile asks for (none by default)."""
    callbacks: list[tune.Callback] = []
    if tracking.mlflow:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        class GroupedMLflow(MLflowLoggerCallback):
            """Tags each trial's run with its group, role and recipe, the views an MLflow user filters by."""

            def log_trial_start(self, trial):
                entry = trial.config["trial"]
                self.tags = {"raysweep.sweep": sweep_name, "raysweep.group": entry["group"],
                             "raysweep.role": entry["role"], "raysweep.recipe": entry["recipe"]}
                super().log_trial_start(trial)

        callbacks.append(GroupedMLflow(tracking_uri=_mlflow_uri(tracking.mlflow),
                                       experiment_name=tracking.mlflow.experiment or sweep_name))
    if tracking.wandb:
        from ray.air.integrations.wandb import WandbLoggerCallback

        class GroupedWandb(WandbLoggerCallback):
            """One W&B group per proxy setting or target recipe."""

            def log_trial_start(self, trial):
                self.group = trial.config["trial"]["group"]
                super().log_trial_start(trial)

        if tracking.wandb.mode == "offline":
            os.environ.setdefault("WANDB_MODE", "offline")  # no API key is asked for offline runs
        callbacks.append(GroupedWandb(project=tracking.wandb.project, entity=tracking.wandb.entity,
                                      mode=tracking.wandb.mode, dir=str(run_path)))
    if tracking.tensorboard:
        from ray.tune.logger import TBXLoggerCallback

        callbacks.append(TBXLoggerCallback())
    return callbacks


def report_summary(report) -> tuple[dict[str, str], dict[str, float]]:
    """(parameters, metrics) of a report's decision: the recipe shipped and its tuned score, each chosen and
    standard proxy setting's Spearman and regret@1 with their CIs."""
    main = report.main
    params = {"metric": str(report.metric), "domain": main.domain}
    metrics: dict[str, float] = {}
    if main.targets:
        params["ship"] = main.targets[0].recipe
        metrics["tuned_target_score"] = report.terms().shown(main.targets[0].loss).point
    for setting in main.proxies:
        if setting.agreement and (setting.is_chosen or setting.is_standard):
            label = "chosen" if setting.is_chosen else "standard"
            params[f"{label}_lr/{setting.model}"] = f"{setting.lr:g}"
            stats = {"spearman": setting.agreement.spearman, "regret_at_1": setting.agreement.regret.get(1)}
            for name, stat in stats.items():
                if stat is not None:
                    metrics.update({f"{label}/{setting.model}/{name}": stat.point,
                                    f"{label}/{setting.model}/{name}_low": stat.low,
                                    f"{label}/{setting.model}/{name}_high": stat.high})
    return params, {k: float(v) for k, v in metrics.items() if v == v}  # NaN: undefined, not logged


def track_report(tracking: Tracking, report, sweep_name: str, run_path: Path) -> list[str]:
    """Log the report's summary as a run of its own in every tracker the profile names; returns where."""
    from raysweep.report.verdict import verdict

    params, metrics = report_summary(report)
    logged = []
    if tracking.mlflow:
        import mlflow

        mlflow.set_tracking_uri(_mlflow_uri(tracking.mlflow))
        mlflow.set_experiment(tracking.mlflow.experiment or sweep_name)
        with mlflow.start_run(run_name=f"{sweep_name} report",
                              tags={"raysweep.sweep": sweep_name, "raysweep.group": REPORT_GROUP}):
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            mlflow.log_text(verdict(report), "verdict.txt")
            mlflow.log_text(to_json(report), "report.json")
        logged.append(f"MLflow {_mlflow_uri(tracking.mlflow)} (experiment {tracking.mlflow.experiment or sweep_name})")
    if tracking.wandb:
        import wandb

        run = wandb.init(project=tracking.wandb.project, entity=tracking.wandb.entity, mode=tracking.wandb.mode,
                         dir=str(run_path), name=f"{sweep_name} report", group=REPORT_GROUP, job_type="report",
                         config=params, reinit="create_new")
        run.summary.update({**metrics, "verdict": verdict(report)})
        run.finish()
        logged.append(f"W&B project {tracking.wandb.project} ({tracking.wandb.mode})")
    if tracking.tensorboard:
        from tensorboardX import SummaryWriter

        folder = run_path / "tune" / REPORT_GROUP
        with SummaryWriter(str(folder)) as writer:
            for name, value in metrics.items():
                writer.add_scalar(name, value)
            writer.add_text("verdict", verdict(report))
        logged.append(f"TensorBoard {folder}")
    return logged
