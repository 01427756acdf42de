"""A bounded HTTP load generator: counts failed requests while a release runs.

    python3 playbooks/files/loadgen.py --url http://127.0.0.1:18080/version --stop-file F --out result.json

Runs until the stop file appears, --duration passes or --max-requests are
sent, whichever comes first; every request opens a new connection so that
each is routed anew. Only loopback URLs are accepted. Writes a JSON summary.
"""
import argparse
import json
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--duration", type=float, default=300.0, help="hard limit in seconds")
    ap.add_argument("--max-requests", type=int, default=200000)
    ap.add_argument("--pause", type=float, default=0.0,
                    help="seconds each worker waits between requests (keeps a small machine responsive)")
    ap.add_argument("--stop-file")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    host = urllib.parse.urlparse(args.url).hostname or ""
    if not (host.startswith("127.") or host in ("localhost", "::1")):
        raise SystemExit("loadgen: only loopback targets are allowed, not %s" % host)
    lock = threading.Lock()
    stats = {"requests": 0, "failed": 0, "statuses": {}, "versions": {}, "errors": []}
    stop = threading.Event()
    started = time.monotonic()

    def worker():
        while not stop.is_set():
            with lock:
                if stats["requests"] >= args.max_requests:
                    stop.set()
                    return
                stats["requests"] += 1
            status, version, error = None, None, None
            try:
                with urllib.request.urlopen(args.url, timeout=5) as resp:
                    status = resp.status
                    body = resp.read()
                try:
                    version = json.loads(body).get("version")
                except ValueError:
                    pass
            except urllib.error.HTTPError as exc:
                status, error = exc.code, "HTTP %d" % exc.code
            except (OSError, ValueError) as exc:
                error = "%s: %s" % (type(exc).__name__, exc)
            with lock:
                key = str(status)
                stats["statuses"][key] = stats["statuses"].get(key, 0) + 1
                if version is not None:
                    stats["versions"][str(version)] = stats["versions"].get(str(version), 0) + 1
                if status != 200:
                    stats["failed"] += 1
                    if len(stats["errors"]) < 10:
                        stats["errors"].append({"t": round(time.monotonic() - started, 3), "error": error})
            if args.pause:
                stop.wait(args.pause)

    threads = [threading.Thread(target=worker, daemon=True) for _i in range(args.concurrency)]
    for t in threads:
        t.start()
    while not stop.is_set():
        if time.monotonic() - started > args.duration or (args.stop_file and os.path.exists(args.stop_file)):
            stop.set()
        time.sleep(0.05)
    for t in threads:
        t.join(timeout=10)
    stats["seconds"] = round(time.monotonic() - started, 3)
    with open(args.out, "w") as f:
        json.dump(stats, f, indent=1)
    print(json.dumps({k: stats[k] for k in ("requests", "failed", "statuses", "versions", "seconds")}))


if __name__ == "__main__":
    main()
