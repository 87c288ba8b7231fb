#!/usr/bin/env python3
"""Start-up of Nimbus's Node.js and Python bootstrap shims, measured without Nimbus.

    python3 bench/shims/measure.py [--runs 20] [--runtime node|python|all]
                                   [--node-shim FILE] [--python-shim FILE]
                                   [--baseline-node FILE] [--baseline-python FILE]
                                   [--node-bin node] [--python-bin python3] [--json]

For each run the script serves a tiny fake Lambda Runtime API (HTTP/1.1 on 127.0.0.1, a
port of its own per run), spawns the shim as Nimbus does (`node bootstrap.cjs` or
`python3 bootstrap.py`, the function's code directory as working directory, a clean
environment holding only PATH, the locale and the variables Nimbus sets) on an echo handler,
and records, from the instant just before the spawn:

  - first /next: when the shim's first `GET /2018-06-01/runtime/invocation/next` arrived
    (what Nimbus reports as Init Duration);
  - response: when its `POST .../invocation/{id}/response` had fully arrived (one invocation
    handed out; the cold start a caller sees, less Nimbus's own hand-offs).

The next `GET .../next` is answered 410, as Nimbus does when it stops an instance, and the
shim exits. Each run also times the language runtime's own start-up with the same
environment, spawn to exit: `node -e 0` and `python3 -c pass`. The shim and its reference
alternate run by run, so other load on the machine falls on both alike; so does a
baseline shim (`--baseline-node`, `--baseline-python`: an older version to compare with),
measured in the same rounds. The report gives the p50 (and min, p90) of each and the
shim's p50 minus the runtime's: issue 4's target is a cold start at most 10 ms above the
runtime's own start-up. It also reports CPU time (user + system, from getrusage of the
reaped child): the shim's to its exit against the reference's. On a machine shared with
other work, wall times swing with the load and CPU times much less, so the CPU difference
is the steadier figure of the two.

Handlers (written to a temporary directory): Node.js `index.handler`, a CommonJS
`exports.handler = async (event) => event`, and `esm.handler`, the same as an ES module
(`esm.mjs`); Python `echo.handler`, `def handler(event, context): return event`. These match
bench/fixtures/invoke. Standard library only.
"""

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNTIMES = os.path.join(ROOT, "crates", "runtime-process", "runtimes")
EVENT = b'{"message":"hello","n":42}'
REQUEST_ID = "c0ffee00-0000-4000-8000-000000000001"


def default_node_shim():
    for name in ("bootstrap.cjs", "bootstrap.mjs"):
        path = os.path.join(RUNTIMES, "node", name)
        if os.path.exists(path):
            return path
    raise SystemExit("no Node.js shim under " + os.path.join(RUNTIMES, "node"))


class FakeRuntimeApi:
    """Serves one invocation, then 410. Times are perf_counter_ns()."""

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.address = "127.0.0.1:{}".format(self.listener.getsockname()[1])
        self.first_next = None
        self.response = None
        self.response_body = None
        self.handed_out = False
        self.problems = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def close(self):
        try:
            self.listener.close()
        except OSError:
            pass

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        reader = conn.makefile("rb")
        try:
            while True:
                line = reader.readline(65536)
                if not line:
                    return
                method, target, _ = line.decode("latin-1").split(" ", 2)
                headers = {}
                while True:
                    h = reader.readline(65536)
                    if h in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = h.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                arrived = time.perf_counter_ns()
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    body = self._chunked(reader)
                else:
                    body = reader.read(int(headers.get("content-length", "0") or 0))
                done = time.perf_counter_ns()
                conn.sendall(self._answer(method, target, body, arrived, done))
        except (OSError, ValueError) as e:
            self.problems.append("connection: {}".format(e))
        finally:
            reader.close()
            conn.close()

    @staticmethod
    def _chunked(reader):
        chunks = []
        while True:
            size = int(reader.readline(65536).split(b";")[0].strip(), 16)
            if size == 0:
                while reader.readline(65536) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(reader.read(size))
            reader.readline(65536)

    def _answer(self, method, target, body, arrived, done):
        if method == "GET" and target == "/2018-06-01/runtime/invocation/next":
            with self.lock:
                if self.first_next is None:
                    self.first_next = arrived
                first = not self.handed_out
                self.handed_out = True
            if not first:
                return b"HTTP/1.1 410 Gone\r\nContent-Length: 0\r\n\r\n"
            deadline = int(time.time() * 1000) + 30000
            head = (
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                "Lambda-Runtime-Aws-Request-Id: {}\r\n"
                "Lambda-Runtime-Deadline-Ms: {}\r\n"
                "Lambda-Runtime-Invoked-Function-Arn: "
                "arn:aws:lambda:us-east-1:000000000000:function:shim-bench\r\n"
                "Lambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000;Sampled=0\r\n"
                "Content-Length: {}\r\n\r\n"
            ).format(REQUEST_ID, deadline, len(EVENT))
            return head.encode("latin-1") + EVENT
        if method == "POST" and target.endswith("/invocation/{}/response".format(REQUEST_ID)):
            self.response = done
            self.response_body = body
        else:
            self.problems.append("{} {}: {}".format(method, target, body[:300]))
        return b"HTTP/1.1 202 Accepted\r\nContent-Length: 15\r\n\r\n{\"status\":\"OK\"}"


def environment(api, code_dir, shim_dir, handler, runtime_id):
    env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "LC_CTYPE") if k in os.environ}
    env.update({
        "AWS_LAMBDA_FUNCTION_NAME": "shim-bench",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/shim-bench",
        "AWS_LAMBDA_LOG_STREAM_NAME": "nimbus/[$LATEST]0123456789abcdef",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_EXECUTION_ENV": "AWS_Lambda_" + runtime_id,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "nimbus",
        "AWS_SECRET_ACCESS_KEY": "nimbus",
        "AWS_SESSION_TOKEN": "nimbus",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
        "_HANDLER": handler,
        "TZ": ":UTC",
        "AWS_LAMBDA_RUNTIME_API": api,
        "LAMBDA_TASK_ROOT": code_dir,
        "LAMBDA_RUNTIME_DIR": shim_dir,
    })
    return env


def children_cpu_ms():
    """CPU time (user + system) of every child reaped so far, in ms."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def run_shim(argv, code_dir, handler, runtime_id):
    api = FakeRuntimeApi()
    env = environment(api.address, code_dir, os.path.dirname(argv[-1]), handler, runtime_id)
    try:
        cpu = children_cpu_ms()
        start = time.perf_counter_ns()
        proc = subprocess.Popen(argv, cwd=code_dir, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output, _ = proc.communicate(timeout=60)
        cpu = children_cpu_ms() - cpu
    finally:
        api.close()
    echoed = api.response is not None and json.loads(api.response_body) == json.loads(EVENT)
    if proc.returncode != 0 or not echoed or api.problems:
        raise SystemExit("{} failed (exit {}): {}\n{}".format(
            " ".join(argv), proc.returncode, api.problems, output.decode("utf-8", "replace")))
    return (api.first_next - start) / 1e6, (api.response - start) / 1e6, cpu


def run_reference(argv, code_dir):
    env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "LC_CTYPE") if k in os.environ}
    cpu = children_cpu_ms()
    start = time.perf_counter_ns()
    subprocess.run(argv, cwd=code_dir, env=env, stdin=subprocess.DEVNULL, check=True)
    return (time.perf_counter_ns() - start) / 1e6, children_cpu_ms() - cpu


def summary(values):
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
    return "p50 {:7.2f} ms  (min {:7.2f}, p90 {:7.2f})".format(statistics.median(values), values[0], p90)


def measure(name, shims, reference_argv, code_dir, handler, runtime_id, runs):
    """Runs each shim of `shims` (`(label, argv)` pairs) and the reference in turn, `runs`
    times, and prints and returns their figures."""
    # One unmeasured round first: file caches, and Python's __pycache__ (the runtime's and
    # the handler's).
    for _, argv in shims:
        run_shim(argv, code_dir, handler, runtime_id)
    run_reference(reference_argv, code_dir)
    figures = {label: {"next": [], "response": [], "cpu": []} for label, _ in shims}
    references, reference_cpu = [], []
    for _ in range(runs):
        for label, argv in shims:
            first_next, response, cpu = run_shim(argv, code_dir, handler, runtime_id)
            figures[label]["next"].append(first_next)
            figures[label]["response"].append(response)
            figures[label]["cpu"].append(cpu)
        wall, cpu = run_reference(reference_argv, code_dir)
        references.append(wall)
        reference_cpu.append(cpu)
    ref = statistics.median(references)
    ref_cpu = statistics.median(reference_cpu)
    reference_text = " ".join(reference_argv)
    print("{} (n={})".format(name, runs))
    print("  {:<30} {}".format(reference_text + ":", summary(references)))
    print("  {:<30} {}".format("CPU, " + reference_text + ":", summary(reference_cpu)))
    results = []
    for label, argv in shims:
        f = figures[label]
        print("  {} ({})".format(label, " ".join(argv)))
        for title, key, base in (
            ("spawn -> first /next:", "next", ref),
            ("spawn -> response:", "response", ref),
            # CPU time is steadier than wall time on a busy machine: the shim's to its exit
            # (one invocation, then the 410) against the reference's.
            ("CPU, shim to exit:", "cpu", ref_cpu),
        ):
            print("    {:<28} {}   {:+.2f} ms".format(
                title, summary(f[key]), statistics.median(f[key]) - base))
        results.append({
            "name": name,
            "shim": label,
            "reference_ms": ref,
            "first_next_ms": statistics.median(f["next"]),
            "response_ms": statistics.median(f["response"]),
            "reference_cpu_ms": ref_cpu,
            "shim_cpu_ms": statistics.median(f["cpu"]),
        })
    return results


def install(source, shims_dir):
    """Copies a shim (and the Python runtime module beside it, if any) into a directory of
    its own, as Nimbus installs them in its data directory; returns the copy's path."""
    os.makedirs(shims_dir)
    target = os.path.join(shims_dir, os.path.basename(source))
    shutil.copyfile(source, target)
    runtime = os.path.join(os.path.dirname(source), "_nimbus_bootstrap.py")
    if source.endswith(".py") and os.path.exists(runtime):
        shutil.copyfile(runtime, os.path.join(shims_dir, "_nimbus_bootstrap.py"))
    return target


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--runtime", choices=("node", "python", "all"), default="all")
    parser.add_argument("--node-shim", default=None, help="default: the repository's")
    parser.add_argument("--python-shim", default=os.path.join(RUNTIMES, "python", "bootstrap.py"))
    parser.add_argument("--baseline-node", default=None,
                        help="another Node.js shim, measured in the same rounds")
    parser.add_argument("--baseline-python", default=None,
                        help="another Python shim (its bootstrap.py), measured in the same rounds")
    parser.add_argument("--node-bin", default="node")
    parser.add_argument("--python-bin", default="python3")
    parser.add_argument("--json", action="store_true", help="also print the p50s as JSON")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="nimbus-shim-bench-")
    try:
        code = os.path.join(work, "code")
        os.makedirs(code)
        with open(os.path.join(code, "index.js"), "w") as f:
            f.write("exports.handler = async (event) => event;\n")
        with open(os.path.join(code, "esm.mjs"), "w") as f:
            f.write("export const handler = async (event) => event;\n")
        with open(os.path.join(code, "echo.py"), "w") as f:
            f.write("def handler(event, context):\n    return event\n")
        results = []
        print("machine: {} cores, load average {}".format(
            os.cpu_count(), " ".join("{:.2f}".format(x) for x in os.getloadavg())))
        if args.runtime in ("node", "all"):
            shims = [("shim", [args.node_bin, install(args.node_shim or default_node_shim(),
                                                     os.path.join(work, "node"))])]
            if args.baseline_node:
                shims.append(("baseline", [args.node_bin, install(
                    args.baseline_node, os.path.join(work, "node-baseline"))]))
            reference = [args.node_bin, "-e", "0"]
            for handler in ("index.handler", "esm.handler"):
                results += measure("nodejs " + handler, shims, reference, code, handler,
                                   "nodejs20.x", args.runs)
        if args.runtime in ("python", "all"):
            shims = [("shim", [args.python_bin, install(args.python_shim,
                                                       os.path.join(work, "python"))])]
            if args.baseline_python:
                shims.append(("baseline", [args.python_bin, install(
                    args.baseline_python, os.path.join(work, "python-baseline"))]))
            reference = [args.python_bin, "-c", "pass"]
            results += measure("python echo.handler", shims, reference, code, "echo.handler",
                               "python3.11", args.runs)
        if args.json:
            print(json.dumps(results))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
