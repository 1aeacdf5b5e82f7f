//! The info protocol: text commands, one per line, answered as `<request>\t<value>\n` in
//! request order. Unknown commands answer `ERROR:4:unrecognized command` and leave the
//! connection usable.

use std::fmt::Write as _;

use base64::Engine as _;
use petrel_proto::PARTITIONS_COUNT;

use std::sync::atomic::Ordering::Relaxed;

use petrel_cluster::Role;

use crate::node::{Node, NodeCounters};

/// The version reported by `build`: four numbers, at or above what the clients need for the
/// partition-scan and batch protocols, below the level at which they expect features Petrel
/// does not offer. From 8.0 clients may send multi-record-transaction fields; Petrel's
/// namespaces have no transaction support and refuse such commands with UNSUPPORTED_FEATURE
/// (16), changing nothing.
pub const BUILD: &str = "8.0.0.0";
/// What `features` claims: only what works (no UDFs until they are built).
const FEATURES: &str = "batch-any;batch-index;blob-bits;cdt-index;cdt-list;cdt-map;cluster-stable;float;geo;peers;pipelining;pquery;pscans;query-show;replicas;replicas-all;replicas-master;replicas-max;sindex-exists;truncate-namespace;udf";
/// Longest info request line we answer.
const LINE_LEN_MAX: usize = 4096;
/// Longest `udf-put` line: a module of the largest size, in base64, and its parameters.
const UDF_PUT_LINE_LEN_MAX: usize = crate::udf::MODULE_BYTES_MAX / 3 * 4 + 4096;
/// Most commands in one info request.
const COMMANDS_MAX: usize = 256;

/// Answers an info request body into `out` (the frame body, without the proto header).
/// Commands that concern the whole cluster (truncation) also run on every other member.
pub async fn handle(node: &Node, body: &[u8], out: &mut Vec<u8>) {
    node.counters.info_requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let text = String::from_utf8_lossy(body);
    for line in text.split('\n').filter(|l| !l.is_empty()).take(COMMANDS_MAX) {
        // A module travels in its registration line, so that line may be longer.
        let max = if line.starts_with("udf-put") { UDF_PUT_LINE_LEN_MAX } else { LINE_LEN_MAX };
        let line = truncate_at_char_boundary(line, max);
        let mut value = answer(node, line);
        let cluster_wide = matches!(
            split_command(line).0,
            "truncate" | "truncate-namespace" | "sindex-create" | "sindex-delete" | "udf-put" | "udf-remove"
        );
        if let (Some(cluster), true, "ok") = (node.cluster(), cluster_wide, value.as_str()) {
            let forwarded = match split_command(line) {
                ("sindex-create" | "sindex-delete", rest) => crate::info_sindex::stamped_for_peers(node, line, rest),
                ("udf-put" | "udf-remove", rest) => node.udfs.stamped_for_peers(line, rest),
                _ => line.to_string(),
            };
            for (peer, answer) in cluster.info_on_peers(&forwarded).await {
                if answer != "ok" {
                    value = format!("ERROR::node {peer:X}: {answer}");
                }
            }
        }
        out.extend_from_slice(line.as_bytes());
        out.push(b'\t');
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
}

/// Answers one command on this node only (a peer forwarded it).
pub fn answer_here(node: &Node, line: &str) -> String {
    let max = if line.starts_with("udf-put") { UDF_PUT_LINE_LEN_MAX } else { LINE_LEN_MAX };
    answer(node, truncate_at_char_boundary(line, max))
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate_at_char_boundary(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Splits `name:k=v;k=v` or `name/a/b` into the name and the rest.
fn split_command(line: &str) -> (&str, &str) {
    match line.find([':', '/']) {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    }
}

fn params(rest: &str) -> impl Iterator<Item = (&str, &str)> {
    rest.split(';').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, "")))
}

pub(crate) fn param<'a>(rest: &'a str, key: &str) -> Option<&'a str> {
    params(rest).find(|(k, _)| *k == key).map(|(_, v)| v)
}

fn answer(node: &Node, line: &str) -> String {
    let (name, rest) = split_command(line);
    match name {
        "node" => node.node_name.clone(),
        "build" => BUILD.to_string(),
        "version" => format!("Petrel build {BUILD}"),
        "edition" => "Petrel".to_string(),
        "features" => FEATURES.to_string(),
        "status" => "ok".to_string(),
        // Log sinks as `id:sink`: petreld logs to standard error only.
        "logs" => "0:stderr".to_string(),
        // The HTTP endpoint's /ready, for probes that speak only the info protocol.
        "ready" => {
            if crate::http::is_ready(node) {
                "ok".to_string()
            } else {
                "ERROR:503:not ready: no cluster view with this node installed yet".to_string()
            }
        }
        "partitions" => PARTITIONS_COUNT.to_string(),
        "partition-generation" => node.partition_generation().to_string(),
        "peers-generation" => peers_generation(node).to_string(),
        "rebalance-generation" => node.cluster().map_or(1, |c| c.counters.cluster_generation.load(Relaxed)).to_string(),
        "cluster-name" => {
            if node.config.service.cluster_name.is_empty() {
                "null".to_string()
            } else {
                node.config.service.cluster_name.clone()
            }
        }
        "peers-clear-std" => peers(node, false),
        "peers-clear-alt" => peers(node, true),
        "peers-tls-std" | "peers-tls-alt" => {
            format!("{},{},[]", peers_generation(node), node.config.service.listen.port())
        }
        "alumni-clear-std" | "alumni-tls-std" => format!("1,{},[]", node.config.service.listen.port()),
        "services" | "services-alumni" => node
            .cluster()
            .map_or(String::new(), |c| c.peers().into_iter().map(|(_, s)| s).collect::<Vec<_>>().join(";")),
        "services-alternate" => node
            .cluster()
            .map_or(String::new(), |c| c.peers_alt().into_iter().map(|(_, s)| s).collect::<Vec<_>>().join(";")),
        "tip" => tip(node, rest),
        "udf-put" => node.udfs.info_put(rest),
        "udf-list" => node.udfs.info_list(),
        "udf-get" => node.udfs.info_get(rest),
        "udf-remove" => node.udfs.info_remove(rest),
        "udf-catalog" => node.udfs.catalog_answer(),
        "tip-clear" => match node.cluster() {
            Some(c) => {
                c.tip_clear();
                "ok".to_string()
            }
            None => "ERROR::no cluster".to_string(),
        },
        "service" | "service-clear-std" => node.service_std.clone(),
        "service-clear-alt" => {
            if node.service_alt.is_empty() {
                node.service_std.clone()
            } else {
                node.service_alt.clone()
            }
        }
        "service-tls-std" | "service-tls-alt" => String::new(),
        "replicas" => replicas(node, true, false),
        "replicas-all" => replicas(node, false, false),
        "replicas-master" => replicas(node, false, true),
        "rack-ids" => node.namespaces().iter().map(|s| format!("{}:0", s.ns.name())).collect::<Vec<_>>().join(";"),
        "user-agent-set" => "ok".to_string(),
        "namespaces" => node.namespaces().iter().map(|s| s.ns.name().to_string()).collect::<Vec<_>>().join(";"),
        "namespace" => namespace_stats(node, rest),
        "sets" => sets(node, rest),
        "statistics" => statistics(node),
        "get-config" | "config-get" => get_config(node, rest),
        "set-config" | "config-set" => set_config(node, rest),
        "latencies" => latencies(node, rest),
        "cluster-stable" => cluster_stable(node, rest),
        "truncate" => truncate(node, rest, false),
        "truncate-namespace" => truncate(node, rest, true),
        "sindex-create" => crate::info_sindex::create(node, rest),
        "sindex-delete" => crate::info_sindex::delete(node, rest),
        "sindex-list" => crate::info_sindex::list(node, rest),
        "sindex" => crate::info_sindex::by_path(node, rest),
        "sindex-stat" => crate::info_sindex::stat(node, rest),
        "sindex-exists" => crate::info_sindex::exists(node, rest),
        "sindex-catalog" => node.sindex_catalog.describe(),
        "query-show" | "scan-show" => query_show(node, rest),
        "query-abort" | "scan-abort" => query_abort(node, rest),
        _ => "ERROR:4:unrecognized command".to_string(),
    }
}

/// The job id of `query-show`/`query-abort` (`trid=` before server 8.1, `id=` after).
fn job_id(rest: &str) -> Option<Result<u64, String>> {
    let id = param(rest, "trid").or_else(|| param(rest, "id"))?;
    Some(id.parse().map_err(|_| "ERROR:4:job id must be a number".to_string()))
}

/// `query-show[:trid=<id>]`: one background job, or every job kept (`;`-separated).
fn query_show(node: &Node, rest: &str) -> String {
    match job_id(rest) {
        None => node.jobs.all().iter().map(|j| j.describe()).collect::<Vec<_>>().join(";"),
        Some(Err(e)) => e,
        // Like Aerospike, an unknown job is "not found" (2): clients take it as finished.
        Some(Ok(id)) => node.jobs.get(id).map_or("ERROR:2:job not found".to_string(), |j| j.describe()),
    }
}

/// `query-abort:trid=<id>`.
fn query_abort(node: &Node, rest: &str) -> String {
    match job_id(rest) {
        None => "ERROR:4:trid required".to_string(),
        Some(Err(e)) => e,
        Some(Ok(id)) if node.jobs.abort(id) => "OK".to_string(),
        Some(Ok(_)) => "ERROR:2:job not found".to_string(),
    }
}

fn peers_generation(node: &Node) -> u64 {
    node.cluster().map_or(1, |c| 1 + c.counters.peers_generation.load(Relaxed))
}

/// `peers-clear-std` (or `-alt`): generation, default port, then `[node id,,[host:port]]` per
/// peer, at its standard (or alternate) service endpoint.
fn peers(node: &Node, alternate: bool) -> String {
    let mut out = format!("{},{},[", peers_generation(node), node.config.service.listen.port());
    if let Some(c) = node.cluster() {
        let peers = if alternate { c.peers_alt() } else { c.peers() };
        for (i, (id, service)) in peers.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "[{id:X},,[{service}]]");
        }
    }
    out.push(']');
    out
}

/// `tip:host=<host>;port=<port>`: adds a heartbeat seed at run time.
fn tip(node: &Node, rest: &str) -> String {
    let (Some(host), Some(port)) = (param(rest, "host"), param(rest, "port")) else {
        return "ERROR:4:host and port required".to_string();
    };
    if host.is_empty() || host.len() > 255 || port.parse::<u16>().is_err() {
        return "ERROR:4:bad host or port".to_string();
    }
    match node.cluster() {
        Some(c) if c.tip(format!("{host}:{port}")) => "ok".to_string(),
        _ => "ERROR::no cluster".to_string(),
    }
}

/// The bitmaps of this node's replica positions for one namespace: every partition at
/// position 0 on a node on its own.
fn bitmaps(node: &Node, ns_index: usize) -> Vec<String> {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    match node.cluster() {
        None => vec![b64(&[0xffu8; PARTITIONS_COUNT / 8])],
        Some(c) => (0..c.replication_factor(ns_index).max(1)).map(|k| b64(&c.bitmap(ns_index, k))).collect(),
    }
}

fn replicas(node: &Node, with_regime: bool, master_only: bool) -> String {
    let mut out = String::new();
    for (i, s) in node.namespaces().iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        let maps = bitmaps(node, s.index);
        let _ = match (with_regime, master_only) {
            (_, true) => write!(out, "{}:{}", s.ns.name(), maps[0]),
            (true, false) => write!(out, "{}:0,{},{}", s.ns.name(), maps.len(), maps.join(",")),
            (false, false) => write!(out, "{}:{},{}", s.ns.name(), maps.len(), maps.join(",")),
        };
    }
    out
}

fn namespace_stats(node: &Node, rest: &str) -> String {
    let Some(s) = node.namespace(rest.as_bytes()) else {
        return "type=unknown".to_string();
    };
    let st = s.ns.stats();
    let c = s.ns.config();
    let sindex_bytes = s.ns.sindex_used_bytes();
    let used = st.index_bytes + st.data_bytes + sindex_bytes;
    // Objects by this node's role for their partition.
    let (mut master, mut prole, mut non_replica) = (st.objects, 0, 0);
    let (mut cluster_size, mut rf, mut tx, mut rx) = (1, 1, 0, 0);
    if let Some(cl) = node.cluster() {
        master = 0;
        for (pid, role) in cl.roles(s.index).into_iter().enumerate() {
            let n = s.ns.partition(pid as u16).len() as u64;
            match role {
                Role::Master => master += n,
                Role::Replica => prole += n,
                Role::None => non_replica += n,
            }
        }
        cluster_size = cl.summary().members.len();
        rf = cl.replication_factor(s.index);
        (tx, rx) = cl.migrations(s.index);
    }
    let used_pct = used * 100 / c.memory_size_bytes.max(1);
    // Tombstones (deletes on disk) exist only on a device store; delete marks (recent deletes
    // in memory) in every namespace.
    let tombstones = s.ns.device().map_or(0, |d| d.counters.tombstones.load(Relaxed));
    let mut o = String::new();
    let _ = write!(
        o,
        "ns_cluster_size={cluster_size};effective_replication_factor={rf};objects={};tombstones={};master_objects={master};prole_objects={prole};non_replica_objects={non_replica};\
expired_objects={};evicted_objects={};truncated_records={};stop_writes={};hwm_breached={};\
index_used_bytes={};sindex_used_bytes={sindex_bytes};data_used_bytes={};memory_used_bytes={};memory_used_pct={};data_total_bytes={};\
migrate_tx_partitions_remaining={tx};migrate_rx_partitions_remaining={rx};delete_marks={};delete_marks_bytes={};\
replication-factor={};default-ttl={};evict-used-pct={};stop-writes-used-pct={};max-record-size={};\
partition-tree-sprigs={};nsup-period={};delete-marks-max={};tomb-raider-eligible-age={};{}",
        st.objects,
        tombstones,
        st.expired_objects,
        st.evicted_objects,
        st.truncated_objects,
        st.stop_writes,
        c.evict_used_pct > 0 && used_pct >= c.evict_used_pct as u64,
        st.index_bytes,
        st.data_bytes,
        used,
        used_pct,
        c.memory_size_bytes,
        st.delete_marks,
        st.delete_marks_bytes,
        c.replication_factor,
        c.default_ttl_secs,
        c.evict_used_pct,
        c.stop_writes_used_pct,
        c.max_record_size_bytes,
        c.sprigs_per_partition,
        c.nsup_period_secs,
        c.delete_marks_max,
        c.tomb_raider_eligible_age_secs,
        storage_settings(&s.ns, true),
    );
    s.client.render(&mut o);
    o
}

/// `storage-engine=…` and, for a device namespace, its settings and (with `stats`) its
/// figures, as Aerospike names them.
fn storage_settings(ns: &petrel_storage::Namespace, stats: bool) -> String {
    let Some(d) = ns.device() else { return "storage-engine=memory".to_string() };
    let c = d.config();
    let files: Vec<String> = c.files.iter().map(|f| f.path.display().to_string()).collect();
    let mut o = format!(
        "storage-engine=device;storage-engine.file={};storage-engine.filesize={};storage-engine.write-block-size={};\
storage-engine.flush-max-ms={};storage-engine.commit-to-device={};storage-engine.defrag-lwm-pct={};storage-engine.min-avail-pct={}",
        files.join(","),
        c.files.first().map_or(0, |f| f.size_bytes),
        c.write_block_bytes,
        c.flush_max_ms,
        c.commit_to_device,
        c.defrag_lwm_pct,
        c.min_avail_pct
    );
    if stats {
        let (total, used) = (d.total_bytes(), d.used_bytes());
        let k = &d.counters;
        let _ = write!(
            o,
            ";device_total_bytes={total};device_used_bytes={used};device_free_pct={};device_available_pct={};\
defrag_q={};write_q={};defrag_blocks_freed={};defrag_records_moved={};device_tombstones_written={};\
device_write_errors={};device_sync_failed={};cache_read_pct={}",
            (total - used.min(total)) * 100 / total.max(1),
            d.available_pct(),
            d.defrag_queue_len(),
            d.write_queue_len(),
            k.defrag_blocks_freed.load(Relaxed),
            k.defrag_records_moved.load(Relaxed),
            k.tombstones_written.load(Relaxed),
            k.write_errors.load(Relaxed),
            d.sync_failed(),
            {
                let (cache, device) = (k.reads_from_cache.load(Relaxed), k.reads_from_device.load(Relaxed));
                cache * 100 / (cache + device).max(1)
            },
        );
    }
    o
}

fn set_line(ns: &str, set: &petrel_storage::namespace::SetStats, sindexes: usize, with_names: bool) -> String {
    let head = if with_names { format!("ns={ns}:set={}:", set.name) } else { String::new() };
    format!(
        "{head}objects={}:tombstones=0:data_used_bytes=0:truncate_lut={}:sindexes={}:index_populating=false:truncating=false:default-read-touch-ttl-pct=0:default-ttl=0:disable-eviction=false:enable-index=false:stop-writes-count=0:stop-writes-size=0;",
        set.objects,
        // Milliseconds since the Citrusleaf epoch, as the server reports truncate cut-offs.
        set.truncate_lut_ms,
        sindexes,
    )
}

fn sets(node: &Node, rest: &str) -> String {
    let mut parts = rest.split('/');
    let ns_filter = parts.next().filter(|s| !s.is_empty());
    let set_filter = parts.next().filter(|s| !s.is_empty());
    let mut out = String::new();
    for s in node.namespaces() {
        if ns_filter.is_some_and(|n| n != s.ns.name()) {
            continue;
        }
        let indexes = s.ns.sindexes();
        for set in s.ns.stats().sets {
            let sindexes = indexes.iter().filter(|ix| ix.def.set.as_deref() == Some(set.name.as_bytes())).count();
            match set_filter {
                Some(f) if f != set.name => {}
                Some(_) => out.push_str(&set_line(s.ns.name(), &set, sindexes, false)),
                None => out.push_str(&set_line(s.ns.name(), &set, sindexes, true)),
            }
        }
    }
    if ns_filter.is_some_and(|n| node.namespace(n.as_bytes()).is_none()) {
        return "ERROR:20:namespace not found".to_string();
    }
    out
}

fn statistics(node: &Node) -> String {
    let c = &node.counters;
    let g = NodeCounters::get;
    let mut o = String::new();
    match node.cluster() {
        Some(cl) => {
            let sum = cl.summary();
            let k = &cl.counters;
            let _ = write!(
                o,
                "cluster_size={};cluster_key={:X};cluster_generation={};cluster_principal={:X};cluster_integrity={};cluster_is_member={};\
migrate_partitions_remaining={};migrate_tx_partitions_remaining={};migrate_rx_partitions_remaining={};migrate_allowed=true;\
migrate_records_sent={};migrate_records_received={};migrate_partitions_sent={};migrate_partitions_received={};\
migrate_records_skipped={};migrate_stale_records_dropped={};\
partitions_unsettled={};copies_to_give_back={};partitions_given_back={};replica_writes_sent={};replica_writes_failed={};replica_writes_applied={};\
replica_repairs={};replica_repairs_dropped={};replication_failures={};proxied_in={};",
                sum.members.len(),
                sum.key,
                k.cluster_generation.load(Relaxed),
                sum.principal,
                !sum.in_transition,
                !sum.members.is_empty(),
                sum.migrate_tx + sum.migrate_rx,
                sum.migrate_tx,
                sum.migrate_rx,
                k.migrate_records_sent.load(Relaxed),
                k.migrate_records_received.load(Relaxed),
                k.migrate_partitions_sent.load(Relaxed),
                k.migrate_partitions_received.load(Relaxed),
                k.migrate_records_skipped.load(Relaxed),
                k.migrate_stale_records_dropped.load(Relaxed),
                sum.unsettled,
                cl.copies_to_give_back(),
                k.partitions_dropped.load(Relaxed),
                k.replica_writes_sent.load(Relaxed),
                k.replica_writes_failed.load(Relaxed),
                k.replica_writes_applied.load(Relaxed),
                k.replica_repairs.load(Relaxed),
                k.replica_repairs_dropped.load(Relaxed),
                g(&c.replication_failures),
                g(&c.proxied_in),
            );
        }
        None => {
            let _ = write!(
                o,
                "cluster_size=1;cluster_key={:X};cluster_generation=1;cluster_principal={};cluster_integrity=true;cluster_is_member=true;\
migrate_partitions_remaining=0;migrate_allowed=true;",
                node.cluster_key, node.node_name
            );
        }
    }
    let _ = write!(
        o,
        "uptime={};cluster_clock_lead_ms={};client_connections={};client_connections_opened={};client_connections_closed={};client_connections_refused={};\
client_connections_idle_closed={};info_requests={};malformed_requests={};proxy_in_progress=0;proxied_requests={};\
batch_index_initiate={};scans_started={};incomplete_request_bytes={};request_budget_waits={};\
client_connections_deadline_closed={}",
        node.uptime_secs(),
        node.clock.lead_ms(),
        g(&c.client_connections),
        g(&c.client_connections_opened),
        g(&c.client_connections_closed),
        g(&c.client_connections_refused),
        g(&c.client_connections_idle_closed),
        g(&c.info_requests),
        g(&c.malformed_requests),
        g(&c.proxied_requests),
        g(&c.batch_index_initiate),
        g(&c.scans_started),
        node.request_budget.held_bytes(),
        g(&c.request_budget_waits),
        g(&c.client_connections_deadline_closed),
    );
    o
}

/// The namespace named by an `id=` parameter, or the error answer.
fn namespace_param<'a>(node: &'a Node, rest: &str) -> Result<&'a crate::node::ServiceNamespace, String> {
    let id = param(rest, "id").ok_or_else(|| "ERROR:4:namespace id required".to_string())?;
    node.namespace(id.as_bytes()).ok_or_else(|| "ERROR:20:namespace not found".to_string())
}

fn get_config(node: &Node, rest: &str) -> String {
    match param(rest, "context") {
        Some("namespace") => {
            let s = match namespace_param(node, rest) {
                Ok(s) => s,
                Err(e) => return e,
            };
            let c = s.ns.config();
            format!(
                "replication-factor={};default-ttl={};memory-size={};evict-used-pct={};stop-writes-used-pct={};max-record-size={};partition-tree-sprigs={};nsup-period={};{}",
                c.replication_factor,
                c.default_ttl_secs,
                c.memory_size_bytes,
                c.evict_used_pct,
                c.stop_writes_used_pct,
                c.max_record_size_bytes,
                c.sprigs_per_partition,
                c.nsup_period_secs,
                storage_settings(&s.ns, false)
            )
        }
        Some("service") | None => {
            let s = &node.config.service;
            format!(
                "node-id={};cluster-name={};service-address={};service-port={};proto-fd-max={};proto-fd-idle-ms={};batch-max-requests={}",
                node.node_name,
                if s.cluster_name.is_empty() { "null" } else { &s.cluster_name },
                s.listen.ip(),
                s.listen.port(),
                s.proto_fd_max,
                s.proto_fd_idle_ms,
                s.batch_max_requests
            )
        }
        Some(_) => "ERROR:4:unknown context".to_string(),
    }
}

/// `set-config:context=namespace;id=<ns>;<key>=<value>`: changes dynamic namespace settings.
fn set_config(node: &Node, rest: &str) -> String {
    match param(rest, "context") {
        Some("namespace") => {
            let s = match namespace_param(node, rest) {
                Ok(s) => s,
                Err(e) => return e,
            };
            let id = s.ns.name();
            let mut changed = 0;
            for (k, v) in params(rest).filter(|(k, _)| *k != "context" && *k != "id") {
                if let Err(e) = s.ns.set_config(k, v) {
                    return format!("ERROR:4:{e}");
                }
                changed += 1;
            }
            if changed == 0 {
                return "ERROR:4:no setting given".to_string();
            }
            tracing::info!(namespace = id, settings = rest, "set-config");
            "ok".to_string()
        }
        Some(_) | None => "ERROR:4:only context=namespace has dynamic settings".to_string(),
    }
}

fn latencies(node: &Node, rest: &str) -> String {
    let only = param(rest, "hist");
    let mut out = String::new();
    for s in node.namespaces() {
        s.latencies.report(s.ns.name(), only, &mut out);
    }
    out
}

/// `cluster-stable:size=N;ignore-migrations=BOOL;namespace=NS`: the cluster key when the
/// cluster has N members (if given) and, unless ignored, no migrations left.
fn cluster_stable(node: &Node, rest: &str) -> String {
    let ignore_migrations = param(rest, "ignore-migrations") == Some("true");
    let (size, key, settled) = match node.cluster() {
        Some(c) => {
            let s = c.summary();
            let installed = !s.in_transition && !s.members.is_empty();
            // Settled on the owners, and no copy left elsewhere (only looked at when asked).
            let migrated = || s.unsettled == 0 && c.copies_to_give_back() == 0;
            (s.members.len(), s.key, installed && (ignore_migrations || migrated()))
        }
        None => (1, node.cluster_key, true),
    };
    if let Some(want) = param(rest, "size") {
        if want.parse::<usize>().ok() != Some(size) {
            return "ERROR:7:cluster not specified size".to_string();
        }
    }
    if let Some(ns) = param(rest, "namespace") {
        if node.namespace(ns.as_bytes()).is_none() {
            return "ERROR:20:namespace not found on node".to_string();
        }
    }
    if !settled {
        return "ERROR::unstable-cluster".to_string();
    }
    format!("{key:X}")
}

fn truncate(node: &Node, rest: &str, whole_namespace: bool) -> String {
    let ns_name = param(rest, "namespace").unwrap_or_default();
    if ns_name.is_empty() {
        return "ERROR:20:namespace required".to_string();
    }
    let Some(s) = node.namespace(ns_name.as_bytes()) else {
        // Truncating a set of a namespace this node does not hold changes nothing, as on
        // Aerospike; a whole unknown namespace stays an error.
        return if whole_namespace { "ERROR:20:namespace not found".to_string() } else { "ok".to_string() };
    };
    let set = if whole_namespace {
        None
    } else {
        match param(rest, "set") {
            Some("") => return "ERROR:4:set name is empty".to_string(),
            set => set,
        }
    };
    let now_unix_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let before_ms = match truncate_cutoff_ms(param(rest, "lut"), now_unix_ns) {
        Ok(cutoff) => cutoff,
        Err(msg) => return format!("ERROR:4:{msg}"),
    };
    match s.ns.truncate(set.map(str::as_bytes), before_ms) {
        Ok(()) => "ok".to_string(),
        // Truncating a set nobody has written to is a no-op, as on Aerospike.
        Err(_) if set.is_some() => "ok".to_string(),
        Err(e) => format!("ERROR:{}:{e}", e.result_code().code()),
    }
}

/// The truncate cut-off in milliseconds since the Citrusleaf epoch from the `lut` argument
/// (nanoseconds since the Unix epoch, as the clients send it); `None` without one, meaning now.
/// Like Aerospike, refuses a cut-off that is not a number, falls before the Citrusleaf epoch
/// or lies in the future.
fn truncate_cutoff_ms(lut: Option<&str>, now_unix_ns: u128) -> Result<Option<u64>, &'static str> {
    let Some(lut) = lut else { return Ok(None) };
    let lut_ns = lut.parse::<u64>().map_err(|_| "lut must be nanoseconds since the Unix epoch")?;
    let epoch_ns = u128::from(petrel_proto::wire::CITRUSLEAF_EPOCH_SECS) * 1_000_000_000;
    if u128::from(lut_ns) < epoch_ns {
        return Err("lut is before the Citrusleaf epoch");
    }
    if u128::from(lut_ns) > now_unix_ns {
        return Err("lut is in the future");
    }
    Ok(Some((lut_ns / 1_000_000).saturating_sub(petrel_proto::wire::CITRUSLEAF_EPOCH_SECS * 1000)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Overrides};

    fn node() -> Node {
        Node::new(Config::load(None, &Overrides::default()).expect("config")).expect("node")
    }

    fn ask(node: &Node, body: &str) -> String {
        let mut out = Vec::new();
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        rt.block_on(handle(node, body.as_bytes(), &mut out));
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn replicas_bitmap_matches_a_single_stock_node() {
        let n = node();
        let want = format!("replicas\ttest:0,1,{}8=\n", "/".repeat(682));
        assert_eq!(ask(&n, "replicas\n"), want);
    }

    #[test]
    fn long_lines_are_cut_on_character_boundaries() {
        let n = node();
        // 4095 ASCII bytes then a 2-byte character straddling the 4096-byte limit.
        let line = format!("{}é{}", "x".repeat(4095), "y".repeat(10));
        let a = ask(&n, &format!("{line}\n"));
        assert!(a.ends_with("\tERROR:4:unrecognized command\n"));
        assert_eq!(a.split('\t').next().map(str::len), Some(4095));
    }

    #[test]
    fn set_config_changes_dynamic_settings_and_checks_them() {
        let n = node();
        assert_eq!(
            ask(&n, "set-config:context=namespace;id=test;default-ttl=3600\n"),
            "set-config:context=namespace;id=test;default-ttl=3600\tok\n"
        );
        assert!(ask(&n, "get-config:context=namespace;id=test\n").contains("default-ttl=3600;"));
        assert!(ask(&n, "set-config:context=namespace;id=test;default-ttl=abc\n").contains("ERROR:4:"));
        assert!(ask(&n, "set-config:context=namespace;id=test;stop-writes-used-pct=0\n").contains("ERROR:4:"));
        assert!(ask(&n, "set-config:context=namespace;id=test;replication-factor=3\n").contains("not a dynamic"));
        assert!(ask(&n, "set-config:context=namespace;id=nope;default-ttl=1\n").contains("ERROR:20:"));
    }

    #[test]
    fn answers_in_request_order_and_unknowns_are_errors() {
        let n = node();
        let a = ask(&n, "node\nbuild\nno-such-cmd\nstatus\n");
        let lines: Vec<&str> = a.lines().collect();
        assert_eq!(lines[0], format!("node\t{}", n.node_name));
        assert_eq!(lines[1], format!("build\t{BUILD}"));
        assert_eq!(lines[2], "no-such-cmd\tERROR:4:unrecognized command");
        assert_eq!(lines[3], "status\tok");
        assert_eq!(ask(&n, "peers-clear-std\n"), "peers-clear-std\t1,3000,[]\n");
        assert_eq!(ask(&n, "namespace/nope\n"), "namespace/nope\ttype=unknown\n");
        assert_eq!(ask(&n, "cluster-stable:size=2\n"), "cluster-stable:size=2\tERROR:7:cluster not specified size\n");
        assert_eq!(
            ask(&n, "cluster-stable:namespace=nope\n"),
            "cluster-stable:namespace=nope\tERROR:20:namespace not found on node\n"
        );
    }

    #[test]
    fn truncate_cutoffs_outside_the_epoch_and_now_are_refused() {
        let now = 1_800_000_000u128 * 1_000_000_000;
        assert_eq!(truncate_cutoff_ms(None, now), Ok(None));
        assert!(truncate_cutoff_ms(Some("1"), now).is_err());
        assert!(truncate_cutoff_ms(Some("2147483649"), now).is_err());
        assert!(truncate_cutoff_ms(Some("9223372036854775809"), now).is_err());
        assert!(truncate_cutoff_ms(Some("1800000001000000000"), now).is_err());
        assert!(truncate_cutoff_ms(Some("soon"), now).is_err());
        assert_eq!(truncate_cutoff_ms(Some("1262304001000000000"), now), Ok(Some(1000)));
    }

    #[test]
    fn truncate_arguments_are_checked_like_aerospike() {
        let n = node();
        assert_eq!(ask(&n, "truncate:namespace=;set=s\n"), "truncate:namespace=;set=s\tERROR:20:namespace required\n");
        assert_eq!(ask(&n, "truncate:namespace=nope;set=s\n"), "truncate:namespace=nope;set=s\tok\n");
        assert_eq!(
            ask(&n, "truncate-namespace:namespace=nope\n"),
            "truncate-namespace:namespace=nope\tERROR:20:namespace not found\n"
        );
        assert_eq!(
            ask(&n, "truncate:namespace=test;set=\n"),
            "truncate:namespace=test;set=\tERROR:4:set name is empty\n"
        );
        assert_eq!(
            ask(&n, "truncate:namespace=test;set=s;lut=1\n"),
            "truncate:namespace=test;set=s;lut=1\tERROR:4:lut is before the Citrusleaf epoch\n"
        );
    }
}
