//! petreld's configuration: built-in defaults, then a TOML file, then `PETREL_…` environment
//! variables, then command-line flags, each layer overriding the one before.
//!
//! Every key has an environment twin: nested keys are joined with `__`, e.g.
//! `PETREL_SERVICE__LISTEN=0.0.0.0:3000` or `PETREL_NAMESPACE__TEST__DEFAULT_TTL=60`.
//! Unknown keys and invalid values stop start-up with a message naming the setting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use petrel_storage::{DeviceConfig, DeviceFileConfig, NamespaceConfig};
use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub service: ServiceConfig,
    /// The cluster layer; off (a node on its own) unless `heartbeat` is set.
    pub cluster: ClusterSettings,
    /// Namespaces by name.
    pub namespace: BTreeMap<String, NamespaceSettings>,
}

/// The service port and the node's identity.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Address of the client service port.
    pub listen: SocketAddr,
    /// Address of the HTTP endpoint (`/health`, `/ready`, `/metrics`); empty = none.
    pub http_listen: String,
    /// The host clients outside a NAT reach this node at (`service-clear-alt`,
    /// `peers-clear-alt`); empty = none.
    pub alternate_access_address: String,
    /// The port that goes with it; 0 = the service port.
    pub alternate_access_port: u16,
    /// Node id as hex; derived from the listen address and a random salt when empty.
    pub node_id: String,
    /// Cluster name clients may check; empty = none.
    pub cluster_name: String,
    /// Directory for persistent data (the flash store; unused by memory namespaces).
    pub data_dir: PathBuf,
    /// The data directory is shared by several nodes (one volume for a scaled service): each
    /// node claims a `node-<n>` subdirectory of its own while it runs.
    pub data_dir_shared: bool,
    /// Most client connections at once; further ones are refused.
    pub proto_fd_max: u32,
    /// Close a client connection idle this long; 0 = never.
    pub proto_fd_idle_ms: u64,
    /// Largest request frame body accepted.
    pub frame_size_max: u64,
    /// Bytes all client connections together may hold in requests still arriving; a
    /// connection that needs more waits for others to finish, and is closed if it waits
    /// past the frame deadline.
    pub incomplete_requests_bytes_max: u64,
    /// Most keys in one batch request.
    pub batch_max_requests: u32,
    /// Threads serving client connections; 0 = one per CPU.
    pub service_threads: usize,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            http_listen: String::new(),
            alternate_access_address: String::new(),
            alternate_access_port: 0,
            node_id: String::new(),
            cluster_name: String::new(),
            data_dir: PathBuf::new(),
            data_dir_shared: false,
            proto_fd_max: 15_000,
            proto_fd_idle_ms: 600_000,
            frame_size_max: 32 << 20,
            incomplete_requests_bytes_max: 256 << 20,
            batch_max_requests: 5_000,
            service_threads: 0,
        }
    }
}

/// Heartbeat, fabric and membership settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// Heartbeat listen address (`host:port`, usually port 3002); empty = no cluster.
    pub heartbeat: String,
    /// Fabric listen address; empty = the heartbeat's host and the port below it.
    pub fabric: String,
    /// Heartbeat endpoints of other nodes (`host:port`, names allowed); one is enough.
    pub seeds: Vec<String>,
    /// The host peers and clients are told; empty = the service listen address's host, or
    /// on a wildcard listener the address that routes to the seeds (else the host name's).
    pub advertise: String,
    /// Milliseconds between heartbeat pulses.
    pub heartbeat_interval_ms: u64,
    /// Missed pulses after which a peer is dead.
    pub heartbeat_timeout: u64,
    /// Which copy of a record wins when copies differ: `last-update-time` (the default) or
    /// `generation` (Aerospike's default). After a split, a side that held no copy of a
    /// partition starts its records at generation 1; by generation, older copies from the
    /// other side would beat its acknowledged writes at the merge.
    pub conflict_resolution: String,
    /// Partitions a node sends at once during migrations.
    pub migrate_threads: usize,
    /// On SIGTERM, seconds a clustered node may spend handing its partitions to the members
    /// that stay before it exits anyway (0 = leave at once, as if it had died).
    pub leave_grace_secs: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            heartbeat: String::new(),
            fabric: String::new(),
            seeds: Vec::new(),
            advertise: String::new(),
            heartbeat_interval_ms: 150,
            heartbeat_timeout: 10,
            conflict_resolution: "last-update-time".into(),
            migrate_threads: 4,
            leave_grace_secs: 30,
        }
    }
}

/// The cluster settings resolved to addresses.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterAddresses {
    pub heartbeat: SocketAddr,
    pub fabric: SocketAddr,
    pub advertise: String,
}

impl ClusterSettings {
    pub fn enabled(&self) -> bool {
        !self.heartbeat.is_empty()
    }

    /// The listen and advertised addresses, from the settings and the service address.
    pub fn addresses(&self, service: SocketAddr) -> Result<ClusterAddresses, String> {
        let heartbeat: SocketAddr =
            self.heartbeat.parse().map_err(|_| format!("cluster.heartbeat: {:?} is not host:port", self.heartbeat))?;
        let fabric = if self.fabric.is_empty() {
            SocketAddr::new(heartbeat.ip(), heartbeat.port().saturating_sub(1))
        } else {
            self.fabric.parse().map_err(|_| format!("cluster.fabric: {:?} is not host:port", self.fabric))?
        };
        let advertise = if !self.advertise.is_empty() {
            self.advertise.clone()
        } else if !service.ip().is_unspecified() {
            service.ip().to_string()
        } else {
            own_address(&self.seeds).ok_or(
                "cluster.advertise: not set, and no address of this host routes to the seeds or \
                 belongs to its host name; set it",
            )?
        };
        Ok(ClusterAddresses { heartbeat, fabric, advertise })
    }
}

/// The address this host is reached at, for a node listening on every address: the local
/// address of the route to the first seed that resolves (a UDP socket is connected, which
/// sends nothing), else the first non-loopback address of the host name. In a container
/// both give the container's address on the network its peers share.
fn own_address(seeds: &[String]) -> Option<String> {
    use std::net::{ToSocketAddrs, UdpSocket};
    let usable = |ip: std::net::IpAddr| !ip.is_unspecified() && !ip.is_multicast();
    for seed in seeds {
        for addr in seed.to_socket_addrs().into_iter().flatten() {
            let any: SocketAddr = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().ok()?;
            let routed = UdpSocket::bind(any).and_then(|s| s.connect(addr).and_then(|_| s.local_addr()));
            if let Ok(local) = routed.map(|l| l.ip()) {
                if usable(local) {
                    return Some(local.to_string());
                }
            }
        }
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let addrs = (host.trim(), 0).to_socket_addrs().ok()?;
    addrs.map(|a| a.ip()).find(|ip| usable(*ip) && !ip.is_loopback()).map(|ip| ip.to_string())
}

/// A namespace's settings, as written in the file (names as in Aerospike, with `_`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NamespaceSettings {
    pub replication_factor: u8,
    pub default_ttl: u32,
    pub memory_size: u64,
    pub evict_used_pct: u8,
    pub stop_writes_used_pct: u8,
    pub max_record_size: usize,
    pub partition_tree_sprigs: usize,
    pub nsup_period: u32,
    /// "memory", "device", or empty: "device" when `service.data_dir` is set, else "memory".
    pub storage_engine: String,
    /// Files of a device namespace (default: `<data_dir>/<namespace>.dat`).
    pub files: Vec<PathBuf>,
    /// Raw block devices of a device namespace, each used whole (instead of `files`).
    pub devices: Vec<PathBuf>,
    /// Bytes of each file.
    pub file_size: u64,
    pub write_block_size: usize,
    pub flush_max_ms: u64,
    pub commit_to_device: bool,
    pub defrag_lwm_pct: u8,
    pub min_avail_pct: u8,
    /// Recent deletes remembered (0: none), so that older copies do not come back.
    pub delete_marks_max: u64,
    /// Seconds a delete is remembered.
    pub tomb_raider_eligible_age: u32,
}

impl Default for NamespaceSettings {
    fn default() -> Self {
        let d = NamespaceConfig::new("default");
        NamespaceSettings {
            replication_factor: d.replication_factor,
            default_ttl: d.default_ttl_secs,
            memory_size: d.memory_size_bytes,
            evict_used_pct: d.evict_used_pct,
            stop_writes_used_pct: d.stop_writes_used_pct,
            max_record_size: d.max_record_size_bytes,
            partition_tree_sprigs: d.sprigs_per_partition,
            nsup_period: d.nsup_period_secs,
            storage_engine: String::new(),
            files: Vec::new(),
            devices: Vec::new(),
            file_size: 4 << 30,
            write_block_size: 1 << 20,
            flush_max_ms: 1_000,
            commit_to_device: false,
            defrag_lwm_pct: 50,
            min_avail_pct: 5,
            delete_marks_max: d.delete_marks_max,
            tomb_raider_eligible_age: d.tomb_raider_eligible_age_secs,
        }
    }
}

/// Bytes a raw block device holds (its whole size; at most what one store file can address).
fn block_device_bytes(path: &std::path::Path) -> Result<u64, String> {
    use std::io::{Seek, SeekFrom};
    use std::os::unix::fs::FileTypeExt;
    let err = |e: std::io::Error| format!("devices: {}: {e}", path.display());
    let mut f = std::fs::File::open(path).map_err(err)?;
    if !f.metadata().map_err(err)?.file_type().is_block_device() {
        return Err(format!("devices: {}: not a block device (regular files go in files)", path.display()));
    }
    let bytes = f.seek(SeekFrom::End(0)).map_err(err)?;
    Ok(bytes.min(petrel_storage::location::DeviceAddr::OFFSET_MAX))
}

impl NamespaceSettings {
    /// The device store of namespace `name`, or None when it is kept in memory.
    pub fn device(&self, name: &str, data_dir: &std::path::Path) -> Result<Option<DeviceConfig>, String> {
        let on_device = match self.storage_engine.as_str() {
            "memory" => false,
            "device" => true,
            "" => !data_dir.as_os_str().is_empty() || !self.devices.is_empty(),
            other => return Err(format!("storage_engine: {other:?} is neither \"memory\" nor \"device\"")),
        };
        if !on_device {
            return Ok(None);
        }
        if !self.files.is_empty() && !self.devices.is_empty() {
            return Err("files and devices: a namespace is stored on one or the other".into());
        }
        let files: Vec<DeviceFileConfig> = if !self.devices.is_empty() {
            self.devices
                .iter()
                .map(|path| Ok(DeviceFileConfig { path: path.clone(), size_bytes: block_device_bytes(path)? }))
                .collect::<Result<_, String>>()?
        } else if !self.files.is_empty() {
            self.files.iter().map(|path| DeviceFileConfig { path: path.clone(), size_bytes: self.file_size }).collect()
        } else if !data_dir.as_os_str().is_empty() {
            vec![DeviceFileConfig { path: data_dir.join(format!("{name}.dat")), size_bytes: self.file_size }]
        } else {
            return Err("storage_engine \"device\" needs files, devices, or service.data_dir (--data-dir)".into());
        };
        // Beside the first file; for raw devices in the data directory (none: no fast restart).
        let fast_restart_path = if self.devices.is_empty() {
            Some(DeviceConfig::beside(&files[0].path))
        } else {
            (!data_dir.as_os_str().is_empty()).then(|| data_dir.join(format!("{name}.snapshot")))
        };
        let config = DeviceConfig {
            fast_restart_path,
            files,
            write_block_bytes: self.write_block_size,
            flush_max_ms: self.flush_max_ms,
            commit_to_device: self.commit_to_device,
            defrag_lwm_pct: self.defrag_lwm_pct,
            min_avail_pct: self.min_avail_pct,
        };
        config.validate()?;
        Ok(Some(config))
    }

    pub fn to_storage(&self, name: &str) -> NamespaceConfig {
        NamespaceConfig {
            name: name.to_string(),
            replication_factor: self.replication_factor,
            default_ttl_secs: self.default_ttl,
            memory_size_bytes: self.memory_size,
            evict_used_pct: self.evict_used_pct,
            stop_writes_used_pct: self.stop_writes_used_pct,
            max_record_size_bytes: self.max_record_size,
            sprigs_per_partition: self.partition_tree_sprigs,
            nsup_period_secs: self.nsup_period,
            delete_marks_max: self.delete_marks_max,
            tomb_raider_eligible_age_secs: self.tomb_raider_eligible_age,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let mut namespace = BTreeMap::new();
        namespace.insert("test".to_string(), NamespaceSettings::default());
        Config { service: ServiceConfig::default(), cluster: ClusterSettings::default(), namespace }
    }
}

/// Command-line overrides.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub namespaces: Vec<String>,
    pub data_dir: Option<PathBuf>,
    pub node_id: Option<String>,
    pub heartbeat: Option<String>,
    pub fabric: Option<String>,
    pub seeds: Vec<String>,
    pub cluster_name: Option<String>,
    pub replication_factor: Option<u8>,
    pub advertise: Option<String>,
    pub http_listen: Option<String>,
}

impl Config {
    /// Loads defaults, `file` (if any), the environment, then `overrides`, and validates.
    pub fn load(file: Option<&std::path::Path>, overrides: &Overrides) -> Result<Config, String> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(format!("config file {} does not exist", path.display()));
            }
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            // A file that names namespaces replaces the default set of namespaces.
            if text.contains("[namespace") {
                figment =
                    Figment::from(Serialized::defaults(Config { namespace: BTreeMap::new(), ..Config::default() }));
            }
            figment = figment.merge(Toml::file(path));
        }
        // Only PETREL_SERVICE__… and PETREL_NAMESPACE__… are settings; other PETREL_ variables
        // belong to tools and tests.
        let env = Env::prefixed("PETREL_")
            .filter(|k| {
                let k = k.as_str().to_ascii_lowercase();
                k.starts_with("service__") || k.starts_with("namespace__") || k.starts_with("cluster__")
            })
            .split("__");
        figment = figment.merge(env);
        let mut config: Config = figment.extract().map_err(|e| describe(&e))?;
        if let Some(listen) = overrides.listen {
            config.service.listen = listen;
        }
        if let Some(dir) = &overrides.data_dir {
            config.service.data_dir = dir.clone();
        }
        if let Some(id) = &overrides.node_id {
            config.service.node_id = id.clone();
        }
        if let Some(v) = &overrides.heartbeat {
            config.cluster.heartbeat = v.clone();
        }
        if let Some(v) = &overrides.fabric {
            config.cluster.fabric = v.clone();
        }
        if !overrides.seeds.is_empty() {
            config.cluster.seeds = overrides.seeds.clone();
        }
        if let Some(v) = &overrides.cluster_name {
            config.service.cluster_name = v.clone();
        }
        if let Some(v) = &overrides.advertise {
            config.cluster.advertise = v.clone();
        }
        if let Some(v) = &overrides.http_listen {
            config.service.http_listen = v.clone();
        }
        if !overrides.namespaces.is_empty() {
            let mut chosen = BTreeMap::new();
            for name in &overrides.namespaces {
                chosen.insert(name.clone(), config.namespace.get(name).cloned().unwrap_or_default());
            }
            config.namespace = chosen;
        }
        if let Some(rf) = overrides.replication_factor {
            for ns in config.namespace.values_mut() {
                ns.replication_factor = rf;
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks every setting, naming the first wrong one.
    pub fn validate(&self) -> Result<(), String> {
        if self.namespace.is_empty() {
            return Err("namespace: at least one namespace is required".into());
        }
        if self.namespace.len() > 32 {
            return Err("namespace: at most 32 namespaces".into());
        }
        for (name, ns) in &self.namespace {
            ns.to_storage(name).validate().map_err(|e| format!("namespace.{name}: {e}"))?;
            ns.device(name, &self.service.data_dir).map_err(|e| format!("namespace.{name}: {e}"))?;
        }
        let alt = &self.service.alternate_access_address;
        if alt.len() > 255 || alt.contains(|c: char| c.is_whitespace() || ",;[]".contains(c)) {
            return Err("service.alternate_access_address: a host name or address".into());
        }
        if self.service.data_dir_shared && self.service.data_dir.as_os_str().is_empty() {
            return Err("service.data_dir_shared: needs service.data_dir (--data-dir)".into());
        }
        if !self.service.node_id.is_empty() {
            parse_node_id(&self.service.node_id).map_err(|e| format!("service.node_id: {e}"))?;
        }
        if !self.service.http_listen.is_empty() && self.service.http_listen.parse::<SocketAddr>().is_err() {
            return Err(format!("service.http_listen: {:?} is not host:port", self.service.http_listen));
        }
        if self.service.proto_fd_max == 0 {
            return Err("service.proto_fd_max: must be at least 1".into());
        }
        if self.service.frame_size_max < 1024 || self.service.frame_size_max > petrel_proto::wire::PROTO_SIZE_MAX {
            return Err("service.frame_size_max: must be 1 KiB to 128 MiB".into());
        }
        if self.service.incomplete_requests_bytes_max < self.service.frame_size_max {
            return Err("service.incomplete_requests_bytes_max: must be at least service.frame_size_max".into());
        }
        if self.service.service_threads > 256 {
            return Err("service.service_threads: at most 256".into());
        }
        if self.service.batch_max_requests == 0 {
            return Err("service.batch_max_requests: must be at least 1".into());
        }
        if self.service.cluster_name.contains(['\t', '\n', ';', ':']) {
            return Err("service.cluster_name: must not contain tabs, newlines, ';' or ':'".into());
        }
        let c = &self.cluster;
        if c.enabled() {
            c.addresses(self.service.listen)?;
        }
        if c.seeds.len() > 64 {
            return Err("cluster.seeds: at most 64".into());
        }
        if !(10..=10_000).contains(&c.heartbeat_interval_ms) {
            return Err("cluster.heartbeat_interval_ms: must be 10 to 10000".into());
        }
        if !(3..=1000).contains(&c.heartbeat_timeout) {
            return Err("cluster.heartbeat_timeout: must be 3 to 1000".into());
        }
        if !matches!(c.conflict_resolution.as_str(), "generation" | "last-update-time") {
            return Err("cluster.conflict_resolution: must be generation or last-update-time".into());
        }
        if !(1..=64).contains(&c.migrate_threads) {
            return Err("cluster.migrate_threads: must be 1 to 64".into());
        }
        if c.leave_grace_secs > 3600 {
            return Err("cluster.leave_grace_secs: at most 3600".into());
        }
        Ok(())
    }
}

/// Parses a node id: 1 to 16 hex digits, not zero.
pub fn parse_node_id(s: &str) -> Result<u64, String> {
    let id = u64::from_str_radix(s, 16).map_err(|_| format!("{s:?} is not 1 to 16 hex digits"))?;
    if id == 0 {
        return Err("node id must not be 0".into());
    }
    Ok(id)
}

fn describe(e: &figment::Error) -> String {
    let mut parts = Vec::new();
    for err in e.clone() {
        let path = err.path.join(".");
        let origin = err.metadata.as_ref().map(|m| m.name.to_string()).unwrap_or_default();
        parts.push(if path.is_empty() {
            format!("{} ({origin})", err.kind)
        } else {
            format!("{path}: {} ({origin})", err.kind)
        });
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_hold_one_test_namespace_on_loopback() {
        let c = Config::load(None, &Overrides::default()).expect("defaults load");
        assert_eq!(c.service.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(c.namespace.keys().collect::<Vec<_>>(), vec!["test"]);
    }

    #[test]
    fn file_unknown_keys_and_bad_values_are_named() {
        let dir = std::env::temp_dir().join(format!("petrel-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("bad.toml");
        std::fs::write(&file, "[service]\nlisten = \"127.0.0.1:4000\"\nbogus = 1\n").expect("write");
        let err = Config::load(Some(&file), &Overrides::default()).unwrap_err();
        assert!(err.contains("bogus"), "{err}");
        std::fs::write(&file, "[namespace.bar]\npartition_tree_sprigs = 3\n").expect("write");
        let err = Config::load(Some(&file), &Overrides::default()).unwrap_err();
        assert!(err.contains("namespace.bar") && err.contains("sprigs"), "{err}");
        std::fs::write(&file, "[namespace.bar]\ndefault_ttl = 60\n[namespace.baz]\n").expect("write");
        let c = Config::load(Some(&file), &Overrides::default()).expect("loads");
        assert_eq!(c.namespace.keys().collect::<Vec<_>>(), vec!["bar", "baz"]);
        assert_eq!(c.namespace["bar"].default_ttl, 60);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn flags_override() {
        let o =
            Overrides { namespaces: vec!["a".into(), "b".into()], node_id: Some("zz".into()), ..Default::default() };
        let err = Config::load(None, &o).unwrap_err();
        assert!(err.contains("service.node_id"), "{err}");
        let o = Overrides { namespaces: vec!["a".into()], node_id: Some("A1".into()), ..Default::default() };
        let c = Config::load(None, &o).expect("loads");
        assert_eq!(c.namespace.keys().collect::<Vec<_>>(), vec!["a"]);
    }

    #[test]
    fn devices_must_be_block_devices_and_exclude_files() {
        let regular = std::env::temp_dir().join(format!("petrel-config-device-{}", std::process::id()));
        std::fs::write(&regular, b"not a device").expect("write");
        let settings = NamespaceSettings { devices: vec![regular.clone()], ..Default::default() };
        let err = settings.device("test", std::path::Path::new("")).unwrap_err();
        assert!(err.contains("not a block device"), "{err}");
        let both = NamespaceSettings { files: vec![regular.clone()], ..settings };
        let err = both.device("test", std::path::Path::new("")).unwrap_err();
        assert!(err.contains("files and devices"), "{err}");
        let _ = std::fs::remove_file(&regular);
    }
}

#[cfg(test)]
mod env_tests {
    use super::*;

    #[test]
    fn environment_overrides_nested_keys() {
        // Only this test sets these variables.
        std::env::set_var("PETREL_NAMESPACE__TEST__MAX_RECORD_SIZE", "4096");
        std::env::set_var("PETREL_SERVICE__PROTO_FD_MAX", "77");
        std::env::set_var("PETREL_UNRELATED_TOOL_SETTING", "x");
        let c = Config::load(None, &Overrides::default());
        std::env::remove_var("PETREL_NAMESPACE__TEST__MAX_RECORD_SIZE");
        std::env::remove_var("PETREL_SERVICE__PROTO_FD_MAX");
        std::env::remove_var("PETREL_UNRELATED_TOOL_SETTING");
        let c = c.expect("loads");
        assert_eq!(c.service.proto_fd_max, 77);
        assert_eq!(c.namespace["test"].max_record_size, 4096);
    }
}
