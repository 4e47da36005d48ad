"""Model folders are read only inside themselves, and unreadable model files are the caller's error (400)."""

import json
import os
from pathlib import Path

import pytest
import sklearn
import yaml

from mlaas.adapters.model_files import ModelLoader, _input_example, inside
from mlaas.errors import InvalidInput
from mlaas.settings import Settings


def model_folder(tmp_path: Path, conf: dict, **meta) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    flavor = {"sklearn_version": sklearn.__version__, **conf}
    (folder / "MLmodel").write_text(yaml.safe_dump({"flavors": {"sklearn": flavor}, **meta}))
    return folder


@pytest.mark.parametrize("pickled", ["../../../../etc/hostname", "/etc/hostname", "sub/../../outside.skops"])
def test_a_model_file_outside_the_folder_is_refused(tmp_path, pickled):
    folder = model_folder(tmp_path, {"pickled_model": pickled, "serialization_format": "skops"})
    with pytest.raises(InvalidInput, match="pickled_model points outside the model's folder"):
        ModelLoader(Settings()).load(str(folder), label="m/1")


def test_a_link_inside_the_folder_that_leads_out_is_refused(tmp_path):
    folder = model_folder(tmp_path, {"pickled_model": "model.skops", "serialization_format": "skops"})
    os.symlink("/etc/hostname", folder / "model.skops")
    with pytest.raises(InvalidInput, match="outside the model's folder"):
        ModelLoader(Settings()).load(str(folder), label="m/1")


def test_a_file_that_is_not_skops_is_a_400_naming_the_model(tmp_path):
    folder = model_folder(tmp_path, {"pickled_model": "model.skops", "serialization_format": "skops"})
    (folder / "model.skops").write_bytes(b"this is not a zip archive")
    with pytest.raises(InvalidInput, match="model m/1 is not a readable skops file"):
        ModelLoader(Settings()).load(str(folder), label="m/1")


def test_a_truncated_pickle_is_a_400_when_pickles_are_allowed(tmp_path):
    folder = model_folder(tmp_path, {"pickled_model": "model.pkl", "serialization_format": "pickle"})
    (folder / "model.pkl").write_bytes(b"\x80\x05\x95")
    with pytest.raises(InvalidInput, match="model m/1 could not be loaded"):
        ModelLoader(Settings(allow_pickle_models=True)).load(str(folder), label="m/1")


def test_an_input_example_outside_the_folder_is_ignored(tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"columns": ["a"], "data": [[1]]}))
    folder = model_folder(tmp_path, {})
    info = {"type": "dataframe", "pandas_orient": "split", "artifact_path": "../secret.json"}
    assert _input_example(str(folder), {"saved_input_example_info": info}) is None
    (folder / "example.json").write_text(secret.read_text())
    inside_info = {**info, "artifact_path": "example.json"}
    assert _input_example(str(folder), {"saved_input_example_info": inside_info}).to_dict("list") == {"a": [1]}


def test_inside_keeps_paths_within_the_folder(tmp_path):
    assert inside(str(tmp_path), "a/b.skops", "m", "f") == os.path.join(os.path.realpath(tmp_path), "a", "b.skops")
