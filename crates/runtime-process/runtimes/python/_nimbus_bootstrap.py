"""Nimbus's bootstrap for Python functions: the runtime that `bootstrap.py` starts.

Nimbus starts one process per instance as `python3 bootstrap.py`, with the function's code
directory as the working directory and `AWS_LAMBDA_RUNTIME_API` naming the loopback Runtime
API endpoint of that instance. `bootstrap.py` imports this module and calls `main()`, which
loads the handler named by `_HANDLER` and then serves invocations one at a time, the way
the managed Python runtime of AWS Lambda does: the same context object, the same error
documents, the same logging set-up.

Standard library only, Python 3.9 or newer. Start-up time is part of every cold start, and
Nimbus allows itself 10 ms above the interpreter's own, so this module imports little:
- The code lives here rather than in `bootstrap.py` because Python caches the bytecode of
  an imported module (in `__pycache__`), never that of the script it runs.
- The Runtime API is spoken over a plain `_socket` rather than `http.client`, whose imports
  (email, ssl) alone cost more than the whole budget, or `socket` (selectors, enums).
- `logging` is set up as Lambda sets it up, but only once something imports it: a hook on
  `sys.meta_path` finishes the set-up right after `logging` itself has loaded.
- `traceback`, `decimal` and `re` are imported when an error or a Decimal needs them.
"""

import importlib
import json
import os
import sys
import time

import _socket

API_VERSION = "2018-06-01"

_SHIM_FILE = os.path.abspath(__file__)
_SHIM_DIR = os.path.dirname(_SHIM_FILE)
# The files whose frames are the runtime's own: this module and the script that starts it.
_SHIM_FILES = (_SHIM_FILE, os.path.join(_SHIM_DIR, "bootstrap.py"))

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
    return filename in _SHIM_FILES or filename.startswith(_IMPORTLIB_DIR)


def _user_frames(tb):
    """The frames of a traceback from the first one that is not the runtime's own: the
    shim's frames and importlib's machinery say nothing about the user's code."""
    import traceback

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
        import re

        self.token = "nimbusdecimal{}n".format(os.urandom(16).hex())
        self.pattern = re.compile('"' + self.token + r'(\d+)"')


# Made with the first Decimal: most functions never return one.
_DECIMALS = None


def _decimal_slots():
    global _DECIMALS
    if _DECIMALS is None:
        _DECIMALS = _DecimalSlots()
    return _DECIMALS


def _decimal_type():
    """`decimal.Decimal` if anything has imported `decimal`; else no Decimal can exist."""
    module = sys.modules.get("decimal")
    cls = getattr(module, "Decimal", None)
    return cls if isinstance(cls, type) else None


def _to_json(value):
    """Encodes a response: non-ASCII characters kept, NaN and Infinity allowed, Decimals
    as exact numbers (NaN for a NaN Decimal)."""
    decimals = []

    def default(o):
        decimal_type = _decimal_type()
        if decimal_type is not None and isinstance(o, decimal_type):
            decimals.append("NaN" if o.is_nan() else str(o))
            return "{}{}".format(_decimal_slots().token, len(decimals) - 1)
        raise TypeError("Object of type {} is not JSON serializable".format(type(o).__name__))

    text = json.dumps(value, default=default, ensure_ascii=False)
    if decimals:
        text = _decimal_slots().pattern.sub(lambda m: decimals[int(m.group(1))], text)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate cannot be UTF-8: escaped, it is still valid JSON.
        decimals.clear()
        text = json.dumps(value, default=default, ensure_ascii=True)
        if decimals:
            text = _decimal_slots().pattern.sub(lambda m: decimals[int(m.group(1))], text)
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
#
# As in Lambda: every formatter's asctime is UTC, the root logger has one handler (so
# logging.basicConfig() does nothing), and its level is Python's default (WARNING) unless
# AWS_LAMBDA_LOG_LEVEL names one. Importing `logging` costs a good part of the start-up
# budget and many functions never use it, so the set-up waits for the first import of
# `logging`, by anyone, and runs as soon as that module has loaded, before the importer
# gets it: what user code sees is the same as if it had been done at start-up.


_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
_TEXT_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n"


def _logging_handler(logging):
    """The root logger's handler, its classes built on the `logging` module just loaded."""

    # Attributes of every LogRecord; anything else on a record came from `extra=` and is
    # copied into JSON log lines.
    record_fields = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
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
                import traceback

                doc["errorType"] = record.exc_info[0].__name__
                doc["errorMessage"] = str(record.exc_info[1])
                doc["stackTrace"] = traceback.format_tb(record.exc_info[2])
                doc["location"] = "{}:{}:{}".format(record.pathname, record.funcName, record.lineno)
            for key, value in vars(record).items():
                if key not in record_fields and key not in doc:
                    doc[key] = value
            return json.dumps(doc, ensure_ascii=False, default=str) + "\n"

    handler = _StdoutHandler()
    if _json_logs():
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT, _TIME_FORMAT))
    handler.addFilter(_RequestIdFilter())
    return handler


def _utc_timestamp(seconds):
    millis = int(seconds * 1000) % 1000
    return "{}.{:03d}Z".format(time.strftime(_TIME_FORMAT, time.gmtime(seconds)), millis)


def _json_logs():
    return (os.environ.get("AWS_LAMBDA_LOG_FORMAT") or "").upper() == "JSON"


def _setup_logging(logging):
    """Configures the `logging` module as Lambda's runtime does."""
    logging.Formatter.converter = time.gmtime
    root = logging.getLogger()
    root.addHandler(_logging_handler(logging))
    level = (os.environ.get("AWS_LAMBDA_LOG_LEVEL") or "").upper()
    level = {"TRACE": "DEBUG", "WARN": "WARNING", "FATAL": "CRITICAL"}.get(level, level)
    if level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        root.setLevel(level)


class _LoggingImportHook:
    """A `sys.meta_path` finder that finds nothing itself. When `logging` is first
    imported, it takes itself off `sys.meta_path`, lets the other finders find the module,
    and wraps the loader's method that runs it so that `_setup_logging` follows at once."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "logging":
            return None
        _remove_logging_hook(self)
        spec = None
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is not None:
                spec = find_spec(fullname, path, target)
                if spec is not None:
                    break
        loader = getattr(spec, "loader", None)
        if loader is None:
            return spec
        # The loader's own method is wrapped on this loader object, and put back once it
        # has run: the module keeps the loader it would have had.
        if hasattr(loader, "exec_module"):
            run = loader.exec_module

            def exec_module(module):
                try:
                    run(module)
                finally:
                    _restore(loader, "exec_module")
                _setup_logging(module)

            _wrap(loader, "exec_module", exec_module)
        elif hasattr(loader, "load_module"):
            # A loader of the older protocol (zipimport before Python 3.10).
            load = loader.load_module

            def load_module(name):
                try:
                    module = load(name)
                finally:
                    _restore(loader, "load_module")
                _setup_logging(module)
                return module

            _wrap(loader, "load_module", load_module)
        return spec


def _wrap(loader, name, method):
    try:
        setattr(loader, name, method)
    except (AttributeError, TypeError):
        _warn("cannot set up logging: the loader of the logging module takes no attributes")


def _restore(loader, name):
    try:
        delattr(loader, name)
    except AttributeError:
        pass


def _remove_logging_hook(hook):
    try:
        sys.meta_path.remove(hook)
    except ValueError:
        pass


def _install_logging():
    """Sets `logging` up now if it is already loaded, else on its first import."""
    module = sys.modules.get("logging")
    if module is not None:
        _setup_logging(module)
    else:
        sys.meta_path.insert(0, _LoggingImportHook())


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


# What `urllib.parse.quote(text, safe="")` leaves as it is.
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def _quote(text):
    """Percent-encodes `text` for one path segment, as `urllib.parse.quote(text, safe="")`."""
    return "".join(
        chr(b) if b in _UNRESERVED else "%{:02X}".format(b) for b in text.encode("utf-8")
    )


def _connect(host, port):
    """A TCP connection with TCP_NODELAY set: `socket.create_connection` without importing
    `socket`. An IP address is used as it is; a name is looked up."""
    addresses = None
    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            _socket.inet_pton(family, host)
        except OSError:
            continue
        addresses = [(family, (host, port))]
        break
    if addresses is None:
        addresses = [
            (info[0], info[4]) for info in _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM)
        ]
    error = OSError("no address found for {}".format(host))
    for family, address in addresses:
        sock = _socket.socket(family, _socket.SOCK_STREAM)
        try:
            sock.connect(address)
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        except OSError as e:
            sock.close()
            error = e
            continue
        return sock
    raise error


class _Reader:
    """Buffered reads from a socket: what the client needs of `socket.makefile("rb")`."""

    _RECV_BYTES = 256 * 1024

    def __init__(self, sock):
        self.sock = sock
        self.buffer = bytearray()
        self.eof = False

    def _fill(self):
        """Reads more from the socket; False once the peer has closed it."""
        if self.eof:
            return False
        data = self.sock.recv(self._RECV_BYTES)
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def _take(self, size):
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def readline(self, limit):
        """A line with its newline, cut at `limit` bytes; what is left at the end."""
        start = 0
        while True:
            end = self.buffer.find(b"\n", start)
            if end >= 0:
                return self._take(min(end + 1, limit))
            if len(self.buffer) >= limit:
                return self._take(limit)
            start = len(self.buffer)
            if not self._fill():
                return self._take(len(self.buffer))

    def read(self, size=-1):
        """`size` bytes (fewer if the peer closes first), or everything up to the close."""
        if size < 0:
            while self._fill():
                pass
            return self._take(len(self.buffer))
        while len(self.buffer) < size and self._fill():
            pass
        return self._take(size)

    def close(self):
        self.buffer = bytearray()


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
                    self.sock = _connect(self.host, self.port)
                    self.reader = _Reader(self.sock)
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
            "/runtime/invocation/{}/response".format(_quote(request_id)),
            body,
            {"Content-Type": content_type},
        )

    def post_error(self, request_id, document):
        self._post(
            "/runtime/invocation/{}/error".format(_quote(request_id)),
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
    _install_logging()

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

