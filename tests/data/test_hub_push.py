"""Pushing a dataset to the hub: refused with a clear fix without a token, and never offline."""

from __future__ import annotations

import socket

import pytest

from dpo_core.cli.main import main
from dpo_core.data.exporter import push_dataset
from dpo_core.data.importer import import_pairs
from dpo_core.errors import DataError


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def pairs(store, monkeypatch):
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    rows = [{"prompt": f"p{i}", "chosen": f"a{i}", "rejected": f"b{i}"} for i in range(4)]
    return import_pairs(store, rows, dataset="d").dataset


def test_push_without_token_names_the_fix_and_stays_offline(store, pairs, no_network):
    with pytest.raises(DataError) as err:
        push_dataset(store, "d", "me/pairs")
    assert "token" in err.value.message
    assert "HF_TOKEN" in err.value.fix


def test_cli_push_without_token_exits_2_with_the_fix(workspace, pairs, no_network, capsys):
    assert main(["data", "push", "d", "--repo", "me/pairs", "--public"]) == 2
    assert "HF_TOKEN" in capsys.readouterr().err


def test_push_failure_offline_is_a_data_error(store, pairs, monkeypatch):
    """A connection error from the hub client becomes a DataError naming the repo and the fix."""
    import datasets

    def offline(self, *args, **kwargs):
        raise ConnectionError("Failed to resolve 'huggingface.co'")

    monkeypatch.setattr(datasets.DatasetDict, "push_to_hub", offline)
    with pytest.raises(DataError) as err:
        push_dataset(store, "d", "me/pairs", token="hf_x")
    assert "me/pairs" in err.value.message and "ConnectionError" in err.value.message
    assert "network" in err.value.fix


def test_push_sends_each_split_in_trl_shape(store, pairs, monkeypatch):
    import datasets

    sent = {}
    monkeypatch.setattr(datasets.DatasetDict, "push_to_hub",
                        lambda self, repo, **kw: sent.update(repo=repo, data=self, **kw))
    url = push_dataset(store, "d", "me/pairs", token="hf_x", private=False)
    assert url.endswith("datasets/me/pairs")
    assert sent["private"] is False and sent["token"] == "hf_x"
    assert sent["data"]["train"].to_list()[0] == {"prompt": "p0", "chosen": "a0",
                                                  "rejected": "b0"}


def test_bad_repo_id_is_refused(store, pairs):
    with pytest.raises(DataError, match="USER/NAME"):
        push_dataset(store, "d", "no-slash", token="hf_x")
