// DynamoDB compatibility through the AWS SDK for JavaScript v3 and its document client,
// against a running Nimbus (NIMBUS_ENDPOINT). Exits non-zero on the first failed check.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import {
  CreateTableCommand,
  DescribeTableCommand,
  DynamoDBClient,
} from '@aws-sdk/client-dynamodb';
import {
  DeleteCommand,
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  TransactWriteCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';

const client = new DynamoDBClient({
  endpoint: process.env.NIMBUS_ENDPOINT,
  region: 'us-east-1',
  credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  maxAttempts: 1,
});
const doc = DynamoDBDocumentClient.from(client);
const TableName = `v3-${randomUUID().slice(0, 8)}`;

await client.send(new CreateTableCommand({
  TableName,
  AttributeDefinitions: [
    { AttributeName: 'user', AttributeType: 'S' },
    { AttributeName: 'at', AttributeType: 'N' },
  ],
  KeySchema: [
    { AttributeName: 'user', KeyType: 'HASH' },
    { AttributeName: 'at', KeyType: 'RANGE' },
  ],
  BillingMode: 'PAY_PER_REQUEST',
}));
const described = await client.send(new DescribeTableCommand({ TableName }));
assert.equal(described.Table.TableStatus, 'ACTIVE');

for (let at = 1; at <= 5; at++) {
  await doc.send(new PutCommand({ TableName, Item: { user: 'ann', at, note: `n${at}`, tags: new Set(['x']) } }));
}
const got = await doc.send(new GetCommand({ TableName, Key: { user: 'ann', at: 3 } }));
assert.deepEqual(got.Item, { user: 'ann', at: 3, note: 'n3', tags: new Set(['x']) });

const queried = await doc.send(new QueryCommand({
  TableName,
  KeyConditionExpression: '#u = :u AND #a BETWEEN :lo AND :hi',
  ExpressionAttributeNames: { '#u': 'user', '#a': 'at' },
  ExpressionAttributeValues: { ':u': 'ann', ':lo': 2, ':hi': 4 },
  ScanIndexForward: false,
}));
assert.deepEqual(queried.Items.map((i) => i.at), [4, 3, 2]);

const updated = await doc.send(new UpdateCommand({
  TableName,
  Key: { user: 'ann', at: 1 },
  UpdateExpression: 'SET note = :n ADD visits :one',
  ExpressionAttributeValues: { ':n': 'changed', ':one': 1 },
  ReturnValues: 'ALL_NEW',
}));
assert.equal(updated.Attributes.note, 'changed');
assert.equal(updated.Attributes.visits, 1);

await assert.rejects(
  doc.send(new PutCommand({ TableName, Item: { user: 'ann', at: 1 }, ConditionExpression: 'attribute_not_exists(#u)', ExpressionAttributeNames: { '#u': 'user' } })),
  (e) => e.name === 'ConditionalCheckFailedException' && e.message === 'The conditional request failed',
);

await assert.rejects(
  doc.send(new TransactWriteCommand({
    TransactItems: [
      { Put: { TableName, Item: { user: 'bob', at: 1 } } },
      { ConditionCheck: { TableName, Key: { user: 'ann', at: 9 }, ConditionExpression: 'attribute_exists(#u)', ExpressionAttributeNames: { '#u': 'user' } } },
    ],
  })),
  (e) => e.name === 'TransactionCanceledException' && e.CancellationReasons?.[1]?.Code === 'ConditionalCheckFailed',
);
const bob = await doc.send(new GetCommand({ TableName, Key: { user: 'bob', at: 1 } }));
assert.equal(bob.Item, undefined);

await doc.send(new DeleteCommand({ TableName, Key: { user: 'ann', at: 5 } }));
const after = await doc.send(new QueryCommand({ TableName, KeyConditionExpression: '#u = :u', ExpressionAttributeNames: { '#u': 'user' }, ExpressionAttributeValues: { ':u': 'ann' } }));
assert.equal(after.Count, 4);

await assert.rejects(
  doc.send(new GetCommand({ TableName: 'no-such-table', Key: { user: 'x', at: 1 } })),
  (e) => e.name === 'ResourceNotFoundException',
);
console.log('sdk v3: all checks passed');
