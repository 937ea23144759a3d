"""Least privilege, loopback-only listeners, no secrets, audited dependencies, linted code.

* The IAM documents in ``dog_breed.policies`` are parsed statement by statement: the Lambda
  role may invoke exactly its endpoint and write its own log group; the SageMaker role
  touches S3 only under the dataset and artifacts prefixes.
* local_aws, ``make airflow`` and docker compose listen on 127.0.0.1 unless told otherwise.
* detect-secrets scans every file git knows of (tracked and not ignored) against the
  reviewed ``.secrets.baseline``; bandit findings must be accepted in
  ``tests/security_review.toml``; pip-audit checks ``constraints.txt`` or skips saying why.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dog_breed.policies import (
    airflow_worker_policy,
    lambda_invoke_endpoint_policy,
    sagemaker_execution_policy,
)
from dog_breed.specs import endpoint_arn

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
REGION, ACCOUNT = "eu-west-1", "210987654321"
ENDPOINT, FUNCTION, GROUP = "Dog-Breed-Classifier", "dog-breed-classify", "Dog-Breed-Models"
DATASET_URI, ARTIFACTS_URI = "s3://data-bucket/datasets/dogImages", "s3://ml-bucket/pipelines/dog-breed"
BANDIT_PATHS = ("dags", "plugins", "model_scripts", "local_aws")
SECRETS_BASELINE = REPO / ".secrets.baseline"
SECURITY_REVIEW = Path(__file__).with_name("security_review.toml")

# Actions that AWS does not scope to a resource, so Resource "*" is the only form that works.
UNSCOPABLE_ACTIONS = frozenset(
    {
        "cloudwatch:PutMetricData",
        "ecr:GetAuthorizationToken",
        "sts:GetCallerIdentity",
        "sagemaker:ListModelPackages",  # the IAM reference lists no resource type for it
    }
)
ALARM_ACTIONS = frozenset(
    {"cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms", "cloudwatch:DeleteAlarms"}
)
UNSCOPABLE_SERVICES = ("application-autoscaling:",)


def unscopable(action: str) -> bool:
    return action in UNSCOPABLE_ACTIONS or action.startswith(UNSCOPABLE_SERVICES)


# SageMaker pulls the AWS Deep Learning Container and Debugger images from AWS-owned
# registries whose account differs per region, so these read-only pulls name no repository.
IMAGE_PULL_ACTIONS = frozenset({"ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"})


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def grants(policy: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(action, resource, statement) for every pair the policy allows; rejects Deny/Not* forms."""
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow", statement
        assert not {"NotAction", "NotResource", "NotPrincipal"} & statement.keys(), statement
        for action in as_list(statement["Action"]):
            for resource in as_list(statement["Resource"]):
                yield action, resource, statement


# ------------------------------------------------------------------------ IAM documents
def test_lambda_role_may_only_invoke_its_endpoint_and_write_its_own_logs():
    policy = lambda_invoke_endpoint_policy(
        region=REGION, account=ACCOUNT, endpoint_name=ENDPOINT, function_name=FUNCTION
    )
    log_group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{FUNCTION}"
    allowed = {
        ("sagemaker:InvokeEndpoint", endpoint_arn(REGION, ACCOUNT, ENDPOINT)),
        ("logs:CreateLogGroup", log_group),
        ("logs:CreateLogStream", f"{log_group}:log-stream:*"),
        ("logs:PutLogEvents", f"{log_group}:log-stream:*"),
    }
    granted = {(action, resource) for action, resource, _ in grants(policy)}
    assert granted <= allowed, f"grants beyond the endpoint and own logs: {granted - allowed}"
    exact_arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/dog-breed-classifier"
    assert ("sagemaker:InvokeEndpoint", exact_arn) in granted, "SageMaker lower-cases names in ARNs"
    for action, resource in granted:
        assert "*" not in action, action
        assert "*" not in resource or resource == f"{log_group}:log-stream:*", (action, resource)
    assert not any(p.get("Condition") for _, _, p in grants(policy))


def test_lambda_role_deployed_by_the_operator_is_that_policy_and_trusts_only_lambda():
    """What LambdaDeployFunctionOperator.ensure_role puts in IAM, read back from (moto's) IAM."""
    from moto import mock_aws

    from dog_breed.naming import lambda_role_name
    from dog_breed.operators.lambda_deploy import INLINE_POLICY_NAME, LambdaDeployFunctionOperator

    operator = LambdaDeployFunctionOperator(task_id="deploy", function_name=FUNCTION, endpoint_name=ENDPOINT)
    with mock_aws():
        import boto3

        iam = boto3.client("iam", region_name=REGION)
        for _ in range(2):  # a rerun replaces the one inline policy instead of adding another
            operator.ensure_role(iam, region=REGION, account=ACCOUNT)
        role_name = lambda_role_name(FUNCTION)
        assert iam.list_role_policies(RoleName=role_name)["PolicyNames"] == [INLINE_POLICY_NAME]
        assert iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"] == []
        document = iam.get_role_policy(RoleName=role_name, PolicyName=INLINE_POLICY_NAME)["PolicyDocument"]
        trust = iam.get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    assert document == lambda_invoke_endpoint_policy(
        region=REGION, account=ACCOUNT, endpoint_name=ENDPOINT, function_name=FUNCTION
    )
    trust = json.loads(trust) if isinstance(trust, str) else trust
    principals = [s["Principal"] for s in trust["Statement"]]
    assert principals == [{"Service": "lambda.amazonaws.com"}]


def _s3_scope(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")


def assert_s3_scoped_to(policy: dict[str, Any], uris: list[str]) -> None:
    scopes = [_s3_scope(uri) for uri in uris]
    object_arns = {f"arn:aws:s3:::{bucket}/{prefix}/*" for bucket, prefix in scopes}
    bucket_arns = {f"arn:aws:s3:::{bucket}" for bucket, _ in scopes}
    for action, resource, statement in grants(policy):
        if not action.startswith("s3:"):
            assert not resource.startswith("arn:aws:s3"), (action, resource)
            continue
        assert "*" not in action, action
        if action == "s3:ListBucket":
            assert resource in bucket_arns, resource
            prefixes = statement["Condition"]["StringLike"]["s3:prefix"]
            bucket = resource.removeprefix("arn:aws:s3:::")
            allowed = {p for b, prefix in scopes if b == bucket for p in (prefix, f"{prefix}/*")}
            assert set(prefixes) <= allowed, prefixes
        else:
            assert resource in object_arns, (action, resource)


def test_sagemaker_role_touches_s3_only_under_the_dataset_and_artifacts_prefixes():
    policy = sagemaker_execution_policy(
        region=REGION, account=ACCOUNT, dataset_s3_uri=DATASET_URI, artifacts_s3_uri=ARTIFACTS_URI
    )
    assert_s3_scoped_to(policy, [DATASET_URI, ARTIFACTS_URI])
    dataset_bucket, dataset_prefix = _s3_scope(DATASET_URI)
    dataset_writes = {
        action
        for action, resource, _ in grants(policy)
        if resource == f"arn:aws:s3:::{dataset_bucket}/{dataset_prefix}/*" and action != "s3:GetObject"
    }
    assert not dataset_writes, f"the dataset is read-only to training: {dataset_writes}"
    for action, resource, _ in grants(policy):
        assert "*" not in action, action
        if resource == "*":
            assert unscopable(action) or action in IMAGE_PULL_ACTIONS, f"{action} on every resource"
        # Registering and approving is the worker's job; a model from a package needs nothing more.
        assert "ModelPackage" not in action, f"the execution role need not {action}"


# The registry calls the pipeline makes (register, gate, review, deploy, the model page).
REGISTRY_ACTIONS = {
    "sagemaker:CreateModelPackageGroup",
    "sagemaker:DescribeModelPackageGroup",
    "sagemaker:CreateModelPackage",
    "sagemaker:DescribeModelPackage",
    "sagemaker:UpdateModelPackage",
    "sagemaker:ListModelPackages",
}


def worker_policy() -> dict:
    """The worker policy for this module's deployment."""
    return airflow_worker_policy(
        region=REGION,
        account=ACCOUNT,
        dataset_s3_uri=DATASET_URI,
        artifacts_s3_uri=ARTIFACTS_URI,
        sagemaker_role_arn=f"arn:aws:iam::{ACCOUNT}:role/DogBreedSageMakerExecution",
        endpoint_name=ENDPOINT,
        function_name=FUNCTION,
        model_package_group=GROUP,
    )


def test_airflow_worker_policy_has_no_wildcard_actions_and_passes_roles_only_to_their_service():
    """...and reaches the model registry only in its own group (SageMaker lower-cases ARNs)."""
    sm = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
    registry_arns = {f"{sm}:model-package-group/dog-breed-models", f"{sm}:model-package/dog-breed-models/*"}
    policy = worker_policy()
    assert_s3_scoped_to(policy, [DATASET_URI, ARTIFACTS_URI])
    for action, resource, statement in grants(policy):
        assert "*" not in action, action
        if resource == "*":
            assert unscopable(action), f"{action} on every resource"
        if action == "iam:PassRole":
            assert statement["Condition"]["StringEquals"]["iam:PassedToService"].endswith(".amazonaws.com")
            assert "*" not in resource, resource
        if resource.startswith(f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/"):
            assert resource == endpoint_arn(REGION, ACCOUNT, ENDPOINT), f"{action} on another endpoint"
        if "ModelPackage" in action and resource != "*":
            assert resource in registry_arns, f"{action} on another group's models: {resource}"
    registry_actions = {action for action, _, _ in grants(policy) if "ModelPackage" in action}
    assert registry_actions == REGISTRY_ACTIONS, "exactly the registry calls the pipeline makes"


def test_airflow_worker_may_touch_only_this_endpoints_alarms():
    """PutMetricAlarm / DescribeAlarms / DeleteAlarms: the rollback alarms (``<endpoint>/rollback/``,
    a prefix no other endpoint's alarms can have: endpoint names have no "/") and the target
    tracking alarms of this endpoint's variants, nothing else."""
    from dog_breed.naming import rollback_alarm_name
    from dog_breed.params import PipelineSettings
    from dog_breed.specs import rollback_alarm_requests

    policy = worker_policy()
    alarm_arns = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:"
    allowed = {
        f"{alarm_arns}{ENDPOINT}/rollback/*",
        f"{alarm_arns}TargetTracking-endpoint/{ENDPOINT}/variant/*",
    }
    granted = {(a, r) for a, r, _ in grants(policy) if a.startswith("cloudwatch:")}
    alarm_grants = {(a, r) for a, r in granted if a in ALARM_ACTIONS}
    assert alarm_grants == {(action, resource) for action in ALARM_ACTIONS for resource in allowed}
    assert {a for a, _ in granted} - ALARM_ACTIONS <= UNSCOPABLE_ACTIONS

    def allows(resource: str, name: str) -> bool:
        return (alarm_arns + name).startswith(resource.removesuffix("*"))

    settings = PipelineSettings.from_params({"endpoint_name": ENDPOINT})
    for request in rollback_alarm_requests(settings):
        assert any(allows(resource, request["AlarmName"]) for resource in allowed), request["AlarmName"]
    tracking = f"TargetTracking-endpoint/{ENDPOINT}/variant/AllTraffic-AlarmHigh-0f1e2d3c"
    assert any(allows(resource, tracking) for resource in allowed)
    for foreign in (
        rollback_alarm_name(f"{ENDPOINT}-staging", "AllTraffic", "5xx-errors"),
        f"TargetTracking-endpoint/{ENDPOINT}-staging/variant/AllTraffic-AlarmHigh-0f1e2d3c",
        "SomeoneElsesAlarm",
    ):
        assert not any(allows(resource, foreign) for resource in allowed), foreign


# ------------------------------------------------------------------------ loopback only
def listening_addresses(port: int) -> set[str]:
    """Local addresses with a LISTEN socket on ``port`` (IPv4 and IPv6), from /proc/net."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A = LISTEN
                continue
            raw = bytes.fromhex(address)
            # /proc stores each 32-bit word in host (little-endian) order.
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(str(ipaddress.ip_address(words)))
    return found


@pytest.mark.slow
def test_local_aws_listens_on_loopback_by_default(tmp_path):
    from local_aws.devtools.sandbox import LocalAwsProcess

    with LocalAwsProcess(tmp_path / "state") as aws:  # no --host: the default
        port = int(aws.url.rsplit(":", 1)[1])
        addresses = listening_addresses(port)
    assert addresses == {"127.0.0.1"}, addresses


def test_local_aws_command_line_defaults_to_loopback():
    help_text = subprocess.run(
        [sys.executable, "-m", "local_aws", "--help"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert "--host" in help_text
    from local_aws.__main__ import main

    with pytest.raises(SystemExit):
        main(["--host"])  # argparse refuses a missing value: --host takes one address
    source = (REPO / "local_aws" / "__main__.py").read_text()
    (default,) = re.findall(r'"--host",\s*default="([^"]+)"', source)
    assert ipaddress.ip_address(default).is_loopback, default


def test_make_airflow_serves_the_ui_on_loopback():
    from local_aws.devtools.airflow_stack import AirflowStack

    stack = AirflowStack(api_port=18080, aws_port=0, sample_profile=None)
    command = stack._api_server_command()
    host = command[command.index("--host") + 1]
    assert ipaddress.ip_address(host).is_loopback, command
    assert stack.api_url.startswith("http://127.0.0.1:")


def test_docker_compose_publishes_ports_on_loopback_unless_told_otherwise():
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    published = [
        (name, str(port))
        for name, service in compose["services"].items()
        for port in service.get("ports", [])
    ]
    assert published, "docker-compose.yaml publishes no ports"
    for name, port in published:
        # "HOST:PUBLISHED:TARGET" where HOST may be "${VARIABLE:-default}"
        part = r"(?:\$\{[^}]+\}|[^:$]+)"
        bind = r"(?:\$\{[A-Z_]+:-(?P<default>[^}]+)\}|(?P<literal>[^:$]+))"
        host = re.match(rf"^{bind}:{part}:{part}$", port)
        assert host, f"{name} publishes {port} on every interface (no bind address)"
        bound = host.group("default") or host.group("literal")
        assert ipaddress.ip_address(bound).is_loopback, f"{name} publishes {port}"


# ------------------------------------------------------------------------ scanners
def repository_files() -> list[str]:
    """Every file git tracks or would track (untracked but not ignored), that exists."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return sorted(path for path in set(listed) if (REPO / path).is_file() and path != SECRETS_BASELINE.name)


def test_no_secret_in_the_repository():
    """detect-secrets over the repository; only findings reviewed as not secret may remain.

    To review a new finding: ``.venv/bin/detect-secrets scan --baseline .secrets.baseline
    $(git ls-files)`` then ``.venv/bin/detect-secrets audit .secrets.baseline``.
    """
    baseline = json.loads(SECRETS_BASELINE.read_text())
    reviewed = {
        (filename, finding["type"], finding["hashed_secret"])
        for filename, findings in baseline["results"].items()
        for finding in findings
        if finding.get("is_secret") is False
    }
    script = (
        "import json, sys\n"
        "from detect_secrets.core import baseline\n"
        "from detect_secrets import SecretsCollection\n"
        "baseline.configure_settings_from_baseline(baseline.load_from_file(sys.argv[1]), sys.argv[1])\n"
        "found = SecretsCollection()\n"
        "found.scan_files(*sys.argv[2:], num_processors=1)\n"
        "print(json.dumps(found.json()))\n"
    )
    scan = subprocess.run(
        [sys.executable, "-c", script, str(SECRETS_BASELINE), *repository_files()],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert scan.returncode == 0, scan.stderr[-2000:]
    found = json.loads(scan.stdout)
    unreviewed = [
        f"{filename}:{finding['line_number']} {finding['type']}"
        for filename, findings in found.items()
        for finding in findings
        if (filename, finding["type"], finding["hashed_secret"]) not in reviewed
    ]
    assert not unreviewed, f"possible secrets (review them, never commit real ones): {unreviewed}"


def load_security_review() -> tuple[dict[str, str], list[dict[str, str]]]:
    review = tomllib.loads(SECURITY_REVIEW.read_text())
    everywhere, lines = review.get("everywhere", {}), review.get("line", [])
    for reason in [*everywhere.values(), *(entry["reason"] for entry in lines)]:
        assert len(reason.split()) >= 5, f"an accepted finding needs a written reason: {reason!r}"
    return everywhere, lines


def accepted(finding: dict[str, Any], everywhere: dict[str, str], lines: list[dict[str, str]]) -> bool:
    check, path = finding["test_id"], finding["filename"]
    if check in everywhere:
        return True
    source_lines = (REPO / path).read_text().splitlines()
    flagged = [source_lines[n - 1] for n in finding.get("line_range") or [finding["line_number"]]]
    ruff_code = "S" + check.removeprefix("B")
    # ruff's noqa comment naming the same check, a dash, then a reason
    if any(re.search(rf"#\s*noqa:[\w\s,]*\b{ruff_code}\b[\w\s,]*\s-\s*\w+", line) for line in flagged):
        return True
    return any(
        entry["check"] == check and entry["file"] == path and any(entry["code"] in line for line in flagged)
        for entry in lines
    )


def test_security_linter_finds_nothing_unreviewed():
    everywhere, lines = load_security_review()
    result = subprocess.run(
        [str(VENV_BIN / "bandit"), "-r", *BANDIT_PATHS, "-f", "json", "-q"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(result.stdout)
    assert not report["errors"], report["errors"]
    unreviewed = [
        f"{f['filename']}:{f['line_number']} {f['test_id']} {f['issue_severity']}: {f['issue_text']}"
        for f in report["results"]
        if not accepted(f, everywhere, lines)
    ]
    assert not unreviewed, "bandit findings to fix or accept in tests/security_review.toml:\n" + "\n".join(
        unreviewed
    )


# pip-audit names a package it could not check with this reason; the PyPI mirror reachable
# here serves the package index but not the JSON API that carries vulnerability data.
NOT_ON_PYPI = "Dependency not found on PyPI"


def test_dependency_audit_of_the_frozen_set(tmp_path):
    report_path = tmp_path / "audit.json"
    result = subprocess.run(
        [
            str(VENV_BIN / "pip-audit"),
            "--vulnerability-service",
            "pypi",
            "--requirement",
            str(REPO / "constraints.txt"),
            "--no-deps",  # constraints.txt is the complete, frozen resolution
            "--disable-pip",
            "--progress-spinner",
            "off",
            "--format",
            "json",
            "--output",
            str(report_path),
            "--timeout",
            "30",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if not report_path.exists():
        pytest.skip(f"pip-audit could not reach PyPI's vulnerability service: {result.stderr.strip()[-500:]}")
    report = json.loads(report_path.read_text())
    dependencies = report["dependencies"]
    unaudited = [d for d in dependencies if "skip_reason" in d]
    if unaudited and len(unaudited) == len(dependencies):
        reasons = {d["skip_reason"].split(":")[0] for d in unaudited}
        pytest.skip(
            f"pip-audit audited none of {len(dependencies)} pinned packages: PyPI's JSON API "
            f"(https://pypi.org/pypi/<name>/<version>/json), which carries the vulnerability data, "
            f"is not reachable from here; pip-audit said: {sorted(reasons)}"
        )
    vulnerable = [
        f"{d['name']} {d['version']}: {[v['id'] for v in d['vulns']]}" for d in dependencies if d.get("vulns")
    ]
    assert not vulnerable, f"known vulnerabilities in constraints.txt: {vulnerable}"
    assert not unaudited, f"packages pip-audit could not check: {[d['name'] for d in unaudited]}"
