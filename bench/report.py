"""Comparison records, the printed table and results.json."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal


@dataclass
class Comparison:
    """One figure of ours against its baseline, measured in the same run."""

    name: str
    unit: str
    ours: float
    baseline: float
    better: Literal["higher", "lower"]
    ours_label: str = "ours"
    baseline_label: str = "baseline"
    target_ratio: float | None = (
        None  # speed-up we promise: baseline/ours for "lower", ours/baseline for "higher"
    )
    note: str = ""

    @property
    def speedup(self) -> float:
        """> 1 means ours is better, whichever direction is better for the unit."""
        if self.better == "higher":
            return self.ours / self.baseline if self.baseline else float("inf")
        return self.baseline / self.ours if self.ours else float("inf")

    @property
    def met(self) -> bool | None:
        return None if self.target_ratio is None else self.speedup >= self.target_ratio

    def verdict(self) -> str:
        if self.target_ratio is None:
            return ""
        if self.met:
            return f"met (target {self.target_ratio:g}x)"
        return (
            f"MISSED by {(1 - self.speedup / self.target_ratio) * 100:.0f}% (target {self.target_ratio:g}x)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "speedup": self.speedup, "met": self.met}


@dataclass
class Check:
    """A figure against an absolute target (agreement %, our own parse ms)."""

    name: str
    value: float
    unit: str
    target: float
    at_least: bool  # value must be >= target (else <=)
    note: str = ""

    @property
    def met(self) -> bool:
        return self.value >= self.target if self.at_least else self.value <= self.target

    def verdict(self) -> str:
        sign = ">=" if self.at_least else "<="
        if self.met:
            return f"met (target {sign} {self.target:g} {self.unit})"
        return f"MISSED by {abs(self.value - self.target):.3g} {self.unit} (target {sign} {self.target:g})"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


@dataclass
class SectionResult:
    name: str
    comparisons: list[Comparison] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "skipped": self.skipped,
            "comparisons": [comparison.as_dict() for comparison in self.comparisons],
            "checks": [check.as_dict() for check in self.checks],
            "details": self.details,
            "notes": self.notes,
        }


def _number(value: float) -> str:
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"


def format_section(section: SectionResult) -> str:
    lines = [f"== {section.name}"]
    if section.skipped:
        lines.append(f"   skipped: {section.skipped}")
        return "\n".join(lines)
    for item in section.comparisons:
        lines.append(
            f"   {item.name:<44} {item.ours_label} {_number(item.ours):>9} vs {item.baseline_label} "
            f"{_number(item.baseline):>9} {item.unit:<9} = {item.speedup:5.2f}x  {item.verdict()}"
        )
        if item.note:
            lines.append(f"   {'':<44} {item.note}")
    for check in section.checks:
        lines.append(f"   {check.name:<44} {_number(check.value):>9} {check.unit:<9} {check.verdict()}")
        if check.note:
            lines.append(f"   {'':<44} {check.note}")
    lines.extend(f"   note: {note}" for note in section.notes)
    return "\n".join(lines)


def write_results(
    path: Path,
    machine: dict[str, Any],
    config: dict[str, Any],
    sections: list[SectionResult],
    wall_seconds: float | None = None,
) -> None:
    payload = {
        "machine": machine,
        "config": config,
        "wall_seconds": wall_seconds,
        "sections": [section.as_dict() for section in sections],
        "targets_met": all(
            item.met is not False for section in sections for item in (*section.comparisons, *section.checks)
        ),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
