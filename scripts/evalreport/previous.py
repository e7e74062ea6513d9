"""The parts of an earlier report that a partial run keeps (``--keep-others``).

Regenerating one part (say GlaS after its model was retrained) should not
rerun the others or drop them from the report. The earlier report's own
files are the record: a kept part's section is its text in evaluation.md
(from its heading to the next part's), its target verdicts and model rows
are its entries in report.json, and ``parts`` in report.json says which run
made each part, so the header can say so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ldseg.errors import InputError


@dataclass
class KeptPart:
    key: str
    lines: list[str]  # the section, heading first
    targets: list[dict]
    models: list[dict]
    made_by: dict  # the run that made it: date_utc, command, git, cpu, device


def provenance(machine: dict) -> dict:
    """What report.json's ``parts`` records of the run that made a part."""
    return {k: machine.get(k) for k in ("date_utc", "command", "git", "cpu", "device")}


def split_sections(text: str, titles: dict[str, str]) -> dict[str, list[str]]:
    """Each part's lines, from its ``## title`` heading to the next part's
    heading (or the end), by part key; parts without a heading are absent."""
    by_heading = {f"## {title}": key for key, title in titles.items()}
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line in by_heading:
            current = by_heading[line]
            sections[current] = []
        if current is not None:
            sections[current].append(line)
    for lines in sections.values():
        while lines and not lines[-1].strip():
            lines.pop()
        lines.append("")
    return sections


def kept_parts(report: Path, report_json: Path, titles: dict[str, str], keys: list[str]) -> dict[str, KeptPart]:
    """Those of the parts ``keys`` (the ones this run does not make) that the
    earlier report made.

    Raises InputError, before anything is written, when the earlier report is
    missing, unreadable, a --limit quick check, or lacks a part's section."""
    try:
        text = report.read_text(encoding="utf-8")
        record = json.loads(report_json.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise InputError(f"--keep-others needs the earlier report: {e.filename} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"--keep-others cannot read the earlier report ({e})") from None
    if not isinstance(record, dict):
        raise InputError(f"--keep-others: {report_json} is not a report record")
    if record.get("limit"):
        raise InputError("--keep-others: the earlier report is a --limit quick check, not one to keep parts of")
    sections = split_sections(text, titles)
    made_by = record.get("parts")
    if made_by is None:  # a report made whole, before parts were recorded
        made_by = {key: provenance(record["machine"]) for key in titles} if "machine" in record else {}
    kept = {}
    for key in keys:
        if key not in made_by:  # never run there: stays "not selected"
            continue
        if key not in sections:
            raise InputError(f"--keep-others: {report} has no section for its {key} part")
        kept[key] = KeptPart(
            key=key,
            lines=sections[key],
            targets=[t for t in record.get("targets", []) if t.get("dataset") == key],
            models=[m for m in record.get("models", []) if m.get("dataset") == key],
            made_by=made_by[key],
        )
    return kept
