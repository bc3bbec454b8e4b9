"""The HTML report: well-formed charts, hostile text escaped, nothing loaded from outside."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

from tunefleet.events import JobState, LogEvent, MetricEvent, StatusEvent
from tunefleet.run.report import render_report
from tunefleet.state import Owner, open_journal


def test_report_escapes_what_providers_say_and_draws_valid_svg(tmp_path: Path) -> None:
    journal = open_journal(f"sqlite:///{tmp_path / 'journal.db'}")
    journal.ensure_run(
        run_id="demo-12345678", name="demo", identity="1" * 64, spec={},
        spec_source="<b>spec</b>.yaml", datasets={},
    )  # fmt: skip
    target, _ = journal.ensure_target(
        run_id="demo-12345678", name="t0", config_hash="0" * 64,
        run_key_for=lambda a: f"key{a}", provider="fake", region=None, plan={
            "target": "t0", "provider": "fake", "region": None, "options": {},
        },
    )  # fmt: skip
    owner = Owner.here()
    journal.acquire(target.id, owner)
    now = datetime.now(UTC)
    hostile = "<script>alert('x')</script>"
    events = [
        StatusEvent(id="s", time=now, state=JobState.FAILED, message=hostile),
        LogEvent(id="l", time=now, level="error", message=f"OOM {hostile}"),
        *(
            MetricEvent(id=f"m{i}", time=now, step=i, train_loss=2 / i, valid_loss=2.2 / i)
            for i in range(1, 6)
        ),
    ]
    journal.record_events(target.id, owner, events, "7")
    journal.update_target(target.id, owner, phase="done", state="failed", message=hostile)
    html = render_report(journal, journal.run("demo-12345678"))
    assert "<script" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "&lt;b&gt;spec&lt;/b&gt;.yaml" in html
    (svg,) = re.findall(r"<svg.*?</svg>", html, flags=re.S)
    chart = ET.fromstring(svg)  # well-formed XML
    lines = chart.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 2 and len(lines[0].get("points", "").split()) == 5
    journal.close()
