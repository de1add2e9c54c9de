"""Beat decisions with an injected clock: what is emitted when (no Celery worker, no Redis)."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime, timedelta

import pytest

from beat_schedule import CADENCES, WindowedSchedule, build_schedule, cadence_schedule
from lifecycle.clock import ManualClock
from lifecycle.settings import from_mapping

T = "archive.sda_observations"


def at(hour: int, minute: int = 0, day: int = 26) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)  # 2026-11-26 is a Thursday


@pytest.fixture
def schedule_at():
    clock = ManualClock(at(0))
    entries = build_schedule(from_mapping({}, env={}), [T], clock)

    def due(name: str, now: datetime, last: datetime | None) -> bool:
        clock.set(now)
        return bool(entries[name]["schedule"].is_due(last)[0])

    return due


def test_compaction_is_emitted_at_18_utc_but_not_at_10(schedule_at) -> None:
    assert schedule_at(f"compact {T}", at(18), at(17, 50))
    assert not schedule_at(f"compact {T}", at(10), at(8, 55))
    assert not schedule_at(f"compact {T}", at(16, 59), at(8, 55))
    assert schedule_at(f"compact {T}", at(17, 0), at(8, 55))  # the pause ends at 17:00 sharp


def test_compaction_runs_every_five_minutes_outside_the_pause(schedule_at) -> None:
    assert not schedule_at(f"compact {T}", at(18, 3), at(18, 0))
    assert schedule_at(f"compact {T}", at(18, 5), at(18, 0))
    assert schedule_at(f"compact {T}", at(2), None)


def test_expire_is_emitted_at_03_but_not_at_12(schedule_at) -> None:
    yesterday = at(1, 0, day=25)
    assert schedule_at(f"expire {T}", at(3), yesterday)
    assert not schedule_at(f"expire {T}", at(12), yesterday)       # missed the window: wait for tonight
    assert not schedule_at(f"expire {T}", at(4), at(1, 5))         # already ran tonight (01:00 + 5 min margin)
    assert not schedule_at(f"expire {T}", at(0, 30), yesterday)    # staggered an hour after purge
    assert schedule_at(f"purge {T}", at(0, 30), yesterday)
    assert not schedule_at(f"purge {T}", at(6, 0), yesterday)      # the window is 00:00-06:00


def test_weekly_and_monthly_jobs_run_once_per_period(schedule_at) -> None:
    saturday = at(18, 0, day=28)
    assert schedule_at(f"clean-orphans {T}", saturday, saturday - timedelta(days=7))
    assert not schedule_at(f"clean-orphans {T}", saturday + timedelta(hours=3), saturday)
    assert not schedule_at(f"clean-orphans {T}", at(18, 0, day=27), saturday - timedelta(days=7))
    assert schedule_at(f"rewrite-manifests {T}", at(19, 0, day=29), saturday - timedelta(days=6))
    first = datetime(2026, 12, 1, 20, 30, tzinfo=UTC)
    assert schedule_at(f"compact-schema-history {T}", first, datetime(2026, 11, 1, 20, tzinfo=UTC))
    assert not schedule_at(f"compact-schema-history {T}", first + timedelta(days=3), first)


def test_windows_come_from_settings_and_may_cross_midnight() -> None:
    settings = from_mapping({"windows": {"expiration_allowed": ["22:00-02:00"],
                                         "compaction_paused": ["08:30-18:15"]}}, env={})
    clock = ManualClock(at(23, 5))
    expire = cadence_schedule(next(c for c in CADENCES if c.job == "expire"), settings, clock)
    assert expire.is_due(at(23, 30, day=24))[0]                    # window opened 22:00, +1 h offset, +5 min
    clock.set(at(1, 30, day=27))
    assert not expire.is_due(at(23, 5))[0]                         # same occurrence (opened 22:00 the 26th)
    compact = cadence_schedule(CADENCES[0], settings, clock)
    clock.set(at(18, 10))
    assert not compact.is_due(at(8, 0))[0]
    clock.set(at(18, 15))
    assert compact.is_due(at(8, 0))[0]


def test_every_message_carries_an_expiry_and_its_queue() -> None:
    entries = build_schedule(from_mapping({}, env={}), [T, "archive.other"])
    assert len(entries) == 2 * len(CADENCES) + 1
    for name, entry in entries.items():
        assert entry["options"]["expires"] > 0, name
    assert entries[f"compact {T}"]["options"]["queue"] == "control"      # planning fans out per partition
    assert entries[f"expire {T}"]["options"]["queue"] == "expiration"
    assert entries[f"purge {T}"]["options"]["queue"] == "expiration"
    assert entries[f"clean-orphans {T}"]["options"]["queue"] == "orphans"
    assert entries[f"rewrite-manifests {T}"]["options"]["queue"] == "metadata"
    assert entries[f"compact-schema-history {T}"]["options"]["queue"] == "metadata"
    assert entries[f"expire {T}"]["kwargs"] == {"table": T, "manual": False, "source": "beat"}


def test_next_check_is_when_the_window_opens() -> None:
    clock = ManualClock(at(10))
    s = WindowedSchedule("every", every=300, paused=("09:00-17:00",), clock=clock)
    due, next_check = s.is_due(at(8, 55))
    assert not due and 0 < next_check <= 300
    clock.set(at(16, 58))
    assert s.is_due(at(8, 55)) == (False, 120.0)


def test_schedules_survive_pickle_and_redbeat_json() -> None:
    from redbeat.decoder import RedBeatJSONDecoder, RedBeatJSONEncoder

    import workers.redbeat_codec  # noqa: F401  (installs the extension)

    s = WindowedSchedule("daily", offset=3600, allowed=("00:00-06:00",))
    assert pickle.loads(pickle.dumps(s)) == s
    text = json.dumps({"schedule": s}, cls=RedBeatJSONEncoder)
    back = json.loads(text, cls=RedBeatJSONDecoder)["schedule"]
    assert isinstance(back, WindowedSchedule) and back == s
    assert back.remaining_estimate(None) >= timedelta(0)


def test_a_new_entry_runs_at_its_first_chance_not_a_period_later() -> None:
    clock = ManualClock(at(3))
    entries = build_schedule(from_mapping({}, env={}), [T], clock)
    expire = entries[f"expire {T}"]
    assert expire["last_run_at"] < at(0, day=1)
    assert expire["schedule"].is_due(expire["last_run_at"])[0]          # installed at 03:00: runs tonight
    assert not entries[f"clean-orphans {T}"]["schedule"].is_due(expire["last_run_at"])[0]  # Thursday
