"""Ray cluster-launcher YAMLs (cluster/): validated offline with Ray's own code.

``prepare_config`` (merge with the provider's ``defaults.yaml``, setup-command merging, Docker
checks, per-type worker limits; for ``local`` also the node-type and worker-ip rules) and then
``validate_config`` (``ray-schema.json`` via jsonschema, head type among the node types,
``sum(min_workers) <= max_workers``) are what ``ray up`` runs before it bootstraps the provider.
Neither touches the network; the fixture below makes sure of it. The provider bootstrap that
``ray up`` does next (IAM role, key pair, subnets, AMI lookup for AWS; SSH for on-prem) needs the
cloud or the machines and is not checked here. These helpers are private Ray API: the Ray pin is
asserted so that an upgrade revisits this file.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import runpy
import shlex
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ray = pytest.importorskip("ray")
jsonschema = pytest.importorskip("jsonschema")

from ray.autoscaler._private.util import prepare_config, validate_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
CONFIGS = ["aws-gpu.yaml", "onprem.yaml"]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection or name lookup during these tests is a failure."""
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((CLUSTER / name).read_text())


def _validated(raw: dict[str, Any]) -> dict[str, Any]:
    """What ``ray up`` does before touching the provider: prepare, then validate."""
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


def test_ray_is_the_pinned_version():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [d for d in pyproject["project"]["optional-dependencies"]["pipeline"]
            if d.startswith("ray[")]
    assert pins and pins[0].endswith(f"=={ray.__version__}"), (pins, ray.__version__)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_validates_offline(name):
    config = _validated(_load(name))
    assert config["head_node_type"] in config["available_node_types"]
    assert "boto3" not in sys.modules and "botocore" not in sys.modules


@pytest.mark.parametrize("name", CONFIGS)
def test_setup_commands_install_the_project(name):
    config = _validated(_load(name))
    for key in ("head_setup_commands", "worker_setup_commands"):  # setup_commands merged in
        commands = config[key]
        clone = next(i for i, c in enumerate(commands) if "git clone" in c)
        install = next(i for i, c in enumerate(commands) if "scripts/setup_env.sh" in c)
        assert clone < install
        assert re.search(r"cd ~/dgmn && bash scripts/setup_env\.sh pipeline\b", commands[install])
    # the extra named there exists and brings Ray, and the script is the repository's
    assert "pipeline" in tomllib.loads((ROOT / "pyproject.toml").read_text())[
        "project"]["optional-dependencies"]
    assert (ROOT / "scripts" / "setup_env.sh").is_file()


@pytest.mark.parametrize("name", CONFIGS)
def test_ray_starts_from_the_project_venv_with_token_auth(name):
    config = _validated(_load(name))
    env_line = next(c for c in config["setup_commands"] if "dgmn-env.sh" in c and ">" in c)
    assert "RAY_AUTH_MODE=token" in env_line and "$HOME/dgmn/.venv/bin" in env_line
    assert "RAY_AUTH_TOKEN_PATH=$HOME/ray_auth_token" in env_line
    assert config["file_mounts"]["~/ray_auth_token"] == "~/.ray/auth_token"
    head, worker = config["head_start_ray_commands"], config["worker_start_ray_commands"]
    assert any("source ~/dgmn-env.sh" in c and "ray start --head" in c for c in head)
    assert any("--autoscaling-config=~/ray_bootstrap_config.yaml" in c for c in head)
    assert any("source ~/dgmn-env.sh" in c and "--address=$RAY_HEAD_IP:6379" in c
               for c in worker)


#: The head's dashboard address: the node IP Ray itself picks (the private / LAN address).
DASHBOARD_HOST = ("--dashboard-host=\"$(python -c "
                  "'import ray.util; print(ray.util.get_node_ip_address())')\"")


@pytest.mark.parametrize("name", CONFIGS)
def test_nothing_binds_every_interface_and_the_dashboard_binds_the_private_address(name):
    text = (CLUSTER / name).read_text()
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "0.0.0.0" not in body and "::/0" not in body
    head = " ".join(_validated(_load(name))["head_start_ray_commands"])
    assert DASHBOARD_HOST in head


def test_the_dashboard_host_command_prints_this_machines_node_address():
    """The shell substitution of the head start command, run with the pinned Ray: one address,
    not a wildcard (in a subprocess: this module blocks sockets). It is the address of the
    interface that routes outwards; only a machine without any route gets loopback."""
    command = DASHBOARD_HOST.split("=", 1)[1].replace("python", shlex.quote(sys.executable), 1)
    result = subprocess.run(["bash", "-c", f"echo {command}"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    address = ipaddress.ip_address(result.stdout.strip())
    assert not address.is_unspecified


def test_aws_nodes_use_one_predefined_security_group():
    """Ray's AWS bootstrap creates a security group (SSH open to 0.0.0.0/0) for every node type
    whose node_config has no SecurityGroupIds; with the project's group on every type it creates
    none. How to create that group (SSH from the user's CIDR only) is in docs/cluster.md."""
    config = _validated(_load("aws-gpu.yaml"))
    groups = {name: node["node_config"].get("SecurityGroupIds")
              for name, node in config["available_node_types"].items()}
    assert set(map(tuple, groups.values())) == {("sg-REPLACE-ME",)}, groups
    assert "security_group" not in config["provider"]  # rules Ray would add to a group it made
    docs = (ROOT / "docs" / "cluster.md").read_text()
    for step in ("aws ec2 create-security-group", "authorize-security-group-ingress",
                 '--port 22 --cidr "$ADMIN_CIDR"', '--protocol -1 --source-group "$SG"'):
        assert step in docs, step


def test_aws_gpu_workers_declare_gpus_and_fit_the_paper_scaling():
    config = _validated(_load("aws-gpu.yaml"))
    assert config["provider"]["type"] == "aws"
    head = config["available_node_types"][config["head_node_type"]]
    assert head["max_workers"] == 0 and head["resources"].get("GPU", 0) == 0
    workers = {k: v for k, v in config["available_node_types"].items()
               if k != config["head_node_type"]}
    gpu_types = {k: v for k, v in workers.items() if v["resources"].get("GPU", 0) >= 1}
    assert gpu_types, "no worker type declares GPUs"
    (gpu,) = gpu_types.values()
    assert gpu["resources"]["GPU"] == 4 and gpu["max_workers"] >= 1
    # docker: Ray's image of the pinned version, Python 3.11 (the project's floor)
    assert config["docker"]["image"].startswith(f"rayproject/ray:{ray.__version__}-py311")
    assert "boto3" in " ".join(config["head_setup_commands"])  # the autoscaler's EC2 client
    # the scaling configs the `paper` profile uses fit: one run per GPU node for 4 workers,
    # max_workers nodes for 8
    for scaling, nodes in (("gpu4.yaml", 1), ("gpu8.yaml", config["max_workers"])):
        path = ROOT / "conf" / "scaling" / scaling
        if not path.exists():
            continue
        s = yaml.safe_load(path.read_text())
        per_node = gpu["resources"]["GPU"] // s["gpus_per_worker"]
        assert s["num_workers"] <= per_node * nodes, scaling
        assert per_node * s["cpus_per_worker"] <= gpu["resources"]["CPU"], scaling


def test_placeholders_are_documented():
    docs = (ROOT / "docs" / "cluster.md").read_text()
    for name in CONFIGS:
        text = (CLUSTER / name).read_text()
        body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        for placeholder in sorted(set(re.findall(r"[\w./:-]*REPLACE-ME[\w./:-]*", body))):
            assert placeholder in docs, f"{name}: {placeholder} not explained in docs/cluster.md"
        assert f"ray up cluster/{name}" in docs


# --- negative cases: Ray's validation must reject these -----------------------------------------

def _aws() -> dict[str, Any]:
    return _load("aws-gpu.yaml")


def _typo_top_level(c: dict) -> None:
    c["idle_timeout_minuts"] = c.pop("idle_timeout_minutes")


def _typo_node_type_key(c: dict) -> None:
    c["available_node_types"]["gpu_worker"]["min_worker"] = 0


def _missing_node_config(c: dict) -> None:
    del c["available_node_types"]["gpu_worker"]["node_config"]


def _missing_resources(c: dict) -> None:
    del c["available_node_types"]["gpu_worker"]["resources"]


def _gpu_count_as_string(c: dict) -> None:
    c["available_node_types"]["gpu_worker"]["resources"]["GPU"] = "4"


def _typo_docker_key(c: dict) -> None:
    c["docker"]["imagee"] = c["docker"]["image"]


@pytest.mark.parametrize(("mutate", "message"), [
    (_typo_top_level, "'idle_timeout_minuts' was unexpected"),
    (_typo_node_type_key, "'min_worker' was unexpected"),
    (_missing_node_config, "'node_config' is a required property"),
    (_missing_resources, "'resources' is a required property"),
    (_gpu_count_as_string, "'4' is not of type 'integer'"),
    (_typo_docker_key, "'imagee' was unexpected"),
])
def test_schema_rejects(mutate, message):
    config = _aws()
    mutate(config)
    with pytest.raises(jsonschema.ValidationError, match=re.escape(message)):
        _validated(config)


def test_head_type_must_exist_and_min_workers_fit():
    config = _aws()
    config["head_node_type"] = "hed"
    with pytest.raises(ValueError, match="head_node_type"):
        _validated(config)
    config = _aws()
    config["available_node_types"]["gpu_worker"]["min_workers"] = 3  # > max_workers 2
    with pytest.raises(ValueError, match="min_workers"):
        _validated(config)


def test_commands_as_a_string_fail_before_the_schema():
    config = _aws()
    config["setup_commands"] = "bash scripts/setup_env.sh"
    with pytest.raises(TypeError):  # prepare_config concatenates the lists before validating
        _validated(config)


def test_missing_provider_fails():
    config = _aws()
    del config["provider"]
    with pytest.raises(KeyError, match="provider"):
        _validated(config)


def test_onprem_rejects_missing_worker_ips_and_node_types():
    import click

    config = _load("onprem.yaml")
    del config["provider"]["worker_ips"]
    with pytest.raises(click.ClickException):
        _validated(config)
    config = _load("onprem.yaml")
    config["available_node_types"] = _aws()["available_node_types"]
    with pytest.raises(click.ClickException):
        _validated(config)


# --- cluster/run_stage.py, the `ray submit` bridge to `python -m pipeline.<stage>` --------------

def test_run_stage_runs_the_module_from_the_checkout(tmp_path, monkeypatch):
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "__init__.py").write_text("")
    (tmp_path / "pipeline" / "echo_stage.py").write_text(
        "import os, sys, pathlib\n"
        "if __name__ == '__main__':\n"
        "    pathlib.Path('seen.txt').write_text(os.getcwd() + '|' + ' '.join(sys.argv[1:]))\n")
    monkeypatch.setenv("DGMN_HOME", str(tmp_path))
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "path", list(sys.path))
    saved = {k: v for k, v in sys.modules.items() if k == "pipeline" or k.startswith("pipeline.")}
    for k in saved:
        monkeypatch.delitem(sys.modules, k)
    try:
        helper = runpy.run_path(str(CLUSTER / "run_stage.py"))
        helper["main"](["echo_stage", "experiment=table1/dgmn_da_dw_ds", "profile=paper"])
    finally:
        for k in [k for k in sys.modules if k == "pipeline" or k.startswith("pipeline.")]:
            del sys.modules[k]
        sys.modules.update(saved)
    assert (tmp_path / "seen.txt").read_text() == \
        f"{tmp_path}|experiment=table1/dgmn_da_dw_ds profile=paper"
    with pytest.raises(SystemExit, match="usage"):
        helper["main"](["../evil"])
