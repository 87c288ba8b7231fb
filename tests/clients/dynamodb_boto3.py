"""DynamoDB compatibility, driven through boto3 against a running Nimbus.

Run by the Rust end-to-end tests with NIMBUS_ENDPOINT set to the services endpoint.
Each test works on tables of its own, so the cases are independent.
"""

import decimal
import os
import time
import unittest
import uuid

import boto3
from boto3.dynamodb.conditions import Attr, Key
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
CLIENT = boto3.client("dynamodb", **SESSION)
RESOURCE = boto3.resource("dynamodb", **SESSION)


def fresh(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def error_of(call):
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["Error"]["Message"], e.response
    raise AssertionError("the call succeeded; an error was expected")


def simple_table(name=None):
    name = name or fresh("simple")
    CLIENT.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return RESOURCE.Table(name)


def composite_table():
    name = fresh("composite")
    CLIENT.create_table(
        TableName=name,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
            {"AttributeName": "status", "AttributeType": "S"},
            {"AttributeName": "total", "AttributeType": "N"},
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-status",
                "KeySchema": [
                    {"AttributeName": "status", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        LocalSecondaryIndexes=[
            {
                "IndexName": "by-total",
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "total", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return RESOURCE.Table(name)


class Tables(unittest.TestCase):
    def test_create_describe_list_delete(self):
        table = composite_table()
        desc = CLIENT.describe_table(TableName=table.name)["Table"]
        self.assertEqual(desc["TableStatus"], "ACTIVE")
        self.assertEqual(
            desc["KeySchema"],
            [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        )
        self.assertEqual(desc["GlobalSecondaryIndexes"][0]["IndexName"], "by-status")
        self.assertEqual(desc["LocalSecondaryIndexes"][0]["Projection"], {"ProjectionType": "KEYS_ONLY"})
        self.assertEqual(desc["BillingModeSummary"]["BillingMode"], "PAY_PER_REQUEST")
        self.assertIn(table.name, CLIENT.list_tables()["TableNames"])
        CLIENT.get_waiter("table_exists").wait(TableName=table.name)
        CLIENT.delete_table(TableName=table.name)
        code, message, _ = error_of(lambda: CLIENT.describe_table(TableName=table.name))
        self.assertEqual(code, "ResourceNotFoundException")

    def test_create_errors(self):
        name = fresh("dup")
        simple_table(name)
        code, message, _ = error_of(lambda: simple_table(name))
        self.assertEqual((code, message), ("ResourceInUseException", f"Table already exists: {name}"))
        code, message, _ = error_of(
            lambda: CLIENT.create_table(
                TableName="ab",
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
        )
        self.assertEqual(code, "ValidationException")
        self.assertIn("Member must have length greater than or equal to 3", message)
        code, message, _ = error_of(
            lambda: CLIENT.create_table(
                TableName=fresh("prov"),
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            )
        )
        self.assertEqual(code, "ValidationException")
        self.assertIn("ReadCapacityUnits and WriteCapacityUnits must both be specified", message)

    def test_list_tables_paginates(self):
        names = sorted(simple_table(fresh("page")).name for _ in range(3))
        seen, start = [], None
        while True:
            args = {"Limit": 2}
            if start:
                args["ExclusiveStartTableName"] = start
            page = CLIENT.list_tables(**args)
            self.assertLessEqual(len(page["TableNames"]), 2)
            seen += page["TableNames"]
            start = page.get("LastEvaluatedTableName")
            if not start:
                break
        for name in names:
            self.assertIn(name, seen)
        self.assertEqual(seen, sorted(seen))

    def test_ttl_and_tags(self):
        table = simple_table()
        CLIENT.update_time_to_live(
            TableName=table.name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"}
        )
        ttl = CLIENT.describe_time_to_live(TableName=table.name)["TimeToLiveDescription"]
        self.assertEqual(ttl, {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires"})
        arn = CLIENT.describe_table(TableName=table.name)["Table"]["TableArn"]
        CLIENT.tag_resource(ResourceArn=arn, Tags=[{"Key": "team", "Value": "core"}])
        self.assertEqual(CLIENT.list_tags_of_resource(ResourceArn=arn)["Tags"], [{"Key": "team", "Value": "core"}])
        CLIENT.untag_resource(ResourceArn=arn, TagKeys=["team"])
        self.assertEqual(CLIENT.list_tags_of_resource(ResourceArn=arn)["Tags"], [])

    def test_expired_items_are_deleted(self):
        # The suite's node sweeps every 200 ms (--ttl-sweep-interval).
        name = fresh("expiring")
        CLIENT.create_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"},
        )
        table = RESOURCE.Table(name)
        CLIENT.update_time_to_live(
            TableName=table.name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"}
        )
        now = int(time.time())
        table.put_item(Item={"pk": "old", "exp": now - 60})
        table.put_item(Item={"pk": "future", "exp": now + 3600})
        table.put_item(Item={"pk": "text", "exp": "not a number"})
        table.put_item(Item={"pk": "mine"})
        table.delete_item(Key={"pk": "mine"})
        deadline = time.time() + 10
        while "Item" in table.get_item(Key={"pk": "old"}) and time.time() < deadline:
            time.sleep(0.1)
        self.assertNotIn("Item", table.get_item(Key={"pk": "old"}))
        self.assertIn("Item", table.get_item(Key={"pk": "future"}))
        self.assertIn("Item", table.get_item(Key={"pk": "text"}))
        # The expired item's REMOVE names DynamoDB's TTL service; a caller's does not.
        streams = boto3.client("dynamodbstreams", **SESSION)
        arn = CLIENT.describe_table(TableName=name)["Table"]["LatestStreamArn"]
        shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        removes = {
            r["dynamodb"]["Keys"]["pk"]["S"]: r.get("userIdentity")
            for r in streams.get_records(ShardIterator=iterator)["Records"]
            if r["eventName"] == "REMOVE"
        }
        self.assertEqual(removes["old"], {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"})
        self.assertIsNone(removes["mine"])

    def test_update_table_adds_and_backfills_an_index(self):
        table = simple_table()
        table.put_item(Item={"pk": "a", "colour": "red"})
        table.put_item(Item={"pk": "b", "colour": "blue"})
        CLIENT.update_table(
            TableName=table.name,
            AttributeDefinitions=[{"AttributeName": "colour", "AttributeType": "S"}],
            GlobalSecondaryIndexUpdates=[
                {
                    "Create": {
                        "IndexName": "by-colour",
                        "KeySchema": [{"AttributeName": "colour", "KeyType": "HASH"}],
                        "Projection": {"ProjectionType": "ALL"},
                    }
                }
            ],
        )
        found = table.query(IndexName="by-colour", KeyConditionExpression=Key("colour").eq("red"))["Items"]
        self.assertEqual(found, [{"pk": "a", "colour": "red"}])
        CLIENT.update_table(
            TableName=table.name, GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "by-colour"}}]
        )
        code, message, _ = error_of(
            lambda: table.query(IndexName="by-colour", KeyConditionExpression=Key("colour").eq("red"))
        )
        self.assertEqual(code, "ValidationException")


class Items(unittest.TestCase):
    def test_put_get_every_type(self):
        table = simple_table()
        item = {
            "pk": "all",
            "s": "text",
            "n": decimal.Decimal("12345678901234567890123456789012345678"),
            "f": decimal.Decimal("-0.000123"),
            "b": b"\x00\x01binary",
            "t": True,
            "z": None,
            "m": {"nested": {"deep": [1, "two", {"three": 3}]}},
            "l": [1, "a", b"b", None, False],
            "ss": {"x", "y"},
            "ns": {decimal.Decimal(1), decimal.Decimal("2.5")},
            "bs": {b"a", b"b"},
        }
        table.put_item(Item=item)
        got = table.get_item(Key={"pk": "all"}, ConsistentRead=True)["Item"]
        got["b"] = bytes(got["b"].value)
        got["bs"] = {bytes(b.value) for b in got["bs"]}
        got["l"][2] = bytes(got["l"][2].value)
        self.assertEqual(got, item)

    def test_numbers_are_normalised(self):
        table = simple_table()
        CLIENT.put_item(TableName=table.name, Item={"pk": {"S": "n"}, "v": {"N": "0012.3400"}})
        got = CLIENT.get_item(TableName=table.name, Key={"pk": {"S": "n"}})["Item"]
        self.assertEqual(got["v"], {"N": "12.34"})
        code, message, _ = error_of(
            lambda: CLIENT.put_item(TableName=table.name, Item={"pk": {"S": "n"}, "v": {"N": "1" * 39}})
        )
        self.assertEqual(code, "ValidationException")
        self.assertIn("38 significant digits", message)
        # A megabyte of digits gets DynamoDB's error through a real client.
        code, message, _ = error_of(
            lambda: CLIENT.put_item(TableName=table.name, Item={"pk": {"S": "n"}, "v": {"N": "7" * 1_000_000}})
        )
        self.assertEqual(code, "ValidationException")
        self.assertIn("38 significant digits", message)
        self.assertEqual(CLIENT.get_item(TableName=table.name, Key={"pk": {"S": "n"}})["Item"]["v"], {"N": "12.34"})

    def test_conditions_and_return_values(self):
        table = simple_table()
        table.put_item(Item={"pk": "a", "v": 1})
        code, message, response = error_of(
            lambda: table.put_item(
                Item={"pk": "a", "v": 2},
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        )
        self.assertEqual((code, message), ("ConditionalCheckFailedException", "The conditional request failed"))
        self.assertEqual(response["Item"], {"pk": {"S": "a"}, "v": {"N": "1"}})
        old = table.put_item(Item={"pk": "a", "v": 3}, ReturnValues="ALL_OLD")["Attributes"]
        self.assertEqual(old, {"pk": "a", "v": 1})
        self.assertEqual(table.get_item(Key={"pk": "a"})["Item"]["v"], 3)
        gone = table.delete_item(Key={"pk": "a"}, ConditionExpression=Attr("v").eq(3), ReturnValues="ALL_OLD")
        self.assertEqual(gone["Attributes"], {"pk": "a", "v": 3})
        self.assertNotIn("Item", table.get_item(Key={"pk": "a"}))

    def test_update_expressions(self):
        table = simple_table()
        table.put_item(Item={"pk": "u", "count": 1, "tags": {"a"}, "old": {"a", "z"}, "list": [1, 2, 3], "m": {"x": 1}})
        out = table.update_item(
            Key={"pk": "u"},
            UpdateExpression="SET #c = #c + :one, m.y = :y, #l[1] = :ten, created = if_not_exists(created, :now) "
            "REMOVE #l[0] ADD tags :more DELETE #o :gone",
            ExpressionAttributeNames={"#c": "count", "#l": "list", "#o": "old"},
            ExpressionAttributeValues={":one": 1, ":y": "why", ":ten": 10, ":now": "today", ":more": {"b", "c"}, ":gone": {"a"}},
            ReturnValues="ALL_NEW",
        )["Attributes"]
        self.assertEqual(out["count"], 2)
        self.assertEqual(out["m"], {"x": 1, "y": "why"})
        self.assertEqual(out["list"], [10, 3])
        self.assertEqual(out["tags"], {"a", "b", "c"})
        self.assertEqual(out["old"], {"z"})
        self.assertEqual(out["created"], "today")
        updated = table.update_item(
            Key={"pk": "u"},
            UpdateExpression="SET #c = :five",
            ExpressionAttributeNames={"#c": "count"},
            ExpressionAttributeValues={":five": 5},
            ReturnValues="UPDATED_OLD",
        )["Attributes"]
        self.assertEqual(updated, {"count": 2})
        # An update on a missing item creates it from the key.
        new = table.update_item(
            Key={"pk": "fresh"}, UpdateExpression="ADD hits :one", ExpressionAttributeValues={":one": 1}, ReturnValues="ALL_NEW"
        )["Attributes"]
        self.assertEqual(new, {"pk": "fresh", "hits": 1})

    def test_update_errors(self):
        table = simple_table()
        table.put_item(Item={"pk": "e"})
        code, message, _ = error_of(
            lambda: table.update_item(Key={"pk": "e"}, UpdateExpression="SET status = :v", ExpressionAttributeValues={":v": "x"})
        )
        self.assertEqual(
            (code, message),
            ("ValidationException", "Invalid UpdateExpression: Attribute name is a reserved keyword; reserved keyword: status"),
        )
        code, message, _ = error_of(
            lambda: table.update_item(Key={"pk": "e"}, UpdateExpression="SET pk = :v", ExpressionAttributeValues={":v": "x"})
        )
        self.assertEqual(code, "ValidationException")
        self.assertIn("Cannot update attribute pk. This attribute is part of the key", message)
        code, message, _ = error_of(
            lambda: table.update_item(Key={"pk": "e"}, UpdateExpression="SET a = :v", ExpressionAttributeValues={":v": "x", ":unused": "y"})
        )
        self.assertEqual(code, "ValidationException")
        self.assertIn("unused", message)
        code, message, _ = error_of(lambda: table.update_item(Key={"pk": "e"}, UpdateExpression="SET a = :missing"))
        self.assertEqual(code, "ValidationException")
        self.assertIn(":missing", message)
        # A value set inside a map may not nest the item deeper than a request may (32
        # levels): such an item could never be read back.
        def nested(levels):
            value = {"S": "x"}
            for _ in range(levels):
                value = {"M": {"m": value}}
            return value

        CLIENT.put_item(TableName=table.name, Item={"pk": {"S": "deep"}, "a": {"M": {}}})
        code, message, _ = error_of(
            lambda: CLIENT.update_item(
                TableName=table.name,
                Key={"pk": {"S": "deep"}},
                UpdateExpression="SET a.b = :v",
                ExpressionAttributeValues={":v": nested(32)},
            )
        )
        self.assertEqual(code, "ValidationException")
        self.assertIn("Nesting Levels have exceeded supported limits", message)
        self.assertEqual(CLIENT.get_item(TableName=table.name, Key={"pk": {"S": "deep"}})["Item"]["a"], {"M": {}})
        CLIENT.update_item(
            TableName=table.name,
            Key={"pk": {"S": "deep"}},
            UpdateExpression="SET a.b = :v",
            ExpressionAttributeValues={":v": nested(31)},
        )
        got = CLIENT.get_item(TableName=table.name, Key={"pk": {"S": "deep"}})["Item"]["a"]
        self.assertEqual(got, {"M": {"b": nested(31)}})

    def test_key_validation(self):
        table = simple_table()
        cases = [
            ({"pk": 1}, "Type mismatch for key pk expected: S actual: N"),
            ({"other": "x"}, "Missing the key pk in the item"),
            ({"pk": ""}, "cannot contain an empty string value"),
        ]
        for item, expected in cases:
            code, message, _ = error_of(lambda: table.put_item(Item=item))
            self.assertEqual(code, "ValidationException")
            self.assertIn(expected, message)
        code, message, _ = error_of(lambda: table.get_item(Key={"pk": "x", "extra": "y"}))
        self.assertEqual((code, message), ("ValidationException", "The provided key element does not match the schema"))
        code, _, _ = error_of(lambda: CLIENT.get_item(TableName=fresh("missing"), Key={"pk": {"S": "x"}}))
        self.assertEqual(code, "ResourceNotFoundException")
        code, message, _ = error_of(lambda: table.put_item(Item={"pk": "big", "blob": "x" * (400 * 1024)}))
        self.assertEqual((code, message), ("ValidationException", "Item size has exceeded the maximum allowed size"))

    def test_projection_and_consumed_capacity(self):
        table = simple_table()
        table.put_item(Item={"pk": "p", "a": 1, "b": {"c": 2, "d": 3}, "e": [4, 5]})
        got = table.get_item(
            Key={"pk": "p"},
            ProjectionExpression="a, b.c, e[1]",
            ReturnConsumedCapacity="TOTAL",
        )
        self.assertEqual(got["Item"], {"a": 1, "b": {"c": 2}, "e": [5]})
        self.assertEqual(got["ConsumedCapacity"], {"TableName": table.name, "CapacityUnits": 0.5})


class Reads(unittest.TestCase):
    def setUp(self):
        self.table = composite_table()
        with self.table.batch_writer() as batch:
            for i in range(30):
                batch.put_item(
                    Item={"pk": "p", "sk": i, "status": "even" if i % 2 == 0 else "odd", "total": 100 - i, "name": f"n{i:02d}"}
                )
            batch.put_item(Item={"pk": "q", "sk": 1, "name": "other"})

    def test_query_key_conditions(self):
        q = lambda cond, **kw: [i["sk"] for i in self.table.query(KeyConditionExpression=cond, **kw)["Items"]]
        self.assertEqual(q(Key("pk").eq("p") & Key("sk").lt(3)), [0, 1, 2])
        self.assertEqual(q(Key("pk").eq("p") & Key("sk").lte(2)), [0, 1, 2])
        self.assertEqual(q(Key("pk").eq("p") & Key("sk").gt(27)), [28, 29])
        self.assertEqual(q(Key("pk").eq("p") & Key("sk").gte(28)), [28, 29])
        self.assertEqual(q(Key("pk").eq("p") & Key("sk").between(5, 7)), [5, 6, 7])
        self.assertEqual(q(Key("pk").eq("p") & Key("sk").eq(4)), [4])
        self.assertEqual(q(Key("pk").eq("p") & Key("sk").lt(3), ScanIndexForward=False), [2, 1, 0])
        self.assertEqual(q(Key("pk").eq("q")), [1])

    def test_query_filter_limit_pagination_count(self):
        page = self.table.query(KeyConditionExpression=Key("pk").eq("p"), FilterExpression=Attr("status").eq("odd"), Limit=10)
        self.assertEqual(page["ScannedCount"], 10)
        self.assertEqual([i["sk"] for i in page["Items"]], [1, 3, 5, 7, 9])
        self.assertEqual(page["LastEvaluatedKey"], {"pk": "p", "sk": 9})
        rest = self.table.query(
            KeyConditionExpression=Key("pk").eq("p"), FilterExpression=Attr("status").eq("odd"), ExclusiveStartKey=page["LastEvaluatedKey"]
        )
        self.assertEqual(len(rest["Items"]), 10)
        self.assertNotIn("LastEvaluatedKey", rest)
        count = self.table.query(KeyConditionExpression=Key("pk").eq("p"), Select="COUNT")
        self.assertEqual((count["Count"], count["ScannedCount"]), (30, 30))
        self.assertNotIn("Items", count)

    def test_query_indexes(self):
        odd = self.table.query(IndexName="by-status", KeyConditionExpression=Key("status").eq("odd") & Key("sk").lt(6))["Items"]
        self.assertEqual([i["sk"] for i in odd], [1, 3, 5])
        self.assertEqual(odd[0]["name"], "n01")
        cheapest = self.table.query(IndexName="by-total", KeyConditionExpression=Key("pk").eq("p"), Limit=2)["Items"]
        self.assertEqual(cheapest, [{"pk": "p", "sk": 29, "total": 71}, {"pk": "p", "sk": 28, "total": 72}])
        code, message, _ = error_of(
            lambda: self.table.query(IndexName="by-status", KeyConditionExpression=Key("status").eq("odd"), ConsistentRead=True)
        )
        self.assertEqual((code, message), ("ValidationException", "Consistent reads are not supported on global secondary indexes"))

    def test_query_errors(self):
        code, message, _ = error_of(lambda: self.table.query(KeyConditionExpression=Key("sk").eq(1)))
        self.assertEqual(code, "ValidationException")
        self.assertIn("Query condition missed key schema element", message)

    def test_scan_segments_and_pages(self):
        seen = []
        for segment in range(3):
            start = None
            while True:
                args = {"Segment": segment, "TotalSegments": 3, "Limit": 7}
                if start:
                    args["ExclusiveStartKey"] = start
                page = self.table.scan(**args)
                seen += [(i["pk"], i["sk"]) for i in page["Items"]]
                start = page.get("LastEvaluatedKey")
                if not start:
                    break
        self.assertEqual(len(seen), 31)
        self.assertEqual(len(set(seen)), 31)
        filtered = self.table.scan(FilterExpression=Attr("name").begins_with("n0"))
        self.assertEqual(filtered["Count"], 10)
        self.assertEqual(filtered["ScannedCount"], 31)


class IndexReads(unittest.TestCase):
    """Reads through indexes that do not project every attribute, and Query's rules."""

    def setUp(self):
        name = fresh("projected")
        CLIENT.create_table(
            TableName=name,
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "N"},
                {"AttributeName": "status", "AttributeType": "S"},
                {"AttributeName": "total", "AttributeType": "N"},
            ],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "by-status",
                    "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            ],
            LocalSecondaryIndexes=[
                {
                    "IndexName": "by-total",
                    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "total", "KeyType": "RANGE"}],
                    "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["colour"]},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        self.table = RESOURCE.Table(name)
        for i in range(3):
            self.table.put_item(Item={"pk": "p", "sk": i, "status": "open", "total": 10 - i, "colour": "red", "name": f"n{i}"})

    def test_an_index_defaults_to_its_projected_attributes(self):
        items = self.table.query(IndexName="by-status", KeyConditionExpression=Key("status").eq("open"))["Items"]
        self.assertEqual(sorted(i["sk"] for i in items), [0, 1, 2])
        self.assertEqual(set(items[0]), {"pk", "sk", "status"})
        code, message, _ = error_of(
            lambda: self.table.query(IndexName="by-status", KeyConditionExpression=Key("status").eq("open"), Select="ALL_ATTRIBUTES")
        )
        self.assertEqual(code, "ValidationException")
        self.assertIn("projection type is not ALL", message)

    def test_a_local_index_fetches_the_rest_from_the_table(self):
        projected = self.table.query(IndexName="by-total", KeyConditionExpression=Key("pk").eq("p"))["Items"]
        self.assertEqual([set(i) for i in projected], [{"pk", "sk", "total", "colour"}] * 3)
        whole = self.table.query(IndexName="by-total", KeyConditionExpression=Key("pk").eq("p"), Select="ALL_ATTRIBUTES")["Items"]
        self.assertEqual([i["name"] for i in whole], ["n2", "n1", "n0"], "in the index's order, whole items")
        named = self.table.query(
            IndexName="by-total", KeyConditionExpression=Key("pk").eq("p"), ProjectionExpression="#n", ExpressionAttributeNames={"#n": "name"}
        )["Items"]
        self.assertEqual(named, [{"name": "n2"}, {"name": "n1"}, {"name": "n0"}])
        filtered = self.table.query(IndexName="by-total", KeyConditionExpression=Key("pk").eq("p"), FilterExpression=Attr("name").eq("n1"))
        self.assertEqual((filtered["Count"], filtered["ScannedCount"]), (1, 3))
        # The filter reads the whole item; the answer is still the index's projection.
        self.assertEqual(set(filtered["Items"][0]), {"pk", "sk", "total", "colour"})

    def test_query_rules(self):
        code, message, _ = error_of(
            lambda: self.table.query(KeyConditionExpression=Key("pk").eq("p"), FilterExpression=Attr("sk").gt(0))
        )
        self.assertEqual(
            (code, message),
            ("ValidationException", "Filter Expression can only contain non-primary key attributes: Primary key attribute: sk"),
        )
        # A scan may filter on keys, and a query on the table's keys through an index.
        self.assertEqual(self.table.scan(FilterExpression=Attr("sk").gt(0))["Count"], 2)
        through = self.table.query(IndexName="by-status", KeyConditionExpression=Key("status").eq("open"), FilterExpression=Attr("sk").gt(0))
        self.assertEqual(through["Count"], 2)
        code, message, _ = error_of(lambda: self.table.scan(Select="ALL_PROJECTED_ATTRIBUTES"))
        self.assertEqual(
            (code, message), ("ValidationException", "ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName")
        )
        code, message, _ = error_of(lambda: self.table.scan(Select="SPECIFIC_ATTRIBUTES"))
        self.assertEqual(
            (code, message),
            ("ValidationException", "Must specify the AttributesToGet or ProjectionExpression when choosing to get SPECIFIC_ATTRIBUTES"),
        )


class Edges(unittest.TestCase):
    """Behaviour DynamoDB's documentation and its clients rely on at the edges."""

    def test_an_update_that_only_removes_creates_nothing(self):
        table = simple_table()
        out = table.update_item(Key={"pk": "none"}, UpdateExpression="REMOVE a, b.c", ReturnValues="ALL_NEW")
        self.assertNotIn("Attributes", out)
        self.assertNotIn("Item", table.get_item(Key={"pk": "none"}))
        CLIENT.update_item(TableName=table.name, Key={"pk": {"S": "legacy"}}, AttributeUpdates={"a": {"Action": "DELETE"}})
        self.assertNotIn("Item", table.get_item(Key={"pk": "legacy"}))
        table.update_item(Key={"pk": "made"}, UpdateExpression="SET a = :one REMOVE b", ExpressionAttributeValues={":one": 1})
        self.assertEqual(table.get_item(Key={"pk": "made"})["Item"], {"pk": "made", "a": 1})

    def test_contains_on_binary_and_size_in_utf16_units(self):
        table = simple_table()
        table.put_item(Item={"pk": "x", "d": b"hi there", "s": "\u00e9\U0001d11e"})
        table.update_item(
            Key={"pk": "x"},
            UpdateExpression="SET ok = :t",
            ConditionExpression="contains(d, :part) AND size(s) = :three",
            ExpressionAttributeValues={":t": True, ":part": b"here", ":three": 3},
        )
        self.assertTrue(table.get_item(Key={"pk": "x"})["Item"]["ok"])

    def test_empty_placeholder_maps_and_return_values(self):
        table = simple_table()
        code, message, _ = error_of(
            lambda: CLIENT.update_item(
                TableName=table.name,
                Key={"pk": {"S": "k"}},
                UpdateExpression="REMOVE #a",
                ExpressionAttributeNames={"#a": "a"},
                ExpressionAttributeValues={},
            )
        )
        self.assertEqual((code, message), ("ValidationException", "ExpressionAttributeValues must not be empty"))
        code, message, _ = error_of(
            lambda: CLIENT.get_item(TableName=table.name, Key={"pk": {"S": "k"}}, ExpressionAttributeNames={"#a": "a"})
        )
        self.assertEqual(
            (code, message), ("ValidationException", "ExpressionAttributeNames can only be specified when using expressions")
        )
        code, message, _ = error_of(lambda: CLIENT.put_item(TableName=table.name, Item={"pk": {"S": "k"}}, ReturnValues="ALL_NEW"))
        self.assertEqual((code, message), ("ValidationException", "Return values set to invalid value"))

    def test_key_conditions_go_with_a_projection_expression(self):
        table = composite_table()
        table.put_item(Item={"pk": "k", "sk": 1, "name": "one", "other": 2})
        page = CLIENT.query(
            TableName=table.name,
            KeyConditions={"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "k"}]}},
            ProjectionExpression="#n",
            ExpressionAttributeNames={"#n": "name"},
        )
        self.assertEqual(page["Items"], [{"name": {"S": "one"}}])

    def test_one_index_created_or_deleted_per_update(self):
        table = simple_table()
        table.put_item(Item={"pk": "a", "colour": "red", "size": "L"})
        definitions = [
            {"AttributeName": "colour", "AttributeType": "S"},
            {"AttributeName": "size", "AttributeType": "S"},
        ]
        create = lambda index, attr: {
            "Create": {
                "IndexName": index,
                "KeySchema": [{"AttributeName": attr, "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        }
        code, message, _ = error_of(
            lambda: CLIENT.update_table(
                TableName=table.name,
                AttributeDefinitions=definitions,
                GlobalSecondaryIndexUpdates=[create("g-one", "colour"), create("g-two", "size")],
            )
        )
        self.assertEqual(code, "LimitExceededException")
        self.assertIn("Only 1 online index", message)
        CLIENT.update_table(TableName=table.name, AttributeDefinitions=definitions, GlobalSecondaryIndexUpdates=[create("gix", "colour")])
        CLIENT.update_table(TableName=table.name, GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "gix"}}])
        CLIENT.update_table(TableName=table.name, AttributeDefinitions=definitions, GlobalSecondaryIndexUpdates=[create("gix", "size")])
        self.assertEqual(table.query(IndexName="gix", KeyConditionExpression=Key("size").eq("L"))["Count"], 1)
        self.assertEqual(table.query(IndexName="gix", KeyConditionExpression=Key("size").eq("red"))["Count"], 0)

    def test_batch_capacity_is_charged_per_item(self):
        table = simple_table()
        out = CLIENT.batch_write_item(
            RequestItems={
                table.name: [{"PutRequest": {"Item": {"pk": {"S": f"k{i}"}, "v": {"S": "x" * 100}}}} for i in range(3)]
                + [{"DeleteRequest": {"Key": {"pk": {"S": "missing"}}}}]
            },
            ReturnConsumedCapacity="TOTAL",
        )
        self.assertEqual(out["ConsumedCapacity"], [{"TableName": table.name, "CapacityUnits": 4.0}])
        got = CLIENT.batch_get_item(
            RequestItems={table.name: {"Keys": [{"pk": {"S": "k0"}}, {"pk": {"S": "k1"}}, {"pk": {"S": "none"}}]}},
            ReturnConsumedCapacity="TOTAL",
        )
        self.assertEqual(got["ConsumedCapacity"], [{"TableName": table.name, "CapacityUnits": 1.5}])


class Legacy(unittest.TestCase):
    """The parameters older code still sends."""

    def test_expected_attribute_updates_attributes_to_get(self):
        table = simple_table()
        CLIENT.put_item(
            TableName=table.name,
            Item={"pk": {"S": "l"}, "v": {"N": "1"}},
            Expected={"pk": {"Exists": False}},
        )
        code, _, _ = error_of(
            lambda: CLIENT.put_item(TableName=table.name, Item={"pk": {"S": "l"}}, Expected={"pk": {"Exists": False}})
        )
        self.assertEqual(code, "ConditionalCheckFailedException")
        CLIENT.update_item(
            TableName=table.name,
            Key={"pk": {"S": "l"}},
            AttributeUpdates={"v": {"Action": "ADD", "Value": {"N": "4"}}, "w": {"Action": "PUT", "Value": {"S": "x"}}},
            Expected={"v": {"ComparisonOperator": "EQ", "AttributeValueList": [{"N": "1"}]}},
        )
        got = CLIENT.get_item(TableName=table.name, Key={"pk": {"S": "l"}}, AttributesToGet=["v", "w"])["Item"]
        self.assertEqual(got, {"v": {"N": "5"}, "w": {"S": "x"}})
        code, message, _ = error_of(
            lambda: CLIENT.get_item(
                TableName=table.name, Key={"pk": {"S": "l"}}, AttributesToGet=["v"], ProjectionExpression="v"
            )
        )
        self.assertEqual(code, "ValidationException")
        self.assertIn("Can not use both expression and non-expression parameters", message)
        # Expected's two forms do not mix; nothing is written.
        code, message, _ = error_of(
            lambda: CLIENT.put_item(
                TableName=table.name,
                Item={"pk": {"S": "l"}, "v": {"N": "9"}},
                Expected={"v": {"ComparisonOperator": "EQ", "AttributeValueList": [{"N": "5"}], "Exists": True}},
            )
        )
        self.assertEqual(code, "ValidationException")
        self.assertIn("Value and Exists cannot be used with", message)
        self.assertEqual(CLIENT.get_item(TableName=table.name, Key={"pk": {"S": "l"}})["Item"]["v"], {"N": "5"})

    def test_wide_legacy_requests_and_list_add(self):
        # DynamoDBMapper sends every attribute as AttributeUpdates; the expression size
        # and operator limits apply to expressions, not to these parameters.
        table = simple_table()
        attrs = {f"attribute_number_{i:03d}": {"Action": "PUT", "Value": {"N": str(i)}} for i in range(150)}
        CLIENT.update_item(TableName=table.name, Key={"pk": {"S": "wide"}}, AttributeUpdates=attrs)
        got = CLIENT.get_item(TableName=table.name, Key={"pk": {"S": "wide"}}, AttributesToGet=list(attrs) + ["pk"])["Item"]
        self.assertEqual(len(got), 151)
        scan = CLIENT.scan(
            TableName=table.name,
            ScanFilter={name: {"ComparisonOperator": "NOT_NULL"} for name in attrs},
        )
        self.assertEqual(scan["Count"], 1)
        # Legacy ADD of a list appends to it, or makes it.
        for values in (["a"], ["b", "c"]):
            CLIENT.update_item(
                TableName=table.name,
                Key={"pk": {"S": "list"}},
                AttributeUpdates={"l": {"Action": "ADD", "Value": {"L": [{"S": v} for v in values]}}},
            )
        got = CLIENT.get_item(TableName=table.name, Key={"pk": {"S": "list"}})["Item"]
        self.assertEqual(got["l"], {"L": [{"S": "a"}, {"S": "b"}, {"S": "c"}]})

    def test_key_conditions_query_filter_scan_filter(self):
        table = composite_table()
        for i in range(6):
            table.put_item(Item={"pk": "k", "sk": i, "status": "a" if i < 3 else "b", "total": i})
        page = CLIENT.query(
            TableName=table.name,
            KeyConditions={
                "pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "k"}]},
                "sk": {"ComparisonOperator": "BETWEEN", "AttributeValueList": [{"N": "1"}, {"N": "4"}]},
            },
            QueryFilter={"status": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "b"}]}},
        )
        self.assertEqual([i["sk"]["N"] for i in page["Items"]], ["3", "4"])
        scanned = CLIENT.scan(
            TableName=table.name,
            ScanFilter={
                "total": {"ComparisonOperator": "GE", "AttributeValueList": [{"N": "4"}]},
                "status": {"ComparisonOperator": "NOT_NULL"},
            },
            ConditionalOperator="AND",
        )
        self.assertEqual(sorted(i["sk"]["N"] for i in scanned["Items"]), ["4", "5"])


class Pages(unittest.TestCase):
    def test_a_page_stops_at_one_megabyte(self):
        table = simple_table()
        blob = "x" * (100 * 1024)
        for i in range(15):
            table.put_item(Item={"pk": f"p{i:02d}", "blob": blob})
        first = table.scan()
        self.assertLess(first["Count"], 15)
        self.assertIn("LastEvaluatedKey", first)
        rest = table.scan(ExclusiveStartKey=first["LastEvaluatedKey"])
        self.assertEqual(first["Count"] + rest["Count"], 15)

    def test_updated_values_are_the_updated_paths(self):
        table = simple_table()
        table.put_item(Item={"pk": "n", "m": {"a": 1, "b": 2}, "other": 3})
        out = table.update_item(
            Key={"pk": "n"}, UpdateExpression="SET m.a = :v", ExpressionAttributeValues={":v": 10}, ReturnValues="UPDATED_NEW"
        )["Attributes"]
        self.assertEqual(out, {"m": {"a": 10}})


class Batches(unittest.TestCase):
    def test_batch_write_and_get(self):
        table = simple_table()
        CLIENT.batch_write_item(
            RequestItems={table.name: [{"PutRequest": {"Item": {"pk": {"S": f"k{i}"}}}} for i in range(25)]}
        )
        got = CLIENT.batch_get_item(
            RequestItems={table.name: {"Keys": [{"pk": {"S": f"k{i}"}} for i in range(0, 25, 5)] + [{"pk": {"S": "none"}}]}}
        )
        self.assertEqual(sorted(i["pk"]["S"] for i in got["Responses"][table.name]), ["k0", "k10", "k15", "k20", "k5"])
        self.assertEqual(got["UnprocessedKeys"], {})
        CLIENT.batch_write_item(RequestItems={table.name: [{"DeleteRequest": {"Key": {"pk": {"S": "k0"}}}}]})
        self.assertNotIn("Item", CLIENT.get_item(TableName=table.name, Key={"pk": {"S": "k0"}}))
        code, message, _ = error_of(
            lambda: CLIENT.batch_write_item(
                RequestItems={table.name: [{"PutRequest": {"Item": {"pk": {"S": f"x{i}"}}}} for i in range(26)]}
            )
        )
        self.assertEqual(code, "ValidationException")
        code, message, _ = error_of(
            lambda: CLIENT.batch_write_item(
                RequestItems={table.name: [{"PutRequest": {"Item": {"pk": {"S": "same"}}}}] * 2}
            )
        )
        self.assertEqual((code, message), ("ValidationException", "Provided list of item keys contains duplicates"))


class Transactions(unittest.TestCase):
    def test_transact_write_all_or_nothing(self):
        table = simple_table()
        table.put_item(Item={"pk": "balance", "v": 10})
        table.put_item(Item={"pk": "limit", "v": 10})
        code, message, response = error_of(
            lambda: CLIENT.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": table.name, "Item": {"pk": {"S": "new"}}}},
                    {
                        "Update": {
                            "TableName": table.name,
                            "Key": {"pk": {"S": "balance"}},
                            "UpdateExpression": "SET v = v - :amt",
                            "ConditionExpression": "v >= :amt",
                            "ExpressionAttributeValues": {":amt": {"N": "50"}},
                        }
                    },
                ]
            )
        )
        self.assertEqual(code, "TransactionCanceledException")
        self.assertIn("[None, ConditionalCheckFailed]", message)
        self.assertEqual([r["Code"] for r in response["CancellationReasons"]], ["None", "ConditionalCheckFailed"])
        self.assertNotIn("Item", table.get_item(Key={"pk": "new"}))
        out = CLIENT.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table.name, "Item": {"pk": {"S": "new"}}}},
                {"ConditionCheck": {"TableName": table.name, "Key": {"pk": {"S": "limit"}}, "ConditionExpression": "v = :ten", "ExpressionAttributeValues": {":ten": {"N": "10"}}}},
                {"Delete": {"TableName": table.name, "Key": {"pk": {"S": "balance"}}}},
            ],
            ClientRequestToken="token-1",
            ReturnConsumedCapacity="TOTAL",
        )
        # Twice the units of the same operations alone: two writes and a check of 1 KB.
        self.assertEqual(out["ConsumedCapacity"], [{"TableName": table.name, "CapacityUnits": 6.0}])
        self.assertIn("Item", table.get_item(Key={"pk": "new"}))
        self.assertNotIn("Item", table.get_item(Key={"pk": "balance"}))
        got = CLIENT.transact_get_items(
            TransactItems=[
                {"Get": {"TableName": table.name, "Key": {"pk": {"S": "new"}}}},
                {"Get": {"TableName": table.name, "Key": {"pk": {"S": "balance"}}}},
            ],
            ReturnConsumedCapacity="TOTAL",
        )
        self.assertEqual(got["Responses"], [{"Item": {"pk": {"S": "new"}}}, {}])
        self.assertEqual(got["ConsumedCapacity"], [{"TableName": table.name, "CapacityUnits": 4.0}])
        code, message, _ = error_of(
            lambda: CLIENT.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": table.name, "Item": {"pk": {"S": "twice"}}}},
                    {"Delete": {"TableName": table.name, "Key": {"pk": {"S": "twice"}}}},
                ]
            )
        )
        self.assertEqual((code, message), ("ValidationException", "Transaction request cannot include multiple operations on one item"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
