"""An ordered stream of rows split into the planned outputs, several outputs encoded at once.

The merge of a spilled sort or Z-order (lifecycle.compaction.ordered) yields rows in order: output i's rows,
then output i+1's. Parquet encodes a file on one thread, and encoding is the largest share of a rewrite's
CPU (646 of 2,141 samples of a 0.4 GB narrow sort), so every output gets its own writer thread fed through a
queue of at most QUEUED pieces: while output i's last row groups are encoded, the merge goes on into output
i+1, up to `window` outputs open at once (the next one waits for the oldest to finish). Memory: `window` ×
(QUEUED pieces + one row group being buffered). The first failure aborts every open output and is raised;
`on_written` runs in the calling thread, in output order.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterator, Sequence

import pyarrow as pa
from pyiceberg.io import FileIO

from lifecycle.bandwidth import Limiter
from lifecycle.compaction.outputs import FileWriter, OnWritten, OutputOptions

QUEUED = 2


class _Lane:
    """One output file and the thread that encodes the pieces queued for it, in order."""

    def __init__(self, writer: FileWriter, index: int) -> None:
        self.writer, self.index = writer, index
        self.size = 0
        self.error: BaseException | None = None
        self._cancelled = False
        self._queue: queue.Queue[pa.Table | None] = queue.Queue(QUEUED)
        self._thread = threading.Thread(target=self._run, name=f"compact-output-{index}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (piece := self._queue.get()) is not None:
            if self.error is None and not self._cancelled:
                try:
                    self.writer.write(piece)
                except BaseException as e:   # handed to the producer, which raises it
                    self.error = e
        try:
            if self.error is None and not self._cancelled:
                self.size = self.writer.close()
            else:
                self.writer.abort()
        except BaseException as e:
            self.error = self.error or e

    def put(self, piece: pa.Table) -> None:
        if self.error is not None:
            raise self.error
        self._queue.put(piece)   # blocks while QUEUED pieces wait: the merge runs no further ahead

    def end(self) -> None:
        """No more rows for this output: the thread closes the file once its queue is written."""
        self._queue.put(None)

    def finish(self) -> int:
        """Wait for the file to be complete; its size, or the writer's error."""
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.size

    def cancel(self) -> None:
        """Drop what is queued, abort the file and wait for the thread."""
        self._cancelled = True
        if self._thread.is_alive():
            self._queue.put(None)
        self._thread.join()


def write_stream(io: FileIO, stream: Iterator[pa.Table], outputs: Sequence[str], bounds: Sequence[tuple[int, int]],
                 options: OutputOptions, limiter: Limiter, window: int, on_written: OnWritten | None) -> int:
    """Split an ordered stream into the outputs (output i gets rows bounds[i]); returns the bytes written."""
    names = options.schema.names
    lanes: deque[_Lane] = deque()
    lane: _Lane | None = None
    written = index = filled = 0

    def retire() -> None:
        nonlocal written
        done = lanes.popleft()
        written += done.finish()
        if on_written is not None:
            on_written(done.index, outputs[done.index], written)

    try:
        for table in stream:
            table = table.select(names)
            offset = 0
            while offset < table.num_rows:
                if index >= len(outputs):
                    raise ValueError(f"the merge produced more rows than the {len(outputs)} outputs hold")
                lo, hi = bounds[index]
                if lane is None:
                    while len(lanes) >= max(window, 1):
                        retire()
                    lane = _Lane(FileWriter(io, outputs[index], options, limiter), index)
                    lanes.append(lane)
                piece = table.slice(offset, hi - lo - filled)
                offset += piece.num_rows
                filled += piece.num_rows
                lane.put(piece)
                if filled == hi - lo:
                    lane.end()
                    lane, filled = None, 0
                    index += 1
        while lanes:
            retire()
        if index != len(outputs):
            raise ValueError(f"the merge produced rows for {index} of {len(outputs)} outputs")
    except BaseException:
        for open_lane in lanes:
            open_lane.cancel()
        raise
    return written
