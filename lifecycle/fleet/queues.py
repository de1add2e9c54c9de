"""Queue depths for `lifecycle-cli status`: messages waiting per fleet queue (running tasks are not counted).

With a Redis broker each queue is a list named after it (KEDA's redis scaler reads the same), plus one
list per priority step when priorities are used. The embedded filesystem broker keeps one file per message.
"""

from __future__ import annotations

from pathlib import Path

from lifecycle.settings import Settings

QUEUES = ("compaction", "expiration", "orphans", "metadata", "control")
_PRIORITY_SEP = "\x06\x16"


def queue_depths(settings: Settings) -> dict[str, int]:
    url = settings.fleet.broker_url
    if not url:
        return _filesystem_depths(settings.data_dir / "broker" / "queue")
    if not url.startswith(("redis://", "rediss://", "redis+socket://")):
        return {}
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        out: dict[str, int] = {}
        for queue in QUEUES:
            total = int(client.llen(queue))
            for step in range(1, 10):
                total += int(client.llen(f"{queue}{_PRIORITY_SEP}{step}"))
            out[queue] = total
        return out
    finally:
        client.close()


def _filesystem_depths(folder: Path) -> dict[str, int]:
    out = dict.fromkeys(QUEUES, 0)
    if folder.is_dir():
        for path in folder.glob("*.msg"):
            queue = path.name.partition(".")[2].removesuffix(".msg")  # <ms>_<uuid>.<queue>.msg
            if queue in out:
                out[queue] += 1
    return out
