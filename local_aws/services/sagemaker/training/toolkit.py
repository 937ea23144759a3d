"""The sagemaker-training toolkit's contract, as a script-mode entry point sees it.

``mapping.to_cmd_args`` (hyperparameters as sorted ``--key value`` flags), the ``SM_*``
environment of ``Environment.to_env_vars``, and one instance's ``/opt/ml`` layout.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# sagemaker_* hyperparameters configure the toolkit and never reach the script as flags.
TOOLKIT_PREFIX = "sagemaker_"


def decode_hyperparameters(hyperparameters: dict[str, str]) -> dict[str, Any]:
    """Values are JSON-encoded strings; anything that is not JSON stays the raw string."""
    decoded: dict[str, Any] = {}
    for key, value in hyperparameters.items():
        try:
            decoded[key] = json.loads(value)
        except (TypeError, ValueError):
            decoded[key] = value
    return decoded


def _toolkit_str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin1")
    return str(value)


def to_cmd_args(hyperparameters: dict[str, Any]) -> list[str]:
    """Sorted ``--key value`` pairs (``-k`` for one-letter keys); dicts become ``k=v,k2=v2``."""
    args: list[str] = []
    for key in sorted(hyperparameters):
        name = _toolkit_str(key)
        args.append(f"--{name}" if len(name) > 1 else f"-{name}")
        value = hyperparameters[key]
        if hasattr(value, "items"):
            args.append(",".join(f"{k}={v}" for k, v in sorted(value.items())))
        else:
            args.append(_toolkit_str(value))
    return args


def to_env_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


@dataclass(frozen=True)
class HostLayout:
    """One instance's ``/opt/ml``."""

    host: str
    base_dir: Path

    @property
    def code_dir(self) -> Path:
        return self.base_dir / "code"

    @property
    def model_dir(self) -> Path:
        return self.base_dir / "model"

    @property
    def input_dir(self) -> Path:
        return self.base_dir / "input"

    @property
    def input_config_dir(self) -> Path:
        return self.base_dir / "input" / "config"

    @property
    def output_dir(self) -> Path:
        return self.base_dir / "output"

    @property
    def output_data_dir(self) -> Path:
        return self.base_dir / "output" / "data"

    @property
    def checkpoint_dir(self) -> Path:
        return self.base_dir / "checkpoints"

    def channel_dir(self, channel: str) -> Path:
        return self.base_dir / "input" / "data" / channel

    def create(self) -> None:
        for directory in (
            self.code_dir,
            self.model_dir,
            self.input_config_dir,
            self.output_data_dir,
            self.output_dir / "intermediate",
            self.checkpoint_dir,
            self.input_dir / "data",
        ):
            directory.mkdir(parents=True, exist_ok=True)


def resource_config(host: str, hosts: list[str], instance_type: str) -> dict[str, Any]:
    return {
        "current_host": host,
        "current_instance_type": instance_type,
        "current_group_name": "homogeneousCluster",
        "hosts": hosts,
        "instance_groups": [
            {"instance_group_name": "homogeneousCluster", "instance_type": instance_type, "hosts": hosts}
        ],
        "network_interface_name": "lo",  # the hosts are processes on this machine's loopback
    }


def input_data_config(channels: list[dict[str, Any]], default_mode: str) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for channel in channels:
        s3 = channel.get("DataSource", {}).get("S3DataSource", {})
        config[channel["ChannelName"]] = {
            "TrainingInputMode": channel.get("InputMode", default_mode),
            "S3DistributionType": s3.get("S3DataDistributionType", "FullyReplicated"),
            "RecordWrapperType": channel.get("RecordWrapperType", "None"),
            **({"ContentType": channel["ContentType"]} if "ContentType" in channel else {}),
        }
    return config


def container_environment(
    job_name: str,
    layout: HostLayout,
    hosts: list[str],
    hyperparameters: dict[str, str],
    channels: list[dict[str, Any]],
    instance_type: str,
    region: str,
    num_cpus: int,
) -> dict[str, str]:
    """The environment the toolkit gives a script-mode entry point (Environment.to_env_vars)."""
    decoded = decode_hyperparameters(hyperparameters)
    user_hps = {k: v for k, v in decoded.items() if not k.startswith(TOOLKIT_PREFIX)}
    framework_params = {k: v for k, v in decoded.items() if k.startswith(TOOLKIT_PREFIX)}
    program = str(decoded.get("sagemaker_program", ""))
    channel_dirs = {c["ChannelName"]: str(layout.channel_dir(c["ChannelName"])) for c in channels}
    resources = resource_config(layout.host, hosts, instance_type)
    data_config = input_data_config(channels, "File")
    module_name = program[:-3] if program.endswith(".py") else program
    env: dict[str, Any] = {
        "hosts": hosts,
        "network_interface_name": resources["network_interface_name"],
        "hps": user_hps,
        "user_entry_point": program,
        "framework_params": {
            k: v
            for k, v in framework_params.items()
            if k
            not in {
                "sagemaker_program",
                "sagemaker_submit_directory",
                "sagemaker_region",
                "sagemaker_container_log_level",
                "sagemaker_job_name",
            }
        },
        "resource_config": resources,
        "input_data_config": data_config,
        "output_data_dir": str(layout.output_data_dir),
        "channels": sorted(channel_dirs),
        "current_host": layout.host,
        "current_instance_type": instance_type,
        "current_instance_group": "homogeneousCluster",
        "current_instance_group_hosts": hosts,
        "instance_groups": ["homogeneousCluster"],
        "is_hetero": False,
        "module_name": module_name,
        "log_level": decoded.get("sagemaker_container_log_level", logging.INFO),
        "input_dir": str(layout.input_dir),
        "input_config_dir": str(layout.input_config_dir),
        "output_dir": str(layout.output_dir),
        "output_intermediate_dir": str(layout.output_dir / "intermediate"),
        "num_cpus": num_cpus,
        "num_gpus": 0,
        "model_dir": str(layout.model_dir),
        "module_dir": str(decoded.get("sagemaker_submit_directory", layout.code_dir)),
        "user_args": to_cmd_args(user_hps),
    }
    env["training_env"] = {
        **{k: v for k, v in env.items() if k not in {"hps", "framework_params", "user_args", "channels"}},
        "hyperparameters": user_hps,
        "additional_framework_parameters": env["framework_params"],
        "channel_input_dirs": channel_dirs,
        "job_name": job_name,
        "master_hostname": hosts[0],
        "is_master": layout.host == hosts[0],
    }
    for name, path in channel_dirs.items():
        env[f"channel_{name}"] = path
    for key, value in user_hps.items():
        env[f"hp_{key}"] = value
    variables = {f"SM_{key.upper()}": to_env_value(value) for key, value in env.items()}
    variables.update(
        {
            "SAGEMAKER_BASE_DIR": str(layout.base_dir),
            "TRAINING_JOB_NAME": job_name,
            "SAGEMAKER_JOB_NAME": job_name,
            "SAGEMAKER_REGION": str(decoded.get("sagemaker_region", region)),
            "SAGEMAKER_PROGRAM": program,
            "CURRENT_HOST": layout.host,
        }
    )
    return variables
