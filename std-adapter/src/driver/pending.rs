//! The commands the core knows, by id, with their bytes (kept until the
//! core resolves them: a resend-safe command may be written again) and
//! where their answers go.

use std::collections::VecDeque;

use resilis_core::CommandId;
use resilis_core::command::Class;
use tokio::sync::oneshot;

use super::{Reply, finish};
use crate::error::Error;

pub(super) struct Pending {
    pub bytes: Vec<u8>,
    pub waiter: oneshot::Sender<Result<Reply, Error>>,
    pub class: Class,
    /// Answer with the reply's bytes as they came.
    pub raw: bool,
}

/// Commands the core knows, by id. The core hands out consecutive ids and
/// resolves them roughly in order, so a deque indexed from the oldest live id
/// does it without hashing.
#[derive(Default)]
pub(super) struct PendingTable {
    base: u64,
    slots: VecDeque<Option<Pending>>,
}

impl PendingTable {
    pub(super) fn insert(&mut self, id: CommandId, pending: Pending) {
        if self.slots.is_empty() {
            self.base = id.0;
        }
        let Some(index) = id.0.checked_sub(self.base).map(|i| i as usize) else {
            // Ids only grow; an older one would be a core bug. Resolve it
            // now rather than leak the caller.
            finish(pending.waiter, Err(Error::Shutdown), None);
            return;
        };
        while self.slots.len() < index {
            self.slots.push_back(None);
        }
        if index == self.slots.len() {
            self.slots.push_back(Some(pending));
        } else {
            self.slots[index] = Some(pending);
        }
    }

    pub(super) fn get(&self, id: CommandId) -> Option<&Pending> {
        let index = id.0.checked_sub(self.base)? as usize;
        self.slots.get(index)?.as_ref()
    }

    pub(super) fn get_mut(&mut self, id: CommandId) -> Option<&mut Pending> {
        let index = id.0.checked_sub(self.base)? as usize;
        self.slots.get_mut(index)?.as_mut()
    }

    pub(super) fn take(&mut self, id: CommandId) -> Option<Pending> {
        let index = id.0.checked_sub(self.base)? as usize;
        let taken = self.slots.get_mut(index)?.take();
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.base += 1;
        }
        taken
    }

    pub(super) fn drain(&mut self) -> impl Iterator<Item = Pending> + '_ {
        self.slots.drain(..).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_table_tolerates_out_of_order_resolution() {
        let mut table = PendingTable::default();
        for id in 1..=4 {
            table.insert(
                CommandId(id),
                Pending {
                    bytes: vec![id as u8],
                    waiter: oneshot::channel().0,
                    class: Class::READ,
                    raw: false,
                },
            );
        }
        assert_eq!(table.take(CommandId(3)).map(|p| p.bytes), Some(vec![3]));
        assert_eq!(table.slots.len(), 4, "a hole in the middle stays");
        assert_eq!(table.take(CommandId(1)).map(|p| p.bytes), Some(vec![1]));
        assert_eq!(table.base, 2);
        assert!(table.get(CommandId(2)).is_some());
        assert!(table.take(CommandId(3)).is_none(), "taken once only");
        assert!(table.take(CommandId(2)).is_some());
        assert_eq!(table.base, 4, "the hole is skipped once the front is gone");
        assert!(table.take(CommandId(4)).is_some());
        assert!(table.slots.is_empty());
        assert!(table.take(CommandId(99)).is_none());
    }
}
