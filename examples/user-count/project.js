// project.js: the read side of a CQRS projection. Triggered by the Users table's
// stream, it keeps the number of registered users in the UserCount table.
const AWS = require('aws-sdk');
const dynamoDB = new AWS.DynamoDB.DocumentClient();

exports.handler = async (event) => {
  let delta = 0;
  for (const record of event.Records) {
    if (record.eventName === 'INSERT') delta += 1;
    if (record.eventName === 'REMOVE') delta -= 1;
  }
  if (delta === 0) return;
  // One atomic ADD per batch. Stream delivery is at least once: after a crash a batch
  // may be delivered again; a projection that must be exact would record the last
  // SequenceNumber it applied and skip records at or before it.
  await dynamoDB
    .update({
      TableName: 'UserCount',
      Key: { id: 'users' },
      UpdateExpression: 'ADD #count :delta',
      ExpressionAttributeNames: { '#count': 'count' },
      ExpressionAttributeValues: { ':delta': delta },
    })
    .promise();
};
