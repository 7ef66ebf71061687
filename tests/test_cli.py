"""The ``sbilab`` command's own logic: dispatch, the user's conf/ on the search path, the model skeleton."""

from __future__ import annotations

import pytest

from sbilab import cli
from sbilab.errors import ConfigError
from sbilab.scaffold import write_model


def test_help_and_an_unknown_command(capsys):
    assert cli.main(["--help"]) == 0
    assert "sbilab train" in capsys.readouterr().out
    assert cli.main(["trian"]) == 2
    assert "unknown command 'trian'; allowed: train, sweep, simulate, cells, ui, new-model" in capsys.readouterr().err


def test_the_projects_conf_folder_joins_the_search_path(tmp_path):
    assert cli.with_user_configs(["seed=1"], tmp_path) == ["seed=1"]  # no conf/: nothing added
    (tmp_path / "conf").mkdir()
    assert cli.with_user_configs(["seed=1"], tmp_path) == ["seed=1", f"hydra.searchpath=[file://{tmp_path}/conf]"]
    given = ["hydra.searchpath=[pkg://mypkg.conf]"]
    assert cli.with_user_configs(given, tmp_path) == given  # the user's own choice wins
    assert cli.config_dir().joinpath("config.yaml").is_file()  # sbilab's tree ships inside the package


def test_a_sweep_runs_on_every_core_unless_a_launcher_is_named():
    assert cli._sweep_overrides(["seed=0,1"])[0] == "hydra/launcher=joblib"
    assert cli._sweep_overrides(["hydra/launcher=slurm", "seed=0,1"]) == ["hydra/launcher=slurm", "seed=0,1"]


def test_ui_without_a_store_is_one_line(tmp_path, capsys):
    assert cli._ui(["--store", str(tmp_path)], tmp_path) == 2
    assert f"--store={tmp_path}: no mlflow.db there" in capsys.readouterr().err


@pytest.mark.parametrize("name,message", [
    ("my-model", "expected a Python identifier"),
    ("class", "expected a Python identifier"),
    ("two_moons", "sbilab already has two_moons in conf/simulator/"),
])
def test_new_model_refuses_names_it_cannot_use(tmp_path, name, message):
    with pytest.raises(ConfigError, match=message):
        write_model(name, tmp_path)
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_new_model_never_overwrites(tmp_path):
    written = write_model("decay", tmp_path)
    assert {p.relative_to(tmp_path).as_posix() for p in written} >= {
        "decay/simulator.py", "conf/simulator/decay.yaml", "conf/prior/decay.yaml", "conf/experiment/decay.yaml",
        "tests/test_decay.py"}
    (tmp_path / "decay" / "simulator.py").write_text("# my edits")
    with pytest.raises(ConfigError, match="exists; nothing was written"):
        write_model("decay", tmp_path)
    assert (tmp_path / "decay" / "simulator.py").read_text() == "# my edits"
