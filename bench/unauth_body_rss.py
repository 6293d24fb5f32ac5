"""Peak RSS of a real control plane (uvicorn subprocess) sent a large body without an API token.

    .venv/bin/python bench/unauth_body_rss.py [--mib 1024] [--chunked] [--path /api/models]

Starts `uvicorn --factory tinyfleet.server.app:create_app` (SQLite in a temporary directory), waits for
/healthz, then sends POST <path> with no Authorization header and a body of --mib MiB (Content-Length,
or chunked transfer encoding with --chunked) in 1 MiB writes until the server answers or closes.
Prints the status, the bytes the client managed to send, and the server's peak RSS (VmHWM) before and
after. PYTHONPATH selects the code measured (e.g. an unpacked `git archive` of an older commit).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time

import httpx

MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def send_body(port: int, path: str, mib: int, chunked: bool) -> tuple[str, int]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % (mib * MIB)
    sock.sendall(
        b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n%s\r\n\r\n"
        % (path.encode(), framing)
    )
    chunk = b"[" * MIB
    frame = b"%x\r\n%s\r\n" % (MIB, chunk) if chunked else chunk
    sent = 0
    sock.setblocking(False)
    answer = b""
    try:
        for _ in range(mib):
            view = memoryview(frame)
            while view:
                with contextlib.suppress(BlockingIOError):  # the answer may come before the body ends
                    answer += sock.recv(4096)
                if answer:
                    raise StopIteration
                try:
                    n = sock.send(view)
                except BlockingIOError:
                    time.sleep(0.001)
                    continue
                view = view[n:]
                sent += n
        if chunked:
            sock.send(b"0\r\n\r\n")
        sock.setblocking(True)
        answer = answer or sock.recv(4096)
    except (StopIteration, BrokenPipeError, ConnectionResetError):
        pass
    finally:
        sock.close()
    status = answer.split(b"\r\n", 1)[0].decode(errors="replace") or "(connection closed)"
    return status, sent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--chunked", action="store_true")
    parser.add_argument("--path", default="/api/models")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "TINYFLEET_DATABASE_URL": f"sqlite:///{tmp}/db.sqlite",
            "TINYFLEET_DATA_DIR": tmp,
        }
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "tinyfleet.server.app:create_app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
        server = subprocess.Popen(cmd, env=env)
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            idle = peak_rss_mib(server.pid)
            start = time.monotonic()
            status, sent = send_body(port, args.path, args.mib, args.chunked)
            elapsed = time.monotonic() - start
            time.sleep(1.0)  # let the server finish whatever it still does with the body
            peak = peak_rss_mib(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    framing = "chunked" if args.chunked else "Content-Length"
    print(f"{args.mib} MiB ({framing}) to {args.path}, no token: {status!r}")
    print(
        f"client sent {sent / MIB:.1f} MiB in {elapsed:.1f} s; server peak RSS {idle:.0f} MiB idle,"
        f" {peak:.0f} MiB after"
    )


if __name__ == "__main__":
    main()
