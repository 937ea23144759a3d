"""Who approves a registered model version, and what the registry then says. Pure functions.

The Param ``approval`` chooses:

* ``auto``: the quality gate's decision is the approval: ``Approved`` (deploy) or ``Rejected``
  (the deploy path skips), with the gate's reason as the ``ApprovalDescription``.
* ``manual``: a person decides in the Airflow UI (the ``review`` task, Airflow's HITL approval);
  the gate's verdict is shown to them as advice, next to the champion's metrics.
* ``gate-then-manual``: the gate rejects what it would not deploy; a challenger that passes
  still needs a person.

The registry is the record of the decision: once a version is ``Approved`` or ``Rejected``, a
rerun of the gate or of the review keeps it and asks nobody again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dog_breed.gate import GateDecision
from dog_breed.params import APPROVAL_MODES
from dog_breed.registry import VersionSummary, breed_changes, clip

MODES = APPROVAL_MODES
AUTO, MANUAL, GATE_THEN_MANUAL = MODES
APPROVED, REJECTED, PENDING = "Approved", "Rejected", "PendingManualApproval"
DECIDED = frozenset({APPROVED, REJECTED})
# The options of Airflow's ApprovalOperator.
APPROVE, REJECT = "Approve", "Reject"
COMMENT_PARAM = "comment"
REGRESSIONS_SHOWN = 15


def gate_verdict(mode: str, decision: GateDecision) -> str | None:
    """The status the gate gives a pending version: Approved, Rejected, or None (a person decides)."""
    if mode not in MODES:
        raise ValueError(f"unknown approval mode {mode!r}; use one of {MODES}")
    if mode == AUTO:
        return APPROVED if decision.deploy else REJECTED
    if mode == GATE_THEN_MANUAL and not decision.deploy:
        return REJECTED
    return None


def person_decides(mode: str) -> bool:
    return mode in (MANUAL, GATE_THEN_MANUAL)


def gate_description(status: str, reason: str) -> str:
    return clip(f"{status} by the quality gate: {reason}")


def review_status(chosen_option: str) -> str:
    if chosen_option == APPROVE:
        return APPROVED
    if chosen_option == REJECT:
        return REJECTED
    raise ValueError(f"not an approval option: {chosen_option!r}")


def review_description(status: str, user_name: str | None, comment: str | None) -> str:
    """``Approved by <user> in Airflow: <comment>``."""
    who = user_name or "an unknown user"
    said = (comment or "").strip()
    return clip(f"{status} by {who} in Airflow" + (f": {said}" if said else " (no comment)"))


def timeout_description(hours: float) -> str:
    return f"{REJECTED}: timed out, nobody answered the review within {hours:g} h"


def comparison(
    *,
    group: str,
    endpoint: str,
    mode: str,
    decision: GateDecision,
    challenger: VersionSummary,
    champion: VersionSummary | None,
    challenger_report: Mapping[str, Any],
    champion_report: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """What the review shows (and the gate's XCom keeps): both versions, the gate, per-breed changes."""
    changes = breed_changes(challenger_report, champion_report) if champion_report else []
    return {
        "group": group,
        "endpoint": endpoint,
        "mode": mode,
        "gate": decision.as_dict(),
        "challenger": challenger.as_dict(),
        "champion": champion.as_dict() if champion else None,
        "champion_accuracy": decision.champion_accuracy,
        "breeds": [{"breed": c.breed, "champion": c.champion, "challenger": c.challenger} for c in changes],
    }


def review_subject(comparison: Mapping[str, Any]) -> str:
    challenger = comparison["challenger"]
    return f"Deploy {comparison['group']} version {challenger.get('version')} to {comparison['endpoint']}?"


def review_body(comparison: Mapping[str, Any]) -> str:
    """Markdown for the reviewer: challenger and champion side by side, the gate's advice and
    the per-breed regressions, worst first."""
    challenger, champion = comparison["challenger"], comparison.get("champion")
    gate = comparison["gate"]
    champion_title = f"champion (v{champion.get('version')}, live)" if champion else "champion"
    rows = [
        ("version", _version(challenger), _version(champion)),
        ("test accuracy", _number(challenger.get("test_accuracy")), _number(_champion_accuracy(comparison))),
        ("test loss", _number(challenger.get("test_loss")), _number((champion or {}).get("test_loss"))),
        ("training job", _code(challenger.get("training_job")), _code((champion or {}).get("training_job"))),
        ("tuning job", _code(challenger.get("tuning_job")), _code((champion or {}).get("tuning_job"))),
        ("data", _code(challenger.get("dataset")), _code((champion or {}).get("dataset"))),
        ("DAG run", _code(challenger.get("dag_run")), _code((champion or {}).get("dag_run"))),
    ]
    lines = [
        f"### {comparison['group']}: version {challenger.get('version')} against what "
        f"`{comparison['endpoint']}` serves",
        "",
        f"| | challenger | {champion_title} |",
        "|---|---|---|",
        *(f"| {name} | {new} | {old} |" for name, new, old in rows),
        "",
        f"**Quality gate** ({comparison['mode']}): {'would deploy' if gate['deploy'] else 'would not deploy'}"
        f": {gate['reason']}.",
        "",
    ]
    if champion is None and comparison.get("champion_accuracy") is None:
        lines.append("Nothing is live yet: approving deploys the first model.")
    else:
        lines += _regressions(comparison.get("breeds") or [], champion is not None)
    lines += ["", f"Package: `{challenger['package_arn']}`"]
    return "\n".join(lines)


def _regressions(breeds: Sequence[Mapping[str, Any]], have_champion_report: bool) -> list[str]:
    if not have_champion_report:
        return ["The live model has no registry package, so there is no per-breed report to compare with."]
    if not breeds:
        return ["The two reports share no breed to compare."]
    worse = [b for b in breeds if b["challenger"] < b["champion"]]
    better = sum(1 for b in breeds if b["challenger"] > b["champion"])
    if not worse:
        return [f"**Per-breed regressions:** none; {better} of {len(breeds)} breeds improved."]
    shown = worse[:REGRESSIONS_SHOWN]
    lines = [
        f"**Per-breed regressions, worst first** ({len(worse)} of {len(breeds)} breeds got worse, "
        f"{better} better; test accuracy per breed):",
        "",
        "| breed | champion | challenger | change |",
        "|---|---|---|---|",
        *(
            f"| {b['breed']} | {b['champion']:.3f} | {b['challenger']:.3f} | "
            f"{b['challenger'] - b['champion']:+.3f} |"
            for b in shown
        ),
    ]
    if len(worse) > len(shown):
        lines += ["", f"… and {len(worse) - len(shown)} more."]
    return lines


def _champion_accuracy(comparison: Mapping[str, Any]) -> float | None:
    champion = comparison.get("champion") or {}
    return champion.get("test_accuracy", comparison.get("champion_accuracy"))


def _version(summary: Mapping[str, Any] | None) -> str:
    if not summary:
        return "—"
    return f"{summary.get('version')} ({summary.get('approval_status')})"


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _code(value: str | None) -> str:
    return "—" if not value else f"`{value}`"
