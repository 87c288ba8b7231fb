"""Drives a running Nimbus with boto3 and reads its /metrics with Prometheus's own parser.

Run by the Rust end-to-end tests (tests/e2e/metrics.rs) with NIMBUS_ENDPOINT set to the
services endpoint:

- `metrics_client.py drive`: Lambda Invoke calls and DynamoDB operations whose counts the
  test knows (see DRIVEN below), against an app with functions `ok` and `fails` and a
  table `Items` keyed by `id`.
- `metrics_client.py parse`: fetches /metrics, parses it with
  `prometheus_client.parser.text_string_to_metric_families` (which rejects text that is
  not valid exposition format) and prints every sample as JSON, one per line:
  {"family", "type", "help", "name", "labels", "value"}.
"""

import json
import os
import sys
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

ENDPOINT = os.environ["NIMBUS_ENDPOINT"]


def client(service):
    return boto3.client(
        service,
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1}),
    )


def expect_error(code, call):
    try:
        call()
    except ClientError as e:
        got = e.response["Error"]["Code"]
        assert got == code, f"expected {code}, got {got}"
        return
    raise AssertionError(f"expected {code}, the call succeeded")


def drive():
    lam = client("lambda")
    for n in range(2):
        response = lam.invoke(FunctionName="ok", Payload=json.dumps({"n": n}).encode())
        assert "FunctionError" not in response, response
    response = lam.invoke(FunctionName="fails", Payload=b"{}")
    assert response["FunctionError"] == "Unhandled", response

    ddb = client("dynamodb")
    for n in range(3):
        ddb.put_item(TableName="Items", Item={"id": {"S": f"item-{n}"}})
    for n in range(2):
        got = ddb.get_item(TableName="Items", Key={"id": {"S": f"item-{n}"}})
        assert got["Item"]["id"]["S"] == f"item-{n}", got
    expect_error(
        "ConditionalCheckFailedException",
        lambda: ddb.put_item(
            TableName="Items",
            Item={"id": {"S": "item-0"}},
            ConditionExpression="attribute_not_exists(id)",
        ),
    )
    # DynamoDB Streams operations are table operations too.
    streams = client("dynamodbstreams").list_streams(TableName="Items")
    assert streams["Streams"] == [], streams
    # A table that does not exist: counted under table "-", not under its name.
    expect_error(
        "ResourceNotFoundException",
        lambda: ddb.get_item(TableName="NoSuchTable-made-up", Key={"id": {"S": "x"}}),
    )


def parse():
    with urllib.request.urlopen(f"{ENDPOINT}/metrics") as response:
        content_type = response.headers["Content-Type"]
        assert content_type.startswith("text/plain; version=0.0.4"), content_type
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            print(
                json.dumps(
                    {
                        "family": family.name,
                        "type": family.type,
                        "help": family.documentation,
                        "name": sample.name,
                        "labels": sample.labels,
                        "value": sample.value,
                    }
                )
            )


if __name__ == "__main__":
    {"drive": drive, "parse": parse}[sys.argv[1]]()
