"""``darkseg serve`` under load: many concurrent clients on this machine, nothing lost or mixed up.

Usage::

    python benchmarks/serve_load.py                          # 200 requests, 16 clients, tiny model
    python benchmarks/serve_load.py --raw shared/data/raw-samples/RAW_KODAK_DC50.KDC --out load.json
    python benchmarks/serve_load.py --checkpoint runs/demo/train/final.pth

Starts ``darkseg serve`` as its own process on a free port of **127.0.0.1** (loopback only: the script
never sends to another address), waits for ``/health``, then

1. **reference**: predicts each distinct input once, one request at a time (the one-by-one prediction);
2. **load**: sends ``--requests`` requests (default 200) from ``--clients`` concurrent clients (default
   16; each a thread with its own keep-alive connection), input ``i % K`` for request ``i``, each upload
   named uniquely, until all are done or ``--max-seconds`` have passed (then no new request starts);
3. **checks** every answer: status 200, its own file name, and detections equal to the reference of its
   own input (classes, scores, boxes and RLE masks identical) - a request lost, failed or answered
   with another request's result is counted and makes the exit status 1;
4. reports throughput (answers/s over the load phase), client-side latency p50/p95/max, the server's
   p50 model and queue-wait times (``timings`` of the answers), and the server process's peak resident
   memory (``VmHWM`` of ``/proc/PID/status``) before and after the load.

Inputs: ``--images`` procedural scenes (``darkseg.data.scenes``, darkened to 1/8, PNG, sizes varying
from 256x192 to 448x320) and, with ``--raw FILE``, a camera RAW file as one more input. Model: a tiny
seeded Mask R-CNN (AWD + SCB, the tests' size) written to a temporary checkpoint, unless
``--checkpoint`` is given; the tiny model makes the server's own costs (upload, decoding, encoding,
queueing) visible next to inference.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"  # loopback only, by construction


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _multipart(name: str, data: bytes, fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _post(conn: http.client.HTTPConnection, name: str, data: bytes) -> tuple[int, dict]:
    body, ctype = _multipart(name, data, {"score_thr": "0", "ratio": "1"})
    conn.request("POST", "/predict", body=body, headers={"Content-Type": ctype})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def _inputs(n: int, raw: Path | None) -> list[tuple[str, bytes]]:
    import cv2

    from darkseg.data.scenes import render_scene

    out = []
    for i in range(n):
        size = (256 + 64 * (i % 4), 192 + 64 * (i % 3))  # (W, H)
        img = (render_scene(np.random.default_rng(100 + i), size).image // 8).astype(np.uint8)
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(img[:, :, ::-1]))
        assert ok
        out.append((f"scene{i}.png", buf.tobytes()))
    if raw is not None:
        out.append((raw.name, raw.read_bytes()))
    return out


def _same(a: dict, b: dict) -> bool:
    """Two answers hold the same detections (classes, scores, boxes, RLE masks) on the same grid."""
    if (a["width"], a["height"], a["ratio"]) != (b["width"], b["height"], b["ratio"]):
        return False
    da, db = a["detections"], b["detections"]
    return len(da) == len(db) and all(
        x["category_id"] == y["category_id"]
        and abs(x["score"] - y["score"]) <= 1e-6
        and np.allclose(x["bbox"], y["bbox"], atol=1e-3)
        and x["segmentation"] == y["segmentation"]
        for x, y in zip(da, db)
    )


def _peak_rss_mib(pid: int) -> float:
    """Peak resident memory (VmHWM) of a Linux process, MiB; NaN elsewhere."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--images", type=int, default=12, help="distinct procedural inputs")
    ap.add_argument("--raw", type=Path, help="also send this camera RAW file")
    ap.add_argument("--checkpoint", type=Path, help="default: a tiny seeded model")
    ap.add_argument("--max-seconds", type=float, default=600.0, help="no request starts after this")
    ap.add_argument("--out", type=Path, help="write the measurements as JSON")
    args = ap.parse_args()
    if not (1 <= args.requests <= 10_000 and 1 <= args.clients <= 64):
        ap.error("--requests must be in 1..10000 and --clients in 1..64")

    tmp = tempfile.TemporaryDirectory(prefix="darkseg-serve-load-")
    ckpt = args.checkpoint
    if ckpt is None:
        import torch

        from darkseg.models import ModelConfig, build_model, save_checkpoint

        torch.manual_seed(0)
        cfg = ModelConfig.tiny(
            ["person", "car"], awd=True, scb=True, min_size=96, max_size=128, box_score_thresh=0.0,
            box_detections_per_img=20,
        )  # fmt: skip
        ckpt = Path(tmp.name) / "tiny.pt"
        save_checkpoint(ckpt, build_model(cfg).eval())
    inputs = _inputs(args.images, args.raw)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                                       os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    cmd = [sys.executable, "-m", "darkseg", "serve", "--checkpoint", str(ckpt), "--host", HOST,
           "--port", str(port), "--max-queue", str(max(32, args.clients)), "--device", "cpu"]  # fmt: skip
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                raise SystemExit(f"the server ended: {server.stderr.read().decode()}")
            try:
                c = http.client.HTTPConnection(HOST, port, timeout=5)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not answer /health within 120 s")
            time.sleep(0.2)
        model = json.loads((lambda c: (c.request("GET", "/model"), c.getresponse().read())[1])(
            http.client.HTTPConnection(HOST, port, timeout=10)))  # fmt: skip

        # 1. one-by-one reference
        conn = http.client.HTTPConnection(HOST, port, timeout=120)
        reference = []
        for name, data in inputs:
            status, ans = _post(conn, name, data)
            if status != 200:
                raise SystemExit(f"reference request for {name} failed: {status} {ans}")
            reference.append(ans)
        conn.close()
        rss_before = _peak_rss_mib(server.pid)

        # 2. load
        order = list(range(args.requests))
        lock = threading.Lock()
        results: dict[int, tuple[int, dict | None, float, str]] = {}
        t_end = time.monotonic() + args.max_seconds

        def client() -> None:
            c = http.client.HTTPConnection(HOST, port, timeout=120)
            while True:
                with lock:
                    if not order or time.monotonic() > t_end:
                        break
                    i = order.pop(0)
                k = i % len(inputs)
                stem, suffix = os.path.splitext(inputs[k][0])
                name = f"req{i:04d}_{stem}{suffix}"
                t0 = time.perf_counter()
                try:
                    status, ans = _post(c, name, inputs[k][1])
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    status, ans = -1, {"error": repr(exc)}
                    c.close()
                    c = http.client.HTTPConnection(HOST, port, timeout=120)
                with lock:
                    results[i] = (status, ans, time.perf_counter() - t0, name)
            c.close()

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        rss_after = _peak_rss_mib(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        tmp.cleanup()

    # 3. checks
    lost = args.requests - len(results)
    failed = [i for i, (s, *_rest) in results.items() if s != 200]
    mixed = [
        i
        for i, (s, ans, _lat, name) in results.items()
        if s == 200 and (ans["file"] != name or not _same(ans, reference[i % len(inputs)]))
    ]
    ok = [r for r in results.values() if r[0] == 200]
    lat = [r[2] for r in ok]
    infer = [r[1]["timings"]["inference_s"] for r in ok]
    wait = [r[1]["timings"]["wait_s"] for r in ok]
    report = {
        "requests": args.requests,
        "clients": args.clients,
        "inputs": [n for n, _ in inputs],
        "model": {k: model[k] for k in ("checkpoint", "classes", "numerics", "input_size", "device")},
        "answered_ok": len(ok),
        "lost": lost,
        "failed": len(failed),
        "mixed_up": len(mixed),
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(ok) / wall, 2),
        "latency_s": {"p50": _pct(lat, 50), "p95": _pct(lat, 95), "max": max(lat, default=float("nan"))},
        "server_inference_s_p50": statistics.median(infer) if infer else float("nan"),
        "server_wait_s_p50": statistics.median(wait) if wait else float("nan"),
        "server_peak_rss_mib": {"before_load": round(rss_before, 1), "after_load": round(rss_after, 1)},
        "cpus": os.cpu_count(),
        "torch_threads_env": os.environ.get("OMP_NUM_THREADS", "(default)"),
    }
    print(json.dumps(report, indent=1))
    print()
    print(
        "| requests | clients | answered | lost / failed / mixed up | wall (s) | throughput (req/s) | "
        "latency p50 / p95 / max (s) | model p50 (s) | queue wait p50 (s) | server peak RSS (MiB) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    lt = report["latency_s"]
    print(
        f"| {args.requests} | {args.clients} | {len(ok)} | {lost} / {len(failed)} / {len(mixed)} | "
        f"{wall:.1f} | {report['throughput_rps']:.2f} | "
        f"{lt['p50']:.2f} / {lt['p95']:.2f} / {lt['max']:.2f} | "
        f"{report['server_inference_s_p50']:.3f} | {report['server_wait_s_p50']:.2f} | "
        f"{rss_before:.0f} -> {rss_after:.0f} |"
    )
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0 if (lost, len(failed), len(mixed)) == (0, 0, 0) else 1


if __name__ == "__main__":
    raise SystemExit(main())
