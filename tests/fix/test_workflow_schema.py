"""The GitHub Actions example and the documented event schema (no Docker needed)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema
import yaml
from dsagent.agent.events import ToolCallFinished
from dsagent.agent.fix_events import EXIT_CODES, FixFinished, FixReproduced, FixVerified, fix_event_json_schema
from dsagent.agent.fix_verify import Row

WORKFLOW = Path(__file__).resolve().parents[2] / "examples" / "github-actions" / "dsagent-fix.yml"


def test_workflow_runs_fix_and_keeps_the_patch() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    steps = workflow["jobs"]["fix"]["steps"]
    fix = next(step for step in steps if step.get("id") == "fix")
    assert 'dsagent fix "$TARGET"' in fix["run"] and "--patch dsagent-fix.patch" in fix["run"]
    upload = next(step for step in steps if "upload-artifact" in step.get("uses", ""))
    assert "dsagent-fix.patch" in upload["with"]["path"]
    pull_request = next(step for step in steps if "gh pr create" in step.get("run", ""))
    assert pull_request["if"] == "steps.fix.outputs.outcome == 'fixed'"
    assert "target" in workflow[True]["workflow_dispatch"]["inputs"]  # YAML 1.1 reads `on` as True


def test_schema_accepts_real_events_and_refuses_wrong_ones() -> None:
    validator = jsonschema.Draft202012Validator(fix_event_json_schema())
    row = Row(test="t.py::a", target=True, before="failed", after="passed", status="fixed")
    good = [
        FixReproduced(status="failing"),
        FixVerified(rows=[row], target_passes=True),
        FixFinished(outcome="fixed", exit_code=0),
        ToolCallFinished(step=1, call_id="c", name="finish", ok=True, output="", started_at=0.0, duration=0.1),
    ]
    for event in good:
        validator.validate(json.loads(event.model_dump_json()))
    bad = json.loads(FixFinished(outcome="fixed", exit_code=0).model_dump_json()) | {"outcome": "maybe"}
    assert not validator.is_valid(bad)
    assert not validator.is_valid({"type": "fix_finished"})


def test_schema_command_prints_the_same_schema(dsagent_exe: str) -> None:
    proc = subprocess.run([dsagent_exe, "fix", "--schema"], capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout) == json.loads(json.dumps(fix_event_json_schema()))


def test_exit_codes_are_the_documented_ones() -> None:
    assert {code for code in EXIT_CODES.values()} == {0, 1, 2, 3, 4}
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for code in range(5):
        assert f"| {code} |" in readme
