"""Fleet message signatures: what a message may claim only with the fleet secret.

Anyone who can write to the broker can put a task message on a queue. An unsigned message is therefore
admitted only as a *scheduled* run (quiet windows apply, the run id is derived from the message id): the
same thing beat sends every few minutes anyway. A message that claims `manual` (which bypasses the quiet
windows) or names its own `run_id` (the reaper resuming a run) must carry `auth`: an HMAC-SHA256 under the
fleet secret of its job, table, partition, manual flag, run id and an expiry.

The secret is `LIFECYCLE_FLEET_SECRET` (at least 32 characters; every worker pod and every place that runs
`lifecycle-cli enqueue` has it), else the key file `fleet.key` in the data folder, created on first use with
mode 0600 (the embedded default: every process on one machine shares the data folder). The expiry uses the
host's real clock (not the injectable business clock): it bounds how long a captured message can be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path

from lifecycle.errors import ConfigError
from lifecycle.settings import Settings

ENV = "LIFECYCLE_FLEET_SECRET"
MIN_SECRET = 32
KEY_FILE = "fleet.key"
TTL_SECONDS = 2 * 86400  # a signed message older than this is refused (a queue that deep is an incident)

_cache: dict[tuple[str, str], bytes] = {}


def fleet_secret(settings: Settings) -> bytes:
    """The fleet's HMAC key: the environment's, else the data folder's key file (created if missing)."""
    raw = os.environ.get(ENV, "")
    path = settings.data_dir / KEY_FILE
    cached = _cache.get((raw, str(path)))
    if cached is not None:
        return cached
    if raw:
        if len(raw) < MIN_SECRET:
            raise ConfigError(f"{ENV}: must be at least {MIN_SECRET} characters")
        key = raw.encode()
    else:
        try:
            key = _key_file(path)
        except OSError as exc:
            raise ConfigError(f"{ENV} is not set and the key file {path} cannot be used "
                              f"({exc.strerror or exc}); set {ENV} in every fleet process") from None
    _cache[(raw, str(path))] = key
    return key


def _key_file(path: Path) -> bytes:
    """Read the key file, or create it atomically (write a private temp file, then link it into place:
    a concurrent reader never sees a half-written key, and a planted symlink is never followed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() and not path.is_symlink():
        tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, secrets.token_hex(32).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race: use its key
        finally:
            tmp.unlink()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o077:
            raise PermissionError(0, "the key file must not be readable by group or others")
        key = os.read(fd, 4096).strip()
    finally:
        os.close(fd)
    if len(key) < MIN_SECRET:
        raise PermissionError(0, "the key file is too short")
    return key


def _payload(job: str, table: str, partition: str | None, manual: bool, run_id: str | None, expires: int) -> bytes:
    return json.dumps(["v1", job, table, partition or "", bool(manual), run_id or "", expires]).encode()


def sign(secret: bytes, job: str, table: str, partition: str | None, manual: bool, run_id: str | None,
         now: float | None = None) -> str:
    """`auth` for a message with these fields: "<expiry>.<hex hmac>"."""
    expires = int((time.time() if now is None else now) + TTL_SECONDS)
    digest = hmac.new(secret, _payload(job, table, partition, manual, run_id, expires), hashlib.sha256).hexdigest()
    return f"{expires}.{digest}"


def verify(secret: bytes, auth: str, job: str, table: str, partition: str | None, manual: bool,
           run_id: str | None, skew: float = 0.0, now: float | None = None) -> str | None:
    """None when `auth` signs exactly these fields and has not expired; else why not ("bad-signature" or
    "expired-signature")."""
    expires_text, _, digest = auth.partition(".")
    if not expires_text.isdigit() or len(digest) != 64:
        return "bad-signature"
    expected = hmac.new(secret, _payload(job, table, partition, manual, run_id, int(expires_text)),
                        hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, digest):
        return "bad-signature"
    if (time.time() if now is None else now) > int(expires_text) + skew:
        return "expired-signature"
    return None
