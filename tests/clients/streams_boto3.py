"""DynamoDB Streams compatibility, driven through boto3's `dynamodbstreams` client against
a running Nimbus.

Run by the Rust end-to-end tests with NIMBUS_ENDPOINT set to the services endpoint.
Each test works on a table of its own, so the cases are independent.
"""

import datetime
import os
import unittest
import uuid

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["NIMBUS_ENDPOINT"]
SESSION = dict(
    endpoint_url=ENDPOINT,
    region_name="us-east-1",
    aws_access_key_id="test",
    aws_secret_access_key="test",
    config=Config(retries={"max_attempts": 1}),
)
DYNAMODB = boto3.client("dynamodb", **SESSION)
STREAMS = boto3.client("dynamodbstreams", **SESSION)


def error_code(call):
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"]
    raise AssertionError("the call succeeded; an error was expected")


def table_with_stream(view="NEW_AND_OLD_IMAGES"):
    """Creates a table keyed by `pk` with a stream; returns its name and stream ARN."""
    name = f"streams-{uuid.uuid4().hex[:8]}"
    created = DYNAMODB.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": view},
    )
    arn = created["TableDescription"]["LatestStreamArn"]
    return name, arn


def shard_of(arn):
    shards = STREAMS.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    assert len(shards) == 1, shards
    return shards[0]["ShardId"]


def iterator(arn, kind, sequence=None):
    args = dict(StreamArn=arn, ShardId=shard_of(arn), ShardIteratorType=kind)
    if sequence is not None:
        args["SequenceNumber"] = sequence
    return STREAMS.get_shard_iterator(**args)["ShardIterator"]


def read(it, **kwargs):
    out = STREAMS.get_records(ShardIterator=it, **kwargs)
    return out["Records"], out["NextShardIterator"]


def item(pk, **attrs):
    out = {"pk": {"S": pk}}
    for name, value in attrs.items():
        out[name] = {"N": str(value)} if isinstance(value, int) else {"S": value}
    return out


class Streams(unittest.TestCase):
    def test_list_and_describe(self):
        name, arn = table_with_stream("KEYS_ONLY")
        listed = STREAMS.list_streams(TableName=name)["Streams"]
        self.assertEqual(len(listed), 1)
        self.assertEqual(listed[0]["StreamArn"], arn)
        self.assertEqual(listed[0]["TableName"], name)
        self.assertTrue(arn.endswith("/stream/" + listed[0]["StreamLabel"]))
        everything = [s["StreamArn"] for s in STREAMS.list_streams()["Streams"]]
        self.assertIn(arn, everything)

        d = STREAMS.describe_stream(StreamArn=arn)["StreamDescription"]
        self.assertEqual(d["StreamArn"], arn)
        self.assertEqual(d["StreamStatus"], "ENABLED")
        self.assertEqual(d["StreamViewType"], "KEYS_ONLY")
        self.assertEqual(d["TableName"], name)
        self.assertEqual(d["KeySchema"], [{"AttributeName": "pk", "KeyType": "HASH"}])
        self.assertIsInstance(d["CreationRequestDateTime"], datetime.datetime)
        shard = d["Shards"][0]
        self.assertTrue(shard["ShardId"].startswith("shardId-"), shard)
        self.assertTrue(shard["SequenceNumberRange"]["StartingSequenceNumber"].isdecimal())

        # A table without a stream has none to list.
        plain = f"plain-{uuid.uuid4().hex[:8]}"
        DYNAMODB.create_table(
            TableName=plain,
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        self.assertEqual(STREAMS.list_streams(TableName=plain)["Streams"], [])

    def test_records_of_puts_updates_and_deletes(self):
        name, arn = table_with_stream()
        DYNAMODB.put_item(TableName=name, Item=item("a", v=1, tag="x"))
        DYNAMODB.update_item(
            TableName=name,
            Key={"pk": {"S": "a"}},
            UpdateExpression="SET v = :v",
            ExpressionAttributeValues={":v": {"N": "2"}},
        )
        DYNAMODB.delete_item(TableName=name, Key={"pk": {"S": "a"}})

        records, _ = read(iterator(arn, "TRIM_HORIZON"))
        self.assertEqual([r["eventName"] for r in records], ["INSERT", "MODIFY", "REMOVE"])
        sequences = [r["dynamodb"]["SequenceNumber"] for r in records]
        self.assertTrue(all(s.isdecimal() and len(s) >= 21 for s in sequences), sequences)
        self.assertEqual(sorted(sequences, key=int), sequences)
        self.assertEqual(len(set(sequences)), 3)
        self.assertEqual(len({r["eventID"] for r in records}), 3)
        for r in records:
            self.assertEqual(r["eventSource"], "aws:dynamodb")
            self.assertEqual(r["eventVersion"], "1.1")
            self.assertEqual(r["awsRegion"], "us-east-1")
            self.assertEqual(r["dynamodb"]["Keys"], {"pk": {"S": "a"}})
            self.assertEqual(r["dynamodb"]["StreamViewType"], "NEW_AND_OLD_IMAGES")
            self.assertIsInstance(r["dynamodb"]["ApproximateCreationDateTime"], datetime.datetime)
            self.assertGreater(r["dynamodb"]["SizeBytes"], 0)
        insert, modify, remove = (r["dynamodb"] for r in records)
        self.assertEqual(insert["NewImage"], item("a", v=1, tag="x"))
        self.assertNotIn("OldImage", insert)
        self.assertEqual(modify["OldImage"], item("a", v=1, tag="x"))
        self.assertEqual(modify["NewImage"], item("a", v=2, tag="x"))
        self.assertEqual(remove["OldImage"], item("a", v=2, tag="x"))
        self.assertNotIn("NewImage", remove)

        # AFTER_SEQUENCE_NUMBER skips the record it names; AT_SEQUENCE_NUMBER starts at it.
        after, _ = read(iterator(arn, "AFTER_SEQUENCE_NUMBER", sequences[0]))
        self.assertEqual([r["eventName"] for r in after], ["MODIFY", "REMOVE"])
        at, _ = read(iterator(arn, "AT_SEQUENCE_NUMBER", sequences[1]))
        self.assertEqual([r["dynamodb"]["SequenceNumber"] for r in at], sequences[1:])

        # Limit pages through the shard.
        first, next_it = read(iterator(arn, "TRIM_HORIZON"), Limit=2)
        rest, _ = read(next_it, Limit=2)
        self.assertEqual([r["dynamodb"]["SequenceNumber"] for r in first + rest], sequences)

    def test_latest_waits_for_the_next_write(self):
        name, arn = table_with_stream("NEW_IMAGE")
        DYNAMODB.put_item(TableName=name, Item=item("before"))
        latest = iterator(arn, "LATEST")
        records, next_it = read(latest)
        self.assertEqual(records, [])
        records, next_it = read(next_it)
        self.assertEqual(records, [])
        DYNAMODB.put_item(TableName=name, Item=item("after", n=7))
        records, next_it = read(next_it)
        self.assertEqual([r["eventName"] for r in records], ["INSERT"])
        self.assertEqual(records[0]["dynamodb"]["NewImage"], item("after", n=7))
        self.assertNotIn("OldImage", records[0]["dynamodb"])
        self.assertEqual(read(next_it)[0], [])

    def test_errors(self):
        name, arn = table_with_stream()
        shard = shard_of(arn)
        self.assertEqual(
            error_code(lambda: STREAMS.get_records(ShardIterator="sdfsdfsgagaddafgagasgasgasdfasdfasdfasdfasdgasdasdgasdg")),
            "ValidationException",
        )
        good = iterator(arn, "TRIM_HORIZON")
        tampered = good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")
        self.assertEqual(error_code(lambda: STREAMS.get_records(ShardIterator=tampered)), "ValidationException")
        missing = arn.replace(f"table/{name}/", "table/no-such-table/")
        self.assertEqual(error_code(lambda: STREAMS.describe_stream(StreamArn=missing)), "ResourceNotFoundException")
        self.assertEqual(
            error_code(lambda: STREAMS.describe_stream(StreamArn="sdfadfsdfnlfkajakfgjalksfgklasjklasdjfklasdfasdfgasf")),
            "ValidationException",
        )
        self.assertEqual(
            error_code(lambda: STREAMS.get_shard_iterator(StreamArn=arn, ShardId="shardId-00000000000000000000-00000000", ShardIteratorType="LATEST")),
            "ResourceNotFoundException",
        )
        self.assertEqual(
            error_code(lambda: STREAMS.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="AT_SEQUENCE_NUMBER")),
            "ValidationException",
        )
        self.assertEqual(error_code(lambda: STREAMS.list_streams(TableName="no-such-table")), "ResourceNotFoundException")

        # Disabling the stream closes it: it stays listed and readable, DISABLED, and a
        # reader at its end gets no next iterator.
        DYNAMODB.update_table(TableName=name, StreamSpecification={"StreamEnabled": False})
        self.assertEqual([s["StreamArn"] for s in STREAMS.list_streams(TableName=name)["Streams"]], [arn])
        described = STREAMS.describe_stream(StreamArn=arn)["StreamDescription"]
        self.assertEqual(described["StreamStatus"], "DISABLED")
        self.assertIn("EndingSequenceNumber", described["Shards"][0]["SequenceNumberRange"])
        reading = good
        while reading:
            reading = STREAMS.get_records(ShardIterator=reading).get("NextShardIterator")
        # Deleting the table ends its stream at once (DynamoDB keeps it for a day).
        DYNAMODB.delete_table(TableName=name)
        self.assertEqual(error_code(lambda: STREAMS.describe_stream(StreamArn=arn)), "ResourceNotFoundException")


if __name__ == "__main__":
    unittest.main(verbosity=2)
