//! Edits as transactions: checked against the version they were
//! validated at (or, for a push, against any shared object), the writes
//! and the version key together or nothing.

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};

use super::unix_now;
use crate::fleet::{CommitError, Key, Layout, Write};

/// The shared kinds a `push` needs empty (host records may be there).
const SHARED_KINDS: [&str; 4] = [
    "groups/",
    "prefix-lists/",
    "port-lists/",
    "snapshot-policies/",
];

/// An edit as one transaction: the writes and the version key, if the
/// version key is at `base` (or, for a push, if no shared object exists).
pub(super) async fn write(
    client: &mut Client,
    layout: &Layout,
    host_id: &str,
    base: Option<i64>,
    writes: Vec<Write>,
) -> Result<i64, CommitError> {
    let unreachable = |e: etcd_client::Error| CommitError::Unreachable(e.to_string());
    if base.is_none() && writes.len() >= MAX_TXN_OPS {
        return push_in_batches(client, layout, host_id, writes).await;
    }
    let version = layout.key(&Key::Version);
    let compares = match base {
        Some(base) => vec![Compare::mod_revision(
            version.as_str(),
            CompareOp::Equal,
            base,
        )],
        None => {
            // Read first for the message; the compares make it atomic.
            let there = occupied(client, layout).await.map_err(unreachable)?;
            if !there.is_empty() {
                return Err(CommitError::NotEmpty(there));
            }
            let mut compares = vec![Compare::create_revision(
                version.as_str(),
                CompareOp::Equal,
                0,
            )];
            for kind in SHARED_KINDS {
                let prefix = format!("{}{kind}", layout.root());
                compares.push(Compare::create_revision(prefix, CompareOp::Equal, 0).with_prefix());
            }
            compares
        }
    };
    let mut ops: Vec<TxnOp> = writes
        .into_iter()
        .map(|w| match w {
            Write::Put { key, value } => TxnOp::put(key, value, None),
            Write::Delete { key } => TxnOp::delete(key, None),
        })
        .collect();
    // The version key's value only says who wrote last; its revision is
    // what edits are checked against.
    let stamp = serde_json::json!({ "host_id": host_id, "time": unix_now() }).to_string();
    ops.push(TxnOp::put(version.as_str(), stamp, None));
    let txn = Txn::new()
        .when(compares)
        .and_then(ops)
        .or_else(vec![TxnOp::get(version.as_str(), None)]);
    let response = client.txn(txn).await.map_err(unreachable)?;
    if response.succeeded() {
        return Ok(response.header().map_or(0, |h| h.revision()));
    }
    match base {
        Some(base) => {
            let current = response
                .op_responses()
                .into_iter()
                .find_map(|r| match r {
                    TxnOpResponse::Get(get) => {
                        Some(get.kvs().first().map_or(0, |kv| kv.mod_revision()))
                    }
                    _ => None,
                })
                .unwrap_or(0);
            Err(CommitError::Conflict { base, current })
        }
        None => Err(CommitError::NotEmpty(
            occupied(client, layout)
                .await
                .unwrap_or_else(|e| format!("written meanwhile ({e})")),
        )),
    }
}

/// etcd refuses a transaction of more than 128 operations (its
/// `--max-txn-ops` default); a push larger than this goes in batches.
const MAX_TXN_OPS: usize = 100;

/// A push too large for one transaction: the first batch only into an
/// empty prefix, marking it with a key of this push's; every later batch
/// only while that mark holds and no edit has been made; the last one
/// removes the mark and writes the version key. Hosts watching see the
/// groups arrive in batches (a binding to a group not there yet waits).
/// A push cut off half-way leaves its objects and its mark: the prefix is
/// not empty, and `push` says so (clear it with `etcdctl del --prefix`).
async fn push_in_batches(
    client: &mut Client,
    layout: &Layout,
    host_id: &str,
    writes: Vec<Write>,
) -> Result<i64, CommitError> {
    let unreachable = |e: etcd_client::Error| CommitError::Unreachable(e.to_string());
    let there = occupied(client, layout).await.map_err(unreachable)?;
    if !there.is_empty() {
        return Err(CommitError::NotEmpty(there));
    }
    let version = layout.key(&Key::Version);
    let mark = format!("{}pushing", layout.root());
    let token = format!("{host_id} {}", unix_now());
    let batches: Vec<&[Write]> = writes.chunks(MAX_TXN_OPS - 2).collect();
    let mut revision = 0;
    for (i, batch) in batches.iter().enumerate() {
        let mut compares = vec![Compare::create_revision(
            version.as_str(),
            CompareOp::Equal,
            0,
        )];
        let mut ops: Vec<TxnOp> = batch.iter().map(op).collect();
        if i == 0 {
            compares.push(Compare::create_revision(mark.as_str(), CompareOp::Equal, 0));
            for kind in SHARED_KINDS {
                let prefix = format!("{}{kind}", layout.root());
                compares.push(Compare::create_revision(prefix, CompareOp::Equal, 0).with_prefix());
            }
            ops.push(TxnOp::put(mark.as_str(), token.as_str(), None));
        } else {
            compares.push(Compare::value(
                mark.as_str(),
                CompareOp::Equal,
                token.as_str(),
            ));
        }
        if i + 1 == batches.len() {
            ops.push(TxnOp::delete(mark.as_str(), None));
            let stamp = serde_json::json!({ "host_id": host_id, "time": unix_now() });
            ops.push(TxnOp::put(version.as_str(), stamp.to_string(), None));
        }
        let response = client
            .txn(Txn::new().when(compares).and_then(ops))
            .await
            .map_err(unreachable)?;
        if !response.succeeded() {
            let there = occupied(client, layout).await.unwrap_or_default();
            return Err(CommitError::NotEmpty(format!(
                "written meanwhile, after {i} of {} batches of this push: {there}",
                batches.len()
            )));
        }
        revision = response.header().map_or(0, |h| h.revision());
    }
    Ok(revision)
}

fn op(w: &Write) -> TxnOp {
    match w {
        Write::Put { key, value } => TxnOp::put(key.as_str(), value.as_str(), None),
        Write::Delete { key } => TxnOp::delete(key.as_str(), None),
    }
}

/// What keeps a prefix from being pushed into ("" when nothing).
async fn occupied(client: &mut Client, layout: &Layout) -> Result<String, etcd_client::Error> {
    let mut found = Vec::new();
    let version = client.get(layout.key(&Key::Version), None).await?;
    if let Some(kv) = version.kvs().first() {
        found.push(format!("the version key (revision {})", kv.mod_revision()));
    }
    for kind in SHARED_KINDS {
        let prefix = format!("{}{kind}", layout.root());
        let options = GetOptions::new()
            .with_prefix()
            .with_keys_only()
            .with_limit(3);
        let read = client.get(prefix.as_str(), Some(options)).await?;
        if read.count() > 0 {
            let some: Vec<_> = read
                .kvs()
                .iter()
                .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
                .collect();
            found.push(format!(
                "{} key(s) under {prefix} ({})",
                read.count(),
                some.join(", ")
            ));
        }
    }
    Ok(found.join("; "))
}
