//! Messages between Petrel nodes (heartbeat port 3002, fabric port 3001), as protobuf
//! through prost. These are Petrel's own; clients never see them.
//!
//! Every message carries a `version`: a receiver refuses a version it does not know instead
//! of misreading it. New fields get new tags; tags are never reused.

/// The byte buffer record images travel in (shared by reference count).
pub use prost::bytes::Bytes;

/// Version of the heartbeat messages this build speaks.
pub const HEARTBEAT_VERSION: u32 = 1;

/// A heartbeat pulse: who the sender is, how to reach it, whom it hears, and the cluster it
/// believes in.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Pulse {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(uint64, tag = "2")]
    pub node_id: u64,
    #[prost(string, tag = "3")]
    pub cluster_name: String,
    /// Heartbeat endpoints (`host:port`) the sender can be reached at.
    #[prost(string, repeated, tag = "4")]
    pub heartbeat_endpoints: Vec<String>,
    /// Fabric endpoints, for replica writes and migrations.
    #[prost(string, repeated, tag = "5")]
    pub fabric_endpoints: Vec<String>,
    /// Service endpoints, as told to clients.
    #[prost(string, repeated, tag = "6")]
    pub service_endpoints: Vec<String>,
    /// Node ids the sender currently hears (its adjacency list).
    #[prost(uint64, repeated, tag = "7")]
    pub adjacency: Vec<u64>,
    /// The sender's current cluster key (0 = none).
    #[prost(uint64, tag = "8")]
    pub cluster_key: u64,
    /// The sender's current member list, highest id first (the principal first).
    #[prost(uint64, repeated, tag = "9")]
    pub members: Vec<u64>,
    /// Heartbeat endpoints of nodes in the adjacency list, so a node that knows one seed
    /// learns how to reach everyone: parallel to `adjacency`.
    #[prost(string, repeated, tag = "10")]
    pub adjacency_endpoints: Vec<String>,
    /// The sender is leaving (it was told to stop): it asks to own nothing and hands its
    /// partitions over before it goes.
    #[prost(bool, tag = "11")]
    pub leaving: bool,
    /// The members of the sender's view that own nothing because they are leaving.
    #[prost(uint64, repeated, tag = "12")]
    pub leaving_members: Vec<u64>,
    /// Random at each start of the sender: a node that restarted (under the node timeout,
    /// unnoticed otherwise) shows a new one. 0 = not sent.
    #[prost(uint64, tag = "13")]
    pub boot_id: u64,
    /// The boot id of each member when its view was decided, parallel to `members`: a view
    /// decided before a member's restart does not hold that member's new life.
    #[prost(uint64, repeated, tag = "14")]
    pub member_boots: Vec<u64>,
    /// The sender's cluster clock when it sent the pulse, in milliseconds since the
    /// Citrusleaf epoch: receivers whose clock is behind move theirs ahead to it, so that
    /// last-update times order writes across nodes. 0 = not sent.
    #[prost(uint64, tag = "15")]
    pub cluster_time_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn pulse_round_trips() {
        let p = Pulse {
            version: HEARTBEAT_VERSION,
            node_id: 0xBB90_1000_0000_0C02,
            cluster_name: "prod".into(),
            heartbeat_endpoints: vec!["127.0.0.2:3002".into()],
            adjacency: vec![1, 2],
            adjacency_endpoints: vec!["127.0.0.3:3002".into(), "127.0.0.4:3002".into()],
            cluster_key: 0x1234,
            members: vec![3, 2, 1],
            leaving: true,
            leaving_members: vec![3],
            ..Default::default()
        };
        let bytes = p.encode_to_vec();
        assert_eq!(Pulse::decode(bytes.as_slice()).expect("decodes"), p);
        assert!(Pulse::decode(&[0xff, 0xff, 0xff][..]).is_err());
    }

    #[test]
    fn replica_write_round_trips_and_retired_tags_carry_no_body() {
        let write = FabricMessage {
            version: FABRIC_VERSION,
            request_id: 7,
            is_answer: false,
            body: Some(fabric_message::Body::ReplicaWrite(ReplicaWrite {
                cluster_key: 0xABCD,
                change: Some(replica_write::Change::Delete(RecordRef {
                    namespace: "test".into(),
                    digest: vec![1; 20],
                    lut_ms: 5,
                })),
            })),
        };
        let bytes = write.encode_to_vec();
        assert_eq!(FabricMessage::decode(bytes.as_slice()).expect("decodes"), write);
        // A body under retired tag 10 (an empty message) decodes to no body at all, which a
        // receiver refuses.
        let retired = [0x08, 0x01, 0x52, 0x00];
        let old = FabricMessage::decode(&retired[..]).expect("decodes");
        assert_eq!(old.body, None);
    }
}

/// Version of the fabric messages this build speaks. Version 2: replica writes carry the
/// sender's cluster key ([`ReplicaWrite`]); the key-less record copy and delete are retired.
pub const FABRIC_VERSION: u32 = 2;

/// One fabric message: a request (non-zero `request_id`, answered by a message with the same
/// id and `is_answer`) carrying one of the bodies below.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FabricMessage {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(uint64, tag = "2")]
    pub request_id: u64,
    #[prost(bool, tag = "3")]
    pub is_answer: bool,
    #[prost(oneof = "fabric_message::Body", tags = "12, 13, 14, 15, 16, 17, 18, 19, 20, 21")]
    pub body: Option<fabric_message::Body>,
}

pub mod fabric_message {
    /// What a fabric message carries.
    #[derive(Clone, PartialEq, prost::Oneof)]
    ///
    /// Tags 10 (a record copy for a replica) and 11 (a delete for a replica) are retired: they
    /// carried no cluster key. Never reuse them.
    pub enum Body {
        /// The result of a request: 0 = done, otherwise a result code.
        #[prost(message, tag = "12")]
        Ack(super::Ack),
        /// A batch of records of one partition moving to a new owner.
        #[prost(message, tag = "13")]
        MigrateRecords(super::MigrateRecords),
        /// A client request forwarded to the node that owns its partition, and the answer.
        #[prost(message, tag = "14")]
        Proxy(super::Proxy),
        /// What partitions a node holds, sent to every member when a new view is adopted.
        #[prost(message, tag = "15")]
        Exchange(super::Exchange),
        /// A node now holds a complete copy of a partition.
        #[prost(message, tag = "16")]
        PartitionComplete(super::PartitionComplete),
        /// An info command every member must run (truncate, set-config).
        #[prost(message, tag = "17")]
        Info(super::InfoCommand),
        /// The answer to an info command.
        #[prost(message, tag = "18")]
        InfoAnswer(super::InfoCommand),
        /// A write the partition's master made, for the partition's other owners.
        #[prost(message, tag = "19")]
        ReplicaWrite(super::ReplicaWrite),
        /// What a migration source holds in one digest range of a partition, for a receiver
        /// that kept copies restored from its device store.
        #[prost(message, tag = "20")]
        MigrateOffer(super::MigrateOffer),
        /// The answer to an offer: which offered records the receiver needs.
        #[prost(message, tag = "21")]
        MigrateWanted(super::MigrateWanted),
    }
}

/// A write the partition's master made, sent to every other owner of the partition. The
/// receiver applies it only while it has the same cluster key installed; otherwise it answers
/// `ClusterKeyMismatch` and the master sends it again under its newer plan.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReplicaWrite {
    /// The sender's installed cluster key.
    #[prost(uint64, tag = "1")]
    pub cluster_key: u64,
    #[prost(oneof = "replica_write::Change", tags = "2, 3")]
    pub change: Option<replica_write::Change>,
}

pub mod replica_write {
    /// What a replica write changes.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Change {
        /// The record as the write left it.
        #[prost(message, tag = "2")]
        Record(super::RecordCopy),
        /// The write removed the record.
        #[prost(message, tag = "3")]
        Delete(super::RecordRef),
    }
}

/// A record copy: where it goes, its metadata, and its image.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RecordCopy {
    #[prost(string, tag = "1")]
    pub namespace: String,
    #[prost(bytes = "vec", tag = "2")]
    pub digest: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub set: Vec<u8>,
    #[prost(uint32, tag = "4")]
    pub generation: u32,
    #[prost(uint32, tag = "5")]
    pub void_time: u32,
    #[prost(uint64, tag = "6")]
    pub lut_ms: u64,
    /// Shared, not copied, between the tries and targets of one replica write.
    #[prost(bytes = "bytes", tag = "7")]
    pub image: Bytes,
}

/// A record named by namespace and digest.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RecordRef {
    #[prost(string, tag = "1")]
    pub namespace: String,
    #[prost(bytes = "vec", tag = "2")]
    pub digest: Vec<u8>,
    /// For a delete: when the master deleted it (last-update time, ms since the Citrusleaf
    /// epoch; 0 = not known).
    #[prost(uint64, tag = "3")]
    pub lut_ms: u64,
}

/// An answer's result.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Ack {
    #[prost(uint32, tag = "1")]
    pub result_code: u32,
}

/// Records of one partition sent to a new owner; `done` marks the last batch.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MigrateRecords {
    #[prost(string, tag = "1")]
    pub namespace: String,
    #[prost(uint32, tag = "2")]
    pub partition_id: u32,
    #[prost(uint64, tag = "3")]
    pub cluster_key: u64,
    #[prost(message, repeated, tag = "4")]
    pub records: Vec<RecordCopy>,
    #[prost(bool, tag = "5")]
    pub done: bool,
    /// The partition version the receiver takes when `done` (0 = a merge into a holder).
    #[prost(uint64, tag = "6")]
    pub version: u64,
    /// Records flow into a node that already holds the partition (after a split heals).
    #[prost(bool, tag = "7")]
    pub merge: bool,
    /// The sending node.
    #[prost(uint64, tag = "8")]
    pub from_node: u64,
    /// With `done`: the sender's delete marks of the partition (digest and delete time in
    /// `lut_ms`), so that the receiver neither keeps nor later takes older copies of them.
    #[prost(message, repeated, tag = "9")]
    pub deletes: Vec<RecordStamp>,
}

/// A record's identity and version, without its data.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RecordStamp {
    #[prost(bytes = "vec", tag = "1")]
    pub digest: Vec<u8>,
    #[prost(uint32, tag = "2")]
    pub generation: u32,
    #[prost(uint32, tag = "3")]
    pub void_time: u32,
    #[prost(uint64, tag = "4")]
    pub lut_ms: u64,
}

/// The live records a migration source holds in the digest range (`after`, `through`] of a
/// partition, ascending. An empty `after` starts at the partition's first digest, an empty
/// `through` runs to its end.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MigrateOffer {
    #[prost(string, tag = "1")]
    pub namespace: String,
    #[prost(uint32, tag = "2")]
    pub partition_id: u32,
    #[prost(uint64, tag = "3")]
    pub cluster_key: u64,
    #[prost(uint64, tag = "4")]
    pub from_node: u64,
    #[prost(bytes = "vec", tag = "5")]
    pub after: Vec<u8>,
    #[prost(bytes = "vec", tag = "6")]
    pub through: Vec<u8>,
    #[prost(message, repeated, tag = "7")]
    pub stamps: Vec<RecordStamp>,
    /// A merge into a holder: the receiver wants only the offered records it lacks or whose
    /// copy loses to the offered one, and deletes nothing.
    #[prost(bool, tag = "8")]
    pub merge: bool,
}

/// The answer to a [`MigrateOffer`]. `reconciling` false: the receiver keeps no copy to
/// reconcile, did nothing, and wants every record (the source sends the partition whole).
/// Otherwise `wanted` lists the offered records it needs, by index.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MigrateWanted {
    #[prost(uint32, tag = "1")]
    pub result_code: u32,
    #[prost(bool, tag = "2")]
    pub reconciling: bool,
    #[prost(uint32, repeated, tag = "3")]
    pub wanted: Vec<u32>,
}

/// A client frame (request, or answer frames) carried between nodes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Proxy {
    #[prost(bytes = "vec", tag = "1")]
    pub frame: Vec<u8>,
    /// Nodes the request has already passed through.
    #[prost(uint32, tag = "2")]
    pub hops: u32,
}

/// One namespace's partition versions as a node reports them (0 = not held).
#[derive(Clone, PartialEq, prost::Message)]
pub struct NamespaceVersions {
    #[prost(string, tag = "1")]
    pub namespace: String,
    /// One version per partition, partition id order.
    #[prost(fixed64, repeated, tag = "2")]
    pub versions: Vec<u64>,
    /// The versions were read back from the node's device store at start, and no plan was
    /// installed since: its copies are at most as new as any live holder's.
    #[prost(bool, tag = "3")]
    pub restored: bool,
}

/// A node's holdings for the view with `cluster_key`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exchange {
    #[prost(uint64, tag = "1")]
    pub cluster_key: u64,
    #[prost(uint64, tag = "2")]
    pub node_id: u64,
    #[prost(message, repeated, tag = "3")]
    pub namespaces: Vec<NamespaceVersions>,
}

/// `node_id` holds partition `partition_id` of `namespace` at `version`, in the view with
/// `cluster_key`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PartitionComplete {
    #[prost(uint64, tag = "1")]
    pub cluster_key: u64,
    #[prost(string, tag = "2")]
    pub namespace: String,
    #[prost(uint32, tag = "3")]
    pub partition_id: u32,
    #[prost(uint64, tag = "4")]
    pub node_id: u64,
    #[prost(uint64, tag = "5")]
    pub version: u64,
}

/// An info command line, or its answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InfoCommand {
    #[prost(string, tag = "1")]
    pub line: String,
}
