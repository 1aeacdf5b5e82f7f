//! A single-record request parsed once: its namespace, digest (computed once, from the
//! DIGEST field or from SET and KEY), set, key, policies and ops, and which command it is.
//! A top-level message and a batch row parse the same way; a row brings its own digest.

use petrel_proto::message::Message;
use petrel_proto::wire::{info1, info2, info3, info4, FieldType, OpType};
use petrel_proto::Digest;
use petrel_storage::exp::Program;
use petrel_storage::ops::{ExistsAction, GenerationPolicy, Op, Ttl, WritePolicy};
use petrel_storage::record::KeyRef;
use petrel_storage::value::ParticleRef;
use petrel_storage::StorageError;

use crate::node::{Node, ServiceNamespace};

/// The single-record commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Bins by name, or all of them.
    Read,
    /// Metadata only.
    Exists,
    /// Read operations (CDT, bit and HLL reads and the like): an operate that writes nothing.
    ReadOps,
    /// An operate that writes (put, increment, append, touch, CDT, bit and HLL modifies …).
    Write,
    /// Removal of the record.
    Delete,
    /// A record UDF: a Lua function run on the record, which may change it.
    Udf,
}

/// A request's ops; inline up to 8, so common requests do not allocate for them.
pub(crate) type Ops<'a> = smallvec::SmallVec<[Op<'a>; 8]>;

/// A parsed single-record request.
#[derive(Debug)]
pub(crate) struct Single<'n, 'a> {
    pub sns: &'n ServiceNamespace,
    pub msg: Message<'a>,
    pub digest: Digest,
    pub set: &'a [u8],
    /// The KEY field's data (particle type, then the key), when the client sent it.
    key: Option<&'a [u8]>,
    pub kind: Kind,
    /// The request's own filter expression, compiled.
    own_filter: Option<Program>,
    /// A filter shared by every row of a batch, used when the row has none of its own.
    shared_filter: Option<&'n Program>,
}

impl<'n, 'a> Single<'n, 'a> {
    /// Parses `msg` for `node`; `digest` is a batch row's own digest. Refuses what Petrel does
    /// not do (filter expressions, transactions) before anything is applied.
    pub(crate) fn parse(
        node: &'n Node,
        msg: Message<'a>,
        digest: Option<Digest>,
        shared_filter: Option<&'n Program>,
    ) -> Result<Self, StorageError> {
        let fields = Fields::of(&msg);
        let ns_name = fields.namespace.ok_or(StorageError::Parameter("no namespace"))?;
        let sns = node.namespace(ns_name).ok_or(StorageError::NamespaceNotFound)?;
        if fields.transaction || msg.header.info4 & info4::TXN_MASK != 0 {
            // Namespaces here have no transaction support: applying the writes at once would
            // leave an aborted transaction applied.
            return Err(StorageError::Unsupported("multi-record transactions"));
        }
        let own_filter = fields.filter.map(Program::compile).transpose()?;
        let set = fields.set.unwrap_or(b"");
        let digest = match (digest, fields.digest) {
            (Some(d), _) => d,
            (None, Some(d)) => Digest::from_slice(d).ok_or(StorageError::Parameter("digest must be 20 bytes"))?,
            (None, None) => {
                let key = fields.key.ok_or(StorageError::Parameter("no digest and no key"))?;
                let (&t, bytes) = key.split_first().ok_or(StorageError::Parameter("empty key field"))?;
                Digest::compute_raw(set, t, bytes)
            }
        };
        let h = msg.header;
        let kind = if fields.udf {
            Kind::Udf
        } else if h.info2 & info2::WRITE != 0 {
            if h.info2 & info2::DELETE != 0 {
                Kind::Delete
            } else {
                Kind::Write
            }
        } else if h.info1 & info1::GET_NO_BINS != 0 {
            Kind::Exists
        } else if msg.ops().all(|o| o.op_type == OpType::Read as u8) {
            Kind::Read
        } else {
            Kind::ReadOps
        };
        Ok(Single { sns, msg, digest, set, key: fields.key, kind, own_filter, shared_filter })
    }

    /// The filter the record must pass, if any.
    pub(crate) fn filter(&self) -> Option<&Program> {
        self.own_filter.as_ref().or(self.shared_filter)
    }

    pub(crate) fn is_write(&self) -> bool {
        matches!(self.kind, Kind::Write | Kind::Delete | Kind::Udf)
    }

    pub(crate) fn partition(&self) -> u16 {
        self.digest.partition_id()
    }

    /// The record's user key, when the client sent it.
    pub(crate) fn key(&self) -> Option<KeyRef<'a>> {
        let (&particle, bytes) = self.key?.split_first()?;
        Some(KeyRef { particle, bytes })
    }

    /// The client asked for commit level "master": copies go out in the background.
    pub(crate) fn commit_master(&self) -> bool {
        self.msg.header.info3 & info3::COMMIT_MASTER != 0
    }

    /// The write policy from the header bits.
    pub(crate) fn write_policy(&self) -> Result<WritePolicy, StorageError> {
        let h = &self.msg.header;
        let exists = if h.info3 & info3::UPDATE_ONLY != 0 {
            ExistsAction::UpdateOnly
        } else if h.info3 & info3::REPLACE_ONLY != 0 {
            ExistsAction::ReplaceOnly
        } else if h.info3 & info3::CREATE_OR_REPLACE != 0 {
            ExistsAction::Replace
        } else if h.info2 & info2::CREATE_ONLY != 0 {
            ExistsAction::CreateOnly
        } else {
            ExistsAction::Update
        };
        let generation = if h.info2 & info2::GENERATION != 0 {
            GenerationPolicy::ExpectEqual(h.generation)
        } else if h.info2 & info2::GENERATION_GT != 0 {
            GenerationPolicy::ExpectGreater(h.generation)
        } else {
            GenerationPolicy::None
        };
        Ok(WritePolicy {
            exists,
            generation,
            ttl: Ttl::from_wire(h.record_ttl)?,
            respond_all_ops: self.respond_all_ops(),
        })
    }

    pub(crate) fn respond_all_ops(&self) -> bool {
        self.msg.header.info2 & info2::RESPOND_ALL_OPS != 0
    }

    /// The wire ops as storage ops.
    pub(crate) fn ops(&self) -> Result<Ops<'a>, StorageError> {
        let mut ops = Ops::with_capacity(self.msg.header.n_ops as usize);
        for w in self.msg.ops() {
            let value = ParticleRef { particle: w.particle, bytes: w.value };
            let op = match OpType::from_u8(w.op_type) {
                Some(OpType::Read) => Op::Read { bin: w.name },
                Some(OpType::Write) => Op::Write { bin: w.name, value },
                Some(OpType::CdtRead) => Op::CdtRead { bin: w.name, payload: w.value },
                Some(OpType::CdtModify) => Op::CdtModify { bin: w.name, payload: w.value },
                Some(OpType::Incr) => Op::Add { bin: w.name, value },
                Some(OpType::Append) => Op::Append { bin: w.name, value },
                Some(OpType::Prepend) => Op::Prepend { bin: w.name, value },
                Some(OpType::Touch) => Op::Touch,
                Some(OpType::Delete) => Op::DeleteRecord,
                Some(OpType::BitRead) => Op::BitRead { bin: w.name, payload: w.value },
                Some(OpType::BitModify) => Op::BitModify { bin: w.name, payload: w.value },
                Some(OpType::HllRead) => Op::HllRead { bin: w.name, payload: w.value },
                Some(OpType::HllModify) => Op::HllModify { bin: w.name, payload: w.value },
                Some(OpType::ExpRead) => Op::ExpRead { bin: w.name, payload: w.value },
                Some(OpType::ExpModify) => Op::ExpModify { bin: w.name, payload: w.value },
                None => return Err(StorageError::Parameter("unknown op type")),
            };
            ops.push(op);
        }
        Ok(ops)
    }
}

/// The fields a single-record request uses, found in one pass over the message.
#[derive(Debug, Default)]
struct Fields<'a> {
    namespace: Option<&'a [u8]>,
    set: Option<&'a [u8]>,
    key: Option<&'a [u8]>,
    digest: Option<&'a [u8]>,
    filter: Option<&'a [u8]>,
    /// A transaction id, deadline or record version field is present.
    transaction: bool,
    /// A UDF package is named: a record UDF.
    udf: bool,
}

impl<'a> Fields<'a> {
    fn of(msg: &Message<'a>) -> Self {
        let mut f = Fields::default();
        // The first field of each type counts, as `Message::field` would find it.
        for field in msg.fields() {
            let slot = match field.field_type {
                t if t == FieldType::Namespace as u8 => &mut f.namespace,
                t if t == FieldType::Set as u8 => &mut f.set,
                t if t == FieldType::Key as u8 => &mut f.key,
                t if t == FieldType::Digest as u8 => &mut f.digest,
                t if t == FieldType::Filter as u8 => &mut f.filter,
                t if is_transaction_field(t) => {
                    f.transaction = true;
                    continue;
                }
                t if t == FieldType::UdfPackageName as u8 => {
                    f.udf = true;
                    continue;
                }
                _ => continue,
            };
            slot.get_or_insert(field.data);
        }
        f
    }
}

fn is_transaction_field(field_type: u8) -> bool {
    field_type == FieldType::TxnId as u8
        || field_type == FieldType::TxnDeadline as u8
        || field_type == FieldType::RecordVersion as u8
}

/// Whether a message belongs to a multi-record transaction: a transaction id, deadline or
/// record version field, or a transaction bit of info4.
pub(crate) fn carries_transaction(msg: &Message<'_>) -> bool {
    msg.header.info4 & info4::TXN_MASK != 0 || msg.fields().any(|f| is_transaction_field(f.field_type))
}
