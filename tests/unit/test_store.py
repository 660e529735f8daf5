"""Where the store is: a folder (or a path where one can be made), named by what set it when it is not."""

import pytest

from trainpipe.errors import ConfigError
from trainpipe.store import Store


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
