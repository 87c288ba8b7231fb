"""Tests of the Python bootstrap shim.

Each test starts a fake Lambda Runtime API (http.server on 127.0.0.1:0) holding the
invocations to hand out, runs the shim as a subprocess against it with a handler from
fixtures/, and checks what the shim posted back and what it wrote to stdout.

    python3 -m unittest discover -s crates/runtime-process/runtimes/python -p 'test_*.py'

NIMBUS_SHIM_PYTHON chooses the interpreter that runs the shim (default: this one).
"""

import calendar
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
BOOTSTRAP = os.path.join(HERE, "bootstrap.py")
FIXTURES = os.path.join(HERE, "fixtures")
PYTHON = os.environ.get("NIMBUS_SHIM_PYTHON") or sys.executable
ARN = "arn:aws:lambda:us-east-1:000000000000:function:orders"
TIMEOUT = 30

# [LEVEL]\tYYYY-MM-DDTHH:MM:SS.mmmZ\trequest-id\tmessage
LOG_LINE = re.compile(
    r"^\[(?P<level>[A-Z]+)\]\t(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.\d{3}Z\t(?P<rid>[^\t]*)\t(?P<msg>.*)$"
)


class Invocation:
    def __init__(self, event=None, *, body=None, request_id=None, deadline_ms=None,
                 content_type="application/json", headers=()):
        self.body = body if body is not None else json.dumps(event).encode()
        self.request_id = request_id or str(uuid.uuid4())
        self.deadline_ms = deadline_ms if deadline_ms is not None else int(time.time() * 1000) + 60_000
        self.content_type = content_type
        self.headers = list(headers)


class Post:
    def __init__(self, kind, request_id, headers, body):
        self.kind = kind  # "response", "error" or "init_error"
        self.request_id = request_id
        self.headers = headers  # lower-case names
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "Post({}, {}, {!r})".format(self.kind, self.request_id, self.body[:200])


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # The shim going away mid-request is expected at the end of a test.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeRuntimeApi:
    """Hands out `invocations` one per GET .../next, records every POST; once they are
    all handed out, .../next waits until the test stops it and then answers 410, as
    Nimbus does when an instance stops."""

    def __init__(self, invocations, next_status=200, post_statuses=()):
        self.pending = list(invocations)
        self.posts = []
        self.next_calls = 0
        self.next_status = next_status
        self.post_statuses = list(post_statuses)
        self.cond = threading.Condition()
        self.stopping = threading.Event()
        self.server = _Server(("127.0.0.1", 0), self._handler_class())
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    @property
    def address(self):
        return "127.0.0.1:{}".format(self.server.server_address[1])

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def _handler_class(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body in one segment, flushed once per request, so that no
            # request waits on Nagle's algorithm and delayed ACKs.
            wbufsize = -1
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def _send(self, status, body=b"", headers=()):
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path != "/2018-06-01/runtime/invocation/next":
                    return self._send(404)
                with api.cond:
                    api.next_calls += 1
                    inv = api.pending.pop(0) if api.pending else None
                    api.cond.notify_all()
                if api.next_status != 200:
                    return self._send(api.next_status, b'{"errorType":"Runtime.Failure"}')
                if inv is None:
                    api.stopping.wait(TIMEOUT)
                    return self._send(410, b'{"errorType":"Runtime.Stopping"}')
                headers = [
                    ("Content-Type", inv.content_type),
                    ("Lambda-Runtime-Aws-Request-Id", inv.request_id),
                    ("Lambda-Runtime-Deadline-Ms", str(inv.deadline_ms)),
                    ("Lambda-Runtime-Invoked-Function-Arn", ARN),
                ] + inv.headers
                self._send(200, inv.body, headers)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                m = re.fullmatch(r"/2018-06-01/runtime/invocation/([^/]+)/(response|error)", self.path)
                if m:
                    kind, request_id = m.group(2), urllib.parse.unquote(m.group(1))
                elif self.path == "/2018-06-01/runtime/init/error":
                    kind, request_id = "init_error", None
                else:
                    return self._send(404)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with api.cond:
                    status = api.post_statuses.pop(0) if api.post_statuses else 202
                    api.posts.append(Post(kind, request_id, headers, body))
                    api.cond.notify_all()
                self._send(status, b'{"status":"OK"}', [("Content-Type", "application/json")])

        return Handler


class Run:
    def __init__(self, invocations, posts, next_calls, returncode, stdout, stderr):
        self.invocations = invocations
        self.posts = posts
        self.next_calls = next_calls
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    @property
    def lines(self):
        return self.stdout.splitlines()

    def log_lines(self):
        return [m.groupdict() for m in map(LOG_LINE.match, self.lines) if m]


def run_shim(handler, invocations=(), *, code="basic", env=None, next_status=200, post_statuses=(),
             bootstrap=BOOTSTRAP):
    """Runs the shim until it has answered every invocation (or exited), then stops it."""
    invocations = [i if isinstance(i, Invocation) else Invocation(i) for i in invocations]
    code_dir = code if os.path.isabs(code) else os.path.join(FIXTURES, code)
    with FakeRuntimeApi(invocations, next_status, post_statuses) as api:
        full_env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONDONTWRITEBYTECODE": "1",
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "_HANDLER": handler,
            "LAMBDA_TASK_ROOT": code_dir,
            "AWS_LAMBDA_FUNCTION_NAME": "orders",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/orders",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2024/01/01/[$LATEST]0123456789abcdef",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
            "AWS_ACCESS_KEY_ID": "nimbus",
            "AWS_SECRET_ACCESS_KEY": "nimbus",
            "TZ": ":UTC",
        }
        for name, value in (env or {}).items():
            if value is None:
                full_env.pop(name, None)
            else:
                full_env[name] = value
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                [PYTHON, bootstrap], cwd=code_dir, env=full_env,
                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            )
            try:
                end = time.monotonic() + TIMEOUT
                with api.cond:
                    while len(api.posts) < len(invocations) and proc.poll() is None:
                        left = end - time.monotonic()
                        if left <= 0:
                            break
                        api.cond.wait(min(left, 0.05))
                api.stopping.set()
                returncode = proc.wait(timeout=TIMEOUT)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            out.seek(0)
            err.seek(0)
            with api.cond:
                posts = list(api.posts)
                next_calls = api.next_calls
            return Run(invocations, posts, next_calls, returncode,
                       out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"))


class ShimTestCase(unittest.TestCase):
    maxDiff = None

    def single(self, run, kind):
        """The one post of a run with one invocation, checked to be of `kind`."""
        self.assertEqual(
            len(run.posts), 1,
            "posts: {}\nstdout: {}\nstderr: {}".format(run.posts, run.stdout, run.stderr),
        )
        post = run.posts[0]
        self.assertEqual(post.kind, kind, "post: {}\nstderr: {}".format(post, run.stderr))
        if kind != "init_error":
            self.assertEqual(post.request_id, run.invocations[0].request_id)
        return post

    def respond(self, handler, event=None, **kw):
        run = run_shim(handler, [Invocation(event)], **kw)
        post = self.single(run, "response")
        self.assertEqual(run.returncode, 0, run.stderr)
        return post, run

    def invocation_error(self, handler, inv=None, **kw):
        run = run_shim(handler, [inv or Invocation({})], **kw)
        post = self.single(run, "error")
        self.assertEqual(post.headers.get("lambda-runtime-function-error-type"), "Unhandled")
        doc = post.json()
        self.assertEqual(doc["requestId"], run.invocations[0].request_id)
        return doc, run

    def init_error(self, handler, code="basic", **kw):
        run = run_shim(handler, [Invocation({})], code=code, **kw)
        post = self.single(run, "init_error")
        self.assertNotEqual(run.returncode, 0)
        self.assertEqual(run.next_calls, 0, "the shim asked for an invocation after failing to init")
        doc = post.json()
        self.assertEqual(post.headers.get("lambda-runtime-function-error-type"), doc["errorType"])
        self.assertEqual(doc["requestId"], "")
        return doc, run


class ResultTests(ShimTestCase):
    def test_dict_event_comes_back_as_json(self):
        event = {"order": 7, "items": ["a", "b"], "paid": True}
        post, _ = self.respond("app.echo", event)
        self.assertEqual(post.headers.get("content-type"), "application/json")
        self.assertEqual(post.json(), event)

    def test_none_result_is_null(self):
        post, _ = self.respond("app.returns_none")
        self.assertEqual(post.body, b"null")

    def test_list_result(self):
        post, _ = self.respond("app.returns_list")
        self.assertEqual(post.json(), [1, "two", 3.5, True, None, {"nested": ["x"]}])

    def test_string_result_keeps_unicode(self):
        post, _ = self.respond("app.returns_str")
        self.assertEqual(post.body, '"héllo ✓"'.encode("utf-8"))

    def test_decimals_are_written_as_exact_numbers(self):
        post, _ = self.respond("app.returns_decimal")
        self.assertEqual(
            post.body,
            b'{"price": 19.99, "big": 12345678901234567890.123456789, "exp": 1E+2, "items": [-0.5, NaN]}',
        )

    def test_unserialisable_result_is_a_marshal_error(self):
        doc, run = self.invocation_error("app.returns_set")
        self.assertEqual(doc, {
            "errorMessage": "Unable to marshal response: Object of type set is not JSON serializable",
            "errorType": "Runtime.MarshalError",
            "requestId": run.invocations[0].request_id,
            "stackTrace": [],
        })

    def test_bytes_result_is_sent_raw(self):
        post, _ = self.respond("app.returns_bytes")
        self.assertEqual(post.body, b"\x00raw\xffbytes")
        self.assertEqual(post.headers.get("content-type"), "application/unknown")

    def test_non_json_payload_reaches_the_handler_as_bytes(self):
        run = run_shim("app.event_type", [Invocation(body=b"plain", content_type="text/plain")])
        self.assertEqual(self.single(run, "response").json(), "bytes")

    def test_invalid_json_event_is_an_unmarshal_error(self):
        doc, _ = self.invocation_error("app.echo", Invocation(body=b"{not json"))
        self.assertEqual(doc["errorType"], "Runtime.UnmarshalError")
        self.assertTrue(doc["errorMessage"].startswith("Unable to unmarshal input: Expecting property name"),
                        doc["errorMessage"])

    def test_one_process_serves_many_invocations(self):
        run = run_shim("app.counter", [{}, {}, {}])
        self.assertEqual([p.json() for p in run.posts], [1, 2, 3])
        self.assertEqual([p.request_id for p in run.posts], [i.request_id for i in run.invocations])
        self.assertEqual(run.returncode, 0)

    def test_keeps_serving_after_the_api_rejects_a_response(self):
        # Nimbus answers 413 to an oversized response and settles the invocation itself.
        run = run_shim("app.echo", [{"n": 1}, {"n": 2}], post_statuses=[413])
        self.assertEqual([(p.kind, p.json()) for p in run.posts], [("response", {"n": 1}), ("response", {"n": 2})])
        self.assertIn("413", run.stderr)
        self.assertEqual(run.returncode, 0)


class HandlerErrorTests(ShimTestCase):
    def test_raised_exception_is_reported_like_lambda(self):
        doc, run = self.invocation_error("app.raises", Invocation({"amount": 12}))
        app = os.path.join(FIXTURES, "basic", "app.py")
        self.assertEqual(doc["errorType"], "PaymentDeclined")
        self.assertEqual(doc["errorMessage"], "card declined for 12")
        self.assertEqual(len(doc["stackTrace"]), 2, doc["stackTrace"])
        first, second = doc["stackTrace"]
        file = '^  File "{}", line \\d+, '.format(re.escape(app))
        self.assertRegex(first, file + r'in raises\n    _charge\(event.get\("amount"\)\)\n$')
        self.assertRegex(second, file + r"in _charge\n    raise PaymentDeclined\(")
        self.assertEqual(run.posts[0].headers.get("content-type"), "application/json")

    def test_error_is_written_to_the_log(self):
        _, run = self.invocation_error("app.raises", Invocation({"amount": 3}))
        text = run.stdout
        start = text.index("[ERROR] PaymentDeclined: card declined for 3\nTraceback (most recent call last):\n")
        self.assertIn("in _charge", text[start:])

    def test_process_survives_a_handler_error(self):
        run = run_shim("app.raises", [{"amount": 1}, {"amount": 2}])
        self.assertEqual([p.kind for p in run.posts], ["error", "error"])
        self.assertEqual([p.json()["errorMessage"] for p in run.posts], ["card declined for 1", "card declined for 2"])
        self.assertEqual(run.returncode, 0)

    def test_handler_that_is_not_callable_fails_at_invocation(self):
        doc, _ = self.invocation_error("app.VALUE")
        self.assertEqual(doc["errorType"], "TypeError")
        self.assertEqual(doc["errorMessage"], "'str' object is not callable")


class InitErrorTests(ShimTestCase):
    def test_missing_module(self):
        doc, run = self.init_error("nope.handler")
        self.assertEqual(doc, {
            "errorMessage": "Unable to import module 'nope': No module named 'nope'",
            "errorType": "Runtime.ImportModuleError",
            "requestId": "",
            "stackTrace": [],
        })
        self.assertIn(
            "[ERROR] Runtime.ImportModuleError: Unable to import module 'nope': No module named 'nope'\n"
            "Traceback (most recent call last):\n",
            run.stdout,
        )

    def test_module_importing_a_missing_dependency(self):
        doc, _ = self.init_error("app.handler", code="import_error")
        self.assertEqual(doc["errorType"], "Runtime.ImportModuleError")
        self.assertEqual(doc["errorMessage"],
                         "Unable to import module 'app': No module named 'nimbus_module_that_does_not_exist'")

    def test_syntax_error(self):
        with tempfile.TemporaryDirectory() as code:
            shutil.copy(os.path.join(FIXTURES, "syntax_error", "app.py.txt"), os.path.join(code, "app.py"))
            doc, _ = self.init_error("app.handler", code=code)
            self.assertEqual(doc["errorType"], "Runtime.UserCodeSyntaxError")
            self.assertRegex(doc["errorMessage"], r"^Syntax error in module 'app': .+ \(app\.py, line \d+\)$")
            self.assertEqual(len(doc["stackTrace"]), 1)
            where = '  File "{}" Line '.format(os.path.join(code, "app.py"))
            self.assertTrue(doc["stackTrace"][0].startswith(where), doc["stackTrace"])

    def test_handler_missing_on_module(self):
        doc, _ = self.init_error("app.nope")
        self.assertEqual(doc["errorType"], "Runtime.HandlerNotFound")
        self.assertEqual(doc["errorMessage"], "Handler 'nope' missing on module 'app'")

    def test_malformed_handler_name(self):
        doc, _ = self.init_error("app")
        self.assertEqual(doc["errorType"], "Runtime.MalformedHandlerName")
        self.assertEqual(doc["errorMessage"], "Bad handler 'app': not enough values to unpack (expected 2, got 1)")

    def test_built_in_module_as_handler_module(self):
        doc, _ = self.init_error("sys.exit")
        self.assertEqual(doc["errorType"], "Runtime.BuiltInModuleConflict")
        self.assertEqual(doc["errorMessage"], "Cannot use built-in module sys as a handler module")

    def test_exception_at_import_keeps_its_own_type(self):
        doc, _ = self.init_error("app.handler", code="init_raise")
        app = os.path.join(FIXTURES, "init_raise", "app.py")
        self.assertEqual(doc["errorType"], "RuntimeError")
        self.assertEqual(doc["errorMessage"], "config bucket unreachable")
        self.assertEqual(len(doc["stackTrace"]), 2, doc["stackTrace"])
        self.assertRegex(
            doc["stackTrace"][0],
            '^  File "{}", line \\d+, in <module>\n    CONFIG = _load_config\\(\\)\n$'.format(re.escape(app)),
        )
        self.assertRegex(doc["stackTrace"][1], r'in _load_config\n    raise RuntimeError')

    def test_sys_exit_at_import_ends_the_process(self):
        run = run_shim("app.handler", [{}], code="init_exit")
        self.assertEqual(run.returncode, 4)
        self.assertEqual(run.posts, [])
        self.assertEqual(run.next_calls, 0)


class HandlerPathTests(ShimTestCase):
    def test_dotted_module_path(self):
        post, _ = self.respond("pkg.sub.mod.handler", {"x": 1})
        self.assertEqual(post.json(), {"module": "pkg.sub.mod", "event": {"x": 1}})

    def test_slash_separated_module_path(self):
        post, _ = self.respond("src/app.handler")
        self.assertEqual(post.json(), {"module": "src.app"})

    def test_dependencies_directory_comes_after_the_code(self):
        post, _ = self.respond("uses_dep.handler", env={"NIMBUS_PYTHON_DEPS": os.path.join(FIXTURES, "deps")})
        self.assertEqual(post.json(), {"dep": "from the deps directory", "shadowed": "task root"})

    def test_sys_path_starts_with_code_then_deps_and_hides_the_shim(self):
        deps = os.path.join(FIXTURES, "deps")
        post, _ = self.respond("app.path", env={"NIMBUS_PYTHON_DEPS": deps})
        path = post.json()
        self.assertEqual(path[:2], [os.path.join(FIXTURES, "basic"), deps])
        self.assertNotIn(HERE, path)

    def test_the_runtime_sdk_comes_after_the_deps_and_before_the_interpreters_packages(self):
        deps = os.path.join(FIXTURES, "deps")
        sdk = os.path.join(FIXTURES, "sdk")
        post, _ = self.respond("app.path", env={"NIMBUS_PYTHON_DEPS": deps, "NIMBUS_PYTHON_SDK": sdk})
        path = post.json()
        self.assertEqual(path[:3], [os.path.join(FIXTURES, "basic"), deps, sdk])
        self.assertTrue(all("site-packages" not in p for p in path[:3]))


class ContextTests(ShimTestCase):
    def test_context_fields(self):
        inv = Invocation({}, request_id="8476a536-e9f4-11e8-9739-2dfe598c3fcd",
                         deadline_ms=int(time.time() * 1000) + 30_000)
        run = run_shim("app.context_fields", [inv])
        fields = self.single(run, "response").json()
        remaining = fields.pop("remaining")
        self.assertEqual(fields, {
            "function_name": "orders",
            "function_version": "$LATEST",
            "invoked_function_arn": ARN,
            # Lambda's Python runtime passes the environment variable through: a string.
            "memory_limit_in_mb": "256",
            "memory_limit_type": "str",
            "aws_request_id": "8476a536-e9f4-11e8-9739-2dfe598c3fcd",
            "log_group_name": "/aws/lambda/orders",
            "log_stream_name": "2024/01/01/[$LATEST]0123456789abcdef",
        })
        self.assertIsInstance(remaining, int)
        self.assertTrue(0 < remaining <= 30_000, remaining)

    def test_remaining_time_counts_down(self):
        post, _ = self.respond("app.remaining_twice")
        first, second = post.json()
        self.assertTrue(first <= 60_000, first)
        self.assertGreaterEqual(first - second, 250)

    def test_remaining_time_is_zero_past_the_deadline(self):
        inv = Invocation({}, deadline_ms=int(time.time() * 1000) - 5_000)
        run = run_shim("app.context_fields", [inv])
        self.assertEqual(self.single(run, "response").json()["remaining"], 0)

    def test_client_context_and_identity(self):
        client_context = {
            "client": {
                "installation_id": "inst-1",
                "app_title": "Shop",
                "app_version_name": "1.2",
                "app_version_code": "12",
                "app_package_name": "com.example.shop",
            },
            "custom": {"cart": "42"},
            "env": {"platform": "Android", "locale": "en_GB"},
        }
        identity = {"cognitoIdentityId": "us-east-1:abc", "cognitoIdentityPoolId": "us-east-1:pool"}
        inv = Invocation({}, headers=[
            ("Lambda-Runtime-Client-Context", json.dumps(client_context)),
            ("Lambda-Runtime-Cognito-Identity", json.dumps(identity)),
        ])
        run = run_shim("app.mobile", [inv])
        self.assertEqual(self.single(run, "response").json(), {
            "identity": ["us-east-1:abc", "us-east-1:pool"],
            "client_context": {
                "client": ["inst-1", "Shop", "1.2", "12", "com.example.shop"],
                "custom": {"cart": "42"},
                "env": {"platform": "Android", "locale": "en_GB"},
            },
        })

    def test_without_mobile_headers(self):
        post, _ = self.respond("app.mobile")
        self.assertEqual(post.json(), {"identity": [None, None], "client_context": None})

    def test_unparseable_client_context(self):
        doc, _ = self.invocation_error(
            "app.mobile", Invocation({}, headers=[("Lambda-Runtime-Client-Context", "{oops")]))
        self.assertEqual(doc["errorType"], "Runtime.LambdaContextUnmarshalError")
        self.assertTrue(doc["errorMessage"].startswith("Unable to parse Client Context JSON: "), doc["errorMessage"])

    def test_trace_id_is_set_per_invocation(self):
        trace = "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1"
        run = run_shim("app.trace_id", [
            Invocation({}, headers=[("Lambda-Runtime-Trace-Id", trace)]),
            Invocation({}),
        ])
        self.assertEqual([p.json() for p in run.posts], [trace, None])


class LoggingTests(ShimTestCase):
    def test_print_output_is_unchanged(self):
        _, run = self.respond("app.logs")
        self.assertIn("plain print line", run.lines)

    def test_root_logger_format_request_id_and_default_level(self):
        _, run = self.respond("app.logs")
        rid = run.invocations[0].request_id
        logged = [(l["level"], l["rid"], l["msg"]) for l in run.log_lines()]
        self.assertEqual(logged, [
            ("WARNING", rid, "warning via module logger"),
            ("ERROR", rid, "error via root"),
        ])

    def test_level_from_aws_lambda_log_level(self):
        for level, expected in [
            ("DEBUG", ["DEBUG", "INFO", "WARNING", "ERROR"]),
            ("trace", ["DEBUG", "INFO", "WARNING", "ERROR"]),
            ("INFO", ["INFO", "WARNING", "ERROR"]),
            ("ERROR", ["ERROR"]),
        ]:
            with self.subTest(level=level):
                _, run = self.respond("app.logs", env={"AWS_LAMBDA_LOG_LEVEL": level})
                self.assertEqual([l["level"] for l in run.log_lines()], expected)

    def test_timestamps_are_utc_whatever_the_local_zone(self):
        before = time.time()
        # POSIX TZ for UTC+05:30, which needs no time zone database.
        _, run = self.respond("app.logs", env={"TZ": "IST-5:30"})
        after = time.time()
        stamps = [calendar.timegm(time.strptime(l["time"], "%Y-%m-%dT%H:%M:%S")) for l in run.log_lines()]
        self.assertEqual(len(stamps), 2)
        for stamp in stamps:
            self.assertTrue(before - 2 <= stamp <= after + 2, (before, stamp, after))

    def test_logs_during_init_have_an_empty_request_id(self):
        _, run = self.respond("init_log.handler")
        rid = run.invocations[0].request_id
        self.assertEqual([(l["rid"], l["msg"]) for l in run.log_lines()], [("", "cold start"), (rid, "warm call")])

    def test_logged_exception_keeps_its_traceback_and_ends_the_line(self):
        _, run = self.respond("app.logs_exception")
        lines = run.lines
        head = next(i for i, l in enumerate(lines) if l.endswith("\tlookup failed"))
        self.assertEqual(LOG_LINE.match(lines[head]).group("level"), "ERROR")
        self.assertEqual(lines[head + 1], "Traceback (most recent call last):")
        self.assertIn("KeyError: 'missing'", lines)
        self.assertIn("after the exception", lines)

    def test_basic_config_does_not_replace_the_lambda_handler(self):
        post, run = self.respond("app.basic_config")
        self.assertEqual(post.json(), 1)
        self.assertEqual([l["msg"] for l in run.log_lines()], ["after basicConfig"])
        self.assertNotIn("CUSTOM", run.stdout)

    def test_json_log_format(self):
        _, run = self.respond("app.logs_extra", env={"AWS_LAMBDA_LOG_FORMAT": "JSON"})
        records = [json.loads(l) for l in run.lines if l.startswith("{")]
        self.assertEqual(len(records), 1, run.stdout)
        record = records[0]
        self.assertRegex(record.pop("timestamp"), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(record, {
            "level": "WARNING",
            "message": "structured",
            "logger": "app",
            "requestId": run.invocations[0].request_id,
            "order": 42,
        })

    def test_logging_imported_only_by_the_handler_is_set_up_the_same(self):
        # Nothing imports logging before the call: the runtime sets it up on first import.
        post, run = self.respond("late.logs_late", code="late")
        self.assertEqual(post.json(), 1)
        lines = run.log_lines()
        self.assertEqual([(l["level"], l["rid"], l["msg"]) for l in lines],
                         [("WARNING", run.invocations[0].request_id, "imported late")])
        self.assertNotIn("CUSTOM", run.stdout)

    def test_context_log_writes_to_stdout(self):
        _, run = self.respond("app.context_log")
        self.assertIn("via context.log", run.lines)


class InstalledShimTests(ShimTestCase):
    """The shim as Nimbus installs it: both files copied to a directory of their own, run
    with bytecode caching on (Nimbus does not set PYTHONDONTWRITEBYTECODE)."""

    def test_runs_from_its_cached_bytecode_and_leaves_user_modules_alone(self):
        shims = tempfile.mkdtemp(prefix="nimbus-python-shims-")
        self.addCleanup(shutil.rmtree, shims, True)
        for name in ("bootstrap.py", "_nimbus_bootstrap.py"):
            shutil.copyfile(os.path.join(HERE, name), os.path.join(shims, name))
        bootstrap = os.path.join(shims, "bootstrap.py")
        # The function's code too, so that no bytecode is written into the fixtures.
        code = os.path.join(shims, "code")
        shutil.copytree(os.path.join(FIXTURES, "late"), code)
        for attempt in ("compiles", "uses the cache"):
            with self.subTest(attempt=attempt):
                run = run_shim("late.own_module", [{}], code=code, bootstrap=bootstrap,
                               env={"PYTHONDONTWRITEBYTECODE": None})
                post = self.single(run, "response")
                self.assertEqual(post.json(), {"value": "the function's own module", "bytecode": True})
                cached = os.listdir(os.path.join(shims, "__pycache__"))
                self.assertTrue(any(n.startswith("_nimbus_bootstrap.") for n in cached), cached)

    def test_request_ids_are_percent_encoded_in_the_path(self):
        rid = "odd/id with spaces+\u00e9"
        run = run_shim("app.echo", [Invocation({"n": 1}, request_id=rid)])
        post = self.single(run, "response")
        self.assertEqual(post.request_id, rid)
        self.assertEqual(post.json(), {"n": 1})


class ProcessExitTests(ShimTestCase):
    def test_stops_cleanly_when_the_api_says_gone(self):
        run = run_shim("app.echo", [{}])
        self.single(run, "response")
        self.assertEqual(run.next_calls, 2)
        self.assertEqual(run.returncode, 0)

    def test_sys_exit_in_handler_ends_the_process(self):
        run = run_shim("app.exits", [{}])
        self.assertEqual(run.returncode, 3)
        self.assertEqual(run.posts, [])

    def test_os_exit_in_handler_ends_the_process(self):
        run = run_shim("app.hard_exit", [{}])
        self.assertEqual(run.returncode, 7)
        self.assertEqual(run.posts, [])

    def test_keyboard_interrupt_is_not_reported_as_a_handler_error(self):
        run = run_shim("app.interrupted", [{}])
        self.assertNotEqual(run.returncode, 0)
        self.assertEqual(run.posts, [])
        self.assertIn("KeyboardInterrupt", run.stderr)

    def test_exits_when_the_api_fails(self):
        run = run_shim("app.echo", [{}], next_status=500)
        self.assertEqual(run.returncode, 1)
        self.assertEqual(run.posts, [])
        self.assertIn("500", run.stderr)


if __name__ == "__main__":
    unittest.main()
