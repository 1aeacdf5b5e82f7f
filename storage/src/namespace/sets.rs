//! A namespace's sets: the table of set names and their 12-bit ids (0 means "no set"), looked
//! up by name or id and grown on a set's first write.

use std::collections::HashMap;

use petrel_proto::wire::SET_NAME_LEN_MAX;

use crate::engine::StorageEngine;
use crate::namespace::Namespace;
use crate::StorageError;

/// Most sets a namespace may hold (set ids are 12 bits; 0 means "no set").
pub const SETS_MAX: usize = 4095;

/// Set names by id and ids by name.
#[derive(Debug, Default)]
pub(super) struct SetTable {
    by_name: HashMap<Vec<u8>, u16>,
    /// Index `id - 1`.
    pub(super) names: Vec<Vec<u8>>,
}

impl<E: StorageEngine> Namespace<E> {
    /// The id of set `name`, if it exists.
    pub fn set_id(&self, name: &[u8]) -> Option<u16> {
        if name.is_empty() {
            return Some(0);
        }
        self.sets.read().by_name.get(name).copied()
    }

    /// The name of set `id`.
    pub fn set_name(&self, id: u16) -> Option<Vec<u8>> {
        let table = self.sets.read();
        table.names.get((id as usize).checked_sub(1)?).cloned()
    }

    /// Runs `f` with the name of set `id` (empty for none), without copying it.
    pub(crate) fn with_set_name<T>(&self, id: u16, f: impl FnOnce(&[u8]) -> T) -> T {
        let table = self.sets.read();
        let name = (id as usize).checked_sub(1).and_then(|i| table.names.get(i)).map_or(&[][..], Vec::as_slice);
        f(name)
    }

    /// The id of set `name`, made on its first use; fails when the name is too long or the
    /// namespace already holds [`SETS_MAX`] sets.
    pub(crate) fn set_id_or_create(&self, name: &[u8]) -> Result<u16, StorageError> {
        if name.is_empty() {
            return Ok(0);
        }
        if name.len() > SET_NAME_LEN_MAX {
            return Err(StorageError::Parameter("set name is longer than 63 bytes"));
        }
        if let Some(id) = self.sets.read().by_name.get(name) {
            return Ok(*id);
        }
        let mut table = self.sets.write();
        if let Some(id) = table.by_name.get(name) {
            return Ok(*id);
        }
        if table.names.len() >= SETS_MAX {
            return Err(StorageError::Forbidden("namespace already holds 4095 sets"));
        }
        table.names.push(name.to_vec());
        let id = table.names.len() as u16;
        table.by_name.insert(name.to_vec(), id);
        Ok(id)
    }
}
