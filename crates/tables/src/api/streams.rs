//! The DynamoDB Streams API (`X-Amz-Target: DynamoDBStreams_20120810.*`): ListStreams,
//! DescribeStream, GetShardIterator and GetRecords over the change records the engines
//! keep in the same commit as each write ([`crate::engine::StreamRecord`]).
//!
//! A table's stream is the one its definition names (`{table arn}/stream/{label}`); a
//! table without a stream has none to list or read. Each stream has one shard, open as
//! long as the stream is enabled. Its records carry the engine's sequence numbers, which
//! grow in commit order and, within a stream, have no gaps; so a position that the
//! oldest retained record has passed is a position whose records were trimmed.
//!
//! Shard iterators are stateless, so that they survive a restart and work on any node of
//! a cluster: `{stream arn}|1|{base64url payload}`, the payload holding the table's id,
//! the position, the time the iterator was issued and a CRC32 over all of it (so that a
//! damaged or made-up iterator is refused rather than misread). They expire after 15
//! minutes, as on DynamoDB.

use std::sync::Arc;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as BASE64};
use serde_json::{Value as Json, json};

use super::{
    Tables, internal, now_millis,
    request::{Req, check_name},
    unknown_operation,
};
use crate::{
    engine::StreamRecord,
    error::{ApiError, ErrorKind},
    schema::{ACCOUNT, REGION, StreamDef, TableDef},
    value::item_to_json,
};

/// The `X-Amz-Target` prefix of DynamoDB Streams operations.
pub const STREAMS_TARGET_PREFIX: &str = "DynamoDBStreams_20120810.";

/// How long a shard iterator may be used after it was issued.
const ITERATOR_LIFETIME_MS: u64 = 15 * 60 * 1000;
/// GetRecords' largest and default `Limit`.
const MAX_RECORDS: u64 = 1000;
/// GetRecords stops adding records once a page holds this many bytes.
const MAX_PAGE_BYTES: usize = 1024 * 1024;
/// The most bytes of records [`Tables::stream_changes`] reads at once: a Lambda
/// synchronous payload, which a stream trigger's batch never exceeds.
const STREAM_CHANGES_BYTES: usize = 6 * 1024 * 1024;
/// ListStreams' and DescribeStream's largest and default `Limit`.
const MAX_LIST: u64 = 100;
/// Digits of a sequence number as DynamoDB prints it.
const SEQUENCE_DIGITS: usize = 21;
/// DynamoDB's bounds on the length of a sequence number, a shard id and a stream ARN.
const SEQUENCE_MAX_LEN: usize = 40;
const SHARD_ID_LEN: (usize, usize) = (28, 65);
const STREAM_ARN_LEN: (usize, usize) = (37, 1024);
const ITERATOR_MAX_LEN: usize = 2048;
/// The largest sequence number an engine can be asked about (PostgreSQL keeps `int8`).
const MAX_SEQUENCE: u64 = i64::MAX as u64;

/// The iterator format's version, both in the visible `|1|` and inside the payload.
const ITERATOR_VERSION: u8 = 1;
/// Payload bytes before the table id: version, kind, position, issue time.
const PAYLOAD_HEAD: usize = 1 + 1 + 8 + 8;

impl Tables {
    /// Runs the DynamoDB Streams operation named by `target`
    /// (`DynamoDBStreams_20120810.GetRecords`) on a JSON body.
    ///
    /// # Errors
    /// The [`ApiError`] to answer, in DynamoDB Streams' shape.
    pub async fn handle_streams(&self, target: &str, body: &[u8]) -> Result<Json, ApiError> {
        let Some(operation) = target.strip_prefix(STREAMS_TARGET_PREFIX) else {
            return Err(unknown_operation());
        };
        let started = std::time::Instant::now();
        let body = super::parse_body(body);
        let result = match &body {
            Ok(body) => self.run_streams(operation, body).await,
            Err(e) => Err(e.clone()),
        };
        let table = body.as_ref().ok().and_then(|b| self.metrics_table(b));
        crate::op_metrics::record(target, table, &result, started.elapsed());
        result
    }

    async fn run_streams(&self, operation: &str, body: &Json) -> Result<Json, ApiError> {
        self.refresh_if_stale().await;
        let req = Req::parse(body)?;
        match operation {
            "ListStreams" => list_streams(self, &req),
            "DescribeStream" => describe_stream(self, &req).await,
            "GetShardIterator" => get_shard_iterator(self, &req).await,
            "GetRecords" => get_records(self, &req).await,
            _ => Err(unknown_operation()),
        }
    }

    /// The table whose stream `stream` names: its current one, or one turned off in the
    /// last 24 hours.
    fn stream_table(&self, stream: &StreamName) -> Result<(Arc<TableDef>, StreamDef), ApiError> {
        let not_found = || {
            ApiError::new(
                ErrorKind::ResourceNotFound,
                format!(
                    "Requested resource not found: Stream: {} not found",
                    stream.arn
                ),
            )
        };
        if !stream.local {
            return Err(not_found());
        }
        let def = self.table(&stream.table).map_err(|_| not_found())?;
        let s = def
            .stream_by_label(&stream.label, now_millis())
            .cloned()
            .ok_or_else(not_found)?;
        Ok((def, s))
    }

    /// Up to `limit` records of the stream after `after` (from the oldest retained one
    /// for `None`), ending with the one that takes their size past `max_bytes`.
    async fn records_within(
        &self,
        def: &Arc<TableDef>,
        label: &str,
        after: Option<u64>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<StreamRecord>, ApiError> {
        self.engine
            .stream_records(Arc::clone(def), label.to_owned(), after, limit, max_bytes)
            .await
            .map_err(internal)
    }

    /// Up to `limit` records of the stream after `after`, within a page's 1 MB.
    async fn records(
        &self,
        def: &Arc<TableDef>,
        label: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StreamRecord>, ApiError> {
        self.records_within(def, label, after, limit, MAX_PAGE_BYTES)
            .await
    }

    /// The sequence number of the stream's first record at or after `seq`.
    async fn first_from(
        &self,
        def: &Arc<TableDef>,
        label: &str,
        seq: u64,
    ) -> Result<Option<u64>, ApiError> {
        let after = seq.checked_sub(1);
        Ok(self
            .records(def, label, after, 1)
            .await?
            .first()
            .map(|r| r.sequence))
    }

    /// The sequence number of the stream's newest record, given one that exists: a
    /// galloping search, so that finding the end of a day of records takes a few dozen
    /// point reads rather than reading them all.
    async fn last_sequence(
        &self,
        def: &Arc<TableDef>,
        label: &str,
        known: u64,
    ) -> Result<u64, ApiError> {
        let mut known = known;
        let mut step: u64 = 1;
        // Find a bound that no record reaches.
        let bound = loop {
            let probe = known.saturating_add(step).min(MAX_SEQUENCE);
            match self.first_from(def, label, probe).await? {
                Some(seq) if seq >= MAX_SEQUENCE => return Ok(seq),
                Some(seq) => {
                    known = seq;
                    step = step.saturating_mul(2);
                }
                None => break probe,
            }
        };
        // `known` exists and nothing lies at or beyond `hi`.
        let mut hi = bound;
        while hi - known > 1 {
            let mid = known + (hi - known) / 2;
            match self.first_from(def, label, mid).await? {
                Some(seq) => known = seq,
                None => hi = mid,
            }
        }
        Ok(known)
    }
}

/// A table's current stream, as a stream trigger names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// The stream's ARN (`{table arn}/stream/{label}`), Lambda's `eventSourceARN`.
    pub arn: String,
    /// The id of the stream's only shard.
    pub shard_id: String,
}

/// A change record of a table's stream, rendered for Lambda.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamChange {
    /// Its sequence number.
    pub sequence: u64,
    /// When the change was committed, epoch milliseconds.
    pub created_ms: u64,
    /// The record as Lambda hands it to a function triggered by the stream: the record
    /// of DynamoDB Streams' `GetRecords` with its `eventSourceARN`.
    pub record: Json,
    /// The trace context (W3C `traceparent`) of the request that made the change.
    pub trace: Option<String>,
}

/// What stream triggers read: the same records as the DynamoDB Streams API, each
/// rendered once, here.
impl Tables {
    /// Table `table`'s current stream, `None` when the table does not exist or has no
    /// stream.
    pub fn stream_info(&self, table: &str) -> Option<StreamInfo> {
        let def = self.table(table).ok()?;
        let stream = def.stream.as_ref()?;
        Some(StreamInfo {
            arn: stream_arn(&def, stream),
            shard_id: shard_id(&def, stream),
        })
    }

    /// Up to `limit` records of table `table`'s current stream with sequence numbers
    /// above `after` (from the oldest retained one for `None`), in order, rendered as
    /// Lambda's DynamoDB stream event records. Empty when the table has no stream.
    ///
    /// # Errors
    /// When the engine fails.
    pub async fn stream_changes(
        &self,
        table: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StreamChange>, ApiError> {
        // A trigger's node may serve no DynamoDB requests: the catalog is read again here
        // too, so that it follows a stream another node turned off or on.
        self.refresh_if_stale().await;
        let Ok(def) = self.table(table) else {
            return Ok(Vec::new());
        };
        let Some(stream) = def.stream.clone() else {
            return Ok(Vec::new());
        };
        let arn = stream_arn(&def, &stream);
        // A trigger's batch is cut to Lambda's 6 MB payload; the records' JSON is larger
        // than their sizes, so reading up to 6 MB of them is always enough.
        let records = self
            .records_within(&def, &stream.label, after, limit, STREAM_CHANGES_BYTES)
            .await?;
        Ok(records
            .iter()
            .map(|r| {
                let mut record = record_json(&def, &stream, r);
                record["eventSourceARN"] = Json::String(arn.clone());
                if r.by_ttl {
                    record["userIdentity"] = json!({
                        "type": "Service",
                        "principalId": TTL_PRINCIPAL,
                    });
                }
                StreamChange {
                    sequence: r.sequence,
                    created_ms: (r.created.max(0.0) * 1000.0) as u64,
                    record,
                    trace: r.trace.clone(),
                }
            })
            .collect())
    }

    /// The sequence number of the newest record of table `table`'s current stream,
    /// `None` when it holds none (or the table has no stream).
    ///
    /// # Errors
    /// When the engine fails.
    pub async fn stream_latest(&self, table: &str) -> Result<Option<u64>, ApiError> {
        let Ok(def) = self.table(table) else {
            return Ok(None);
        };
        let Some(stream) = def.stream.clone() else {
            return Ok(None);
        };
        match self.records(&def, &stream.label, None, 1).await?.first() {
            Some(first) => Ok(Some(
                self.last_sequence(&def, &stream.label, first.sequence)
                    .await?,
            )),
            None => Ok(None),
        }
    }
}

/// A parsed stream ARN: `arn:aws:dynamodb:{region}:{account}:table/{name}/stream/{label}`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StreamName {
    /// The ARN as given.
    arn: String,
    /// The table's name.
    table: String,
    /// The stream's label.
    label: String,
    /// Whether the region and account are this node's.
    local: bool,
}

impl StreamName {
    /// Reads a stream ARN given as the request member `member`.
    fn parse(member: &str, arn: &str) -> Result<StreamName, ApiError> {
        check_length(member, arn, STREAM_ARN_LEN)?;
        let invalid = || ApiError::validation(format!("Invalid StreamArn: {arn}"));
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [arn_tag, _partition, service, region, account, resource] = parts[..] else {
            return Err(invalid());
        };
        if arn_tag != "arn" || service != "dynamodb" {
            return Err(invalid());
        }
        let (table, label) = resource
            .strip_prefix("table/")
            .and_then(|r| r.split_once("/stream/"))
            .ok_or_else(invalid)?;
        if label.is_empty() || check_name("tableName", table).is_err() {
            return Err(invalid());
        }
        Ok(StreamName {
            arn: arn.to_owned(),
            table: table.to_owned(),
            label: label.to_owned(),
            local: region == REGION && account == ACCOUNT,
        })
    }
}

/// A stream's ARN.
fn stream_arn(def: &TableDef, stream: &StreamDef) -> String {
    format!("{}/stream/{}", def.arn(), stream.label)
}

/// The stream's only shard: the stream's creation time and a hash of the table and
/// label, in DynamoDB's `shardId-{20 digits}-{8 hex}` form.
fn shard_id(def: &TableDef, stream: &StreamDef) -> String {
    let created: u64 = stream.created_ms().unwrap_or(0);
    let hash = crc32fast::hash(format!("{}/{}", def.id, stream.label).as_bytes());
    format!("shardId-{created:020}-{hash:08x}")
}

/// A sequence number as DynamoDB prints it.
fn sequence_string(seq: u64) -> String {
    format!("{seq:0SEQUENCE_DIGITS$}")
}

/// Reads a sequence number: up to 40 decimal digits.
fn parse_sequence(s: &str) -> Result<u64, ApiError> {
    let invalid = || ApiError::validation(format!("Invalid SequenceNumber: {s}"));
    if s.is_empty() || s.len() > SEQUENCE_MAX_LEN || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let digits = s.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(0);
    }
    // Longer than any sequence number the engines hand out: no record has it.
    digits
        .parse::<u64>()
        .ok()
        .filter(|&n| n <= MAX_SEQUENCE)
        .ok_or_else(|| {
            ApiError::validation(format!(
                "Invalid SequenceNumber: {s} is beyond the end of the shard"
            ))
        })
}

/// The stream's creation time, epoch seconds, which its label gives.
fn stream_created(def: &TableDef, stream: &StreamDef) -> f64 {
    stream
        .created_ms()
        .map_or(def.created, |ms| ms as f64 / 1000.0)
}

fn check_length(member: &str, value: &str, (min, max): (usize, usize)) -> Result<(), ApiError> {
    let constraint = if value.len() < min {
        format!("Member must have length greater than or equal to {min}")
    } else if value.len() > max {
        format!("Member must have length less than or equal to {max}")
    } else {
        return Ok(());
    };
    Err(ApiError::validation(format!(
        "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
    )))
}

/// An optional `Limit` in `1..=max`, `max` when absent.
fn limit(req: &Req<'_>, max: u64) -> Result<usize, ApiError> {
    let constraint = |n: u64, c: &str| {
        ApiError::validation(format!(
            "1 validation error detected: Value '{n}' at 'limit' failed to satisfy constraint: Member must have value {c}"
        ))
    };
    let n = match req.opt_u64("Limit", 1)? {
        None => max,
        Some(n) if n > max => return Err(constraint(n, &format!("less than or equal to {max}"))),
        Some(n) => n,
    };
    usize::try_from(n).map_err(|_| constraint(n, &format!("less than or equal to {max}")))
}

/// Where an iterator reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// The oldest record the stream holds when it is read.
    Horizon,
    /// The record after this sequence number, which is one of the stream's (or the one
    /// just before its first): if the record after it is gone, it was trimmed.
    After(u64),
}

/// A decoded shard iterator.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ShardIterator {
    /// The stream.
    stream: StreamName,
    /// The table's id, so that an iterator of a deleted and recreated table is refused.
    table_id: String,
    /// Where reading continues.
    position: Position,
    /// When it was issued, epoch milliseconds.
    issued_ms: u64,
}

impl ShardIterator {
    fn encode(&self) -> String {
        let (kind, seq) = match self.position {
            Position::Horizon => (0u8, 0u64),
            Position::After(seq) => (1u8, seq),
        };
        let mut payload = Vec::with_capacity(PAYLOAD_HEAD + self.table_id.len() + 4);
        payload.push(ITERATOR_VERSION);
        payload.push(kind);
        payload.extend_from_slice(&seq.to_be_bytes());
        payload.extend_from_slice(&self.issued_ms.to_be_bytes());
        payload.extend_from_slice(self.table_id.as_bytes());
        let crc = checksum(&self.stream.arn, &payload);
        payload.extend_from_slice(&crc.to_be_bytes());
        format!(
            "{}|{ITERATOR_VERSION}|{}",
            self.stream.arn,
            BASE64.encode(&payload)
        )
    }

    /// Reads an iterator; anything that is not one this module issued is a
    /// `ValidationException`.
    fn decode(s: &str) -> Result<ShardIterator, ApiError> {
        check_length("shardIterator", s, (1, ITERATOR_MAX_LEN))?;
        ShardIterator::try_decode(s).ok_or_else(|| ApiError::validation("Invalid ShardIterator"))
    }

    fn try_decode(s: &str) -> Option<ShardIterator> {
        let mut parts = s.rsplitn(3, '|');
        let (payload, version, arn) = (parts.next()?, parts.next()?, parts.next()?);
        if version != ITERATOR_VERSION.to_string() {
            return None;
        }
        let payload = BASE64.decode(payload).ok()?;
        let (body, crc) = payload.split_at_checked(payload.len().checked_sub(4)?)?;
        if body.len() < PAYLOAD_HEAD
            || checksum(arn, body).to_be_bytes() != crc
            || body[0] != ITERATOR_VERSION
        {
            return None;
        }
        let seq = u64::from_be_bytes(body[2..10].try_into().ok()?);
        let position = match body[1] {
            0 if seq == 0 => Position::Horizon,
            1 if seq <= MAX_SEQUENCE => Position::After(seq),
            _ => return None,
        };
        Some(ShardIterator {
            stream: StreamName::parse("streamArn", arn).ok()?,
            table_id: String::from_utf8(body[PAYLOAD_HEAD..].to_vec()).ok()?,
            position,
            issued_ms: u64::from_be_bytes(body[10..18].try_into().ok()?),
        })
    }
}

fn checksum(arn: &str, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(arn.as_bytes());
    hasher.update(b"|");
    hasher.update(payload);
    hasher.finalize()
}

fn list_streams(tables: &Tables, req: &Req<'_>) -> Result<Json, ApiError> {
    let table = req.opt_str("TableName")?;
    if let Some(name) = table {
        check_name("tableName", name)?;
        tables.table(name).map_err(|_| {
            ApiError::new(
                ErrorKind::ResourceNotFound,
                format!("Requested resource not found: Table: {name} not found"),
            )
        })?;
    }
    let limit = limit(req, MAX_LIST)?;
    let start = req
        .opt_str("ExclusiveStartStreamArn")?
        .map(|arn| StreamName::parse("exclusiveStartStreamArn", arn))
        .transpose()?;
    let mut streams = Vec::new();
    let mut more = false;
    for name in tables.table_names() {
        if table.is_some_and(|t| t != name) {
            continue;
        }
        let Ok(def) = tables.table(&name) else {
            continue;
        };
        // Streams turned off in the last day, oldest first, then the current one.
        let now = now_millis();
        let readable = def
            .old_streams
            .iter()
            .chain(&def.stream)
            .filter(|s| def.stream_by_label(&s.label, now).is_some());
        for stream in readable {
            if let Some(start) = &start
                && (def.name.as_str(), stream.label.as_str())
                    <= (start.table.as_str(), start.label.as_str())
            {
                continue;
            }
            if streams.len() == limit {
                more = true;
                break;
            }
            streams.push(json!({
                "StreamArn": stream_arn(&def, stream),
                "TableName": def.name,
                "StreamLabel": stream.label,
            }));
        }
        if more {
            break;
        }
    }
    let mut out = json!({});
    if more && let Some(last) = streams.last() {
        out["LastEvaluatedStreamArn"] = last["StreamArn"].clone();
    }
    out["Streams"] = Json::Array(streams);
    Ok(out)
}

async fn describe_stream(tables: &Tables, req: &Req<'_>) -> Result<Json, ApiError> {
    let stream = StreamName::parse("streamArn", req.str("StreamArn")?)?;
    limit(req, MAX_LIST)?;
    let exclusive_start = req.opt_str("ExclusiveStartShardId")?;
    if let Some(id) = exclusive_start {
        check_length("exclusiveStartShardId", id, SHARD_ID_LEN)?;
    }
    // The only filter asks for a shard's children; the one shard has none.
    let children_only = match req.opt_struct("ShardFilter")? {
        Some(filter) => {
            filter
                .opt_enum("Type", &["CHILD_SHARDS"])?
                .ok_or_else(|| ApiError::validation("1 validation error detected: Value null at 'shardFilter.type' failed to satisfy constraint: Member must not be null"))?;
            true
        }
        None => false,
    };
    let (def, s) = tables.stream_table(&stream)?;
    let shard = shard_id(&def, &s);
    let mut shards = Vec::new();
    if !children_only && exclusive_start.is_none_or(|start| start < shard.as_str()) {
        let first = tables.records(&def, &s.label, None, 1).await?;
        // With no record yet, the shard starts before the first sequence number (1).
        let start = first.first().map_or(0, |r| r.sequence);
        let mut range = json!({ "StartingSequenceNumber": sequence_string(start) });
        // The shard of a stream turned off is closed: it ends at its last record.
        if s.ended_ms.is_some() {
            let end = match first.first() {
                Some(r) => tables.last_sequence(&def, &s.label, r.sequence).await?,
                None => start,
            };
            range["EndingSequenceNumber"] = json!(sequence_string(end));
        }
        shards.push(json!({ "ShardId": shard, "SequenceNumberRange": range }));
    }
    Ok(json!({
        "StreamDescription": {
            "StreamArn": stream_arn(&def, &s),
            "StreamLabel": s.label,
            "StreamStatus": if s.ended_ms.is_some() { "DISABLED" } else { "ENABLED" },
            "StreamViewType": s.view_type,
            "CreationRequestDateTime": stream_created(&def, &s),
            "TableName": def.name,
            "KeySchema": def.key.describe(),
            "Shards": shards,
        }
    }))
}

async fn get_shard_iterator(tables: &Tables, req: &Req<'_>) -> Result<Json, ApiError> {
    let stream = StreamName::parse("streamArn", req.str("StreamArn")?)?;
    let shard = req.str("ShardId")?;
    check_length("shardId", shard, SHARD_ID_LEN)?;
    let kind = req
        .opt_enum(
            "ShardIteratorType",
            &[
                "TRIM_HORIZON",
                "LATEST",
                "AT_SEQUENCE_NUMBER",
                "AFTER_SEQUENCE_NUMBER",
                "AT_TIMESTAMP",
            ],
        )?
        .ok_or_else(|| ApiError::validation("1 validation error detected: Value null at 'shardIteratorType' failed to satisfy constraint: Member must not be null"))?;
    let sequence = req.opt_str("SequenceNumber")?;
    let at = match (kind, sequence) {
        ("AT_SEQUENCE_NUMBER" | "AFTER_SEQUENCE_NUMBER", None) => {
            return Err(ApiError::validation(format!(
                "SequenceNumber is required for ShardIteratorType {kind}"
            )));
        }
        ("TRIM_HORIZON" | "LATEST", Some(_)) => {
            return Err(ApiError::validation(format!(
                "SequenceNumber must not be given with ShardIteratorType {kind}"
            )));
        }
        ("AT_TIMESTAMP", _) => {
            return Err(ApiError::validation(
                "ShardIteratorType AT_TIMESTAMP is not supported by Nimbus",
            ));
        }
        (_, Some(s)) => Some(parse_sequence(s)?),
        (_, None) => None,
    };
    let (def, s) = tables.stream_table(&stream)?;
    if shard != shard_id(&def, &s) {
        return Err(ApiError::new(
            ErrorKind::ResourceNotFound,
            format!(
                "Requested resource not found: Shard: {shard} in Stream: {} not found",
                stream.arn
            ),
        ));
    }
    let first = tables
        .records(&def, &s.label, None, 1)
        .await?
        .first()
        .map(|r| r.sequence);
    let position = match (first, kind, at) {
        // A closed (disabled) stream whose records are gone: nothing is left to read,
        // and the reader moves on at the end of the shard.
        (None, _, _) if s.ended_ms.is_some() => Position::Horizon,
        // An empty stream whose records were all trimmed: a position before the last
        // record given out lost records (each record after a reader's position was in
        // this stream: the table's closed streams have older numbers).
        (None, _, Some(seq)) if seq > 0 => {
            let wanted = if kind == "AT_SEQUENCE_NUMBER" {
                seq
            } else {
                seq + 1
            };
            let last = tables
                .engine
                .stream_last_sequence(Arc::clone(&def))
                .await
                .map_err(internal)?;
            if wanted <= last {
                return Err(trimmed());
            }
            if wanted > last + 1 {
                return Err(ApiError::validation(format!(
                    "Invalid SequenceNumber: {} is beyond the end of shard {shard}",
                    sequence.unwrap_or_default()
                )));
            }
            Position::After(last)
        }
        // An empty stream: every iterator starts at the next record written.
        (None, _, _) => Position::Horizon,
        (Some(first), "LATEST", _) => {
            Position::After(tables.last_sequence(&def, &s.label, first).await?)
        }
        (Some(first), _, Some(seq)) if seq > 0 => {
            let wanted = if kind == "AT_SEQUENCE_NUMBER" {
                seq
            } else {
                seq + 1
            };
            if wanted < first {
                return Err(trimmed());
            }
            // The stream's records have no gaps: `wanted` is at most one past the newest
            // exactly when a record at or after `wanted - 1` exists.
            if wanted > first
                && tables
                    .first_from(&def, &s.label, wanted - 1)
                    .await?
                    .is_none()
            {
                return Err(ApiError::validation(format!(
                    "Invalid SequenceNumber: {} is beyond the end of shard {shard}",
                    sequence.unwrap_or_default()
                )));
            }
            Position::After(wanted - 1)
        }
        // TRIM_HORIZON, or sequence number 0: sequence numbers start at 1, and 0 is the
        // start of a shard that had no records when it was described.
        _ => Position::Horizon,
    };
    let iterator = ShardIterator {
        stream: StreamName {
            arn: stream_arn(&def, &s),
            table: def.name.clone(),
            label: s.label.clone(),
            local: true,
        },
        table_id: def.id.clone(),
        position,
        issued_ms: now_millis(),
    };
    Ok(json!({ "ShardIterator": iterator.encode() }))
}

fn trimmed() -> ApiError {
    ApiError::new(
        ErrorKind::TrimmedDataAccess,
        "The data you are trying to access has been trimmed",
    )
}

async fn get_records(tables: &Tables, req: &Req<'_>) -> Result<Json, ApiError> {
    let iterator = ShardIterator::decode(req.str("ShardIterator")?)?;
    let limit = limit(req, MAX_RECORDS)?;
    let now = now_millis();
    if now.saturating_sub(iterator.issued_ms) > ITERATOR_LIFETIME_MS {
        return Err(ApiError::new(
            ErrorKind::ExpiredIterator,
            "The shard iterator has expired: shard iterators are valid for 15 minutes after they are issued",
        ));
    }
    let (def, s) = tables.stream_table(&iterator.stream)?;
    if def.id != iterator.table_id {
        return Err(ApiError::new(
            ErrorKind::ResourceNotFound,
            format!(
                "Requested resource not found: Stream: {} not found",
                iterator.stream.arn
            ),
        ));
    }
    let after = match iterator.position {
        Position::Horizon => None,
        Position::After(seq) => Some(seq),
    };
    let mut records = tables.records(&def, &s.label, after, limit).await?;
    if let (Some(after), Some(first)) = (after, records.first())
        && first.sequence > after + 1
    {
        return Err(trimmed());
    }
    // Like DynamoDB, stop at 1 MB, but always return at least one record.
    let mut bytes = 0;
    let keep = records
        .iter()
        .position(|r| {
            bytes += r.size_bytes;
            bytes > MAX_PAGE_BYTES
        })
        .map_or(records.len(), |i| i.max(1));
    records.truncate(keep);
    let next = ShardIterator {
        position: records
            .last()
            .map_or(iterator.position, |r| Position::After(r.sequence)),
        issued_ms: now,
        ..iterator
    };
    let mut out = json!({
        "Records": records.iter().map(|r| record_json(&def, &s, r)).collect::<Vec<_>>(),
    });
    // A closed shard read to its end has no next iterator, which tells readers to move
    // on; an open one always has.
    if s.ended_ms.is_none() || !records.is_empty() {
        out["NextShardIterator"] = json!(next.encode());
    }
    Ok(out)
}

/// A record as DynamoDB Streams returns it.
fn record_json(def: &TableDef, stream: &StreamDef, r: &StreamRecord) -> Json {
    let mut dynamodb = json!({
        "ApproximateCreationDateTime": r.created.max(0.0).floor() as u64,
        "Keys": item_to_json(&r.keys),
        "SequenceNumber": sequence_string(r.sequence),
        "SizeBytes": r.size_bytes,
        "StreamViewType": stream.view_type,
    });
    if let Some(new) = &r.new_image {
        dynamodb["NewImage"] = item_to_json(new);
    }
    if let Some(old) = &r.old_image {
        dynamodb["OldImage"] = item_to_json(old);
    }
    let mut record = json!({
        "eventID": event_id(def, stream, r.sequence),
        "eventName": r.event.as_str(),
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": REGION,
        "dynamodb": dynamodb,
    });
    if r.by_ttl {
        // How DynamoDB Streams marks the deletion of an expired item (a Lambda event
        // spells the members in lower camel case: see `stream_changes`).
        record["userIdentity"] = json!({
            "Type": "Service",
            "PrincipalId": TTL_PRINCIPAL,
        });
    }
    record
}

/// Who deletes expired items.
const TTL_PRINCIPAL: &str = "dynamodb.amazonaws.com";

/// A record's id: 32 hex digits, the same each time the record is read, so that
/// consumers can recognise a record they have seen.
fn event_id(def: &TableDef, stream: &StreamDef, seq: u64) -> String {
    let table = crc32fast::hash(def.id.as_bytes());
    let label = crc32fast::hash(stream.label.as_bytes());
    format!("{table:08x}{label:08x}{seq:016x}")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::engine::Embedded;

    async fn tables() -> Tables {
        Tables::open(Arc::new(Embedded::in_memory().unwrap()))
            .await
            .unwrap()
    }

    async fn dynamodb(t: &Tables, op: &str, body: Json) -> Json {
        t.handle(
            &format!("DynamoDB_20120810.{op}"),
            body.to_string().as_bytes(),
        )
        .await
        .unwrap_or_else(|e| panic!("{op}: {e}"))
    }

    async fn streams(t: &Tables, op: &str, body: Json) -> Result<Json, ApiError> {
        t.handle_streams(
            &format!("{STREAMS_TARGET_PREFIX}{op}"),
            body.to_string().as_bytes(),
        )
        .await
    }

    async fn ok(t: &Tables, op: &str, body: Json) -> Json {
        streams(t, op, body)
            .await
            .unwrap_or_else(|e| panic!("{op}: {e}"))
    }

    async fn refused(t: &Tables, op: &str, body: Json) -> ApiError {
        match streams(t, op, body).await {
            Ok(out) => panic!("{op} succeeded with {out}; an error was expected"),
            Err(e) => e,
        }
    }

    /// Creates table `name` (key `pk`) with a stream of `view`; returns the stream's ARN
    /// and shard id.
    async fn table_with_stream(t: &Tables, name: &str, view: &str) -> (String, String) {
        let out = dynamodb(
            t,
            "CreateTable",
            json!({
                "TableName": name,
                "AttributeDefinitions": [{ "AttributeName": "pk", "AttributeType": "S" }],
                "KeySchema": [{ "AttributeName": "pk", "KeyType": "HASH" }],
                "BillingMode": "PAY_PER_REQUEST",
                "StreamSpecification": { "StreamEnabled": true, "StreamViewType": view },
            }),
        )
        .await;
        let arn = out["TableDescription"]["LatestStreamArn"]
            .as_str()
            .unwrap()
            .to_owned();
        let described = ok(t, "DescribeStream", json!({ "StreamArn": arn })).await;
        let shard = described["StreamDescription"]["Shards"][0]["ShardId"]
            .as_str()
            .unwrap()
            .to_owned();
        (arn, shard)
    }

    async fn put(t: &Tables, table: &str, pk: &str, v: u32) {
        dynamodb(
            t,
            "PutItem",
            json!({ "TableName": table, "Item": { "pk": { "S": pk }, "v": { "N": v.to_string() } } }),
        )
        .await;
    }

    async fn iterator(t: &Tables, arn: &str, shard: &str, kind: &str, seq: Option<&str>) -> String {
        let mut body = json!({ "StreamArn": arn, "ShardId": shard, "ShardIteratorType": kind });
        if let Some(seq) = seq {
            body["SequenceNumber"] = json!(seq);
        }
        ok(t, "GetShardIterator", body).await["ShardIterator"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// GetRecords: the records and the next iterator.
    async fn read(t: &Tables, it: &str, limit: Option<u64>) -> (Vec<Json>, String) {
        let mut body = json!({ "ShardIterator": it });
        if let Some(limit) = limit {
            body["Limit"] = json!(limit);
        }
        let out = ok(t, "GetRecords", body).await;
        let records = out["Records"].as_array().unwrap().clone();
        (
            records,
            out["NextShardIterator"].as_str().unwrap().to_owned(),
        )
    }

    fn seqs(records: &[Json]) -> Vec<u64> {
        records
            .iter()
            .map(|r| {
                let s = r["dynamodb"]["SequenceNumber"].as_str().unwrap();
                assert_eq!(s.len(), 21, "{s}");
                s.parse().unwrap()
            })
            .collect()
    }

    fn sample_iterator(position: Position, issued_ms: u64) -> ShardIterator {
        let arn = "arn:aws:dynamodb:us-east-1:000000000000:table/Orders/stream/1700000000000";
        ShardIterator {
            stream: StreamName::parse("streamArn", arn).unwrap(),
            table_id: "0b7f9d3c-7c1e-4c55-9a53-2f1c1b0c4e11".into(),
            position,
            issued_ms,
        }
    }

    #[test]
    fn iterators_round_trip() {
        for position in [Position::Horizon, Position::After(0), Position::After(42)] {
            let it = sample_iterator(position, 1_700_000_000_123);
            let s = it.encode();
            assert!(s.starts_with(&format!("{}|1|", it.stream.arn)), "{s}");
            assert!(s.len() <= ITERATOR_MAX_LEN);
            assert_eq!(ShardIterator::decode(&s).unwrap(), it);
        }
    }

    #[test]
    fn damaged_iterators_are_refused() {
        let s = sample_iterator(Position::After(7), 1_700_000_000_123).encode();
        let (arn, payload) = s.rsplit_once('|').unwrap();
        let bytes = BASE64.decode(payload).unwrap();
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x01;
            let damaged = format!("{arn}|{}", BASE64.encode(&damaged));
            let e = ShardIterator::decode(&damaged).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Validation, "byte {i}");
            assert_eq!(e.message, "Invalid ShardIterator");
        }
        let other_table = s.replace("table/Orders/", "table/Users/");
        assert!(
            ShardIterator::decode(&other_table).is_err(),
            "the ARN is covered"
        );
        for garbage in [
            "",
            "|",
            "||",
            "|1|",
            "a|1|b",
            "arn:aws:dynamodb:us-east-1:000000000000:table/Orders/stream/1|2|AAAA",
            "sdfsdfsgagaddafgagasgasgasdfasdfasdfasdfasdgasdasdgasdg",
            &s[..s.len() - 3],
            &format!("{s}AA"),
            &"x".repeat(3000),
        ] {
            let e = ShardIterator::decode(garbage).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Validation, "{garbage:?}");
        }
    }

    proptest! {
        #[test]
        fn decoding_anything_never_panics(s in ".{0,300}", tail in "[A-Za-z0-9_-]{0,120}") {
            let _ = ShardIterator::decode(&s);
            let arn = "arn:aws:dynamodb:us-east-1:000000000000:table/Orders/stream/1";
            let made_up = format!("{arn}|1|{tail}");
            prop_assert!(ShardIterator::decode(&made_up).is_err());
        }
    }

    #[test]
    fn stream_arns_and_sequence_numbers() {
        let arn = "arn:aws:dynamodb:us-east-1:000000000000:table/my.table-1/stream/1700000000000";
        let s = StreamName::parse("streamArn", arn).unwrap();
        assert_eq!(
            (s.table.as_str(), s.label.as_str(), s.local),
            ("my.table-1", "1700000000000", true)
        );
        let elsewhere = arn.replace("us-east-1", "eu-west-1");
        assert!(!StreamName::parse("streamArn", &elsewhere).unwrap().local);
        for bad in [
            "sdfadfsdfnlfkajakfgjalksfgklasjklasdjfklasdfasdfgasf",
            "arn:aws:dynamodb:us-east-1:000000000000:table/Orders",
            "arn:aws:dynamodb:us-east-1:000000000000:table/Orders/stream/",
            "arn:aws:lambda:us-east-1:000000000000:table/Orders/stream/1",
            "arn:aws:dynamodb:us-east-1:000000000000:table/a/stream/1",
            "short",
        ] {
            let e = StreamName::parse("streamArn", bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Validation, "{bad}");
        }
        assert_eq!(sequence_string(7), "000000000000000000007");
        assert_eq!(parse_sequence("000000000000000000007").unwrap(), 7);
        assert_eq!(parse_sequence("0").unwrap(), 0);
        for bad in ["", "12a", "-1", &"9".repeat(41), &"9".repeat(30)] {
            assert_eq!(
                parse_sequence(bad).unwrap_err().kind,
                ErrorKind::Validation,
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn records_in_dynamodb_streams_shape() {
        let t = tables().await;
        let (arn, shard) = table_with_stream(&t, "Orders", "NEW_AND_OLD_IMAGES").await;
        assert!(
            shard.starts_with("shardId-") && shard.len() == 37,
            "{shard}"
        );
        put(&t, "Orders", "a", 1).await;
        put(&t, "Orders", "a", 1).await; // no change: no record
        dynamodb(
            &t,
            "UpdateItem",
            json!({
                "TableName": "Orders",
                "Key": { "pk": { "S": "a" } },
                "UpdateExpression": "SET v = :v",
                "ExpressionAttributeValues": { ":v": { "N": "2" } },
            }),
        )
        .await;
        dynamodb(
            &t,
            "DeleteItem",
            json!({ "TableName": "Orders", "Key": { "pk": { "S": "a" } } }),
        )
        .await;

        let it = iterator(&t, &arn, &shard, "TRIM_HORIZON", None).await;
        let (records, next) = read(&t, &it, None).await;
        let names: Vec<&str> = records
            .iter()
            .map(|r| r["eventName"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["INSERT", "MODIFY", "REMOVE"]);
        let s = seqs(&records);
        assert!(s.windows(2).all(|w| w[0] < w[1]), "{s:?}");
        let key = json!({ "pk": { "S": "a" } });
        let v1 = json!({ "pk": { "S": "a" }, "v": { "N": "1" } });
        let v2 = json!({ "pk": { "S": "a" }, "v": { "N": "2" } });
        let insert = &records[0];
        assert_eq!(insert["eventVersion"], "1.1");
        assert_eq!(insert["eventSource"], "aws:dynamodb");
        assert_eq!(insert["awsRegion"], REGION);
        assert_eq!(insert["eventID"].as_str().unwrap().len(), 32);
        assert_eq!(insert["dynamodb"]["Keys"], key);
        assert_eq!(insert["dynamodb"]["NewImage"], v1);
        assert!(insert["dynamodb"].get("OldImage").is_none());
        assert_eq!(insert["dynamodb"]["StreamViewType"], "NEW_AND_OLD_IMAGES");
        assert!(insert["dynamodb"]["ApproximateCreationDateTime"].is_u64());
        assert!(insert["dynamodb"]["SizeBytes"].as_u64().unwrap() > 0);
        assert_eq!(records[1]["dynamodb"]["OldImage"], v1);
        assert_eq!(records[1]["dynamodb"]["NewImage"], v2);
        assert_eq!(records[2]["dynamodb"]["OldImage"], v2);
        assert!(records[2]["dynamodb"].get("NewImage").is_none());

        // Reading again gives the same records, ids included; the next iterator waits at
        // the end.
        let (again, _) = read(&t, &it, None).await;
        assert_eq!(again, records);
        let (none, next) = read(&t, &next, None).await;
        assert!(none.is_empty());
        put(&t, "Orders", "b", 3).await;
        let (more, _) = read(&t, &next, None).await;
        assert_eq!(more.len(), 1);
        assert_eq!(seqs(&more)[0], s[2] + 1);
    }

    #[tokio::test]
    async fn view_types_choose_the_images() {
        let t = tables().await;
        for (name, view, new, old) in [
            ("KeysOnly", "KEYS_ONLY", false, false),
            ("NewImage", "NEW_IMAGE", true, false),
            ("OldImage", "OLD_IMAGE", false, true),
        ] {
            let (arn, shard) = table_with_stream(&t, name, view).await;
            put(&t, name, "a", 1).await;
            put(&t, name, "a", 2).await;
            let it = iterator(&t, &arn, &shard, "TRIM_HORIZON", None).await;
            let (records, _) = read(&t, &it, None).await;
            let modify = &records[1]["dynamodb"];
            assert_eq!(modify["StreamViewType"], view);
            assert_eq!(modify.get("NewImage").is_some(), new, "{view}");
            assert_eq!(modify.get("OldImage").is_some(), old, "{view}");
            assert_eq!(modify["Keys"], json!({ "pk": { "S": "a" } }));
        }
    }

    #[tokio::test]
    async fn each_iterator_type_starts_where_it_says() {
        let t = tables().await;
        let (arn, shard) = table_with_stream(&t, "Orders", "KEYS_ONLY").await;

        // An empty stream: the shard starts at 0, and every iterator reads what comes.
        let described = ok(&t, "DescribeStream", json!({ "StreamArn": arn })).await;
        let start = described["StreamDescription"]["Shards"][0]["SequenceNumberRange"]
            ["StartingSequenceNumber"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(start, "000000000000000000000");
        let latest_empty = iterator(&t, &arn, &shard, "LATEST", None).await;
        let at_start = iterator(&t, &arn, &shard, "AT_SEQUENCE_NUMBER", Some(&start)).await;
        for i in 0..5 {
            put(&t, "Orders", &format!("k{i}"), i).await;
        }
        let (all, _) = read(&t, &latest_empty, None).await;
        assert_eq!(all.len(), 5);
        let s = seqs(&all);
        let (from_start, _) = read(&t, &at_start, None).await;
        assert_eq!(seqs(&from_start), s);
        // Once records exist, the shard starts at the first.
        let described = ok(&t, "DescribeStream", json!({ "StreamArn": arn })).await;
        assert_eq!(
            described["StreamDescription"]["Shards"][0]["SequenceNumberRange"]["StartingSequenceNumber"],
            sequence_string(s[0])
        );
        // AT_SEQUENCE_NUMBER with the old start still reads everything.
        let at_zero = iterator(&t, &arn, &shard, "AT_SEQUENCE_NUMBER", Some(&start)).await;
        assert_eq!(seqs(&read(&t, &at_zero, None).await.0), s);

        let seq = |i: usize| sequence_string(s[i]);
        let at = iterator(&t, &arn, &shard, "AT_SEQUENCE_NUMBER", Some(&seq(2))).await;
        assert_eq!(seqs(&read(&t, &at, None).await.0), &s[2..]);
        let after = iterator(&t, &arn, &shard, "AFTER_SEQUENCE_NUMBER", Some(&seq(2))).await;
        assert_eq!(seqs(&read(&t, &after, None).await.0), &s[3..]);
        let after_last = iterator(&t, &arn, &shard, "AFTER_SEQUENCE_NUMBER", Some(&seq(4))).await;
        let latest = iterator(&t, &arn, &shard, "LATEST", None).await;
        assert!(read(&t, &after_last, None).await.0.is_empty());
        assert!(read(&t, &latest, None).await.0.is_empty());
        put(&t, "Orders", "new", 9).await;
        assert_eq!(seqs(&read(&t, &latest, None).await.0), [s[4] + 1]);
        assert_eq!(seqs(&read(&t, &after_last, None).await.0), [s[4] + 1]);

        // Limit pages through the records, each page's iterator continuing the last.
        let horizon = iterator(&t, &arn, &shard, "TRIM_HORIZON", None).await;
        let (page1, next) = read(&t, &horizon, Some(2)).await;
        let (page2, next) = read(&t, &next, Some(2)).await;
        let (page3, next) = read(&t, &next, Some(2)).await;
        let (page4, _) = read(&t, &next, Some(2)).await;
        assert_eq!(
            [page1.len(), page2.len(), page3.len(), page4.len()],
            [2, 2, 2, 0]
        );

        // Past the end of the shard.
        let beyond = sequence_string(s[4] + 5);
        let e = refused(
            &t,
            "GetShardIterator",
            json!({ "StreamArn": arn, "ShardId": shard, "ShardIteratorType": "AT_SEQUENCE_NUMBER", "SequenceNumber": beyond }),
        )
        .await;
        assert_eq!(e.kind, ErrorKind::Validation);
    }

    #[tokio::test]
    async fn latest_finds_the_end_of_long_streams() {
        let t = tables().await;
        let (arn, shard) = table_with_stream(&t, "Orders", "KEYS_ONLY").await;
        let def = t.table("Orders").unwrap();
        let label = def.stream.as_ref().unwrap().label.clone();
        for n in 1..=70u32 {
            put(&t, "Orders", &format!("k{n}"), n).await;
            let first = t.first_from(&def, &label, 0).await.unwrap().unwrap();
            let last = t.last_sequence(&def, &label, first).await.unwrap();
            assert_eq!(last, first + u64::from(n) - 1, "after {n} records");
        }
        let latest = iterator(&t, &arn, &shard, "LATEST", None).await;
        assert!(read(&t, &latest, None).await.0.is_empty());
    }

    #[tokio::test]
    async fn trimmed_positions_are_refused() {
        let t = tables().await;
        let (arn, shard) = table_with_stream(&t, "Orders", "KEYS_ONLY").await;
        put(&t, "Orders", "a", 1).await;
        put(&t, "Orders", "b", 2).await;
        let horizon = iterator(&t, &arn, &shard, "TRIM_HORIZON", None).await;
        let (first_two, _) = read(&t, &horizon, None).await;
        let s = seqs(&first_two);
        let at_first = iterator(
            &t,
            &arn,
            &shard,
            "AT_SEQUENCE_NUMBER",
            Some(&sequence_string(s[0])),
        )
        .await;
        // Records of distinct times, so that trimming can keep the third.
        tokio::time::sleep(Duration::from_millis(5)).await;
        put(&t, "Orders", "c", 3).await;
        let def = t.table("Orders").unwrap();
        let label = def.stream.as_ref().unwrap().label.clone();
        let third = t.records(&def, &label, Some(s[1]), 1).await.unwrap();
        t.engine
            .trim_streams(Arc::clone(&def), third[0].created)
            .await
            .unwrap();

        let e = refused(&t, "GetRecords", json!({ "ShardIterator": at_first })).await;
        assert_eq!(e.kind, ErrorKind::TrimmedDataAccess);
        assert_eq!(
            e.body()["__type"],
            "com.amazonaws.dynamodb.v20120810#TrimmedDataAccessException"
        );
        for kind in ["AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"] {
            let e = refused(
                &t,
                "GetShardIterator",
                json!({ "StreamArn": arn, "ShardId": shard, "ShardIteratorType": kind, "SequenceNumber": sequence_string(s[0]) }),
            )
            .await;
            assert_eq!(e.kind, ErrorKind::TrimmedDataAccess, "{kind}");
        }
        // After the second is where the third begins: nothing is lost.
        let after_second = iterator(
            &t,
            &arn,
            &shard,
            "AFTER_SEQUENCE_NUMBER",
            Some(&sequence_string(s[1])),
        )
        .await;
        assert_eq!(seqs(&read(&t, &after_second, None).await.0), [s[1] + 1]);
        let horizon = iterator(&t, &arn, &shard, "TRIM_HORIZON", None).await;
        assert_eq!(seqs(&read(&t, &horizon, None).await.0), [s[1] + 1]);

        // Every record trimmed: a position before the last one is still refused, the
        // last one resumes at the next record written, and one past it is invalid.
        tokio::time::sleep(Duration::from_millis(5)).await;
        t.engine
            .trim_streams(Arc::clone(&def), f64::MAX)
            .await
            .unwrap();
        assert!(t.records(&def, &label, None, 1).await.unwrap().is_empty());
        let third = s[1] + 1;
        let e = refused(
            &t,
            "GetShardIterator",
            json!({ "StreamArn": arn, "ShardId": shard, "ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": sequence_string(s[1]) }),
        )
        .await;
        assert_eq!(e.kind, ErrorKind::TrimmedDataAccess);
        let resume = iterator(
            &t,
            &arn,
            &shard,
            "AFTER_SEQUENCE_NUMBER",
            Some(&sequence_string(third)),
        )
        .await;
        let e = refused(
            &t,
            "GetShardIterator",
            json!({ "StreamArn": arn, "ShardId": shard, "ShardIteratorType": "AT_SEQUENCE_NUMBER", "SequenceNumber": sequence_string(third + 2) }),
        )
        .await;
        assert_eq!(e.kind, ErrorKind::Validation, "{e:?}");
        put(&t, "Orders", "d", 4).await;
        assert_eq!(seqs(&read(&t, &resume, None).await.0), [third + 1]);
    }

    #[tokio::test]
    async fn expired_iterators_are_refused() {
        let t = tables().await;
        let (arn, shard) = table_with_stream(&t, "Orders", "KEYS_ONLY").await;
        let fresh = iterator(&t, &arn, &shard, "TRIM_HORIZON", None).await;
        let mut it = ShardIterator::decode(&fresh).unwrap();
        it.issued_ms -= ITERATOR_LIFETIME_MS + 1000;
        let e = refused(&t, "GetRecords", json!({ "ShardIterator": it.encode() })).await;
        assert_eq!(e.kind, ErrorKind::ExpiredIterator);
        assert_eq!(
            e.body()["__type"],
            "com.amazonaws.dynamodb.v20120810#ExpiredIteratorException"
        );
        // A minute short of expiry, it still reads.
        it.issued_ms += 61_000;
        ok(&t, "GetRecords", json!({ "ShardIterator": it.encode() })).await;
    }

    #[tokio::test]
    async fn list_and_describe() {
        let t = tables().await;
        let mut arns = Vec::new();
        for name in ["Alpha", "Bravo", "Charlie"] {
            arns.push(table_with_stream(&t, name, "NEW_IMAGE").await.0);
        }
        dynamodb(
            &t,
            "CreateTable",
            json!({
                "TableName": "NoStream",
                "AttributeDefinitions": [{ "AttributeName": "pk", "AttributeType": "S" }],
                "KeySchema": [{ "AttributeName": "pk", "KeyType": "HASH" }],
                "BillingMode": "PAY_PER_REQUEST",
            }),
        )
        .await;
        let all = ok(&t, "ListStreams", json!({})).await;
        let listed: Vec<&str> = all["Streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["StreamArn"].as_str().unwrap())
            .collect();
        assert_eq!(listed, arns);
        assert!(all.get("LastEvaluatedStreamArn").is_none());
        assert_eq!(all["Streams"][1]["TableName"], "Bravo");

        let page = ok(&t, "ListStreams", json!({ "Limit": 2 })).await;
        assert_eq!(page["Streams"].as_array().unwrap().len(), 2);
        assert_eq!(page["LastEvaluatedStreamArn"], json!(arns[1]));
        let rest = ok(
            &t,
            "ListStreams",
            json!({ "Limit": 2, "ExclusiveStartStreamArn": arns[1] }),
        )
        .await;
        assert_eq!(rest["Streams"][0]["StreamArn"], json!(arns[2]));
        assert!(rest.get("LastEvaluatedStreamArn").is_none());

        let one = ok(&t, "ListStreams", json!({ "TableName": "Bravo" })).await;
        assert_eq!(one["Streams"].as_array().unwrap().len(), 1);
        let none = ok(&t, "ListStreams", json!({ "TableName": "NoStream" })).await;
        assert_eq!(none["Streams"], json!([]));
        let e = refused(&t, "ListStreams", json!({ "TableName": "Missing" })).await;
        assert_eq!(e.kind, ErrorKind::ResourceNotFound);
        for body in [
            json!({ "Limit": 0 }),
            json!({ "Limit": 101 }),
            json!({ "ExclusiveStartStreamArn": "kossaapaaasdafsdaasdasdasdasasdasfadfadfasdasdas" }),
        ] {
            let e = refused(&t, "ListStreams", body.clone()).await;
            assert_eq!(e.kind, ErrorKind::Validation, "{body}");
        }

        let d = ok(&t, "DescribeStream", json!({ "StreamArn": arns[0] })).await;
        let d = &d["StreamDescription"];
        assert_eq!(d["StreamArn"], json!(arns[0]));
        assert_eq!(d["StreamStatus"], "ENABLED");
        assert_eq!(d["StreamViewType"], "NEW_IMAGE");
        assert_eq!(d["TableName"], "Alpha");
        assert_eq!(
            d["KeySchema"],
            json!([{ "AttributeName": "pk", "KeyType": "HASH" }])
        );
        assert!(d["CreationRequestDateTime"].as_f64().unwrap() > 1.0e9);
        assert!(arns[0].ends_with(&format!("/stream/{}", d["StreamLabel"].as_str().unwrap())));
        let shard = d["Shards"][0]["ShardId"].as_str().unwrap();
        let past = ok(
            &t,
            "DescribeStream",
            json!({ "StreamArn": arns[0], "ExclusiveStartShardId": shard }),
        )
        .await;
        assert_eq!(past["StreamDescription"]["Shards"], json!([]));
        let children = ok(
            &t,
            "DescribeStream",
            json!({ "StreamArn": arns[0], "ShardFilter": { "Type": "CHILD_SHARDS", "ShardId": shard } }),
        )
        .await;
        assert_eq!(children["StreamDescription"]["Shards"], json!([]));
    }

    #[tokio::test]
    async fn errors_in_dynamodb_streams_shape() {
        let t = tables().await;
        let (arn, shard) = table_with_stream(&t, "Orders", "KEYS_ONLY").await;
        let missing = arn.replace("table/Orders/", "table/Missing/");
        let other_label = format!("{}0", arn);
        for (op, body, kind) in [
            (
                "DescribeStream",
                json!({ "StreamArn": missing }),
                ErrorKind::ResourceNotFound,
            ),
            (
                "DescribeStream",
                json!({ "StreamArn": other_label }),
                ErrorKind::ResourceNotFound,
            ),
            (
                "DescribeStream",
                json!({ "StreamArn": "sdfadfsdfnlfkajakfgjalksfgklasjklasdjfklasdfasdfgasf" }),
                ErrorKind::Validation,
            ),
            ("DescribeStream", json!({}), ErrorKind::Validation),
            (
                "DescribeStream",
                json!({ "StreamArn": 5 }),
                ErrorKind::Serialization,
            ),
            (
                "GetShardIterator",
                json!({ "StreamArn": arn, "ShardId": "shardId-00000000000000000000-00000000", "ShardIteratorType": "LATEST" }),
                ErrorKind::ResourceNotFound,
            ),
            (
                "GetShardIterator",
                json!({ "StreamArn": missing, "ShardId": shard, "ShardIteratorType": "LATEST" }),
                ErrorKind::ResourceNotFound,
            ),
            (
                "GetShardIterator",
                json!({ "StreamArn": arn, "ShardId": shard, "ShardIteratorType": "AT_SEQUENCE_NUMBER" }),
                ErrorKind::Validation,
            ),
            (
                "GetShardIterator",
                json!({ "StreamArn": arn, "ShardId": shard, "ShardIteratorType": "LATEST", "SequenceNumber": "000000000000000000001" }),
                ErrorKind::Validation,
            ),
            (
                "GetShardIterator",
                json!({ "StreamArn": arn, "ShardId": shard, "ShardIteratorType": "bulle" }),
                ErrorKind::Validation,
            ),
            (
                "GetShardIterator",
                json!({ "StreamArn": arn, "ShardId": shard, "ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": "sdfsafglldfngjdafnasdflgnaldklkafdsgklnasdlv" }),
                ErrorKind::Validation,
            ),
            (
                "GetShardIterator",
                json!({ "StreamArn": arn, "ShardId": shard, "ShardIteratorType": "AT_TIMESTAMP" }),
                ErrorKind::Validation,
            ),
            (
                "GetShardIterator",
                json!({ "StreamArn": arn, "ShardId": "short", "ShardIteratorType": "LATEST" }),
                ErrorKind::Validation,
            ),
            ("GetRecords", json!({}), ErrorKind::Validation),
            (
                "GetRecords",
                json!({ "ShardIterator": "sdfsdfsgagaddafgagasgasgasdfasdfasdfasdfasdgasdasdgasdg" }),
                ErrorKind::Validation,
            ),
            ("PutItem", json!({}), ErrorKind::UnknownOperation),
        ] {
            let e = refused(&t, op, body.clone()).await;
            assert_eq!(e.kind, kind, "{op} {body}: {e}");
        }
        let e = refused(&t, "DescribeStream", json!({ "StreamArn": missing })).await;
        assert_eq!(
            e.body(),
            json!({
                "__type": "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException",
                "message": format!("Requested resource not found: Stream: {missing} not found"),
            })
        );
        let it = iterator(&t, &arn, &shard, "TRIM_HORIZON", None).await;
        for limit in [0, 1001] {
            let e = refused(
                &t,
                "GetRecords",
                json!({ "ShardIterator": it, "Limit": limit }),
            )
            .await;
            assert_eq!(e.kind, ErrorKind::Validation, "{limit}");
        }
        let e = t
            .handle_streams("DynamoDB_20120810.ListTables", b"{}")
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnknownOperation);
        let e = t
            .handle_streams(&format!("{STREAMS_TARGET_PREFIX}ListStreams"), b"{not json")
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Serialization);

        // A disabled stream is read to its end (see a_disabled_stream_is_read_to_its_end);
        // a deleted table's stream is gone, its iterators with it.
        dynamodb(
            &t,
            "UpdateTable",
            json!({ "TableName": "Orders", "StreamSpecification": { "StreamEnabled": false } }),
        )
        .await;
        let out = ok(&t, "GetRecords", json!({ "ShardIterator": it })).await;
        assert!(out.get("NextShardIterator").is_none(), "{out}");
        let (arn, shard) = table_with_stream(&t, "Other", "KEYS_ONLY").await;
        let it = iterator(&t, &arn, &shard, "TRIM_HORIZON", None).await;
        dynamodb(&t, "DeleteTable", json!({ "TableName": "Other" })).await;
        let e = refused(&t, "GetRecords", json!({ "ShardIterator": it })).await;
        assert_eq!(e.kind, ErrorKind::ResourceNotFound);
    }

    #[tokio::test]
    async fn triggers_read_lambda_records_and_hear_of_commits() {
        let t = tables().await;
        let (arn, shard) = table_with_stream(&t, "Orders", "NEW_AND_OLD_IMAGES").await;
        assert_eq!(
            t.stream_info("Orders"),
            Some(StreamInfo {
                arn: arn.clone(),
                shard_id: shard.clone()
            })
        );
        assert_eq!(t.stream_info("Missing"), None);
        assert_eq!(t.stream_latest("Orders").await.unwrap(), None);
        let mut commits = t.stream_commits("Orders");
        commits.borrow_and_update();
        put(&t, "Orders", "a", 1).await;
        assert!(commits.has_changed().unwrap(), "a committed write notifies");
        commits.borrow_and_update();
        put(&t, "Orders", "a", 2).await;
        put(&t, "Orders", "b", 3).await;
        assert!(commits.has_changed().unwrap());

        let changes = t.stream_changes("Orders", None, 10).await.unwrap();
        assert_eq!(changes.len(), 3);
        let latest = t.stream_latest("Orders").await.unwrap();
        assert_eq!(latest, Some(changes[2].sequence));
        // The same record as GetRecords, with the stream's ARN as Lambda adds it.
        let it = iterator(&t, &arn, &shard, "TRIM_HORIZON", None).await;
        let (records, _) = read(&t, &it, None).await;
        for (change, record) in changes.iter().zip(&records) {
            let mut expected = record.clone();
            expected["eventSourceARN"] = json!(arn);
            assert_eq!(change.record, expected);
        }
        assert_eq!(changes[1].record["eventName"], "MODIFY");
        assert_eq!(
            changes[1].record["dynamodb"]["OldImage"]["v"],
            json!({ "N": "1" })
        );
        let after_first = t
            .stream_changes("Orders", Some(changes[0].sequence), 10)
            .await
            .unwrap();
        assert_eq!(after_first, changes[1..]);
        assert!(
            t.stream_changes("Missing", None, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    /// A table first declared without a stream gets one when the manifest declares it
    /// (stream triggers read it), keeps one the manifest drops, and gets the declared TTL.
    #[tokio::test]
    async fn a_declared_stream_and_ttl_reach_an_existing_table() {
        let t = tables().await;
        let mut spec = nimbus_core::TableSpec {
            name: "Users".to_owned(),
            partition_key: nimbus_core::KeyAttribute {
                name: "pk".to_owned(),
                ty: nimbus_core::ScalarType::S,
            },
            sort_key: None,
            global_indexes: vec![],
            local_indexes: vec![],
            ttl_attribute: None,
            stream: None,
        };
        assert!(t.ensure_table(&spec).await.unwrap(), "created");
        assert!(t.stream_info("Users").is_none());
        spec.stream = Some(nimbus_core::StreamView::NewImage);
        spec.ttl_attribute = Some("expires".to_owned());
        assert!(!t.ensure_table(&spec).await.unwrap(), "not created again");
        let def = t.table("Users").unwrap();
        assert_eq!(def.stream.as_ref().unwrap().view_type, "NEW_IMAGE");
        assert_eq!(def.ttl_attribute.as_deref(), Some("expires"));
        let label = def.stream.as_ref().unwrap().label.clone();
        // Declared again alike: nothing changes, the stream keeps its label.
        assert!(!t.ensure_table(&spec).await.unwrap());
        assert_eq!(
            t.table("Users").unwrap().stream.as_ref().unwrap().label,
            label
        );
        spec.stream = None;
        assert!(!t.ensure_table(&spec).await.unwrap());
        assert!(t.table("Users").unwrap().stream.is_some(), "left on");
    }

    /// An expired item's deletion names DynamoDB's TTL service as its `userIdentity`, in
    /// the Lambda event's spelling for stream triggers; a caller's deletion names none.
    #[tokio::test]
    async fn an_expired_items_removal_names_the_ttl_service() {
        let t = tables().await;
        dynamodb(
            &t,
            "CreateTable",
            json!({
                "TableName": "Sessions",
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "BillingMode": "PAY_PER_REQUEST",
                "StreamSpecification": {"StreamEnabled": true, "StreamViewType": "KEYS_ONLY"}
            }),
        )
        .await;
        dynamodb(
            &t,
            "UpdateTimeToLive",
            json!({"TableName": "Sessions",
                   "TimeToLiveSpecification": {"Enabled": true, "AttributeName": "exp"}}),
        )
        .await;
        for (pk, exp) in [("old", "100"), ("mine", "99999999999")] {
            dynamodb(
                &t,
                "PutItem",
                json!({"TableName": "Sessions", "Item": {"pk": {"S": pk}, "exp": {"N": exp}}}),
            )
            .await;
        }
        dynamodb(
            &t,
            "DeleteItem",
            json!({"TableName": "Sessions", "Key": {"pk": {"S": "mine"}}}),
        )
        .await;
        assert_eq!(t.sweep_expired(1_000.0).await.unwrap(), 1);
        let changes = t.stream_changes("Sessions", None, 10).await.unwrap();
        let removes: Vec<&Json> = changes
            .iter()
            .map(|c| &c.record)
            .filter(|r| r["eventName"] == "REMOVE")
            .collect();
        assert_eq!(removes.len(), 2);
        assert_eq!(removes[0]["dynamodb"]["Keys"]["pk"]["S"], "mine");
        assert!(removes[0].get("userIdentity").is_none());
        assert_eq!(
            removes[1]["userIdentity"],
            json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"})
        );
    }

    /// A stream turned off stays readable, DISABLED with a closed shard, until its
    /// records expire: readers drain it, then get no next iterator.
    #[tokio::test]
    async fn a_disabled_stream_is_read_to_its_end() {
        let t = tables().await;
        let (arn, shard) = table_with_stream(&t, "Orders", "KEYS_ONLY").await;
        put(&t, "Orders", "a", 1).await;
        put(&t, "Orders", "b", 2).await;
        let horizon = iterator(&t, &arn, &shard, "TRIM_HORIZON", None).await;
        dynamodb(
            &t,
            "UpdateTable",
            json!({"TableName": "Orders", "StreamSpecification": {"StreamEnabled": false}}),
        )
        .await;
        put(&t, "Orders", "c", 3).await;

        let described = ok(&t, "DescribeStream", json!({ "StreamArn": arn })).await;
        let description = &described["StreamDescription"];
        assert_eq!(description["StreamStatus"], "DISABLED");
        let range = &description["Shards"][0]["SequenceNumberRange"];
        let (start, end): (u64, u64) = (
            range["StartingSequenceNumber"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap(),
            range["EndingSequenceNumber"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap(),
        );
        assert_eq!(end, start + 1, "{range}");
        let (records, next) = read(&t, &horizon, None).await;
        assert_eq!(seqs(&records), [start, end]);
        let out = ok(&t, "GetRecords", json!({ "ShardIterator": next })).await;
        assert_eq!(out["Records"], json!([]));
        assert!(out.get("NextShardIterator").is_none(), "{out}");
        let listed = ok(&t, "ListStreams", json!({ "TableName": "Orders" })).await;
        assert_eq!(listed["Streams"][0]["StreamArn"], json!(arn));

        // Turned on again: a new stream, listed after the old one, and the latest.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let out = dynamodb(
            &t,
            "UpdateTable",
            json!({"TableName": "Orders",
                   "StreamSpecification": {"StreamEnabled": true, "StreamViewType": "KEYS_ONLY"}}),
        )
        .await;
        let latest = out["TableDescription"]["LatestStreamArn"].clone();
        assert_ne!(latest, json!(arn));
        let listed = ok(&t, "ListStreams", json!({ "TableName": "Orders" })).await;
        let arns: Vec<&Json> = listed["Streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| &s["StreamArn"])
            .collect();
        assert_eq!(arns, [&json!(arn), &latest]);
        let old = ok(&t, "DescribeStream", json!({ "StreamArn": arn })).await;
        assert_eq!(old["StreamDescription"]["StreamStatus"], "DISABLED");
        // The new stream's records follow the old one's in the table's numbering; the old
        // stream reads its own, and its end, whatever comes after it.
        put(&t, "Orders", "e", 5).await;
        let again = iterator(&t, &arn, &shard, "TRIM_HORIZON", None).await;
        let (records, next) = read(&t, &again, None).await;
        assert_eq!(seqs(&records), [start, end]);
        let out = ok(&t, "GetRecords", json!({ "ShardIterator": next })).await;
        assert!(out.get("NextShardIterator").is_none(), "{out}");

        // The closed stream's records gone, and the new stream's numbers past them: a
        // reader at the closed stream's end lost nothing, and finds its end.
        let def = t.table("Orders").unwrap();
        t.engine
            .trim_streams(Arc::clone(&def), f64::MAX)
            .await
            .unwrap();
        put(&t, "Orders", "d", 4).await;
        let at_end = iterator(
            &t,
            &arn,
            &shard,
            "AFTER_SEQUENCE_NUMBER",
            Some(&sequence_string(end)),
        )
        .await;
        let out = ok(&t, "GetRecords", json!({ "ShardIterator": at_end })).await;
        assert_eq!(out["Records"], json!([]));
        assert!(out.get("NextShardIterator").is_none(), "{out}");
    }
}
