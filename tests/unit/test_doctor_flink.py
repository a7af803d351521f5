"""doctor's Flink check: a tiering job on its way back to RUNNING is waited for (bounded), a failed one is not."""

from __future__ import annotations

import pytest

from sagaz_lakehouse import addresses, config, doctor
from sagaz_lakehouse.stack import View

pytestmark = pytest.mark.unit


def answers(monkeypatch: pytest.MonkeyPatch, states: list[str]) -> list[str]:
    """Flink's REST answers: /jobs/overview gives the next state of ``states`` each time it is asked."""
    asked: list[str] = []

    def http_json(url: str, *args: object, **kwargs: object) -> dict[str, object]:
        asked.append(url)
        if url.endswith("/overview") and "/jobs/" not in url:
            return {"taskmanagers": 1, "slots-available": 1}
        state = states[min(len([u for u in asked if "/jobs/" in u]) - 1, len(states) - 1)]
        return {"jobs": [{"name": doctor.TIERING_JOB_NAME, "state": state, "jid": "j1"}]}

    monkeypatch.setattr(doctor.clients, "http_json", http_json)
    return asked


def endpoints() -> addresses.Endpoints:
    return addresses.endpoints(config.Settings(), View.EXTERNAL)


def test_a_restarting_tiering_job_is_waited_for_until_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = answers(monkeypatch, ["RESTARTING", "RESTARTING", "RUNNING"])
    assert "tiering job RUNNING (j1)" in doctor._flink(endpoints(), settle_seconds=10, pause=0)
    assert len([u for u in asked if "/jobs/" in u]) == 3


def test_a_job_still_restarting_at_the_deadline_or_failed_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    answers(monkeypatch, ["RESTARTING"])
    with pytest.raises(doctor.CheckFailed, match=r"not RUNNING \(seen: \['RESTARTING'\]\)"):
        doctor._flink(endpoints(), settle_seconds=0, pause=0)
    asked = answers(monkeypatch, ["FAILED"])
    with pytest.raises(doctor.CheckFailed, match="FAILED"):
        doctor._flink(endpoints(), settle_seconds=60, pause=0)
    assert len([u for u in asked if "/jobs/" in u]) == 1  # a failed job is not waited for


def test_a_probe_that_never_reached_the_lake_says_what_the_lake_had() -> None:
    never = doctor._not_tiered(None, {0: 329, 3: 12}, "")
    assert never.startswith("no lake snapshot yet") and "341 record(s)" in never and "[0, 3]" in never
    behind = doctor._not_tiered({0: 100, 3: 20}, {0: 229}, "leader not available")
    assert behind.startswith("the latest lake snapshot is behind the probe: 229 record(s)")
    assert behind.endswith("last error reading it: leader not available")


def test_the_hint_names_the_tiering_jobs_latest_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    failure = {"exceptionName": "java.io.IOException", "taskName": "Source: TieringSource",
               "stacktrace": "java.io.IOException: commit failed\n\tat org.apache.fluss..."}

    def http_json(url: str, *args: object, **kwargs: object) -> dict[str, object]:
        if url.endswith("/jobs/overview"):
            return {"jobs": [{"name": doctor.TIERING_JOB_NAME, "state": "RUNNING", "jid": "j1"}]}
        assert "/jobs/j1/exceptions" in url
        return {"exceptionHistory": {"entries": [failure] if failure else []}}

    monkeypatch.setattr(doctor.clients, "http_json", http_json)
    hint = doctor._not_tiered_hint(endpoints())
    assert hint.endswith("latest failure in Source: TieringSource: java.io.IOException: commit failed")
    failure = {}
    assert "restarted" not in doctor._not_tiered_hint(endpoints())
