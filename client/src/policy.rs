//! Policies: how the client connects, and how each call behaves (timeouts, retries, write
//! semantics).

use std::time::Duration;

/// Settings of the client as a whole.
#[derive(Debug, Clone)]
pub struct ClientPolicy {
    /// Timeout for connecting to a node and for each tend request.
    pub connect_timeout: Duration,
    /// How often the cluster is tended (peers and partition map refreshed).
    pub tend_interval: Duration,
    /// Idle connections kept per node.
    pub connections_per_node_max: usize,
    /// The cluster name the nodes must report, if set.
    pub cluster_name: Option<String>,
    /// Fail `Client::new` when no seed answers.
    pub fail_if_not_connected: bool,
}

impl Default for ClientPolicy {
    fn default() -> Self {
        ClientPolicy {
            connect_timeout: Duration::from_secs(1),
            tend_interval: Duration::from_secs(1),
            connections_per_node_max: 64,
            cluster_name: None,
            fail_if_not_connected: true,
        }
    }
}

/// Which replica a read goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Replica {
    /// The partition's master.
    #[default]
    Master,
    /// Master first, then the next replica on retry.
    Sequence,
}

/// Behaviour of one call: its time budget and retries.
#[derive(Debug, Clone)]
pub struct BasePolicy {
    /// Total time for the call, retries included; zero means no limit.
    pub total_timeout: Duration,
    /// Time for one attempt; zero means the total timeout.
    pub socket_timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Pause between attempts.
    pub sleep_between_retries: Duration,
    pub replica: Replica,
    /// A condition each record must pass to be read, written or returned; see
    /// [`crate::FilterExp`].
    pub filter_expression: Option<crate::FilterExp>,
}

impl Default for BasePolicy {
    fn default() -> Self {
        BasePolicy {
            total_timeout: Duration::from_millis(1000),
            socket_timeout: Duration::from_millis(0),
            max_retries: 2,
            sleep_between_retries: Duration::from_millis(0),
            replica: Replica::Sequence,
            filter_expression: None,
        }
    }
}

/// What a write does when the record exists or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordExistsAction {
    #[default]
    Update,
    UpdateOnly,
    Replace,
    ReplaceOnly,
    CreateOnly,
}

/// Generation check of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GenerationPolicy {
    #[default]
    None,
    ExpectEqual(u32),
    ExpectGreater(u32),
}

/// Expiry of a written record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expiration {
    /// The namespace's default TTL.
    #[default]
    NamespaceDefault,
    Never,
    /// Keep the record's current expiry.
    DontUpdate,
    Seconds(u32),
}

impl Expiration {
    pub(crate) fn wire(self) -> u32 {
        match self {
            Expiration::NamespaceDefault => 0,
            Expiration::Never => u32::MAX,
            Expiration::DontUpdate => u32::MAX - 1,
            Expiration::Seconds(s) => s,
        }
    }
}

/// Policy of reads.
#[derive(Debug, Clone, Default)]
pub struct ReadPolicy {
    pub base: BasePolicy,
}

/// Policy of writes (put, delete, touch, operate).
#[derive(Debug, Clone, Default)]
pub struct WritePolicy {
    pub base: BasePolicy,
    pub exists: RecordExistsAction,
    pub generation: GenerationPolicy,
    pub expiration: Expiration,
    /// Store the user key with the record (it comes back in scans).
    pub send_key: bool,
    /// Acknowledge once the master has applied the write.
    pub commit_master: bool,
    /// Remove with a tombstone (accepted, not needed by Petrel).
    pub durable_delete: bool,
}

/// Policy of batch reads.
#[derive(Debug, Clone, Default)]
pub struct BatchPolicy {
    pub base: BasePolicy,
}

/// Policy of scans.
#[derive(Debug, Clone)]
pub struct ScanPolicy {
    pub base: BasePolicy,
    /// Stop after this many records in all (0 = no limit).
    pub max_records: u64,
    /// Records buffered between the network and the consumer.
    pub record_queue_size: usize,
}

impl Default for ScanPolicy {
    fn default() -> Self {
        ScanPolicy {
            base: BasePolicy { total_timeout: std::time::Duration::from_secs(0), ..Default::default() },
            max_records: 0,
            record_queue_size: 1024,
        }
    }
}
