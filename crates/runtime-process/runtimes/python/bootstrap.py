"""Nimbus's bootstrap for Python functions.

Nimbus starts one process per instance as `python3 bootstrap.py`, with the function's code
directory as the working directory and `AWS_LAMBDA_RUNTIME_API` naming the loopback Runtime
API endpoint of that instance. This file loads the handler named by `_HANDLER` and then
serves invocations one at a time, the way the managed Python runtime of AWS Lambda does:
the same context object, the same error documents, the same logging set-up.

Standard library only, Python 3.9 or newer. The Runtime API is spoken over a plain socket
rather than `http.client`, whose imports (email, ssl) alone cost more start-up time than
the 10 ms Nimbus allows itself above the interpreter's own.
"""

import decimal
import importlib
import json
import logging
import os
import re
import socket
import sys
import time
import traceback
import urllib.parse

API_VERSION = "2018-06-01"

_SHIM_FILE = os.path.abspath(__file__)
_SHIM_DIR = os.path.dirname(_SHIM_FILE)

# The request id the root logger's handler stamps on records. It keeps the last
# invocation's id between invocations (as Lambda does) and is empty during init.
_current_request_id = ""
_current_tenant_id = None


def _warn(message):
    """A diagnostic of the shim itself, on stderr."""
    sys.stderr.write("nimbus python bootstrap: {}\n".format(message))
    sys.stderr.flush()


class _Fault(Exception):
    """An error the runtime reports itself, with a Lambda `Runtime.*` type."""

    def __init__(self, error_type, message, stack_trace=None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack_trace = stack_trace or []


# ---------------------------------------------------------------------------------------
# Error documents


def _error_document(message, error_type, stack_trace, request_id=""):
    return {
        "errorMessage": message or "",
        "errorType": error_type or "",
        "requestId": request_id or "",
        "stackTrace": stack_trace or [],
    }


def _format_frames(frames):
    """Formats frames as Python's traceback does, one string per frame, without the column
    markers newer Pythons add, so that every Python version gives the same document."""
    out = []
    for frame in frames:
        text = '  File "{}", line {}, in {}\n'.format(frame.filename, frame.lineno, frame.name)
        line = (frame.line or "").strip()
        if line:
            text += "    {}\n".format(line)
        out.append(text)
    return out


_IMPORTLIB_DIR = os.path.dirname(os.path.abspath(importlib.__file__)) + os.sep


def _is_runtime_frame(filename):
    if filename.startswith("<"):
        return filename.startswith("<frozen importlib")
    filename = os.path.abspath(filename)
    return filename == _SHIM_FILE or filename.startswith(_IMPORTLIB_DIR)


def _user_frames(tb):
    """The frames of a traceback from the first one that is not the runtime's own: the
    shim's frames and importlib's machinery say nothing about the user's code."""
    frames = traceback.extract_tb(tb)
    for i, frame in enumerate(frames):
        if not _is_runtime_frame(frame.filename):
            return frames[i:]
    return frames[len(frames):]


def _exception_document(exc, request_id=""):
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not hide the error itself
        message = "<unprintable {} object>".format(type(exc).__name__)
    return _error_document(
        message, type(exc).__name__, _format_frames(_user_frames(exc.__traceback__)), request_id
    )


# ---------------------------------------------------------------------------------------
# JSON, as the Lambda runtime writes it


class _DecimalSlots:
    """Decimals in a response are written as their exact digits, not as floats. The
    standard encoder cannot emit raw text, so each Decimal becomes a placeholder string
    that is replaced after encoding; the token is random, so no user string can match."""

    def __init__(self):
        self.token = "nimbusdecimal{}n".format(os.urandom(16).hex())
        self.pattern = re.compile('"' + self.token + r'(\d+)"')


_DECIMALS = _DecimalSlots()


def _to_json(value):
    """Encodes a response: non-ASCII characters kept, NaN and Infinity allowed, Decimals
    as exact numbers (NaN for a NaN Decimal)."""
    decimals = []

    def default(o):
        if isinstance(o, decimal.Decimal):
            decimals.append("NaN" if o.is_nan() else str(o))
            return "{}{}".format(_DECIMALS.token, len(decimals) - 1)
        raise TypeError("Object of type {} is not JSON serializable".format(type(o).__name__))

    text = json.dumps(value, default=default, ensure_ascii=False)
    if decimals:
        text = _DECIMALS.pattern.sub(lambda m: decimals[int(m.group(1))], text)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate cannot be UTF-8: escaped, it is still valid JSON.
        decimals.clear()
        text = json.dumps(value, default=default, ensure_ascii=True)
        if decimals:
            text = _DECIMALS.pattern.sub(lambda m: decimals[int(m.group(1))], text)
        return text.encode("ascii")


def _marshal_response(result):
    """The body and content type of a handler's result."""
    if isinstance(result, bytes):
        return result, "application/unknown"
    try:
        return _to_json(result), "application/json"
    except Exception as e:
        raise _Fault("Runtime.MarshalError", "Unable to marshal response: {}".format(e)) from None


def _unmarshal_event(body, content_type):
    if content_type and content_type.split(";")[0].strip().lower() != "application/json":
        return body
    try:
        return json.loads(body)
    except Exception as e:
        raise _Fault("Runtime.UnmarshalError", "Unable to unmarshal input: {}".format(e)) from None


def _parse_json_header(value, what):
    try:
        parsed = json.loads(value)
    except Exception as e:
        raise _Fault(
            "Runtime.LambdaContextUnmarshalError", "Unable to parse {} JSON: {}".format(what, e)
        ) from None
    if not isinstance(parsed, dict):
        raise _Fault(
            "Runtime.LambdaContextUnmarshalError",
            "Unable to parse {} JSON: expected an object".format(what),
        )
    return parsed


# ---------------------------------------------------------------------------------------
# The context object


class CognitoIdentity:
    """`context.identity`: always present; its fields are None unless the invocation
    carried a Cognito identity."""

    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, fields=None):
        fields = fields or {}
        self.cognito_identity_id = fields.get("cognitoIdentityId")
        self.cognito_identity_pool_id = fields.get("cognitoIdentityPoolId")

    def __repr__(self):
        return "CognitoIdentity([cognito_identity_id={},cognito_identity_pool_id={}])".format(
            self.cognito_identity_id, self.cognito_identity_pool_id
        )


class Client:
    """`context.client_context.client`: the mobile client application."""

    __slots__ = (
        "installation_id",
        "app_title",
        "app_version_name",
        "app_version_code",
        "app_package_name",
    )

    def __init__(self, fields):
        for name in self.__slots__:
            setattr(self, name, fields.get(name))

    def __repr__(self):
        inner = ",".join("{}={}".format(n, getattr(self, n)) for n in self.__slots__)
        return "Client([{}])".format(inner)


class ClientContext:
    """`context.client_context`: None unless the invocation carried a client context."""

    __slots__ = ("custom", "env", "client")

    def __init__(self, fields):
        self.custom = fields.get("custom")
        self.env = fields.get("env")
        client = fields.get("client")
        self.client = Client(client) if isinstance(client, dict) else client

    def __repr__(self):
        return "ClientContext([custom={},env={},client={}])".format(
            self.custom, self.env, self.client
        )


class LambdaContext:
    """The second argument of every handler call."""

    def __init__(self, request_id, deadline_ms, invoked_function_arn, client_context,
                 identity, tenant_id=None):
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_function_arn
        self.tenant_id = tenant_id
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        # Lambda's runtime hands the variable over as it is: a string such as "128".
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.client_context = ClientContext(client_context) if client_context is not None else None
        self.identity = CognitoIdentity(identity)
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        """Milliseconds left before the invocation's deadline, never below zero."""
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def log(self, message):
        """Writes `message` to the function's log as it is."""
        sys.stdout.write(str(message))
        sys.stdout.flush()

    def __repr__(self):
        return (
            "LambdaContext([aws_request_id={},log_group_name={},log_stream_name={},"
            "function_name={},memory_limit_in_mb={},function_version={},"
            "invoked_function_arn={},client_context={},identity={},tenant_id={}])"
        ).format(
            self.aws_request_id, self.log_group_name, self.log_stream_name, self.function_name,
            self.memory_limit_in_mb, self.function_version, self.invoked_function_arn,
            self.client_context, self.identity, self.tenant_id,
        )


# ---------------------------------------------------------------------------------------
# Logging


_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
_TEXT_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n"

# Attributes of every LogRecord; anything else on a record came from `extra=` and is
# copied into JSON log lines.
_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "aws_request_id", "tenant_id", "taskName",
}


class _RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.aws_request_id = _current_request_id
        record.tenant_id = _current_tenant_id
        return True


class _StdoutHandler(logging.Handler):
    """Writes each record to the current `sys.stdout`, whole, ending with a newline."""

    def emit(self, record):
        try:
            text = self.format(record)
            if not text.endswith("\n"):
                text += "\n"
            sys.stdout.write(text)
            sys.stdout.flush()
        except Exception:
            self.handleError(record)


class _JsonFormatter(logging.Formatter):
    """Lambda's JSON log format (AWS_LAMBDA_LOG_FORMAT=JSON)."""

    def format(self, record):
        doc = {
            "timestamp": _utc_timestamp(record.created),
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "requestId": getattr(record, "aws_request_id", None),
        }
        if getattr(record, "tenant_id", None) is not None:
            doc["tenantId"] = record.tenant_id
        if record.exc_info and record.exc_info[0] is not None:
            doc["errorType"] = record.exc_info[0].__name__
            doc["errorMessage"] = str(record.exc_info[1])
            doc["stackTrace"] = traceback.format_tb(record.exc_info[2])
            doc["location"] = "{}:{}:{}".format(record.pathname, record.funcName, record.lineno)
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in doc:
                doc[key] = value
        return json.dumps(doc, ensure_ascii=False, default=str) + "\n"


def _utc_timestamp(seconds):
    millis = int(seconds * 1000) % 1000
    return "{}.{:03d}Z".format(time.strftime(_TIME_FORMAT, time.gmtime(seconds)), millis)


def _json_logs():
    return (os.environ.get("AWS_LAMBDA_LOG_FORMAT") or "").upper() == "JSON"


def _setup_logging():
    # As in Lambda: every formatter's asctime is UTC, the root logger has one handler
    # (so logging.basicConfig() does nothing), and its level is Python's default
    # (WARNING) unless AWS_LAMBDA_LOG_LEVEL names one.
    logging.Formatter.converter = time.gmtime
    handler = _StdoutHandler()
    if _json_logs():
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT, _TIME_FORMAT))
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = (os.environ.get("AWS_LAMBDA_LOG_LEVEL") or "").upper()
    level = {"TRACE": "DEBUG", "WARN": "WARNING", "FATAL": "CRITICAL"}.get(level, level)
    if level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        root.setLevel(level)


def _log_error(document):
    """Writes an error to the log as Lambda does: `[ERROR] Type: message` and the trace."""
    if _json_logs():
        line = dict(document, timestamp=_utc_timestamp(time.time()), level="ERROR")
        sys.stdout.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
    else:
        head = "[ERROR]"
        if document["errorType"]:
            head += " " + document["errorType"]
        if document["errorMessage"]:
            head += (":" if document["errorType"] else "") + " " + document["errorMessage"]
        lines = [head, "Traceback (most recent call last):"]
        for frame in document["stackTrace"]:
            lines.extend(frame.splitlines())
        sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def _setup_stdio():
    # Output goes out as it is written (Lambda's runtime writes through), and in UTF-8
    # whatever the locale of the clean environment Nimbus starts the process in.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(encoding="utf-8", line_buffering=True)
        except (AttributeError, ValueError):
            pass


def _flush_stdio():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


# ---------------------------------------------------------------------------------------
# Loading the handler


def _setup_sys_path(task_root):
    # `python3 bootstrap.py` puts the shim's own directory first; user code must not see
    # it. The code comes first, then the dependencies Nimbus installed for it, then the
    # AWS SDK the runtime provides (as /var/runtime on Lambda: a function's own boto3
    # wins over it, and it wins over whatever the host's interpreter has).
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _SHIM_DIR]
    first = [task_root]
    for variable in ("NIMBUS_PYTHON_DEPS", "NIMBUS_PYTHON_SDK"):
        if os.environ.get(variable):
            first.append(os.environ[variable])
    sys.path[0:0] = first


def _load_handler(spec):
    """Imports the module of a handler such as `app.handler`, `pkg.sub.mod.handler` or
    `src/app.handler` and returns the function; faults carry Lambda's error types."""
    if "." not in spec:
        raise _Fault(
            "Runtime.MalformedHandlerName",
            "Bad handler '{}': not enough values to unpack (expected 2, got 1)".format(spec),
        )
    module_name, function_name = spec.rsplit(".", 1)
    import_name = module_name.replace("/", ".")
    if not import_name or import_name.startswith(".") or not function_name:
        raise _Fault(
            "Runtime.MalformedHandlerName",
            "Bad handler '{}': empty module or function name".format(spec),
        )
    if import_name.split(".")[0] in sys.builtin_module_names:
        raise _Fault(
            "Runtime.BuiltInModuleConflict",
            "Cannot use built-in module {} as a handler module".format(module_name),
        )
    try:
        module = importlib.import_module(import_name)
    except ImportError as e:
        raise _Fault(
            "Runtime.ImportModuleError", "Unable to import module '{}': {}".format(module_name, e)
        ) from None
    except SyntaxError as e:
        frame = '  File "{}" Line {}\n    {}'.format(e.filename, e.lineno, e.text or "")
        raise _Fault(
            "Runtime.UserCodeSyntaxError",
            "Syntax error in module '{}': {}".format(module_name, e),
            [frame],
        ) from None
    try:
        return getattr(module, function_name)
    except AttributeError:
        raise _Fault(
            "Runtime.HandlerNotFound",
            "Handler '{}' missing on module '{}'".format(function_name, module_name),
        ) from None


# ---------------------------------------------------------------------------------------
# The Runtime API client


class _ApiStopped(Exception):
    """The Runtime API will hand out no more invocations."""

    def __init__(self, status, reason):
        super().__init__("{} {}".format(status, reason))
        self.status = status


class _Response:
    """A response's status line and headers."""

    __slots__ = ("status", "reason", "headers")

    def __init__(self, status, reason, headers):
        self.status = status
        self.reason = reason
        self.headers = headers


class _Headers(dict):
    """Response headers by lowercased name; `get` takes any case, as http.client's does."""

    def get(self, name, default=None):
        return dict.get(self, name.lower(), default)


class _Closed(ConnectionError):
    """The Runtime API closed the connection before answering."""


# Longest status or header line read from the Runtime API.
_MAX_LINE = 64 * 1024


def _header_value(value):
    """A request header value that cannot break the request: no CR or LF."""
    return str(value).replace("\r", " ").replace("\n", " ")


class RuntimeApi:
    """One keep-alive HTTP/1.1 connection to the Runtime API."""

    def __init__(self, address):
        self.address = address
        host, _, port = address.rpartition(":")
        self.host = host.strip("[]") or "127.0.0.1"
        self.port = int(port)
        self.sock = None
        self.reader = None

    def _close(self):
        for part in (self.reader, self.sock):
            if part is not None:
                try:
                    part.close()
                except OSError:
                    pass
        self.sock = None
        self.reader = None

    def _exchange(self, method, path, body, headers):
        """Sends one request and reads its whole response."""
        if body is None:
            body = b""
        elif isinstance(body, str):
            body = body.encode("utf-8")
        lines = ["{} /{}{} HTTP/1.1".format(method, API_VERSION, path), "Host: " + self.address]
        for name, value in (headers or {}).items():
            lines.append("{}: {}".format(name, _header_value(value)))
        if method != "GET" or body:
            lines.append("Content-Length: {}".format(len(body)))
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        self.sock.sendall(head + body)

        status_line = self.reader.readline(_MAX_LINE)
        if not status_line:
            raise _Closed("the Runtime API closed the connection")
        parts = status_line.decode("latin-1").split(None, 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise ValueError("not an HTTP status line: {!r}".format(status_line[:100]))
        status = int(parts[1])
        reason = parts[2].strip() if len(parts) > 2 else ""
        response_headers = _Headers()
        while True:
            line = self.reader.readline(_MAX_LINE)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip()
            if name in response_headers:
                value = response_headers[name] + ", " + value
            response_headers[name] = value
        will_close = (
            parts[0] == "HTTP/1.0" or response_headers.get("connection", "").lower() == "close"
        )
        if "chunked" in response_headers.get("transfer-encoding", "").lower():
            data = self._read_chunked()
        elif "content-length" in response_headers:
            data = self._read_exact(int(response_headers["content-length"]))
        else:
            data = self.reader.read()
            will_close = True
        return status, reason, response_headers, data, will_close

    def _read_exact(self, size):
        data = self.reader.read(size)
        if len(data) != size:
            raise _Closed("the Runtime API closed the connection mid-body")
        return data

    def _read_chunked(self):
        chunks = []
        while True:
            size_line = self.reader.readline(_MAX_LINE)
            if not size_line:
                raise _Closed("the Runtime API closed the connection mid-body")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                # Trailers, up to the empty line.
                while self.reader.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(self._read_exact(size))
            self.reader.readline(_MAX_LINE)

    def _request(self, method, path, body=None, headers=None):
        for attempt in (0, 1):
            fresh = self.sock is None
            try:
                if fresh:
                    self.sock = socket.create_connection((self.host, self.port))
                    self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self.reader = self.sock.makefile("rb")
                status, reason, response_headers, data, will_close = self._exchange(
                    method, path, body, headers
                )
                if will_close:
                    self._close()
                return _Response(status, reason, response_headers), data
            except (_Closed, ConnectionResetError, BrokenPipeError):
                self._close()
                # A reused connection the server had already closed: try once more.
                if fresh or attempt == 1:
                    raise
            except Exception:
                self._close()
                raise
        raise AssertionError("unreachable")

    def next_invocation(self):
        response, body = self._request("GET", "/runtime/invocation/next")
        if response.status != 200:
            raise _ApiStopped(response.status, body.decode("utf-8", "replace"))
        return response.headers, body

    def _post(self, path, body, headers):
        response, data = self._request("POST", path, body=body, headers=headers)
        if response.status >= 500:
            raise _ApiStopped(response.status, data.decode("utf-8", "replace"))
        if response.status >= 300:
            # The platform has settled the invocation (too large, already answered):
            # say so and take the next one.
            _warn("{} {} answered {}: {}".format(
                "POST", path, response.status, data.decode("utf-8", "replace")))

    def post_response(self, request_id, body, content_type):
        self._post(
            "/runtime/invocation/{}/response".format(urllib.parse.quote(request_id, safe="")),
            body,
            {"Content-Type": content_type},
        )

    def post_error(self, request_id, document):
        self._post(
            "/runtime/invocation/{}/error".format(urllib.parse.quote(request_id, safe="")),
            _to_json(document),
            {"Content-Type": "application/json", "Lambda-Runtime-Function-Error-Type": "Unhandled"},
        )

    def post_init_error(self, document):
        self._post(
            "/runtime/init/error",
            _to_json(document),
            {
                "Content-Type": "application/json",
                "Lambda-Runtime-Function-Error-Type": document["errorType"] or "Runtime.Unknown",
            },
        )


# ---------------------------------------------------------------------------------------
# The invocation loop


def _deadline(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _invoke(api, handler, headers, body):
    global _current_request_id, _current_tenant_id
    request_id = headers.get("Lambda-Runtime-Aws-Request-Id") or ""
    _current_request_id = request_id
    _current_tenant_id = headers.get("Lambda-Runtime-Aws-Tenant-Id")
    trace_id = headers.get("Lambda-Runtime-Trace-Id")
    if trace_id is None:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    else:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id

    error = None
    try:
        client_context = headers.get("Lambda-Runtime-Client-Context")
        identity = headers.get("Lambda-Runtime-Cognito-Identity")
        context = LambdaContext(
            request_id,
            _deadline(headers.get("Lambda-Runtime-Deadline-Ms")),
            headers.get("Lambda-Runtime-Invoked-Function-Arn"),
            _parse_json_header(client_context, "Client Context") if client_context else None,
            _parse_json_header(identity, "Cognito Identity") if identity else None,
            _current_tenant_id,
        )
        event = _unmarshal_event(body, headers.get("Content-Type"))
        # Only Exception is caught: SystemExit and KeyboardInterrupt end the process.
        result = handler(event, context)
        payload, content_type = _marshal_response(result)
    except _Fault as fault:
        error = _error_document(fault.message, fault.error_type, fault.stack_trace, request_id)
    except Exception as e:
        error = _exception_document(e, request_id)

    if error is not None:
        _log_error(error)
        _flush_stdio()
        api.post_error(request_id, error)
    else:
        _flush_stdio()
        api.post_response(request_id, payload, content_type)


def main():
    _setup_stdio()
    address = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    if not address:
        _warn("AWS_LAMBDA_RUNTIME_API is not set")
        return 2
    api = RuntimeApi(address)
    _setup_sys_path(os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd())
    _setup_logging()

    try:
        handler = _load_handler(os.environ.get("_HANDLER", ""))
    except _Fault as fault:
        error = _error_document(fault.message, fault.error_type, fault.stack_trace)
    except Exception as e:
        error = _exception_document(e)
    else:
        error = None
    if error is not None:
        _log_error(error)
        _flush_stdio()
        try:
            api.post_init_error(error)
        except Exception as e:
            _warn("cannot report the init error: {}".format(e))
        return 1

    while True:
        try:
            headers, body = api.next_invocation()
        except _ApiStopped as stop:
            if stop.status == 410:
                return 0
            _warn("the Runtime API refused the next invocation: {}".format(stop))
            return 1
        try:
            _invoke(api, handler, headers, body)
        except _ApiStopped as stop:
            _warn("the Runtime API failed: {}".format(stop))
            return 1
        except (OSError, ValueError) as e:
            _warn("lost the Runtime API: {}".format(e))
            return 1


if __name__ == "__main__":
    sys.exit(main())
