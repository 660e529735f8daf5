"""Run ids: one pattern, checked where an id becomes a path, so no id leads outside <store>/runs/."""

from __future__ import annotations

import pytest

from trainpipe.errors import RunError
from trainpipe.pipeline import new_run_id
from trainpipe.store import Store, is_run_id

BAD_IDS = ["../../x", "/abs/path", "a/b", "a\\b", "a\nb", "a;b", "-x", ".", "..", ".hidden", "", "x" * 65, "a b", "é"]


@pytest.mark.parametrize("run_id", BAD_IDS)
def test_a_malformed_run_id_is_refused_naming_the_option(run_id, tmp_path):
    with pytest.raises(RunError) as caught:
        Store(tmp_path).run_dir(run_id, "--run-id")
    assert caught.value.key == "--run-id"
    assert caught.value.message.startswith("--run-id: ") and "\n" not in caught.value.message
    assert not is_run_id(run_id)


@pytest.mark.parametrize("run_id", ["r1", "victim", "exp_3.retry-2", "A" * 64, new_run_id()])
def test_plain_and_generated_ids_are_folders_directly_inside_runs(run_id, tmp_path):
    store = Store(tmp_path)
    assert store.run_dir(run_id) == store.runs_dir / run_id


def test_a_run_folder_that_is_a_symlink_out_of_the_store_is_refused(tmp_path):
    store = Store(tmp_path / "store").ensure()
    (tmp_path / "elsewhere").mkdir()
    (store.runs_dir / "planted").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RunError, match="--resume: run folder .* outside"):
        store.run_dir("planted", "--resume")
