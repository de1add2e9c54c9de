"""Pure pieces of the fleet's trust rules: 64-bit lock keys, secret masking, message signatures, skew-tolerant
windows, and the fan-out's count-only candidate rule agreeing with the planner."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lifecycle.compaction.planner import FileInfo, Strategy, Thresholds, is_candidate, plan_partition
from lifecycle.errors import ConfigError
from lifecycle.fleet import signing
from lifecycle.jobs.specs import scheduled_window_open
from lifecycle.log import mask
from lifecycle.settings import from_mapping
from lifecycle.state.locks import lock_key
from lifecycle.windows import parse_window

PASSWORD = "Qw3rtyU1@Zx8cVb2/Nm4kLp9:Hy6tGf5"   # '@', '/' and ':' inside
SEGMENTS = ("Qw3rtyU1", "Zx8cVb2", "Nm4kLp9", "Hy6tGf5", quote(PASSWORD, safe=""))


def leaks(text: str) -> list[str]:
    return [s for s in SEGMENTS if s in text]


def test_lock_keys_are_64_bit_and_distinct_for_100k_partitions() -> None:
    keys = {lock_key("compact", "archive.sda_observations", f"mission_id=m-{i % 97},day=2024-{i:06d}")
            for i in range(100_000)}
    assert len(keys) == 100_000
    assert any(not -2**31 <= k < 2**31 for k in keys)                # the key space is 64 bits wide
    assert all(-2**63 <= k < 2**63 for k in keys)


@pytest.mark.parametrize("text", [
    f"redis://:{PASSWORD}@127.0.0.1:6379/0",
    f"redis://:{quote(PASSWORD, safe='')}@127.0.0.1:6379/0",
    f"connect postgresql://app:{PASSWORD}@db:5432/state?sslmode=require failed",
    f"PGPASSWORD={PASSWORD} psql -h db",
    f'{{"user": "app", "password": "{PASSWORD}"}}',
    f"{{'password': '{PASSWORD}', 'host': 'db'}}",
    f'{{"event": "x", "error": "PGPASSWORD={PASSWORD}", "url": "redis://u:{PASSWORD}@h/0"}}',
    f"AWS_SECRET_ACCESS_KEY={PASSWORD}&x=1",
    f"aws_session_token: {PASSWORD}",
])
def test_mask_hides_passwords_with_at_slash_and_colon_in_every_form(text: str) -> None:
    masked = mask(text)
    assert leaks(masked) == [], masked
    assert "***" in masked


def test_mask_leaves_ordinary_text_alone() -> None:
    text = 'compact archive.t [mission_id=a,day=2024-03-15] s3://bucket/k@v1 {"files": 3} redis://broker:6379/0'
    assert mask(text) == text


def test_signatures_bind_every_field_and_expire(tmp_path: Path) -> None:
    secret = b"k" * 40
    auth = signing.sign(secret, "compact", "archive.t", "p=1", True, "run-1", now=1000.0)
    assert signing.verify(secret, auth, "compact", "archive.t", "p=1", True, "run-1", now=1000.0) is None
    for changed in (("purge", "archive.t", "p=1", True, "run-1"), ("compact", "archive.u", "p=1", True, "run-1"),
                    ("compact", "archive.t", "p=2", True, "run-1"), ("compact", "archive.t", "p=1", False, "run-1"),
                    ("compact", "archive.t", "p=1", True, "run-2")):
        assert signing.verify(secret, auth, *changed, now=1000.0) == "bad-signature"
    assert signing.verify(b"x" * 40, auth, "compact", "archive.t", "p=1", True, "run-1", now=1000.0) == "bad-signature"
    late = 1000.0 + signing.TTL_SECONDS + 1
    assert signing.verify(secret, auth, "compact", "archive.t", "p=1", True, "run-1", now=late) == "expired-signature"
    assert signing.verify(secret, "junk", "compact", "archive.t", "p=1", True, "run-1") == "bad-signature"


def test_the_fleet_key_file_is_private_and_shared_and_a_planted_symlink_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(signing.ENV, raising=False)
    settings = from_mapping({"state": {"data_dir": str(tmp_path / "a")}}, env={})
    key = signing.fleet_secret(settings)
    path = tmp_path / "a" / signing.KEY_FILE
    assert len(key) >= signing.MIN_SECRET and stat.S_IMODE(path.stat().st_mode) == 0o600
    signing._cache.clear()
    assert signing.fleet_secret(settings) == key                        # a second process reads the same key
    (tmp_path / "b").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "b" / signing.KEY_FILE)
    with pytest.raises(ConfigError, match=signing.ENV):
        signing.fleet_secret(from_mapping({"state": {"data_dir": str(tmp_path / "b")}}, env={}))
    monkeypatch.setenv(signing.ENV, "short")
    with pytest.raises(ConfigError, match="at least 32"):
        signing.fleet_secret(settings)


def test_scheduled_windows_tolerate_the_configured_skew_on_both_sides() -> None:
    allowed, paused = (parse_window("00:00-06:00", "a"),), (parse_window("09:00-17:00", "p"),)

    def at(h: int, m: int, s: int = 0) -> datetime:
        return datetime(2026, 11, 27, h, m, s, tzinfo=UTC)

    assert not scheduled_window_open("purge", at(23, 59, 59).replace(day=26), paused, allowed, 0)
    assert scheduled_window_open("purge", at(23, 59, 59).replace(day=26), paused, allowed, 300)
    assert scheduled_window_open("purge", at(6, 4, 59), paused, allowed, 300)
    assert not scheduled_window_open("purge", at(6, 5, 1), paused, allowed, 300)
    assert not scheduled_window_open("purge", at(12, 0), paused, allowed, 300)
    assert scheduled_window_open("compact", at(9, 4), paused, allowed, 300)
    assert not scheduled_window_open("compact", at(9, 6), paused, allowed, 300)
    assert scheduled_window_open("clean-orphans", at(12, 0), paused, allowed, 300)


@given(st.lists(st.integers(1, 5_000), max_size=30), st.integers(1, 40), st.integers(1, 20_000))
def test_the_fan_out_count_rule_agrees_with_the_planner(sizes: list[int], min_small: int, group: int) -> None:
    thresholds = Thresholds(small_file_bytes=2_500, min_small_files=min_small, target_file_bytes=4_000,
                            max_group_bytes=group)
    files = [FileInfo(f"f{i}", s, 10) for i, s in enumerate(sizes)]
    small = sum(s < thresholds.small_file_bytes for s in sizes)
    planned = plan_partition("p", files, Strategy("binpack"), thresholds)
    assert is_candidate(small, thresholds) == (planned is not None)
