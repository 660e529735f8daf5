"""The store: where it is (a folder, named by what set it when it is not) and run ids (one pattern, checked
where an id becomes a path, so no id leads outside <store>/runs/)."""

from __future__ import annotations

import pytest

from trainpipe.errors import ConfigError, RunError
from trainpipe.pipeline.run import new_run_id
from trainpipe.store import Store, is_run_id


def test_a_store_that_is_a_file_is_a_config_error_naming_its_source(tmp_path, monkeypatch):
    afile = tmp_path / "notes.txt"
    afile.write_text("x")
    with pytest.raises(ConfigError) as err:
        Store.locate(str(afile))
    assert err.value.message.startswith("store:") and "is a file" in err.value.message and err.value.key == "store"
    with pytest.raises(ConfigError) as err:
        Store.locate(str(afile / "sub"), source="--store")
    assert err.value.message.startswith("--store:") and f"under {afile}" in err.value.message
    monkeypatch.setenv("TRAINPIPE_HOME", str(afile))
    with pytest.raises(ConfigError) as err:
        Store.locate(None)
    assert err.value.message.startswith("TRAINPIPE_HOME:")


def test_a_store_that_does_not_exist_yet_is_fine(tmp_path):
    assert Store.locate(str(tmp_path / "new" / "store")).root == tmp_path / "new" / "store"


BAD_IDS = ["../../x", "/abs/path", "a/b", "a\\b", "a\nb", "a;b", "-x", ".", "..", ".hidden", "", "x" * 65, "a b", "é"]


@pytest.mark.parametrize("run_id", BAD_IDS)
def test_a_malformed_run_id_is_refused_naming_the_option(run_id, tmp_path):
    with pytest.raises(RunError) as caught:
        Store(tmp_path).run_dir(run_id, "--run-id")
    assert caught.value.key == "--run-id"
    assert caught.value.message.startswith("--run-id: ") and "\n" not in caught.value.message
    assert not is_run_id(run_id)


@pytest.mark.parametrize("run_id", ["r1", "victim", "exp_3.retry-2", "A" * 64, "generated"])
def test_plain_and_generated_ids_are_folders_directly_inside_runs(run_id, tmp_path):
    run_id = new_run_id() if run_id == "generated" else run_id  # generated here: test ids must not vary per process
    store = Store(tmp_path)
    assert store.run_dir(run_id) == store.runs_dir / run_id


def test_a_run_folder_that_is_a_symlink_out_of_the_store_is_refused(tmp_path):
    store = Store(tmp_path / "store").ensure()
    (tmp_path / "elsewhere").mkdir()
    (store.runs_dir / "planted").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RunError, match="--resume: run folder .* outside"):
        store.run_dir("planted", "--resume")
