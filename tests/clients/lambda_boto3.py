"""The Lambda API, driven through boto3's `lambda` client against a running Nimbus.

Run by the Rust end-to-end tests with NIMBUS_ENDPOINT set to the services endpoint and
an app whose functions are: `echo` (returns its event), `context` (returns its
`context.clientContext`), `fails` (throws), `streams`
(streams "one " then "two"), `breaks` (streams "partial" then throws).
"""

import base64
import json
import os
import unittest

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

CLIENT = boto3.client(
    "lambda",
    endpoint_url=os.environ["NIMBUS_ENDPOINT"],
    region_name="us-east-1",
    aws_access_key_id="test",
    aws_secret_access_key="test",
    config=Config(retries={"max_attempts": 1}),
)


def stream_of(name, payload=b"{}"):
    """Invokes with response streaming; returns (chunks, the InvokeComplete event)."""
    response = CLIENT.invoke_with_response_stream(FunctionName=name, Payload=payload, LogType="Tail")
    chunks, complete = [], None
    for event in response["EventStream"]:
        if "PayloadChunk" in event:
            chunks.append(event["PayloadChunk"]["Payload"])
        elif "InvokeComplete" in event:
            complete = event["InvokeComplete"]
    return response, chunks, complete


class Invoke(unittest.TestCase):
    def test_request_response_returns_the_payload_and_the_log_tail(self):
        response = CLIENT.invoke(FunctionName="echo", Payload=b'{"n": 1}', LogType="Tail")
        self.assertEqual(response["StatusCode"], 200)
        self.assertEqual(json.loads(response["Payload"].read()), {"n": 1})
        self.assertNotIn("FunctionError", response)
        self.assertEqual(response["ExecutedVersion"], "$LATEST")
        log = base64.b64decode(response["LogResult"]).decode()
        self.assertIn("START RequestId:", log)
        self.assertIn("REPORT RequestId:", log)

    def test_a_client_context_reaches_the_function_decoded(self):
        sent = {"custom": {"tenant": "t-1"}, "env": {"locale": "en"}}
        encoded = base64.b64encode(json.dumps(sent).encode()).decode()
        response = CLIENT.invoke(FunctionName="context", Payload=b"{}", ClientContext=encoded)
        self.assertNotIn("FunctionError", response)
        self.assertEqual(json.loads(response["Payload"].read()), sent)
        with self.assertRaises(ClientError) as e:
            CLIENT.invoke(FunctionName="context", Payload=b"{}", ClientContext="not base64 json")
        self.assertEqual(e.exception.response["Error"]["Code"], "InvalidRequestContentException")

    def test_a_function_error_is_unhandled_with_its_document(self):
        response = CLIENT.invoke(FunctionName="fails", Payload=b"{}")
        self.assertEqual(response["FunctionError"], "Unhandled")
        error = json.loads(response["Payload"].read())
        self.assertEqual(error["errorMessage"], "no luck")

    def test_dry_run_and_unknown_functions(self):
        self.assertEqual(CLIENT.invoke(FunctionName="echo", InvocationType="DryRun")["StatusCode"], 204)
        with self.assertRaises(ClientError) as e:
            CLIENT.invoke(FunctionName="nope", Payload=b"{}")
        self.assertEqual(e.exception.response["Error"]["Code"], "ResourceNotFoundException")

    def test_get_and_list_functions(self):
        names = sorted(f["FunctionName"] for f in CLIENT.list_functions()["Functions"])
        self.assertEqual(names, ["breaks", "context", "echo", "fails", "streams"])
        config = CLIENT.get_function(FunctionName="echo")["Configuration"]
        self.assertEqual(config["Runtime"], "nodejs20.x")


class InvokeWithResponseStream(unittest.TestCase):
    def test_a_streaming_function_arrives_in_chunks(self):
        response, chunks, complete = stream_of("streams")
        self.assertEqual(response["StatusCode"], 200)
        self.assertEqual(response["ResponseStreamContentType"], "text/plain")
        self.assertEqual(b"".join(chunks), b"one two")
        self.assertGreaterEqual(len(chunks), 2)
        self.assertNotIn("ErrorCode", complete)
        self.assertIn("START RequestId:", base64.b64decode(complete["LogResult"]).decode())

    def test_a_function_that_does_not_stream_arrives_whole(self):
        _, chunks, complete = stream_of("echo", b'{"whole": true}')
        self.assertEqual(json.loads(b"".join(chunks)), {"whole": True})
        self.assertNotIn("ErrorCode", complete)

    def test_a_failure_mid_stream_is_reported_at_completion(self):
        _, chunks, complete = stream_of("breaks")
        self.assertEqual(b"".join(chunks), b"partial")
        self.assertEqual(complete["ErrorCode"], "Error")
        self.assertEqual(json.loads(complete["ErrorDetails"])["errorMessage"], "broke")

    def test_unknown_functions_are_not_found(self):
        with self.assertRaises(ClientError) as e:
            CLIENT.invoke_with_response_stream(FunctionName="nope", Payload=b"{}")
        self.assertEqual(e.exception.response["Error"]["Code"], "ResourceNotFoundException")


if __name__ == "__main__":
    unittest.main(verbosity=2)
