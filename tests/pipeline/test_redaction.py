"""Credentials never reach MLflow params/tags, logs or output files (pipeline.common.redact)."""

from __future__ import annotations

import socket

import pytest
from mlflow import MlflowClient

from pipeline.common.errors import StageError
from pipeline.common.redact import MASK, redact, redact_text
from pipeline.tracking import open_run

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(("text", "expected"), [
    (f"https://dgmn:{SECRET}@mlflow.example.org:5000/api",
     "https://***@mlflow.example.org:5000/api"),
    (f"postgresql://u:{SECRET}@db/mlflow", "postgresql://***@db/mlflow"),
    (f"https://user:p@ss{SECRET}@host/x", "https://***@host/x"),  # unescaped @ in the password
    (f"https://host/store?token={SECRET}&region=eu", "https://host/store?token=***&region=eu"),
    (f"s3://bucket/x?X-Amz-Signature={SECRET}&api_key={SECRET}",
     "s3://bucket/x?X-Amz-Signature=***&api_key=***"),
    (f"failed to reach https://a:{SECRET}@h/ and http://b:{SECRET}@g:1",
     "failed to reach https://***@h/ and http://***@g:1"),
    ("sqlite:////abs/mlflow.db", "sqlite:////abs/mlflow.db"),  # nothing to hide: unchanged
    ("https://host/x?page=2&sort=asc", "https://host/x?page=2&sort=asc"),
])
def test_redact_text_masks_userinfo_and_credential_query_values(text, expected):
    assert redact_text(text) == expected


def test_redact_masks_credential_keys_and_uris_at_any_depth_and_keeps_the_rest():
    config = {"tracking": {"uri": f"http://u:{SECRET}@127.0.0.1:5000", "experiment": "dgmn"},
              "storage": {"password": SECRET, "api_token": SECRET, "aws_secret_access_key": "x",
                          "key": SECRET, "unset_password": None},
              "schedule": {"lr": 0.01, "lr_steps": [3, 4]},
              "hosts": [f"ray://a:{SECRET}@head:10001"]}
    out = redact(config)
    assert SECRET not in repr(out)
    assert out["tracking"] == {"uri": "http://***@127.0.0.1:5000", "experiment": "dgmn"}
    assert out["storage"] == {"password": MASK, "api_token": MASK, "aws_secret_access_key": MASK,
                              "key": MASK, "unset_password": None}
    assert out["schedule"] == {"lr": 0.01, "lr_steps": [3, 4]}
    assert out["hosts"] == ["ray://***@head:10001"]
    assert config["storage"]["password"] == SECRET  # the caller's copy keeps the real value


def test_open_run_logs_params_and_tags_without_credentials(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = open_run(uri, "dgmn", "run", "key-1",
                       params={"tracking": {"uri": f"https://dgmn:{SECRET}@host"},
                               "schedule": {"lr": 0.01}},
                       tags={"source": f"https://dgmn:{SECRET}@git.example.org/dgmn.git"})
    run = MlflowClient(uri).get_run(tracker.run_id)
    assert run.data.params["tracking.uri"] == "https://***@host"
    assert run.data.params["schedule.lr"] == "0.01"
    assert run.data.tags["source"] == "https://***@git.example.org/dgmn.git"
    assert SECRET not in repr(run.data.params) + repr(run.data.tags)


def test_an_unreachable_tracking_server_is_one_error_without_its_credentials(monkeypatch,
                                                                              capsys):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StageError) as failed:
        open_run(f"http://dgmn:{SECRET}@127.0.0.1:{port}", "dgmn", "run", "key-1", params={},
                 tags={})
    assert str(failed.value).startswith(f"MLflow store http://***@127.0.0.1:{port}: ")
    printed = capsys.readouterr()
    assert SECRET not in str(failed.value) + printed.out + printed.err
