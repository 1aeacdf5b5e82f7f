//! Secondary-index info commands, with Aerospike's syntax and answers: `sindex-create`,
//! `sindex-delete`, `sindex-list` (and plain `sindex`), `sindex/<ns>[/<name>]`,
//! `sindex-stat`, `sindex-exists`, and `sindex-catalog` (the definitions with their stamps,
//! [`crate::catalog`]). Creating and deleting run on every member of a cluster
//! ([`crate::info::handle`] forwards them, stamped); creating builds the index over the
//! records already stored on a background thread, and `load_pct` says how far it got.

use std::fmt::Write as _;

use base64::Engine as _;
use petrel_storage::namespace::SindexCreated;
use petrel_storage::sindex::{Collection, KeySpec, KeyType, Sindex, SindexDef};

use crate::catalog::Change;
use crate::node::Node;

/// Where a create or delete comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A client: stamped here; a create conflicting with an index of the same name fails.
    Client,
    /// Another member or the catalog pull, with the change's stamp: applied only when later
    /// than what this node holds, replacing a conflicting definition.
    Peer(u64),
    /// The saved catalog at start-up: applied as it is.
    Restore(u64),
}

fn origin(rest: &str) -> Result<Origin, String> {
    match super::info::param(rest, "stamp") {
        None => Ok(Origin::Client),
        Some(s) => s.parse().map(Origin::Peer).map_err(|_| "ERROR:4:stamp must be milliseconds".to_string()),
    }
}

/// The arguments without the stamp, as the catalog keeps them.
fn args_without_stamp(rest: &str) -> String {
    rest.split(';').filter(|p| !p.is_empty() && !p.starts_with("stamp=")).collect::<Vec<_>>().join(";")
}

/// `sindex-create:ns=<ns>;set=<set>;indexname=<name>;indexdata=<bin>,<type>` (or
/// `bin=<bin>;type=<type>`), with `indextype=LIST|MAPKEYS|MAPVALUES`, `context=<base64>` and,
/// from another member, `stamp=<ms>`.
pub(crate) fn create(node: &Node, rest: &str) -> String {
    match origin(rest) {
        Ok(o) => create_from(node, rest, o),
        Err(e) => e,
    }
}

fn create_from(node: &Node, rest: &str, origin: Origin) -> String {
    let p = |k: &str| super::info::param(rest, k);
    let Some(ns_name) = p("ns").or_else(|| p("namespace")).filter(|n| !n.is_empty()) else {
        return "ERROR:4:namespace required".to_string();
    };
    let Some(sns) = node.namespace(ns_name.as_bytes()) else {
        return "ERROR:20:namespace not found".to_string();
    };
    if p("exp").is_some() {
        return "ERROR:4:expression indexes are not supported".to_string();
    }
    let Some(name) = p("indexname").filter(|n| !n.is_empty()) else {
        return "ERROR:4:indexname required".to_string();
    };
    let (bin, type_name) = match (p("indexdata"), p("bin"), p("type")) {
        (Some(data), _, _) => match data.split_once(',') {
            Some((bin, t)) => (bin, t),
            None => return "ERROR:4:indexdata must be <bin>,<type>".to_string(),
        },
        (None, Some(bin), Some(t)) => (bin, t),
        _ => return "ERROR:4:bin and type required".to_string(),
    };
    let Some(key_type) = KeyType::parse(type_name) else {
        return format!("ERROR:4:unknown index type {type_name}");
    };
    let Some(collection) = Collection::parse(p("indextype").unwrap_or("DEFAULT")) else {
        return "ERROR:4:indextype must be DEFAULT, LIST, MAPKEYS or MAPVALUES".to_string();
    };
    let ctx_base64 = p("context").filter(|c| !c.is_empty()).map(str::to_string);
    let ctx = match &ctx_base64 {
        None => Vec::new(),
        Some(b64) => match decode_context(b64) {
            Some(ctx) => ctx,
            None => return "ERROR:4:context must be a base64 msgpack list of type/value pairs".to_string(),
        },
    };
    let def = SindexDef {
        name: name.to_string(),
        set: p("set").filter(|s| !s.is_empty()).map(|s| s.as_bytes().to_vec()),
        spec: KeySpec { bin: bin.as_bytes().to_vec(), key_type, collection, ctx },
        ctx_base64,
    };
    let catalog = &node.sindex_catalog;
    let stamp_ms = match origin {
        Origin::Client => catalog.next_stamp(ns_name, name),
        Origin::Peer(stamp) if !catalog.is_later(ns_name, name, stamp) => return "ok".to_string(),
        Origin::Peer(stamp) | Origin::Restore(stamp) => {
            // The later definition wins over one of the same name this node still holds.
            if sns.ns.sindex(name).is_some_and(|held| held.def != def) {
                sns.ns.delete_sindex(name);
            }
            stamp
        }
    };
    let answer = match sns.ns.create_sindex(def) {
        Ok(SindexCreated::Existing(_)) => "ok".to_string(),
        Ok(SindexCreated::New(ix)) => {
            let ns = sns.ns.clone();
            let spawned = std::thread::Builder::new().name("sindex-build".to_string()).spawn(move || {
                let started = std::time::Instant::now();
                ns.build_sindex(&ix);
                tracing::info!(index = %ix.def.name, entries = ix.stats().entries, elapsed_ms = started.elapsed().as_millis() as u64, "secondary index built");
            });
            match spawned {
                Ok(_) => {
                    tracing::info!(namespace = ns_name, index = name, "secondary index created");
                    "ok".to_string()
                }
                Err(e) => {
                    sns.ns.delete_sindex(name);
                    return format!("ERROR:1:cannot start the index build: {e}");
                }
            }
        }
        // Names and sets a client cannot use are request errors (4), as on Aerospike.
        Err(
            e @ (petrel_storage::StorageError::IndexName(_)
            | petrel_storage::StorageError::Parameter(_)
            | petrel_storage::StorageError::BinName(_)),
        ) => return format!("ERROR:4:{e}"),
        Err(e) => return format!("ERROR:{}:{e}", e.result_code().code()),
    };
    let change = Change { stamp_ms, definition: Some(args_without_stamp(rest)) };
    if let Err(e) = catalog.record(ns_name, name, change) {
        tracing::warn!(error = %e, "secondary index catalog not saved");
        return format!("ERROR:1:{e}");
    }
    answer
}

/// The context pairs of a base64 msgpack list.
fn decode_context(b64: &str) -> Option<Vec<petrel_proto::msgpack::MsgValue>> {
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    match petrel_proto::msgpack::decode(&raw).ok()? {
        petrel_proto::msgpack::MsgValue::List(items) if !items.is_empty() && items.len() % 2 == 0 => Some(items),
        _ => None,
    }
}

/// `sindex-delete:ns=<ns>;indexname=<name>[;stamp=<ms>]`: ok whether or not the index
/// existed, as current Aerospike servers answer.
pub(crate) fn delete(node: &Node, rest: &str) -> String {
    match origin(rest) {
        Ok(o) => delete_from(node, rest, o),
        Err(e) => e,
    }
}

fn delete_from(node: &Node, rest: &str, origin: Origin) -> String {
    let p = |k: &str| super::info::param(rest, k);
    let Some(ns_name) = p("ns").or_else(|| p("namespace")).filter(|n| !n.is_empty()) else {
        return "ERROR:4:namespace required".to_string();
    };
    let Some(sns) = node.namespace(ns_name.as_bytes()) else {
        return "ERROR:20:namespace not found".to_string();
    };
    let Some(name) = p("indexname").filter(|n| !n.is_empty()) else {
        return "ERROR:4:indexname required".to_string();
    };
    let catalog = &node.sindex_catalog;
    let stamp_ms = match origin {
        Origin::Client => catalog.next_stamp(ns_name, name),
        Origin::Peer(stamp) if !catalog.is_later(ns_name, name, stamp) => return "ok".to_string(),
        Origin::Peer(stamp) | Origin::Restore(stamp) => stamp,
    };
    if sns.ns.delete_sindex(name) {
        tracing::info!(namespace = ns_name, index = name, "secondary index deleted");
    }
    if let Err(e) = catalog.record(ns_name, name, Change { stamp_ms, definition: None }) {
        tracing::warn!(error = %e, "secondary index catalog not saved");
        return format!("ERROR:1:{e}");
    }
    "ok".to_string()
}

/// The line to send the other members for a create or delete a client asked for here: the
/// same arguments with the stamp this node gave the change.
pub(crate) fn stamped_for_peers(node: &Node, line: &str, rest: &str) -> String {
    if super::info::param(rest, "stamp").is_some() {
        return line.to_string();
    }
    let p = |k: &str| super::info::param(rest, k);
    let ns = p("ns").or_else(|| p("namespace")).unwrap_or_default();
    let name = p("indexname").unwrap_or_default();
    format!("{line};stamp={}", node.sindex_catalog.stamp_of(ns, name))
}

/// Applies the saved catalog at start-up: every index defined when the node stopped is
/// created again (and built over the records the node restored).
pub(crate) fn restore(node: &Node) {
    for ((ns, name), change) in node.sindex_catalog.entries() {
        if let Some(args) = &change.definition {
            let answer = create_from(node, args, Origin::Restore(change.stamp_ms));
            if answer != "ok" {
                tracing::warn!(namespace = %ns, index = %name, %answer, "saved secondary index not restored");
            }
        }
    }
}

/// Pulls every peer's catalog and applies the changes later than this node's (a node that
/// joined or was away catches up; see [`crate::catalog`]).
pub(crate) async fn pull_from_peers(node: &Node) {
    for ((ns, name), change) in crate::catalog::peer_entries(node, "sindex-catalog").await {
        if !node.sindex_catalog.is_later(&ns, &name, change.stamp_ms) || node.namespace(ns.as_bytes()).is_none() {
            continue;
        }
        let origin = Origin::Peer(change.stamp_ms);
        let result = match &change.definition {
            Some(args) => create_from(node, args, origin),
            None => delete_from(node, &format!("ns={ns};indexname={name}"), origin),
        };
        tracing::info!(namespace = %ns, index = %name, %result, "index catalog change taken from a peer");
    }
}

fn describe(out: &mut String, ns: &str, ix: &Sindex) {
    let d = &ix.def;
    let _ = write!(
        out,
        "ns={ns}:indexname={}:set={}:bin={}:type={}:indextype={}:context={}:exp=NULL:state={};",
        d.name,
        d.set.as_deref().map_or("NULL".into(), String::from_utf8_lossy),
        String::from_utf8_lossy(&d.spec.bin),
        d.spec.key_type.name(),
        d.spec.collection.name(),
        d.ctx_base64.as_deref().unwrap_or("NULL"),
        if ix.is_ready() { "RW" } else { "WO" },
    );
}

/// `sindex-list[:ns=<ns>]` and `sindex`: one `ns=..:indexname=..:...;` entry per index.
pub(crate) fn list(node: &Node, rest: &str) -> String {
    let only = super::info::param(rest, "ns").or_else(|| super::info::param(rest, "namespace"));
    let mut out = String::new();
    for sns in node.namespaces().iter().filter(|s| only.is_none_or(|n| n == s.ns.name())) {
        for ix in sns.ns.sindexes() {
            describe(&mut out, sns.ns.name(), &ix);
        }
    }
    out
}

/// `sindex/<ns>` (the namespace's indexes) and `sindex/<ns>/<name>` (one index's figures).
pub(crate) fn by_path(node: &Node, rest: &str) -> String {
    if rest.is_empty() {
        return list(node, "");
    }
    let (ns_name, name) = rest.split_once('/').unwrap_or((rest, ""));
    let Some(sns) = node.namespace(ns_name.as_bytes()) else {
        return "ERROR:20:namespace not found".to_string();
    };
    if name.is_empty() {
        let mut out = String::new();
        for ix in sns.ns.sindexes() {
            describe(&mut out, ns_name, &ix);
        }
        return out;
    }
    stats(sns, name)
}

/// `sindex-stat:namespace=<ns>;indexname=<name>`.
pub(crate) fn stat(node: &Node, rest: &str) -> String {
    let p = |k: &str| super::info::param(rest, k);
    let ns_name = p("namespace").or_else(|| p("ns")).unwrap_or_default();
    let Some(sns) = node.namespace(ns_name.as_bytes()) else {
        return "ERROR:20:namespace not found".to_string();
    };
    stats(sns, p("indexname").unwrap_or_default())
}

fn stats(sns: &crate::node::ServiceNamespace, name: &str) -> String {
    let Some(ix) = sns.ns.sindex(name) else {
        return "ERROR:201:no index with that name".to_string();
    };
    let s = ix.stats();
    format!(
        "entries={}:used_bytes={}:memory_used={}:load_pct={}:loadtime=0:query_basic_complete={}:stat_gc_recs=0",
        s.entries, s.memory_used_bytes, s.memory_used_bytes, s.load_pct, s.queries
    )
    .replace(':', ";")
}

/// `sindex-exists:ns=<ns>;indexname=<name>`: `true` or `false`.
pub(crate) fn exists(node: &Node, rest: &str) -> String {
    let p = |k: &str| super::info::param(rest, k);
    let ns_name = p("ns").or_else(|| p("namespace")).unwrap_or_default();
    let Some(sns) = node.namespace(ns_name.as_bytes()) else {
        return "ERROR:20:namespace not found".to_string();
    };
    (sns.ns.sindex(p("indexname").unwrap_or_default()).is_some()).to_string()
}
