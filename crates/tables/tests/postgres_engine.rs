//! The PostgreSQL table engine against a real PostgreSQL: catalog, writes and their
//! decisions, concurrency, ranges, indexes, and a differential test against the embedded
//! engine.
//!
//! The server is read from `NIMBUS_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/test`). Every test works in a fresh schema of its
//! own, so tests run in parallel. A server that cannot be reached fails the tests.

use std::{collections::BTreeMap, ops::Bound, sync::Arc};

use nimbus_tables::{
    engine::{
        Embedded, ItemWrite, Page, Postgres, RangeRead, TableEngine, TableStats, WriteAction,
        WriteFailure, Written,
    },
    error::{ApiError, ErrorKind},
    key::{encode, prefix_end},
    schema::{IndexDef, KeyAttr, KeySchema, KeyType, ProjectionType, TableDef},
    value::{AttributeValue, Item, item_size},
};
use proptest::{prelude::*, test_runner::TestRunner};
use tokio::task::JoinSet;
use tokio_postgres::NoTls;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn base_url() -> String {
    std::env::var("NIMBUS_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// A fresh schema, an engine whose connections use it, and a plain client for checks.
struct Db {
    engine: Postgres,
    url: String,
    schema: String,
    admin: tokio_postgres::Client,
}

async fn admin_client() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&base_url(), NoTls)
        .await
        .expect("PostgreSQL must be reachable at NIMBUS_TEST_POSTGRES (CI starts one)");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

async fn fresh() -> Db {
    let admin = admin_client().await;
    let schema = format!("nimbus_test_{}", uuid::Uuid::new_v4().simple());
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .expect("create a test schema");
    admin
        .batch_execute(&format!("SET search_path = {schema}"))
        .await
        .expect("use the test schema");
    let base = base_url();
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
    let engine = Postgres::connect(&url).await.expect("connect the engine");
    Db {
        engine,
        url,
        schema,
        admin,
    }
}

impl Db {
    async fn drop_schema(self) {
        drop(self.engine);
        self.admin
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .await
            .expect("drop the test schema");
    }

    async fn count(&self, sql: &str, id: &str) -> i64 {
        self.admin
            .query_one(sql, &[&id])
            .await
            .expect("count rows")
            .get(0)
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: &str) -> AttributeValue {
    AttributeValue::N(v.parse().expect("a valid number"))
}

fn b(v: &[u8]) -> AttributeValue {
    AttributeValue::B(v.to_vec())
}

fn item(pairs: &[(&str, AttributeValue)]) -> Item {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn table(prefix: &str, sort: Option<KeyType>) -> TableDef {
    let id = uuid::Uuid::new_v4().to_string();
    TableDef {
        name: format!("{prefix}-{id}"),
        id,
        key: KeySchema {
            partition: KeyAttr {
                name: "pk".into(),
                ty: KeyType::S,
            },
            sort: sort.map(|ty| KeyAttr {
                name: "sk".into(),
                ty,
            }),
        },
        attribute_definitions: BTreeMap::new(),
        global_indexes: vec![],
        local_indexes: vec![],
        billing_mode: "PAY_PER_REQUEST".into(),
        throughput: None,
        stream: None,
        old_streams: Vec::new(),
        ttl_attribute: None,
        tags: BTreeMap::new(),
        created: 1_700_000_000.25,
        deletion_protection: false,
    }
}

fn index(
    name: &str,
    partition: (&str, KeyType),
    sort: Option<(&str, KeyType)>,
    projection: ProjectionType,
) -> IndexDef {
    let attr = |(name, ty): (&str, KeyType)| KeyAttr {
        name: name.to_owned(),
        ty,
    };
    IndexDef {
        name: name.to_owned(),
        key: KeySchema {
            partition: attr(partition),
            sort: sort.map(attr),
        },
        projection,
        throughput: None,
    }
}

fn key_of(def: &TableDef, item: &Item) -> Vec<u8> {
    def.encoded_key(item).expect("the item has its key")
}

fn put(def: &Arc<TableDef>, item: Item) -> ItemWrite {
    ItemWrite {
        table: Arc::clone(def),
        key: key_of(def, &item),
        decide: Box::new(move |_| Ok(WriteAction::Put(item))),
    }
}

fn delete(def: &Arc<TableDef>, key: Vec<u8>) -> ItemWrite {
    ItemWrite {
        table: Arc::clone(def),
        key,
        decide: Box::new(|_| Ok(WriteAction::Delete)),
    }
}

fn put_if_absent(def: &Arc<TableDef>, item: Item) -> ItemWrite {
    ItemWrite {
        table: Arc::clone(def),
        key: key_of(def, &item),
        decide: Box::new(move |old| match old {
            Some(old) => Err(ApiError::condition_failed(Some(old.clone()))),
            None => Ok(WriteAction::Put(item)),
        }),
    }
}

/// Adds `by` to the number attribute `n` (absent counts as 0), creating the item.
fn add(def: &Arc<TableDef>, key_item: Item, by: i64) -> ItemWrite {
    ItemWrite {
        table: Arc::clone(def),
        key: key_of(def, &key_item),
        decide: Box::new(move |old| {
            let mut new = old.cloned().unwrap_or(key_item);
            let current = match new.get("n") {
                Some(AttributeValue::N(v)) => v
                    .to_string()
                    .parse::<i64>()
                    .map_err(|_| ApiError::validation("not an integer"))?,
                _ => 0,
            };
            new.insert("n".into(), n(&(current + by).to_string()));
            Ok(WriteAction::Put(new))
        }),
    }
}

async fn write_ok(engine: &dyn TableEngine, writes: Vec<ItemWrite>) -> Vec<Written> {
    engine.write(writes).await.expect("the writes go through")
}

fn scan(def: &Arc<TableDef>, index: Option<&str>) -> RangeRead {
    RangeRead {
        table: Arc::clone(def),
        index: index.map(str::to_owned),
        start: Bound::Unbounded,
        end: Bound::Unbounded,
        forward: true,
        limit: None,
        max_bytes: usize::MAX,
        segment: None,
    }
}

/// The range of one partition value.
fn partition(def: &Arc<TableDef>, index: Option<&str>, value: &AttributeValue) -> RangeRead {
    let prefix = encode(&[value]);
    RangeRead {
        end: prefix_end(&prefix).map_or(Bound::Unbounded, Bound::Excluded),
        start: Bound::Included(prefix),
        ..scan(def, index)
    }
}

async fn read(engine: &dyn TableEngine, range: RangeRead) -> Page {
    engine.range(range).await.expect("the range reads")
}

fn attr<'a>(page: &'a Page, name: &str) -> Vec<&'a AttributeValue> {
    page.items
        .iter()
        .map(|item| item.get(name).expect("the attribute is there"))
        .collect()
}

#[tokio::test]
async fn catalog_is_created_idempotently_and_versioned() {
    let db = fresh().await;
    let first = table("first", None);
    let mut second = table("second", Some(KeyType::N));
    second.global_indexes.push(index(
        "g",
        ("status", KeyType::S),
        None,
        ProjectionType::KeysOnly,
    ));
    second.tags.insert("team".into(), "core".into());
    db.engine
        .create_table(second.clone())
        .await
        .expect("create");
    db.engine.create_table(first.clone()).await.expect("create");
    assert_eq!(
        db.engine.catalog().await.expect("catalog"),
        [first.clone(), second.clone()]
    );

    // Nodes connecting together to a database that already has the schema.
    let (a, c) = tokio::join!(Postgres::connect(&db.url), Postgres::connect(&db.url));
    let other = a.expect("connect again");
    c.expect("connect concurrently");
    assert_eq!(other.catalog().await.expect("catalog").len(), 2);
    let version: String = db
        .admin
        .query_one(
            "SELECT value FROM nimbus_tables_meta WHERE name = 'schema_version'",
            &[],
        )
        .await
        .expect("version row")
        .get(0);
    assert_eq!(version, "1");

    let first = Arc::new(first);
    write_ok(&db.engine, vec![put(&first, item(&[("pk", s("a"))]))]).await;
    db.engine
        .delete_table(Arc::clone(&first))
        .await
        .expect("delete");
    assert_eq!(db.engine.catalog().await.expect("catalog"), [second]);
    assert_eq!(
        db.engine
            .get(Arc::clone(&first), encode(&[&s("a")]))
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM nimbus_tables_items WHERE table_id = $1",
            &first.id
        )
        .await,
        0
    );
    // Deleting again is harmless, as in the embedded engine.
    db.engine.delete_table(first).await.expect("delete again");

    db.admin
        .batch_execute("UPDATE nimbus_tables_meta SET value = '99' WHERE name = 'schema_version'")
        .await
        .expect("pretend a newer Nimbus migrated");
    let refused = Postgres::connect(&db.url)
        .await
        .expect_err("a newer schema is refused");
    assert!(refused.to_string().contains("newer"), "{refused}");
    db.drop_schema().await;
}

#[tokio::test]
async fn unreachable_database_is_an_error_with_its_cause() {
    let e = Postgres::connect("postgres://postgres@127.0.0.1:1/test")
        .await
        .expect_err("nothing listens on port 1");
    assert!(e.to_string().len() > "table storage failed: ".len(), "{e}");
    assert!(Postgres::connect("not a url").await.is_err());
}

#[tokio::test]
async fn put_get_delete_through_write() {
    let db = fresh().await;
    let def = Arc::new(table("items", Some(KeyType::S)));
    db.engine
        .create_table((*def).clone())
        .await
        .expect("create");
    let v1 = item(&[("pk", s("a")), ("sk", s("x")), ("v", n("1"))]);
    let v2 = item(&[
        ("pk", s("a")),
        ("sk", s("x")),
        ("v", n("2")),
        ("l", AttributeValue::L(vec![s("q")])),
    ]);
    let key = key_of(&def, &v1);

    let written = write_ok(&db.engine, vec![put(&def, v1.clone())]).await;
    assert_eq!(
        written,
        [Written {
            old: None,
            new: Some(v1.clone())
        }]
    );
    assert_eq!(
        db.engine
            .get(Arc::clone(&def), key.clone())
            .await
            .expect("get"),
        Some(v1.clone())
    );

    let written = write_ok(&db.engine, vec![put(&def, v2.clone())]).await;
    assert_eq!(
        written,
        [Written {
            old: Some(v1),
            new: Some(v2.clone())
        }]
    );

    let keep = ItemWrite {
        table: Arc::clone(&def),
        key: key.clone(),
        decide: Box::new(|_| Ok(WriteAction::Keep)),
    };
    let written = write_ok(&db.engine, vec![keep]).await;
    assert_eq!(
        written,
        [Written {
            old: Some(v2.clone()),
            new: Some(v2.clone())
        }]
    );
    assert_eq!(
        db.engine.stats(Arc::clone(&def)).await.expect("stats"),
        TableStats {
            item_count: 1,
            size_bytes: item_size(&v2) as u64
        }
    );

    let written = write_ok(&db.engine, vec![delete(&def, key.clone())]).await;
    assert_eq!(
        written,
        [Written {
            old: Some(v2),
            new: None
        }]
    );
    assert_eq!(
        db.engine
            .get(Arc::clone(&def), key.clone())
            .await
            .expect("get"),
        None
    );
    // Deleting what is not there goes through and changes nothing.
    let written = write_ok(&db.engine, vec![delete(&def, key)]).await;
    assert_eq!(
        written,
        [Written {
            old: None,
            new: None
        }]
    );
    assert_eq!(
        db.engine.stats(Arc::clone(&def)).await.expect("stats"),
        TableStats::default()
    );
    assert!(write_ok(&db.engine, vec![]).await.is_empty());
    db.drop_schema().await;
}

#[tokio::test]
async fn a_refused_decision_writes_nothing() {
    let db = fresh().await;
    let mut def = table("refused", None);
    def.global_indexes.push(index(
        "g",
        ("status", KeyType::S),
        None,
        ProjectionType::All,
    ));
    let def = Arc::new(def);
    db.engine
        .create_table((*def).clone())
        .await
        .expect("create");
    let existing = item(&[("pk", s("b")), ("status", s("old"))]);
    write_ok(&db.engine, vec![put(&def, existing.clone())]).await;

    let a = item(&[("pk", s("a")), ("status", s("new"))]);
    let c = item(&[("pk", s("c")), ("status", s("new"))]);
    let writes = vec![
        put(&def, a.clone()),
        put_if_absent(&def, item(&[("pk", s("b")), ("status", s("new"))])),
        delete(&def, key_of(&def, &existing)),
        put(&def, c.clone()),
    ];
    match db.engine.write(writes).await {
        Err(WriteFailure::Rejected(reasons)) => {
            assert_eq!(reasons.len(), 4);
            assert!(reasons[0].is_none() && reasons[2].is_none() && reasons[3].is_none());
            let reason = reasons[1].as_ref().expect("the second write refused");
            assert_eq!(reason.kind, ErrorKind::ConditionalCheckFailed);
            assert_eq!(
                reason.item.as_ref(),
                Some(&existing),
                "the decision saw the current item"
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    for key in [key_of(&def, &a), key_of(&def, &c)] {
        assert_eq!(
            db.engine.get(Arc::clone(&def), key).await.expect("get"),
            None
        );
    }
    let everything = read(&db.engine, scan(&def, None)).await;
    assert_eq!(everything.items, std::slice::from_ref(&existing));
    let indexed = read(&db.engine, scan(&def, Some("g"))).await;
    assert_eq!(indexed.items, [existing]);
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conditional_writes_serialize() {
    let db = fresh().await;
    let def = Arc::new(table("counters", None));
    db.engine
        .create_table((*def).clone())
        .await
        .expect("create");
    let engine = Arc::new(db.engine);

    // Many read-modify-write decisions on one item that does not exist yet.
    let counter = item(&[("pk", s("counter"))]);
    let mut tasks = JoinSet::new();
    for _ in 0..8 {
        let (engine, def, counter) = (Arc::clone(&engine), Arc::clone(&def), counter.clone());
        tasks.spawn(async move {
            for _ in 0..25 {
                write_ok(engine.as_ref(), vec![add(&def, counter.clone(), 1)]).await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("the task ran");
    }
    let stored = engine
        .get(Arc::clone(&def), key_of(&def, &counter))
        .await
        .expect("get");
    assert_eq!(stored.and_then(|i| i.get("n").cloned()), Some(n("200")));

    // Exactly one of many puts-if-absent of one new key wins.
    let mut tasks = JoinSet::new();
    for who in 0..16 {
        let (engine, def) = (Arc::clone(&engine), Arc::clone(&def));
        tasks.spawn(async move {
            let candidate = item(&[("pk", s("fresh")), ("winner", n(&who.to_string()))]);
            (
                who,
                engine.write(vec![put_if_absent(&def, candidate)]).await,
            )
        });
    }
    let mut winners = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done.expect("the task ran") {
            (who, Ok(_)) => winners.push(who),
            (_, Err(WriteFailure::Rejected(reasons))) => {
                assert!(
                    matches!(&reasons[..], [Some(e)] if e.kind == ErrorKind::ConditionalCheckFailed)
                );
            }
            (_, Err(e)) => panic!("storage failed: {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let fresh_item = engine
        .get(Arc::clone(&def), encode(&[&s("fresh")]))
        .await
        .expect("get")
        .expect("the winner's item");
    assert_eq!(fresh_item.get("winner"), Some(&n(&winners[0].to_string())));

    // Groups locking two keys in opposite orders neither deadlock nor lose updates.
    let (x, y) = (item(&[("pk", s("x"))]), item(&[("pk", s("y"))]));
    write_ok(
        engine.as_ref(),
        vec![add(&def, x.clone(), 1000), add(&def, y.clone(), 1000)],
    )
    .await;
    let mut tasks = JoinSet::new();
    for task in 0..8 {
        let (engine, def, x, y) = (Arc::clone(&engine), Arc::clone(&def), x.clone(), y.clone());
        tasks.spawn(async move {
            for _ in 0..20 {
                let writes = if task % 2 == 0 {
                    vec![add(&def, x.clone(), -1), add(&def, y.clone(), 1)]
                } else {
                    vec![add(&def, y.clone(), -1), add(&def, x.clone(), 1)]
                };
                write_ok(engine.as_ref(), writes).await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("the task ran");
    }
    let balance = |key: Item| {
        let engine = Arc::clone(&engine);
        let def = Arc::clone(&def);
        async move {
            let stored = engine
                .get(Arc::clone(&def), key_of(&def, &key))
                .await
                .expect("get");
            stored.and_then(|i| i.get("n").cloned())
        }
    };
    assert_eq!(balance(x).await, Some(n("1000")));
    assert_eq!(balance(y).await, Some(n("1000")));

    match Arc::try_unwrap(engine) {
        Ok(engine) => Db { engine, ..db }.drop_schema().await,
        Err(_) => panic!("every task has ended"),
    }
}

/// Stores the sort values (in a scrambled order) under partition `p`, with neighbours in
/// partitions `o` and `q`, then reads `p` forward, backward and between bounds.
async fn check_sort_order(ty: KeyType, sorted: &[AttributeValue]) {
    let db = fresh().await;
    let def = Arc::new(table("order", Some(ty)));
    db.engine
        .create_table((*def).clone())
        .await
        .expect("create");
    let mut writes = Vec::new();
    for (i, value) in sorted
        .iter()
        .enumerate()
        .rev()
        .step_by(2)
        .chain(sorted.iter().enumerate().rev().skip(1).step_by(2))
    {
        writes.push(put(
            &def,
            item(&[
                ("pk", s("p")),
                ("sk", value.clone()),
                ("i", n(&i.to_string())),
            ]),
        ));
    }
    for other in ["o", "q"] {
        writes.push(put(
            &def,
            item(&[("pk", s(other)), ("sk", sorted[0].clone())]),
        ));
    }
    write_ok(&db.engine, writes).await;

    let p = partition(&def, None, &s("p"));
    let forward = read(&db.engine, p.clone()).await;
    assert_eq!(attr(&forward, "sk"), sorted.iter().collect::<Vec<_>>());
    assert!(!forward.truncated);
    let backward = read(
        &db.engine,
        RangeRead {
            forward: false,
            ..p.clone()
        },
    )
    .await;
    assert_eq!(
        attr(&backward, "sk"),
        sorted.iter().rev().collect::<Vec<_>>()
    );

    let at = |i: usize| encode(&[&s("p"), &sorted[i]]);
    let between = read(
        &db.engine,
        RangeRead {
            start: Bound::Included(at(1)),
            end: Bound::Included(at(3)),
            ..p.clone()
        },
    )
    .await;
    assert_eq!(
        attr(&between, "sk"),
        sorted[1..=3].iter().collect::<Vec<_>>()
    );
    let exclusive = read(
        &db.engine,
        RangeRead {
            start: Bound::Excluded(at(1)),
            end: Bound::Excluded(at(3)),
            forward: false,
            ..p.clone()
        },
    )
    .await;
    assert_eq!(attr(&exclusive, "sk"), [&sorted[2]]);
    db.drop_schema().await;
}

#[tokio::test]
async fn strings_sort_by_utf8_bytes() {
    let mut values = vec![
        "",
        "a",
        "a\0",
        "a\0b",
        "ab",
        "b",
        "z",
        "é",
        "\u{ffff}",
        "\u{10000}",
    ];
    values.sort_unstable();
    check_sort_order(KeyType::S, &values.into_iter().map(s).collect::<Vec<_>>()).await;
}

#[tokio::test]
async fn numbers_sort_numerically() {
    let values = [
        "-1e10", "-100", "-2.5", "-2", "-0.001", "0", "1e-130", "0.5", "1", "1.01", "10", "1e125",
    ];
    check_sort_order(KeyType::N, &values.map(n)).await;
}

#[tokio::test]
async fn binaries_sort_by_bytes() {
    let values: [&[u8]; 8] = [
        &[],
        &[0],
        &[0, 0],
        &[0, 1],
        &[0, 255],
        &[1],
        &[255],
        &[255, 0],
    ];
    check_sort_order(KeyType::B, &values.map(b)).await;
}

#[tokio::test]
async fn limits_byte_budgets_and_segments() {
    let db = fresh().await;
    let def = Arc::new(table("pages", Some(KeyType::N)));
    db.engine
        .create_table((*def).clone())
        .await
        .expect("create");
    // Enough items to page the cursor through several batches, of varied sizes.
    let items: Vec<Item> = (0..1500)
        .map(|i| {
            item(&[
                ("pk", s(&format!("p{}", i % 37))),
                ("sk", n(&i.to_string())),
                ("pad", s(&"x".repeat(i % 50))),
            ])
        })
        .collect();
    write_ok(
        &db.engine,
        items.iter().cloned().map(|i| put(&def, i)).collect(),
    )
    .await;
    let mut ordered = items.clone();
    ordered.sort_by_key(|i| key_of(&def, i));
    let sizes: Vec<usize> = ordered.iter().map(item_size).collect();

    let all = read(&db.engine, scan(&def, None)).await;
    assert_eq!(all.items, ordered);
    assert!(!all.truncated);
    let back = read(
        &db.engine,
        RangeRead {
            forward: false,
            ..scan(&def, None)
        },
    )
    .await;
    assert!(back.items.iter().eq(ordered.iter().rev()));

    for (limit, truncated) in [
        (0, true),
        (3, true),
        (1200, true),
        (1500, true),
        (1501, false),
    ] {
        let page = read(
            &db.engine,
            RangeRead {
                limit: Some(limit),
                ..scan(&def, None)
            },
        )
        .await;
        assert_eq!(page.items[..], ordered[..limit.min(1500)], "limit {limit}");
        assert_eq!(page.truncated, truncated, "limit {limit}");
    }

    // Reading stops once the budget is reached, so the last item read may pass it.
    let budget = sizes[..700].iter().sum::<usize>() - 1;
    let page = read(
        &db.engine,
        RangeRead {
            max_bytes: budget,
            ..scan(&def, None)
        },
    )
    .await;
    assert_eq!(page.items.len(), 700);
    assert!(page.truncated);
    let exact = sizes.iter().sum::<usize>();
    let page = read(
        &db.engine,
        RangeRead {
            max_bytes: exact,
            ..scan(&def, None)
        },
    )
    .await;
    assert_eq!((page.items.len(), page.truncated), (1500, false));
    let page = read(
        &db.engine,
        RangeRead {
            max_bytes: 0,
            ..scan(&def, None)
        },
    )
    .await;
    assert_eq!((page.items.len(), page.truncated), (0, true));
    let page = read(
        &db.engine,
        RangeRead {
            max_bytes: sizes[0] + 1,
            limit: Some(10),
            ..scan(&def, None)
        },
    )
    .await;
    assert_eq!((page.items.len(), page.truncated), (2, true));

    // Segments split the table by partition, in key order, and together cover it.
    let total = 4;
    let mut union = Vec::new();
    for segment in 0..total {
        let page = read(
            &db.engine,
            RangeRead {
                segment: Some((segment, total)),
                ..scan(&def, None)
            },
        )
        .await;
        assert!(!page.truncated);
        let expected: Vec<&Item> = ordered
            .iter()
            .filter(|i| def.segment_of(i, total) == segment)
            .collect();
        assert!(!expected.is_empty());
        assert!(page.items.iter().eq(expected));
        union.extend(page.items);
    }
    union.sort_by_key(|i| key_of(&def, i));
    assert_eq!(union, ordered);
    // Truncation looks at the next item of the range, whatever its segment.
    let last_of_segment = ordered
        .iter()
        .rposition(|i| def.segment_of(i, total) == 0)
        .expect("segment 0 has items");
    let tail = RangeRead {
        start: Bound::Included(key_of(&def, &ordered[last_of_segment])),
        segment: Some((0, total)),
        ..scan(&def, None)
    };
    let page = read(
        &db.engine,
        RangeRead {
            max_bytes: 1,
            ..tail.clone()
        },
    )
    .await;
    assert_eq!(
        (page.items.len(), page.truncated),
        (1, last_of_segment + 1 < ordered.len())
    );
    let page = read(
        &db.engine,
        RangeRead {
            limit: Some(1),
            ..tail
        },
    )
    .await;
    assert_eq!((page.items.len(), page.truncated), (1, true));
    db.drop_schema().await;
}

#[tokio::test]
async fn indexes_follow_puts_updates_and_deletes() {
    let db = fresh().await;
    let mut def = table("indexed", Some(KeyType::N));
    def.global_indexes.push(index(
        "by_status",
        ("status", KeyType::S),
        Some(("total", KeyType::N)),
        ProjectionType::Include(vec!["note".into()]),
    ));
    def.local_indexes.push(index(
        "by_total",
        ("pk", KeyType::S),
        Some(("total", KeyType::N)),
        ProjectionType::KeysOnly,
    ));
    let def = Arc::new(def);
    db.engine
        .create_table((*def).clone())
        .await
        .expect("create");
    let entries = |name: &str| read(&db.engine, scan(&def, Some(name)));

    let one = item(&[
        ("pk", s("a")),
        ("sk", n("1")),
        ("status", s("open")),
        ("total", n("5")),
        ("note", s("x")),
        ("other", n("1")),
    ]);
    let two = item(&[
        ("pk", s("a")),
        ("sk", n("2")),
        ("status", s("open")),
        ("total", n("3")),
    ]);
    write_ok(
        &db.engine,
        vec![put(&def, one.clone()), put(&def, two.clone())],
    )
    .await;
    let page = entries("by_status").await;
    assert_eq!(
        attr(&page, "total"),
        [&n("3"), &n("5")],
        "sorted by the index key"
    );
    assert_eq!(
        page.items[1],
        item(&[
            ("pk", s("a")),
            ("sk", n("1")),
            ("status", s("open")),
            ("total", n("5")),
            ("note", s("x"))
        ]),
        "projected"
    );
    let page = entries("by_total").await;
    assert_eq!(
        page.items[0],
        item(&[("pk", s("a")), ("sk", n("2")), ("total", n("3"))])
    );

    // A changed index key moves the entry; an unchanged one replaces it in place.
    let mut moved = one.clone();
    moved.insert("status".into(), s("closed"));
    write_ok(&db.engine, vec![put(&def, moved.clone())]).await;
    let open = read(&db.engine, partition(&def, Some("by_status"), &s("open"))).await;
    assert_eq!(attr(&open, "sk"), [&n("2")]);
    let closed = read(&db.engine, partition(&def, Some("by_status"), &s("closed"))).await;
    assert_eq!(attr(&closed, "sk"), [&n("1")]);
    let mut renoted = moved.clone();
    renoted.insert("note".into(), s("y"));
    write_ok(&db.engine, vec![put(&def, renoted)]).await;
    let closed = read(&db.engine, partition(&def, Some("by_status"), &s("closed"))).await;
    assert_eq!(attr(&closed, "note"), [&s("y")]);

    // Sparse: without the attribute, or with the wrong type, an item is not indexed.
    let mut untyped = moved.clone();
    untyped.insert("status".into(), n("7"));
    let mut missing = two.clone();
    missing.remove("status");
    write_ok(&db.engine, vec![put(&def, untyped), put(&def, missing)]).await;
    assert!(entries("by_status").await.items.is_empty());
    assert_eq!(entries("by_total").await.items.len(), 2);

    write_ok(&db.engine, vec![put(&def, two.clone())]).await;
    write_ok(&db.engine, vec![delete(&def, key_of(&def, &one))]).await;
    assert_eq!(attr(&entries("by_status").await, "sk"), [&n("2")]);
    assert_eq!(attr(&entries("by_total").await, "sk"), [&n("2")]);
    write_ok(&db.engine, vec![delete(&def, key_of(&def, &two))]).await;
    assert_eq!(
        db.count(
            "SELECT count(*) FROM nimbus_tables_index_entries WHERE table_id = $1",
            &def.id
        )
        .await,
        0
    );
    db.drop_schema().await;
}

#[tokio::test]
async fn update_table_backfills_new_indexes_and_drops_removed_ones() {
    let db = fresh().await;
    let plain = table("evolving", None);
    db.engine.create_table(plain.clone()).await.expect("create");
    let plain = Arc::new(plain);
    let items: Vec<Item> = (0..1100)
        .map(|i| {
            let mut it = item(&[("pk", s(&format!("k{i:04}")))]);
            if i % 2 == 0 {
                it.insert("color".into(), s(["red", "green", "blue"][i % 3]));
            }
            it
        })
        .collect();
    write_ok(
        &db.engine,
        items.iter().cloned().map(|i| put(&plain, i)).collect(),
    )
    .await;

    let mut indexed = (*plain).clone();
    indexed.global_indexes.push(index(
        "by_color",
        ("color", KeyType::S),
        None,
        ProjectionType::KeysOnly,
    ));
    db.engine
        .update_table(indexed.clone())
        .await
        .expect("add an index");
    assert_eq!(
        db.engine.catalog().await.expect("catalog"),
        [indexed.clone()]
    );
    let indexed = Arc::new(indexed);
    let red = read(&db.engine, partition(&indexed, Some("by_color"), &s("red"))).await;
    let expected: Vec<&Item> = items
        .iter()
        .filter(|i| i.get("color") == Some(&s("red")))
        .collect();
    assert_eq!(red.items.len(), expected.len());
    assert_eq!(
        read(&db.engine, scan(&indexed, Some("by_color")))
            .await
            .items
            .len(),
        550
    );

    // A change that keeps the index leaves its entries.
    let mut tagged = (*indexed).clone();
    tagged.tags.insert("k".into(), "v".into());
    db.engine.update_table(tagged.clone()).await.expect("tag");
    assert_eq!(
        read(&db.engine, scan(&indexed, Some("by_color")))
            .await
            .items
            .len(),
        550
    );

    db.engine
        .update_table((*plain).clone())
        .await
        .expect("drop the index");
    assert_eq!(
        db.count(
            "SELECT count(*) FROM nimbus_tables_index_entries WHERE table_id = $1",
            &plain.id
        )
        .await,
        0
    );
    // Writes now follow the catalog's definition, whatever the caller's copy says.
    write_ok(
        &db.engine,
        vec![put(
            &indexed,
            item(&[("pk", s("new")), ("color", s("red"))]),
        )],
    )
    .await;
    assert_eq!(
        db.count(
            "SELECT count(*) FROM nimbus_tables_index_entries WHERE table_id = $1",
            &plain.id
        )
        .await,
        0
    );
    db.engine
        .update_table((*indexed).clone())
        .await
        .expect("add it again");
    write_ok(
        &db.engine,
        vec![put(
            &plain,
            item(&[("pk", s("newer")), ("color", s("red"))]),
        )],
    )
    .await;
    let red = read(&db.engine, partition(&indexed, Some("by_color"), &s("red"))).await;
    assert_eq!(
        red.items.len(),
        expected.len() + 2,
        "backfilled, and kept by a stale writer"
    );

    let unknown = table("unknown", None);
    let e = db
        .engine
        .update_table(unknown)
        .await
        .expect_err("not in the catalog");
    assert!(e.to_string().contains("not in the catalog"), "{e}");
    db.engine
        .delete_table(Arc::clone(&indexed))
        .await
        .expect("delete");
    match db
        .engine
        .write(vec![put(&plain, item(&[("pk", s("late"))]))])
        .await
    {
        Err(WriteFailure::Rejected(reasons)) => {
            let e = reasons[0].as_ref().expect("the write is refused");
            assert_eq!(e.kind, ErrorKind::ResourceNotFound, "{e:?}");
        }
        other => panic!("a write to a deleted table must fail, got {other:?}"),
    }
    for relation in ["nimbus_tables_items", "nimbus_tables_index_entries"] {
        let sql = format!("SELECT count(*) FROM {relation} WHERE table_id = $1");
        assert_eq!(db.count(&sql, &plain.id).await, 0, "{relation}");
    }
    db.drop_schema().await;
}

/// The embedded engine maintains indexes from the catalog as of each write too: a write
/// whose caller read the definition before an UpdateTable reaches the new index, an index
/// whose key changed under the same name is built again, and a write to a table deleted
/// meanwhile is refused and stores nothing.
#[tokio::test]
async fn embedded_writes_follow_the_catalog_not_the_callers_copy() {
    let engine = Embedded::in_memory().expect("an in-memory engine");
    let plain = table("evolving", None);
    engine.create_table(plain.clone()).await.expect("create");
    let plain = Arc::new(plain);
    write_ok(
        &engine,
        vec![put(
            &plain,
            item(&[("pk", s("a")), ("color", s("red")), ("size", s("L"))]),
        )],
    )
    .await;
    let mut indexed = (*plain).clone();
    indexed.global_indexes.push(index(
        "g",
        ("color", KeyType::S),
        None,
        ProjectionType::KeysOnly,
    ));
    engine
        .update_table(indexed.clone())
        .await
        .expect("add an index");
    let indexed = Arc::new(indexed);
    // A writer still holding the definition without the index.
    write_ok(
        &engine,
        vec![put(
            &plain,
            item(&[("pk", s("b")), ("color", s("red")), ("size", s("S"))]),
        )],
    )
    .await;
    let red = read(&engine, partition(&indexed, Some("g"), &s("red"))).await;
    assert_eq!(
        attr(&red, "pk"),
        [&s("a"), &s("b")],
        "backfilled, and kept by a stale writer"
    );

    // The same index name with another key: its old entries go, the new key's come.
    let mut rekeyed = (*plain).clone();
    rekeyed.global_indexes.push(index(
        "g",
        ("size", KeyType::S),
        None,
        ProjectionType::KeysOnly,
    ));
    engine
        .update_table(rekeyed.clone())
        .await
        .expect("rekey the index");
    let rekeyed = Arc::new(rekeyed);
    let all = read(&engine, scan(&rekeyed, Some("g"))).await;
    assert_eq!(
        attr(&all, "size"),
        [&s("L"), &s("S")],
        "entries keyed by size only"
    );

    engine
        .delete_table(Arc::clone(&rekeyed))
        .await
        .expect("delete");
    match engine
        .write(vec![put(&plain, item(&[("pk", s("late"))]))])
        .await
    {
        Err(WriteFailure::Rejected(reasons)) => {
            assert_eq!(reasons.len(), 1);
            let e = reasons[0].as_ref().expect("the write is refused");
            assert_eq!(e.kind, ErrorKind::ResourceNotFound, "{e:?}");
        }
        other => panic!("a write to a deleted table must be refused, got {other:?}"),
    }
    engine
        .create_table((*plain).clone())
        .await
        .expect("create again, same id");
    assert!(
        read(&engine, scan(&plain, None)).await.items.is_empty(),
        "the refused write stored nothing"
    );
}

async fn call(
    tables: &nimbus_tables::api::Tables,
    op: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value, ApiError> {
    let target = format!("DynamoDB_20120810.{op}");
    tables.handle(&target, body.to_string().as_bytes()).await
}

/// Two nodes on one database: each sees the tables and indexes the other makes, neither
/// replaces the other's table by creating one of the same name, and a change starts from
/// the other's latest definition.
#[tokio::test]
async fn nodes_sharing_a_database_see_each_others_tables() {
    use nimbus_tables::api::Tables;
    use serde_json::json;

    let db = fresh().await;
    let a = Tables::open(Arc::new(Postgres::connect(&db.url).await.expect("node a")))
        .await
        .expect("open a");
    let b = Tables::open(Arc::new(Postgres::connect(&db.url).await.expect("node b")))
        .await
        .expect("open b");
    let create = json!({
        "TableName": "Orders",
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "BillingMode": "PAY_PER_REQUEST"
    });
    call(&a, "CreateTable", create.clone())
        .await
        .expect("a creates");
    call(
        &a,
        "PutItem",
        json!({"TableName": "Orders", "Item": {"pk": {"S": "1"}, "status": {"S": "open"}}}),
    )
    .await
    .expect("a writes");
    let described = call(&b, "DescribeTable", json!({"TableName": "Orders"}))
        .await
        .expect("b sees the table a made");
    assert_eq!(described["Table"]["ItemCount"], 1);
    let e = call(&b, "CreateTable", create)
        .await
        .expect_err("b may not replace it");
    assert_eq!(e.kind, ErrorKind::ResourceInUse, "{e:?}");
    let got = call(
        &b,
        "GetItem",
        json!({"TableName": "Orders", "Key": {"pk": {"S": "1"}}}),
    )
    .await
    .expect("b reads");
    assert_eq!(
        got["Item"]["status"]["S"], "open",
        "a's item is still there"
    );

    call(
        &a,
        "UpdateTable",
        json!({
            "TableName": "Orders",
            "AttributeDefinitions": [{"AttributeName": "status", "AttributeType": "S"}],
            "GlobalSecondaryIndexUpdates": [{"Create": {
                "IndexName": "by-status",
                "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"}
            }}]
        }),
    )
    .await
    .expect("a adds an index");
    // B reads the catalog again on a miss (at most every 200 ms) and every 2 s.
    let query = json!({
        "TableName": "Orders",
        "IndexName": "by-status",
        "KeyConditionExpression": "#s = :s",
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": {":s": {"S": "open"}}
    });
    let mut found = call(&b, "Query", query.clone()).await;
    for _ in 0..100 {
        if found.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        found = call(&b, "Query", query.clone()).await;
    }
    let found = found.expect("b queries the index a made");
    assert_eq!(found["Count"], 1);
    // A change on b starts from a's definition: the index a made survives it.
    call(
        &b,
        "TagResource",
        json!({
            "ResourceArn": described["Table"]["TableArn"],
            "Tags": [{"Key": "team", "Value": "x"}]
        }),
    )
    .await
    .expect("b tags");
    let after = call(&a, "DescribeTable", json!({"TableName": "Orders"}))
        .await
        .expect("a describes");
    assert_eq!(
        after["Table"]["GlobalSecondaryIndexes"][0]["IndexName"], "by-status",
        "{after}"
    );
    drop((a, b));
    db.drop_schema().await;
}

#[tokio::test]
async fn get_many_reads_every_key_in_order() {
    let db = fresh().await;
    let t1 = Arc::new(table("one", None));
    let t2 = Arc::new(table("two", Some(KeyType::B)));
    db.engine.create_table((*t1).clone()).await.expect("create");
    db.engine.create_table((*t2).clone()).await.expect("create");
    let a = item(&[("pk", s("a")), ("v", s("1"))]);
    let c = item(&[("pk", s("a")), ("sk", b(&[0, 1])), ("v", s("2"))]);
    write_ok(&db.engine, vec![put(&t1, a.clone()), put(&t2, c.clone())]).await;
    let got = db
        .engine
        .get_many(vec![
            (Arc::clone(&t1), key_of(&t1, &a)),
            (Arc::clone(&t2), key_of(&t2, &c)),
            (Arc::clone(&t1), encode(&[&s("missing")])),
            (Arc::clone(&t2), key_of(&t1, &a)),
            (Arc::clone(&t1), key_of(&t1, &a)),
        ])
        .await
        .expect("get_many");
    assert_eq!(got, [Some(a.clone()), Some(c), None, None, Some(a)]);
    assert!(
        db.engine
            .get_many(vec![])
            .await
            .expect("nothing")
            .is_empty()
    );
    db.drop_schema().await;
}

// The differential test: the same random operations on both engines give the same answers.

const PKS: [&str; 3] = ["a", "b", "c\0"];
const SKS: [&str; 5] = ["-2", "0", "1.5", "3", "10"];

fn candidate_indexes() -> [(IndexDef, bool); 3] {
    [
        (
            index(
                "by_status",
                ("status", KeyType::S),
                Some(("total", KeyType::N)),
                ProjectionType::KeysOnly,
            ),
            true,
        ),
        (
            index(
                "by_total",
                ("total", KeyType::N),
                None,
                ProjectionType::Include(vec!["status".into()]),
            ),
            true,
        ),
        (
            index(
                "local",
                ("pk", KeyType::S),
                Some(("total", KeyType::N)),
                ProjectionType::All,
            ),
            false,
        ),
    ]
}

#[derive(Debug, Clone)]
enum Status {
    Absent,
    Text(&'static str),
    Number,
}

#[derive(Debug, Clone)]
enum Change {
    Put {
        pk: usize,
        sk: usize,
        status: Status,
        total: u8,
        pad: usize,
        if_absent: bool,
    },
    Add {
        pk: usize,
        sk: usize,
        by: i8,
    },
    Delete {
        pk: usize,
        sk: usize,
        if_exists: bool,
    },
    Check {
        pk: usize,
        sk: usize,
        exists: bool,
    },
}

#[derive(Debug, Clone)]
enum KeyBound {
    Unbounded,
    Included(usize, Option<usize>),
    Excluded(usize, Option<usize>),
}

#[derive(Debug, Clone)]
enum Op {
    Write(Vec<Change>),
    Get(usize, usize),
    GetMany(Vec<(usize, usize)>),
    Range {
        index: Option<usize>,
        start: KeyBound,
        end: KeyBound,
        forward: bool,
        limit: Option<usize>,
        max_bytes: usize,
        segment: Option<(u32, u32)>,
    },
    Stats,
    ToggleIndex(usize),
}

fn change() -> impl Strategy<Value = Change> {
    let status = prop_oneof![
        Just(Status::Absent),
        prop::sample::select(vec!["open", "closed", ""]).prop_map(Status::Text),
        Just(Status::Number),
    ];
    prop_oneof![
        4 => (0..3usize, 0..5usize, status, 0..4u8, 0..40usize, any::<bool>()).prop_map(
            |(pk, sk, status, total, pad, if_absent)| Change::Put { pk, sk, status, total, pad, if_absent }
        ),
        2 => (0..3usize, 0..5usize, -2..3i8).prop_map(|(pk, sk, by)| Change::Add { pk, sk, by }),
        2 => (0..3usize, 0..5usize, any::<bool>()).prop_map(|(pk, sk, if_exists)| Change::Delete { pk, sk, if_exists }),
        1 => (0..3usize, 0..5usize, any::<bool>()).prop_map(|(pk, sk, exists)| Change::Check { pk, sk, exists }),
    ]
}

fn key_bound() -> impl Strategy<Value = KeyBound> {
    prop_oneof![
        Just(KeyBound::Unbounded),
        (0..3usize, prop::option::of(0..5usize)).prop_map(|(p, s)| KeyBound::Included(p, s)),
        (0..3usize, prop::option::of(0..5usize)).prop_map(|(p, s)| KeyBound::Excluded(p, s)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(change(), 1..4).prop_map(Op::Write),
        1 => (0..3usize, 0..5usize).prop_map(|(p, s)| Op::Get(p, s)),
        1 => prop::collection::vec((0..3usize, 0..5usize), 0..5).prop_map(Op::GetMany),
        4 => (
            prop::option::of(0..3usize),
            key_bound(),
            key_bound(),
            any::<bool>(),
            prop::option::of(0..6usize),
            prop_oneof![Just(usize::MAX), 0..120usize],
            prop::option::of((0..3u32).prop_map(|s| (s, 3))),
        )
            .prop_map(|(index, start, end, forward, limit, max_bytes, segment)| Op::Range {
                index, start, end, forward, limit, max_bytes, segment
            }),
        1 => Just(Op::Stats),
        1 => (0..3usize).prop_map(Op::ToggleIndex),
    ]
}

fn key_item(pk: usize, sk: usize) -> Item {
    item(&[("pk", s(PKS[pk])), ("sk", n(SKS[sk]))])
}

fn to_write(def: &Arc<TableDef>, change: &Change) -> ItemWrite {
    match change.clone() {
        Change::Put {
            pk,
            sk,
            status,
            total,
            pad,
            if_absent,
        } => {
            let mut new = key_item(pk, sk);
            match status {
                Status::Absent => {}
                Status::Text(text) => {
                    new.insert("status".into(), s(text));
                }
                Status::Number => {
                    new.insert("status".into(), n("1"));
                }
            }
            new.insert("total".into(), n(&total.to_string()));
            new.insert("pad".into(), s(&"p".repeat(pad)));
            if if_absent {
                put_if_absent(def, new)
            } else {
                put(def, new)
            }
        }
        Change::Add { pk, sk, by } => add(def, key_item(pk, sk), i64::from(by)),
        Change::Delete { pk, sk, if_exists } => ItemWrite {
            table: Arc::clone(def),
            key: key_of(def, &key_item(pk, sk)),
            decide: Box::new(move |old| match (old, if_exists) {
                (None, true) => Err(ApiError::condition_failed(None)),
                _ => Ok(WriteAction::Delete),
            }),
        },
        Change::Check { pk, sk, exists } => ItemWrite {
            table: Arc::clone(def),
            key: key_of(def, &key_item(pk, sk)),
            decide: Box::new(move |old| {
                if old.is_some() == exists {
                    Ok(WriteAction::Keep)
                } else {
                    Err(ApiError::condition_failed(old.cloned()))
                }
            }),
        },
    }
}

/// What an operation answered, in a form both engines' answers compare in.
#[derive(Debug, PartialEq)]
enum Answer {
    Write(Result<Vec<Written>, Vec<Option<ApiError>>>),
    Items(Vec<Option<Item>>),
    Page(Vec<Item>, bool),
    Stats(TableStats),
    Done,
}

fn encode_bound(bound: &KeyBound) -> Bound<Vec<u8>> {
    let encoded = |pk: usize, sk: Option<usize>| match sk {
        Some(sk) => encode(&[&s(PKS[pk]), &n(SKS[sk])]),
        None => encode(&[&s(PKS[pk])]),
    };
    match *bound {
        KeyBound::Unbounded => Bound::Unbounded,
        KeyBound::Included(pk, sk) => Bound::Included(encoded(pk, sk)),
        KeyBound::Excluded(pk, sk) => Bound::Excluded(encoded(pk, sk)),
    }
}

/// An ordered pair of bounds (start not after end), as the API layer builds them.
fn ordered_bounds(start: &KeyBound, end: &KeyBound) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let (start, end) = (encode_bound(start), encode_bound(end));
    let value = |b: &Bound<Vec<u8>>| match b {
        Bound::Included(v) | Bound::Excluded(v) => Some(v.clone()),
        Bound::Unbounded => None,
    };
    match (value(&start), value(&end)) {
        (Some(a), Some(z)) if a > z => (end, start),
        (Some(a), Some(z)) if a == z => (Bound::Included(a), Bound::Included(z)),
        _ => (start, end),
    }
}

async fn run_op(engine: &dyn TableEngine, def: &Arc<TableDef>, op: &Op) -> Answer {
    match op {
        Op::Write(changes) => {
            let writes = changes.iter().map(|c| to_write(def, c)).collect();
            Answer::Write(match engine.write(writes).await {
                Ok(written) => Ok(written),
                Err(WriteFailure::Rejected(reasons)) => Err(reasons),
                Err(WriteFailure::Storage(e)) => panic!("storage failed: {e}"),
            })
        }
        Op::Get(pk, sk) => Answer::Items(vec![
            engine
                .get(Arc::clone(def), key_of(def, &key_item(*pk, *sk)))
                .await
                .expect("get"),
        ]),
        Op::GetMany(keys) => Answer::Items(
            engine
                .get_many(
                    keys.iter()
                        .map(|(pk, sk)| (Arc::clone(def), key_of(def, &key_item(*pk, *sk))))
                        .collect(),
                )
                .await
                .expect("get_many"),
        ),
        Op::Range {
            index,
            start,
            end,
            forward,
            limit,
            max_bytes,
            segment,
        } => {
            let names: Vec<&str> = def
                .global_indexes
                .iter()
                .chain(&def.local_indexes)
                .map(|i| i.name.as_str())
                .collect();
            let index =
                index.and_then(|i| names.get(i % names.len().max(1)).map(|n| (*n).to_owned()));
            let (start, end) = ordered_bounds(start, end);
            let page = read(
                engine,
                RangeRead {
                    table: Arc::clone(def),
                    index,
                    start,
                    end,
                    forward: *forward,
                    limit: *limit,
                    max_bytes: *max_bytes,
                    segment: *segment,
                },
            )
            .await;
            Answer::Page(page.items, page.truncated)
        }
        Op::Stats => Answer::Stats(engine.stats(Arc::clone(def)).await.expect("stats")),
        Op::ToggleIndex(_) => Answer::Done,
    }
}

fn toggled(def: &TableDef, which: usize) -> TableDef {
    let (index, global) = candidate_indexes()[which].clone();
    let mut new = def.clone();
    let list = if global {
        &mut new.global_indexes
    } else {
        &mut new.local_indexes
    };
    match list.iter().position(|i| i.name == index.name) {
        Some(at) => {
            list.remove(at);
        }
        None => list.push(index),
    }
    new
}

/// Every item and every index entry of the table, from one engine.
async fn contents(engine: &dyn TableEngine, def: &Arc<TableDef>) -> Vec<Page> {
    let mut pages = vec![read(engine, scan(def, None)).await];
    for index in def.global_indexes.iter().chain(&def.local_indexes) {
        pages.push(read(engine, scan(def, Some(&index.name))).await);
    }
    pages
}

#[test]
fn postgres_answers_as_the_embedded_engine_does() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let embedded = Embedded::open(&dir.path().join("tables.redb")).expect("open redb");
    let db = runtime.block_on(fresh());
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let initial = prop::collection::vec(any::<bool>(), 3);
    let result = runner.run(&(initial, prop::collection::vec(op(), 1..40)), |(initial, ops)| {
        runtime.block_on(async {
            let mut def = table("diff", Some(KeyType::N));
            for (which, on) in initial.iter().enumerate() {
                if *on {
                    def = toggled(&def, which);
                }
            }
            let mut def = Arc::new(def);
            embedded.create_table((*def).clone()).await.expect("create");
            db.engine.create_table((*def).clone()).await.expect("create");
            for (step, op) in ops.iter().enumerate() {
                if let Op::ToggleIndex(which) = op {
                    let new = toggled(&def, *which);
                    embedded.update_table(new.clone()).await.expect("update");
                    db.engine.update_table(new.clone()).await.expect("update");
                    def = Arc::new(new);
                }
                let expected = run_op(&embedded, &def, op).await;
                let actual = run_op(&db.engine, &def, op).await;
                prop_assert_eq!(&expected, &actual, "step {} {:?}", step, op);
            }
            let expected = contents(&embedded, &def).await;
            let actual = contents(&db.engine, &def).await;
            prop_assert_eq!(expected.len(), actual.len());
            for (e, a) in expected.iter().zip(&actual) {
                prop_assert_eq!(&e.items, &a.items);
            }
            prop_assert_eq!(
                embedded.catalog().await.expect("catalog").into_iter().find(|d| d.id == def.id),
                db.engine.catalog().await.expect("catalog").into_iter().find(|d| d.id == def.id)
            );
            // No entries are left behind for indexes that no longer exist.
            let names: Vec<String> = db
                .admin
                .query(
                    "SELECT DISTINCT index_name FROM nimbus_tables_index_entries WHERE table_id = $1",
                    &[&def.id],
                )
                .await
                .expect("index names")
                .iter()
                .map(|row| row.get(0))
                .collect();
            for name in &names {
                prop_assert!(def.index(name).is_some(), "entries of dropped index {}", name);
            }
            embedded.delete_table(Arc::clone(&def)).await.expect("delete");
            db.engine.delete_table(Arc::clone(&def)).await.expect("delete");
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("the engines disagree: {e}");
    }
    runtime.block_on(db.drop_schema());
}

/// The change log a stream-enabled table keeps: one record per change, in the write's
/// commit, in order, with the images the view type asks for; none for writes that change
/// nothing.
async fn stream_scenario(engine: &dyn TableEngine, view: &str) {
    use nimbus_tables::{engine::StreamEvent, schema::StreamDef};
    let mut def = table("streamed", None);
    def.stream = Some(StreamDef {
        view_type: view.to_owned(),
        label: "2026-11-27T00:00:00.000".to_owned(),
        ended_ms: None,
    });
    let label = def
        .stream
        .as_ref()
        .map(|s| s.label.clone())
        .unwrap_or_default();
    engine.create_table(def.clone()).await.expect("create");
    let def = Arc::new(def);
    let a1 = item(&[("pk", s("a")), ("v", n("1"))]);
    let a2 = item(&[("pk", s("a")), ("v", n("2"))]);
    let b1 = item(&[("pk", s("b"))]);
    write_ok(engine, vec![put(&def, a1.clone())]).await;
    write_ok(engine, vec![put(&def, a1.clone())]).await; // unchanged: no record
    write_ok(engine, vec![put(&def, a2.clone()), put(&def, b1.clone())]).await;
    write_ok(engine, vec![delete(&def, key_of(&def, &a2))]).await;
    // A refused group records nothing.
    let refused = engine.write(vec![put_if_absent(&def, b1.clone())]).await;
    assert!(matches!(refused, Err(WriteFailure::Rejected(_))));
    let records = engine
        .stream_records(Arc::clone(&def), label.clone(), None, 100, usize::MAX)
        .await
        .expect("read the stream");
    let events: Vec<StreamEvent> = records.iter().map(|r| r.event).collect();
    assert_eq!(
        events,
        [
            StreamEvent::Insert,
            StreamEvent::Modify,
            StreamEvent::Insert,
            StreamEvent::Remove
        ]
    );
    assert!(records.windows(2).all(|w| w[0].sequence < w[1].sequence));
    let key_a = item(&[("pk", s("a"))]);
    assert!(
        records
            .iter()
            .all(|r| r.keys == key_a || r.keys == item(&[("pk", s("b"))]))
    );
    let (new, old) = match view {
        "NEW_AND_OLD_IMAGES" => (true, true),
        "NEW_IMAGE" => (true, false),
        "OLD_IMAGE" => (false, true),
        _ => (false, false),
    };
    assert_eq!(records[1].new_image, new.then(|| a2.clone()));
    assert_eq!(records[1].old_image, old.then(|| a1.clone()));
    assert_eq!(records[3].new_image, None);
    assert_eq!(records[3].old_image, old.then(|| a2.clone()));
    // Reading after a sequence number resumes there; another label reads nothing.
    let rest = engine
        .stream_records(
            Arc::clone(&def),
            label.clone(),
            Some(records[1].sequence),
            100,
            usize::MAX,
        )
        .await
        .expect("read on");
    assert_eq!(rest, records[2..].to_vec());
    // A byte budget ends the page with the record that goes past it, at least one.
    for (budget, expected) in [(0, 1), (records[0].size_bytes, 2)] {
        let page = engine
            .stream_records(Arc::clone(&def), label.clone(), None, 100, budget)
            .await
            .expect("read within a budget");
        assert_eq!(page, records[..expected].to_vec(), "budget {budget}");
    }
    let other = engine
        .stream_records(Arc::clone(&def), "other".to_owned(), None, 100, usize::MAX)
        .await
        .expect("read another label");
    assert!(other.is_empty());
    // Trimming removes records older than the cut.
    engine
        .trim_streams(Arc::clone(&def), records[3].created + 1.0)
        .await
        .expect("trim");
    let trimmed = engine
        .stream_records(Arc::clone(&def), label.clone(), None, 100, usize::MAX)
        .await
        .expect("read after trim");
    assert!(trimmed.is_empty());
    assert_eq!(
        engine
            .stream_last_sequence(Arc::clone(&def))
            .await
            .expect("the last sequence"),
        records[3].sequence,
        "the last number given out outlives the records"
    );
    // Numbering goes on after every record was trimmed: a reader holding a position
    // never mistakes a new record for one it has read.
    write_ok(engine, vec![put(&def, a1.clone())]).await;
    let after_trim = engine
        .stream_records(Arc::clone(&def), label, None, 100, usize::MAX)
        .await
        .expect("read a write after the trim");
    assert_eq!(after_trim.len(), 1);
    assert_eq!(after_trim[0].sequence, records[3].sequence + 1);
}

#[tokio::test]
async fn streams_record_changes_embedded() {
    for view in ["NEW_AND_OLD_IMAGES", "NEW_IMAGE", "OLD_IMAGE", "KEYS_ONLY"] {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let engine = Embedded::open(&dir.path().join("t.redb")).expect("open");
        stream_scenario(&engine, view).await;
    }
}

#[tokio::test]
async fn streams_record_changes_postgres() {
    for view in ["NEW_AND_OLD_IMAGES", "KEYS_ONLY"] {
        let db = fresh().await;
        stream_scenario(&db.engine, view).await;
        db.drop_schema().await;
    }
}
