"""The listening room under attack: does it stay responsive and within its memory budget?

    .venv/bin/python benchmarks/room_attacks.py [--port 8792] [--bomb /tmp/mess-bomb.flac]

Needs a finished `kedro run` (the served run of this project). Starts `mess-kedro serve`
in its own process, waits until it is warm, then runs each attack of issue 27 while a
second client asks ``GET /api/info`` every 100 ms and the service's resident memory
(with its children) is sampled every 50 ms:

1. the decode bomb: four parallel uploads of a 1.7 MB FLAC of 8 channels at 655,350 Hz,
   295 s long (about 6 GB once decoded; it killed the service out of memory in 6.8 s);
2. ``Range: bytes=1-`` padded with 150,000 spaces and an ``x`` (it froze the service 60 s);
3. 100 KB of request headers (8 MB were accepted);
4. a 400 MB annotation body sent in chunks without ``Content-Length`` (read whole, 1.5 GB peak);
5. four parallel uploads of 30 s of real music (the normal heavy case).

For each: every answer's status, the slowest ``/api/info`` during it, the peak memory
above the warm service's. The budget stated in docs/listening_room.md: peak at most the
warm service plus ``decode_slots`` (2) x ``max_query_decoded_mb`` (512 MB), and
``/api/info`` answering throughout (a slowest answer under 2 s).
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from listening_room import PROJECT, service_rss_mb, start_service, thirty_seconds_of, wait_for_service

WRITE = {"X-Mess-Kedro": "1"}


def decode_bomb(path: Path) -> bytes:
    """8 channels at 655,350 Hz for 295 s of silence, FLAC (made once, then reused)."""
    import soundfile as sf

    if not path.is_file():
        rate, block = 655_350, np.zeros((655_350, 8), np.int16)
        with sf.SoundFile(str(path), "w", samplerate=rate, channels=8, format="FLAC", subtype="PCM_16") as f:
            for _ in range(295):
                f.write(block)
    return path.read_bytes()


class Watch:
    """Samples the service's memory and ``/api/info`` latency on threads of their own."""

    def __init__(self, base: str, pid: int) -> None:
        self.base, self.pid = base, pid
        self.peak_mb, self.slowest_s, self.failures = 0.0, 0.0, 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._memory, self._latency)]

    def __enter__(self) -> Watch:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _memory(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_mb = max(self.peak_mb, service_rss_mb(self.pid))
            except Exception:  # noqa: BLE001 - the process is gone: the attack killed it
                self.failures += 1
            time.sleep(0.05)

    def _latency(self) -> None:
        import httpx

        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                began = time.perf_counter()
                try:
                    ok = client.get(f"{self.base}/api/info").status_code == 200
                except Exception:  # noqa: BLE001 - no answer at all counts as a failure
                    ok = False
                self.slowest_s = max(self.slowest_s, time.perf_counter() - began)
                self.failures += not ok
                time.sleep(0.1)


def raw_request(port: int, request: bytes) -> str:
    """The status line's code of a hand-made request, or ``reset`` when the service closed on it."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        try:
            conn.sendall(request)
            answer = conn.recv(4096)
        except (ConnectionResetError, BrokenPipeError):
            return "reset"
    return answer.split(b"\r\n", 1)[0].split(b" ")[1].decode() if answer else "closed"


def run_attack(name: str, attack, base: str, pid: int, warm_mb: float) -> dict:
    with Watch(base, pid) as watch:
        began = time.perf_counter()
        statuses = attack()
        took = time.perf_counter() - began
        time.sleep(0.5)  # what the attack left running shows up here
    row = {
        "attack": name,
        "answers": ",".join(map(str, statuses)),
        "seconds": round(took, 2),
        "slowest_info_s": round(watch.slowest_s, 3),
        "info_failures": watch.failures,
        "peak_above_warm_mb": round(watch.peak_mb - warm_mb),
    }
    print(row, flush=True)
    return row


def main() -> None:  # noqa: PLR0915 - one attack after another, in order
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8792)
    parser.add_argument("--bomb", type=Path, default=Path("/tmp/mess-bomb.flac"))
    args = parser.parse_args()

    import httpx

    sys.path.insert(0, str(PROJECT))
    base, port = f"http://127.0.0.1:{args.port}", args.port
    bomb = decode_bomb(args.bomb)
    print(f"decode bomb: {len(bomb) / 2**20:.1f} MB on the wire", flush=True)
    service = start_service(port)
    try:
        with httpx.Client(timeout=300) as client:
            wait_for_service(client, f"{base}/api/info", service)
            while not client.get(f"{base}/api/info").json()["ready"]:
                time.sleep(0.2)
            from mess_kedro.app.project import project_datasets

            audio = list(project_datasets(PROJECT, ["prepared_audio"])["prepared_audio"].load().values())
            fresh = int(time.time())  # new bytes each run: a cached query would not decode or embed
            music = [thirty_seconds_of(audio, seed=fresh + i) for i in range(4)]
            client.post(
                f"{base}/api/similar", content=thirty_seconds_of(audio, seed=fresh - 1), headers=WRITE
            )
            warm = service_rss_mb(service.pid)
            print(f"warm service: {warm:.0f} MB", flush=True)

            def parallel(bodies):
                def send(body):
                    with httpx.Client(timeout=300) as own:
                        return own.post(f"{base}/api/similar", content=body, headers=WRITE).status_code

                with ThreadPoolExecutor(len(bodies)) as pool:
                    return list(pool.map(send, bodies))

            def chunked_body():
                for _ in range(400):
                    yield b" " * 2**20

            def annotation_flood():
                try:
                    answer = client.post(
                        f"{base}/api/annotations",
                        content=chunked_body(),
                        headers=WRITE | {"Content-Type": "application/json"},
                    )
                    return [answer.status_code]
                except httpx.HTTPError as exc:  # the service closed on the rest of the body
                    return [type(exc).__name__]

            attacks = [
                ("decode bomb x4 in parallel", lambda: parallel([bomb] * 4)),
                (
                    "Range padded with 150,000 spaces",
                    lambda: [
                        raw_request(
                            port,
                            b"GET /api/tracks/x/audio HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: bytes=1-"
                            + b" " * 150_000
                            + b"x\r\n\r\n",
                        )
                    ],
                ),
                (
                    "100 KB of headers",
                    lambda: [
                        raw_request(
                            port,
                            b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: "
                            + b"a" * 100_000
                            + b"\r\n\r\n",
                        )
                    ],
                ),
                ("400 MB annotation body, chunked", annotation_flood),
                ("four 30-s uploads in parallel", lambda: parallel(music)),
            ]
            rows = [run_attack(name, attack, base, service.pid, warm) for name, attack in attacks]
        alive = service.poll() is None
        print(f"\nservice alive at the end: {alive}; warm memory {warm:.0f} MB")
        print(
            "| attack | answers | seconds | slowest /api/info (s) | /api/info failures | peak above warm (MB) |"
        )
        print("| --- | --- | --- | --- | --- | --- |")
        for row in rows:
            print("| " + " | ".join(str(v) for v in row.values()) + " |")
    finally:
        service.terminate()
        service.wait(10)


if __name__ == "__main__":
    main()
