"""How a run reads in the MLflow UI: names, gate numbers and description, datasets, standard tags, progress.

Real parts throughout: a real SQLite store in a temporary folder, a real (tiny) Lightning fit.
The full UI is driven in a browser by tests/test_ui.py.
"""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from sbilab import tracking
from sbilab.config import TrainerSettings
from sbilab.experiments.sweep import swept_keys
from sbilab.methods import NPE
from sbilab.spec import budget_label, prepare
from sbilab.training import EpochProgress, on_terminal, train_estimator

ROOT = Path(__file__).resolve().parents[1]

#: gates as diagnostics/gates.json holds them, with a gate and a flag this module has never heard of
GATES = {
    "verdict": "fail",
    "checks": [
        {"name": "sbc/ks_pvalue/a", "value": 0.30, "threshold": 0.01, "comparison": ">=", "passed": True},
        {"name": "tarp/atc", "value": -0.08, "threshold": 0.05, "comparison": "abs<=", "passed": False},
        {"name": "coverage/error", "value": 0.02, "threshold": 0.05, "comparison": "<=", "passed": True},
        {"name": "lc2st/pvalue", "value": None, "threshold": 0.05, "comparison": ">=", "passed": False},
        {"name": "new/kind", "value": 1.0, "threshold": 2.0, "comparison": "~", "passed": True},
    ],
    "thresholds": {"sbc_ks_pvalue_min": 0.01},
    "misspecified": True,
}


def test_gate_numbers_are_margins_on_the_passing_side():
    metrics = tracking.gate_metrics(GATES)
    assert metrics["gates/pass"] == 0.0 and metrics["gates/failed"] == 2.0
    assert metrics["gates/margin/sbc/ks_pvalue/a"] == pytest.approx(0.29)
    assert metrics["gates/margin/tarp/atc"] == pytest.approx(-0.03)  # |−0.08| exceeds 0.05 by 0.03
    assert metrics["gates/margin/coverage/error"] == pytest.approx(0.03)
    # no number (NaN stored as null) and an unknown comparison: no margin, the verdict still counts them
    assert "gates/margin/lc2st/pvalue" not in metrics and "gates/margin/new/kind" not in metrics
    assert tracking.gate_metrics({**GATES, "verdict": "pass"})["gates/pass"] == 1.0
    for check in GATES["checks"]:  # a margin's sign is the check's result
        margin = tracking.gate_margin(check)
        if margin is not None:
            assert (margin >= 0) == check["passed"], check


def test_description_leads_with_the_verdict_and_tabulates_every_gate():
    text = tracking.run_description(GATES, {"val/loss_best": 3.14159, "c2st": 0.61, "other": 1.0},
                                    ["only 60 test points"])
    first = text.splitlines()[0]
    assert first.startswith("**Calibration gates: FAIL**") and "tarp/atc, lc2st/pvalue" in first
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| gate")]
    assert [row.split(" | ")[0][2:] for row in rows] == [check["name"] for check in GATES["checks"]]
    assert all(row.count(" | ") == 4 for row in rows)  # five cells each: no stray pipe splits a row
    assert "| tarp/atc | -0.08 | abs ≤ 0.05 | -0.03 | **fail** |" in rows
    assert "- misspecified: **true**" in text  # flags the gates JSON gains later are shown as they come
    assert "val/loss_best **3.142**" in text and "c2st **0.61**" in text and "other" not in text
    assert "> only 60 test points" in text
    assert tracking.run_description(None, {}).startswith("**Calibration gates: not run**")


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["simulation.num_simulations=10000", "estimator=maf", "seed=3",
                                           f"paths.output_dir={tmp_path_factory.mktemp('out')}"])
    return prepare(cfg)


def test_run_names_come_from_the_parts_and_the_swept_values(spec):
    assert spec.run_name() == "hodgkin_huxley·npe·maf·10k·s3"
    swept = {"estimator": "maf", "simulation.num_simulations": "10000", "trainer.learning_rate": "0.001",
             "+summary": "hh_cnn"}
    assert spec.run_name(swept) == "hodgkin_huxley·npe·maf·10k·s3·learning_rate=0.001·summary=hh_cnn"
    assert spec.with_tracking(run_name="mine").run_name(swept) == "mine"  # an explicit name wins
    assert [budget_label(n) for n in (300, 1000, 2500, 10000, 12345, 2_000_000)] == [
        "300", "1k", "2.5k", "10k", "12345", "2M"]
    assert swept_keys(["estimator=maf,mdn", "trainer=fast", "+x.y=range(1,3)", "hydra.launcher.n_jobs=1,2",
                       "seed=1"]) == ["estimator", "x.y"]


def test_a_run_records_the_standard_tags_without_home_paths(tmp_path, monkeypatch):
    tags = tracking.source_tags(ROOT, str(ROOT / "scripts" / "train.py"))
    assert tags["mlflow.source.name"] == "scripts/train.py" and tags["mlflow.source.type"] == "LOCAL"
    assert re.fullmatch(r"[0-9a-f]{40}", tags["mlflow.source.git.commit"])
    assert tags["mlflow.user"]
    # an entry outside the project: its file name only, never the folder it lives in
    assert tracking.source_tags(ROOT, str(tmp_path / "elsewhere.py"))["mlflow.source.name"] == "elsewhere.py"
    assert "mlflow.source.git.commit" not in tracking.source_tags(tmp_path, "x.py")  # not a git checkout


def test_experiments_are_marked_model_training_once(store):
    client = MlflowClient(store["uri"])
    with tracking.start_run(store["uri"], "hodgkin_huxley", store["artifacts"], run_name="r", tags={}):
        pass
    experiment = client.get_experiment_by_name("hodgkin_huxley")
    assert experiment.tags[tracking.EXPERIMENT_KIND_TAG] == tracking.MODEL_TRAINING_KIND
    client.set_experiment_tag(experiment.experiment_id, tracking.EXPERIMENT_KIND_TAG, "genai_development")
    tracking.mark_model_training(store["uri"], experiment.experiment_id)  # a kind someone chose stays
    assert client.get_experiment(experiment.experiment_id).tags[tracking.EXPERIMENT_KIND_TAG] == "genai_development"


def test_runs_on_the_same_data_share_one_dataset_and_other_inputs_stay_apart(store):
    client = MlflowClient(store["uri"])
    train = tracking.DatasetRecord(name="sim·train·300", digest="8c15b7c1c8dde937cd8d", context="training",
                                   columns=["a", "b", "stat"], source=str(Path.home() / "cache" / "8c15"),
                                   profile={"simulations": 300, "invalid": 2})
    recording = tracking.DatasetRecord(name="cell_123.nwb", digest="f00d", context="observation",
                                       columns=["stat"], source="/data/cell_123.nwb")
    run_ids = []
    for inputs in ([train], [train, recording]):
        with tracking.start_run(store["uri"], "hodgkin_huxley", store["artifacts"], run_name="r", tags={}) as rec:
            tracking.log_datasets(rec, inputs)
            tracking.log_datasets(rec, [train])  # logged again: still one input
            run_ids.append(rec.run_id)
    first, second = (client.get_run(run_id).inputs.dataset_inputs for run_id in run_ids)
    assert len(first) == 1 and len(second) == 2
    assert first[0].dataset == second[0].dataset  # the same dataset: same name, digest, source, schema
    shown = first[0].dataset
    assert shown.digest == "8c15b7c1c8dde937cd8d" and shown.source == '{"uri": "~/cache/8c15"}'
    assert [c["name"] for c in json.loads(shown.schema)["mlflow_colspec"]] == ["a", "b", "stat"]
    assert {t.key: t.value for t in first[0].tags} == {"mlflow.data.context": "training"}
    assert {t.value for i in second for t in i.tags} == {"training", "observation"}
    with pytest.raises(ValueError, match="digest"):
        tracking.log_datasets(rec, [tracking.DatasetRecord("x", "0" * 37, "training")])


def test_jobs_registering_the_same_new_dataset_at_once_all_record_it(store):
    """MLflow looks for the dataset, then inserts it: jobs of a sweep that log the same new simulations at
    once break its unique key (half of these calls did before the retry; the SLURM sweep failed on it)."""
    import contextlib
    import threading

    runs = contextlib.ExitStack()  # open runs nest (each arms the interrupt latch): closed last-in first-out
    recorders = [runs.enter_context(tracking.start_run(store["uri"], "race", store["artifacts"], run_name=f"job{i}",
                                                       tags={})) for i in range(8)]
    errors: list[BaseException] = []
    for round_ in range(5):
        barrier = threading.Barrier(len(recorders))

        def log(recorder, digest=f"sims{round_}", barrier=barrier):
            barrier.wait()
            try:
                tracking.log_datasets(recorder, [tracking.DatasetRecord("sim·train·300", digest, "training")])
            except BaseException as error:  # noqa: BLE001 - reported by the assertion below
                errors.append(error)

        threads = [threading.Thread(target=log, args=(recorder,)) for recorder in recorders]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    runs.close()
    assert not errors, errors[0]
    client = MlflowClient(store["uri"])
    for recorder in recorders:
        inputs = client.get_run(recorder.run_id).inputs.dataset_inputs
        assert sorted(i.dataset.digest for i in inputs) == [f"sims{k}" for k in range(5)]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_training_progress_shows_epoch_loss_and_rate_on_a_terminal_only():
    generator = torch.Generator().manual_seed(0)
    theta = torch.rand(300, 2, generator=generator)
    x = theta + 0.1 * torch.randn(300, 2, generator=generator)
    settings = TrainerSettings(batch_size=50, learning_rate=5e-4, validation_fraction=0.1, stop_after_epochs=3,
                               clip_max_norm=5.0, max_epochs=4)
    screen = _Terminal()
    result = train_estimator(NPE(), {"model": "mdn", "hidden_features": 10, "num_components": 1}, theta, x,
                             settings, seed=0, callbacks=[EpochProgress("training", stream=screen, delay=0)])
    shown = screen.getvalue()
    assert f"training: epoch {result.epochs}" in shown and "lr 0.0005" in shown
    last = float(re.findall(r"val/loss (\S+)", shown)[-1])
    assert math.isclose(last, result.val_losses[-1], rel_tol=1e-3)
    assert not on_terminal()  # under pytest's capture: the pipeline adds no progress line
