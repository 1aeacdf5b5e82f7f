//! The on-device format of the flash store, byte by byte (drawn in `docs/design.md`): the file
//! header in block 0 of every file, the header of each write block, and each record. All
//! integers are little-endian. Every header and record carries a CRC-32 (the common IEEE
//! polynomial, `crc32fast`), so a torn or corrupt record is recognised and never served.

use petrel_proto::Digest;

/// First bytes of a Petrel device file.
pub const FILE_MAGIC: &[u8; 8] = b"PTRLDEV1";
/// Format version of this layout.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of the file header (at the start of block 0, which holds nothing else).
pub const FILE_HEADER_LEN: usize = 64;
/// Longest namespace name the file header keeps.
pub const NAMESPACE_NAME_MAX: usize = 31;

/// First bytes of a write block.
pub const BLOCK_MAGIC: &[u8; 4] = b"PBK1";
/// Bytes of a write block's header; records follow it.
pub const BLOCK_HEADER_LEN: usize = 32;

/// Bytes of a record's header; the set name, then the image, then padding follow it.
pub const RECORD_HEADER_LEN: usize = 48;
/// Records start on multiples of this many bytes.
pub const RECORD_ALIGN: usize = 8;
/// Bytes of zeros written after the last record of a block (a record length of 0).
pub const RECORD_END_LEN: usize = 4;

/// Record flag: a durable delete (no image).
pub const FLAG_TOMBSTONE: u8 = 1;
/// Record flag: a truncation of the record's set (of the namespace when the set name is
/// empty) up to its last-update time; digest zero, no image.
pub const FLAG_TRUNCATE: u8 = 2;

/// What the file header says about the file and the store it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHeader {
    pub block_bytes: u32,
    pub file_index: u32,
    pub files_count: u32,
    /// Random at creation, the same in every file of one store: blocks of another store
    /// (a file reused) are not taken for this one's.
    pub store_id: u64,
    pub namespace: String,
}

impl FileHeader {
    /// `magic(8) version(4) block_bytes(4) file_index(4) files_count(4) store_id(8)
    /// name_len(1) name(31) crc(4)`: 64 bytes.
    pub fn encode(&self) -> [u8; FILE_HEADER_LEN] {
        let mut b = [0u8; FILE_HEADER_LEN];
        b[0..8].copy_from_slice(FILE_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.block_bytes.to_le_bytes());
        b[16..20].copy_from_slice(&self.file_index.to_le_bytes());
        b[20..24].copy_from_slice(&self.files_count.to_le_bytes());
        b[24..32].copy_from_slice(&self.store_id.to_le_bytes());
        let name = self.namespace.as_bytes();
        let n = name.len().min(NAMESPACE_NAME_MAX);
        b[32] = n as u8;
        b[33..33 + n].copy_from_slice(&name[..n]);
        let crc = crc32fast::hash(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// The header, or why these bytes are not one: `Ok(None)` for a file never written (all
    /// zero), an error for anything else that is not a valid header of this version.
    pub fn decode(b: &[u8]) -> Result<Option<FileHeader>, &'static str> {
        if b.len() < FILE_HEADER_LEN {
            return Err("file header truncated");
        }
        if b[..FILE_HEADER_LEN].iter().all(|&x| x == 0) {
            return Ok(None);
        }
        if &b[0..8] != FILE_MAGIC {
            return Err("not a Petrel device file");
        }
        if crc32fast::hash(&b[..60]) != u32_at(b, 60) {
            return Err("file header checksum mismatch");
        }
        if u32_at(b, 8) != FORMAT_VERSION {
            return Err("device format version not supported");
        }
        let n = (b[32] as usize).min(NAMESPACE_NAME_MAX);
        let namespace = String::from_utf8(b[33..33 + n].to_vec()).map_err(|_| "namespace name not UTF-8")?;
        Ok(Some(FileHeader {
            block_bytes: u32_at(b, 12),
            file_index: u32_at(b, 16),
            files_count: u32_at(b, 20),
            store_id: u64_at(b, 24),
            namespace,
        }))
    }
}

/// A write block's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    /// Order of writing across the store: a later block's records are newer.
    pub sequence: u64,
    pub store_id: u64,
    pub file_index: u32,
}

impl BlockHeader {
    /// `magic(4) crc(4) sequence(8) store_id(8) file_index(4) reserved(4)`: 32 bytes; the
    /// CRC covers bytes 8..32.
    pub fn write(&self, b: &mut [u8]) {
        b[0..4].copy_from_slice(BLOCK_MAGIC);
        b[8..16].copy_from_slice(&self.sequence.to_le_bytes());
        b[16..24].copy_from_slice(&self.store_id.to_le_bytes());
        b[24..28].copy_from_slice(&self.file_index.to_le_bytes());
        b[28..32].fill(0);
        let crc = crc32fast::hash(&b[8..BLOCK_HEADER_LEN]);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
    }

    /// The header, or None when these bytes do not hold a valid one.
    pub fn read(b: &[u8]) -> Option<BlockHeader> {
        if b.len() < BLOCK_HEADER_LEN || &b[0..4] != BLOCK_MAGIC {
            return None;
        }
        if crc32fast::hash(&b[8..BLOCK_HEADER_LEN]) != u32_at(b, 4) {
            return None;
        }
        Some(BlockHeader { sequence: u64_at(b, 8), store_id: u64_at(b, 16), file_index: u32_at(b, 24) })
    }
}

/// A record's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub digest: Digest,
    pub generation: u16,
    pub flags: u8,
    pub void_time: u32,
    pub lut_ms: u64,
}

/// Bytes a record with a set name of `set_len` and an image of `image_len` takes, padding
/// included.
pub fn record_len(set_len: usize, image_len: usize) -> usize {
    (RECORD_HEADER_LEN + set_len + image_len).next_multiple_of(RECORD_ALIGN)
}

/// Appends a record: `len(4) crc(4) digest(20) generation(2) flags(1) set_len(1)
/// void_time(4) image_len(4) lut_ms(8)`, then the set name, the image and zero padding. The
/// CRC covers everything after itself up to the padding.
pub fn append_record(out: &mut Vec<u8>, h: &RecordHeader, set: &[u8], image: &[u8]) {
    debug_assert!(set.len() <= u8::MAX as usize);
    let start = out.len();
    let len = record_len(set.len(), image.len());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(h.digest.as_bytes());
    out.extend_from_slice(&h.generation.to_le_bytes());
    out.push(h.flags);
    out.push(set.len() as u8);
    out.extend_from_slice(&h.void_time.to_le_bytes());
    out.extend_from_slice(&(image.len() as u32).to_le_bytes());
    out.extend_from_slice(&h.lut_ms.to_le_bytes());
    out.extend_from_slice(set);
    out.extend_from_slice(image);
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.resize(start + len, 0);
}

/// A record read back: its header, set name and image, borrowed from the bytes it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub header: RecordHeader,
    pub set: &'a [u8],
    pub image: &'a [u8],
    /// Bytes the record takes, padding included.
    pub len: usize,
}

/// Why bytes at a record position are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// Zero length: no record was ever written here (the rest of the block is empty).
    End,
    /// A length past the bytes available, or lengths that do not add up.
    Torn,
    /// The checksum does not match.
    Corrupt,
}

/// Parses the record at the start of `b` (the bytes up to the end of its block).
pub fn read_record(b: &[u8]) -> Result<RecordView<'_>, RecordError> {
    if b.len() < RECORD_HEADER_LEN {
        return if b.iter().all(|&x| x == 0) { Err(RecordError::End) } else { Err(RecordError::Torn) };
    }
    let len = u32_at(b, 0) as usize;
    if len == 0 {
        return Err(RecordError::End);
    }
    let set_len = b[31] as usize;
    let image_len = u32_at(b, 36) as usize;
    if len > b.len() || !len.is_multiple_of(RECORD_ALIGN) || record_len(set_len, image_len) != len {
        return Err(RecordError::Torn);
    }
    let body_end = RECORD_HEADER_LEN + set_len + image_len;
    if crc32fast::hash(&b[8..body_end]) != u32_at(b, 4) {
        return Err(RecordError::Corrupt);
    }
    let mut digest = [0u8; 20];
    digest.copy_from_slice(&b[8..28]);
    Ok(RecordView {
        header: RecordHeader {
            digest: Digest(digest),
            generation: u16::from_le_bytes([b[28], b[29]]),
            flags: b[30],
            void_time: u32_at(b, 32),
            lut_ms: u64_at(b, 40),
        },
        set: &b[RECORD_HEADER_LEN..RECORD_HEADER_LEN + set_len],
        image: &b[RECORD_HEADER_LEN + set_len..body_end],
        len,
    })
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(n: u8) -> RecordHeader {
        RecordHeader { digest: Digest([n; 20]), generation: 7, flags: 0, void_time: 99, lut_ms: 123_456 }
    }

    #[test]
    fn records_round_trip_and_damage_is_recognised() {
        let mut block = Vec::new();
        append_record(&mut block, &header(1), b"users", b"image bytes");
        append_record(&mut block, &RecordHeader { flags: FLAG_TOMBSTONE, ..header(2) }, b"", b"");
        assert_eq!(block.len() % RECORD_ALIGN, 0);
        block.resize(block.len() + 64, 0);

        let a = read_record(&block).expect("first");
        assert_eq!((a.header, a.set, a.image), (header(1), &b"users"[..], &b"image bytes"[..]));
        let b = read_record(&block[a.len..]).expect("second");
        assert_eq!(b.header.flags, FLAG_TOMBSTONE);
        assert_eq!(read_record(&block[a.len + b.len..]), Err(RecordError::End));

        // A flipped bit anywhere in the first record is caught.
        for i in 4..a.len - 1 {
            let mut bad = block.clone();
            bad[i] ^= 0x10;
            assert!(read_record(&bad).is_err() || bad[..a.len] == block[..a.len], "byte {i}");
        }
        // Cut short: torn, not read past its end.
        assert_eq!(read_record(&block[..a.len - 8]), Err(RecordError::Torn));
        let mut huge = block.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(read_record(&huge), Err(RecordError::Torn));
    }

    #[test]
    fn headers_round_trip_and_refuse_damage() {
        let fh =
            FileHeader { block_bytes: 1 << 20, file_index: 1, files_count: 2, store_id: 42, namespace: "test".into() };
        let bytes = fh.encode();
        assert_eq!(FileHeader::decode(&bytes), Ok(Some(fh)));
        assert_eq!(FileHeader::decode(&[0; FILE_HEADER_LEN]), Ok(None));
        let mut bad = bytes;
        bad[40] ^= 1;
        assert!(FileHeader::decode(&bad).is_err());

        let bh = BlockHeader { sequence: 9, store_id: 42, file_index: 1 };
        let mut b = [0u8; BLOCK_HEADER_LEN];
        bh.write(&mut b);
        assert_eq!(BlockHeader::read(&b), Some(bh));
        b[9] ^= 1;
        assert_eq!(BlockHeader::read(&b), None);
    }
}
