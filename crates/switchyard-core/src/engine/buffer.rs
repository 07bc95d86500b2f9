use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

/// Priority given to payloads without one in a [`QueueType::Priority`] queue.
pub const DEFAULT_PRIORITY: i64 = 1000;

/// The order in which queued events are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// First in, first out (the default).
    #[default]
    Fifo,
    /// Last in, first out.
    Lifo,
    /// Lowest priority number first; FIFO among equals.
    Priority,
}

pub(crate) enum Buffer<E> {
    Fifo(VecDeque<E>),
    Lifo(Vec<E>),
    Priority(BinaryHeap<Ranked<E>>, u64),
}

pub(crate) struct Ranked<E> {
    priority: i64,
    seq: u64,
    item: E,
}

impl<E> PartialEq for Ranked<E> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<E> Eq for Ranked<E> {}
impl<E> PartialOrd for Ranked<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Ranked<E> {
    /// `BinaryHeap` is a max-heap: the "greatest" is the lowest priority number, then the
    /// earliest sequence number.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .priority
            .cmp(&self.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl<E> Buffer<E> {
    pub(crate) fn new(kind: QueueType) -> Self {
        match kind {
            QueueType::Fifo => Self::Fifo(VecDeque::new()),
            QueueType::Lifo => Self::Lifo(Vec::new()),
            QueueType::Priority => Self::Priority(BinaryHeap::new(), 0),
        }
    }

    pub(crate) fn push(&mut self, item: E, priority: i64) {
        match self {
            Self::Fifo(q) => q.push_back(item),
            Self::Lifo(s) => s.push(item),
            Self::Priority(h, seq) => {
                *seq += 1;
                h.push(Ranked {
                    priority,
                    seq: *seq,
                    item,
                });
            }
        }
    }

    pub(crate) fn pop(&mut self) -> Option<E> {
        match self {
            Self::Fifo(q) => q.pop_front(),
            Self::Lifo(s) => s.pop(),
            Self::Priority(h, _) => h.pop().map(|r| r.item),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Fifo(q) => q.len(),
            Self::Lifo(s) => s.len(),
            Self::Priority(h, _) => h.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(mut b: Buffer<u32>) -> Vec<u32> {
        std::iter::from_fn(move || b.pop()).collect()
    }

    #[test]
    fn orders() {
        for (kind, want) in [
            (QueueType::Fifo, vec![1, 2, 3, 4]),
            (QueueType::Lifo, vec![4, 3, 2, 1]),
            (QueueType::Priority, vec![3, 1, 4, 2]),
        ] {
            let mut b = Buffer::new(kind);
            for (item, prio) in [(1, 5), (2, 9), (3, 1), (4, 5)] {
                b.push(item, prio);
            }
            assert_eq!(b.len(), 4);
            assert_eq!(drain(b), want, "{kind:?}");
        }
    }
}
