"""Teach celery-redbeat to store `beat_schedule.WindowedSchedule`.

redbeat keeps every entry's schedule as JSON in Redis and only knows interval, crontab and rrule; a window
would be lost (stored as a plain interval). We extend its encoder and decoder with one more `__type__`.
"""

from __future__ import annotations

from typing import Any

TYPE = "lifecycle-window"


def _install() -> None:
    try:
        from redbeat import decoder
    except ImportError:  # pragma: no cover - redbeat is a runtime dependency
        return
    if getattr(decoder, "_lifecycle_window", False):
        return
    from beat_schedule import WindowedSchedule

    encode, decode = decoder.RedBeatJSONEncoder.default, decoder.RedBeatJSONDecoder.dict_to_object

    def default(self: Any, obj: Any) -> Any:
        if isinstance(obj, WindowedSchedule):
            return {"__type__": TYPE, **obj.params()}
        return encode(self, obj)

    def dict_to_object(self: Any, d: dict[str, Any]) -> Any:
        if d.get("__type__") == TYPE:
            return WindowedSchedule(d["kind"], every=d["every"], offset=d["offset"],
                                    allowed=tuple(d["allowed"]), paused=tuple(d["paused"]),
                                    margin=float(d.get("margin", 0.0)))
        return decode(self, d)

    decoder.RedBeatJSONEncoder.default = default
    decoder.RedBeatJSONDecoder.dict_to_object = dict_to_object
    decoder._lifecycle_window = True


_install()
