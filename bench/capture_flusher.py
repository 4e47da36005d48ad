"""One capture flusher in a process of its own, for bench_capture.py: it flushes as a housekeeping worker does.

Usage: capture_flusher.py drain|follow SECONDS  (environment: the stack's MLAAS_* variables)

Warms up (imports, one Parquet write to the store), prints "ready", and waits for a line on stdin. Then
``drain`` flushes every stream until nothing is left to claim; ``follow`` keeps flushing for SECONDS, waiting
0.5 s whenever nothing is left (as beat's next flush would come). Prints one JSON line: rows and entries
flushed, wall seconds from the start line to the last batch, and this process's CPU seconds meanwhile.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

from mlaas.adapters.capture_buffer import CaptureBuffer  # noqa: E402
from mlaas.context import Context  # noqa: E402
from mlaas.datasets.frames import write_frame  # noqa: E402
from mlaas.monitoring import capture  # noqa: E402
from mlaas.settings import Settings  # noqa: E402
from mlaas.uris import S3Uri  # noqa: E402


def main(argv: list[str]) -> int:
    mode, seconds = argv[0], float(argv[1]) if len(argv) > 1 else 0.0
    settings = Settings.from_env()
    ctx = Context(settings)
    buffer = CaptureBuffer(settings)
    write_frame(ctx.storage, S3Uri(settings.drift_bucket, "bench/warm.parquet"), pd.DataFrame({"x": [1.0]}))
    print("ready", flush=True)
    sys.stdin.readline()
    started, cpu0 = time.perf_counter(), time.process_time()
    last = started
    rows = entries = batches = 0
    while True:
        progressed = False
        for key in buffer.streams():
            while (out := capture.flush_stream(ctx, buffer, key))["entries"]:
                rows, entries, batches = rows + out["rows"], entries + out["entries"], batches + 1
                last, progressed = time.perf_counter(), True
                if mode == "follow" and last - started >= seconds:
                    break
        if mode == "drain" and not progressed:
            break
        if mode == "follow":
            if time.perf_counter() - started >= seconds:
                break
            if not progressed:
                time.sleep(0.5)
    print(json.dumps({"rows": rows, "entries": entries, "batches": batches, "seconds": last - started,
                      "cpu_seconds": time.process_time() - cpu0}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
