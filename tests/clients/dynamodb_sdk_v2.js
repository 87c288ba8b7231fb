// The seed's client: the AWS SDK for JavaScript v2 DocumentClient, against a running
// Nimbus (NIMBUS_ENDPOINT). Exits non-zero on the first failed check.
const assert = require('node:assert/strict');
const AWS = require('aws-sdk');

AWS.config.update({
  endpoint: process.env.NIMBUS_ENDPOINT,
  region: 'us-east-1',
  accessKeyId: 'test',
  secretAccessKey: 'test',
  maxRetries: 0,
});
const ddb = new AWS.DynamoDB();
const doc = new AWS.DynamoDB.DocumentClient();
const TableName = `v2-${Date.now()}`;

(async () => {
  await ddb.createTable({
    TableName,
    AttributeDefinitions: [{ AttributeName: 'email', AttributeType: 'S' }],
    KeySchema: [{ AttributeName: 'email', KeyType: 'HASH' }],
    BillingMode: 'PAY_PER_REQUEST',
  }).promise();
  const createdAt = new Date().toISOString();
  await doc.put({ TableName, Item: { email: 'a@example.com', name: 'A', createdAt } }).promise();
  const got = await doc.get({ TableName, Key: { email: 'a@example.com' } }).promise();
  assert.deepEqual(got.Item, { email: 'a@example.com', name: 'A', createdAt });
  await assert.rejects(
    doc.put({ TableName: 'Missing-Table', Item: { email: 'x' } }).promise(),
    (e) => e.code === 'ResourceNotFoundException',
  );
  console.log('sdk v2: all checks passed');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
