"""`tunefleet` subprocesses against the fake provider, for the run engine's CLI tests."""

from __future__ import annotations

import json
from pathlib import Path

from tunefleet.state import open_journal
from tunefleet.testing import write_entry_point
from tunefleet.testing.runs import CliRunner

TRAIN = (
    '{"messages": [{"role": "user", "content": "Where is my order?"},'
    ' {"role": "assistant", "content": "It ships tomorrow."}]}\n'
)


class Cli(CliRunner):
    """`tunefleet` subprocesses sharing one journal and one fake provider."""

    def __init__(self, tmp_path: Path, site: Path, journal_url: str) -> None:
        write_entry_point(site, "tunefleet-fake", {"fake": "tunefleet.testing.fake"})
        super().__init__(tmp_path, journal_url, {"PYTHONPATH": str(site)}, timeout=120)
        self.tmp_path = tmp_path
        self.root = tmp_path / "provider"
        (tmp_path / "train.jsonl").write_text(TRAIN)

    def spec(self, steps: int = 5, targets: int = 1) -> Path:
        regions = ["fake-eu-1", "fake-west-2"]
        body = {
            "name": "faults",
            "base_model": "gpt-4o-mini-2024-07-18",
            "dataset": "train.jsonl",
            "targets": [
                {
                    "name": f"t{i}",
                    "provider": "fake",
                    "region": regions[i],
                    "options": {"root": str(self.root), "steps": steps},
                }
                for i in range(targets)
            ],
        }
        path = self.tmp_path / "spec.yaml"
        path.write_text(json.dumps(body))
        return path

    def evaluated_spec(self) -> Path:
        """The spec of :meth:`spec` with an evaluation on a golden set of its question."""
        body = json.loads(self.spec().read_text())
        (self.tmp_path / "golden.jsonl").write_text(TRAIN)
        body["evaluation"] = {
            "golden_set": "golden.jsonl",
            "metrics": ["exact_match", "token_f1"],
            "thresholds": {"exact_match": 1.0},
        }
        path = self.tmp_path / "evaluated.yaml"
        path.write_text(json.dumps(body))
        return path

    def created_jobs(self) -> list[str]:
        """The run keys of the jobs the fake holds. A job file is created once, atomically,
        under its run key, so this is what was submitted, whatever a kill interrupted."""
        return sorted(path.stem for path in (self.root / "jobs").glob("*.json"))

    def stored_objects(self) -> list[str]:
        """The content hashes of the datasets the fake holds (each committed by a rename)."""
        return sorted(path.name for path in (self.root / "objects").glob("[0-9a-f]*"))

    def check_exactly_once(self) -> None:
        """One job per target, each dataset stored once, and every provider event stored
        once."""
        with open_journal(self.journal_url) as journal:
            (run,) = journal.runs()
            targets = journal.targets(run.id)
            assert self.created_jobs() == sorted(t.run_key for t in targets)
            assert len(self.stored_objects()) == 1
            for target in targets:
                assert (target.phase, target.state) == ("done", "succeeded")
                job = json.loads((self.root / "jobs" / f"{target.run_key}.json").read_text())
                stored = [e.event_id for e in journal.events(target.id)]
                assert stored == [e["id"] for e in job["events"]], "each event once, in order"
                statuses = {(r.kind, r.status) for r in journal.resources(target.id)}
                assert statuses == {("dataset", "confirmed"), ("job", "confirmed")}
                assert journal.artifacts(target.id)
            assert journal.verify_audit().ok
