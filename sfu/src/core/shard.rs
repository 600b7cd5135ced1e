//! Which share of the SFU a [`crate::core::Core`] is: its place among the media workers, and
//! what the workers share.
//!
//! The SFU runs one core per media worker thread (see the crate docs). A room lives on exactly
//! one worker, chosen by [`placement`] from the room's key alone, so every command about a
//! room reaches the one core that holds it without a table to consult, and nothing about a
//! room is ever split between threads. What the cores share is small and touched only when a
//! room opens or closes, never per packet:
//! - the cap on rooms held by the whole SFU ([`crate::Limits::max_rooms`]), one atomic
//!   counter;
//! - the track-id space: worker `i` of `n` numbers its tracks `i + 1`, `i + 1 + n`, …, so ids
//!   stay unique across workers and a one-worker SFU numbers them 1, 2, 3 as before.
//!
//! Lifecycle: [`Shard::split`] makes the shards once at start, one per worker; each is moved
//! into its core and lives as long as it does.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::ids::RoomKey;

/// See the module docs.
#[derive(Clone, Debug)]
pub struct Shard {
    index: usize,
    count: usize,
    rooms: Arc<AtomicUsize>,
}

impl Shard {
    /// The only shard of a one-worker SFU (and of a core driven directly, as tests do).
    pub fn solo() -> Self {
        Self::split(1).remove(0)
    }

    /// `count` shards (at least one) sharing one room budget.
    pub fn split(count: usize) -> Vec<Self> {
        let count = count.max(1);
        let rooms = Arc::new(AtomicUsize::new(0));
        (0..count)
            .map(|index| Self {
                index,
                count,
                rooms: rooms.clone(),
            })
            .collect()
    }

    /// This worker's index, `0..count`.
    pub fn index(&self) -> usize {
        self.index
    }

    /// How many workers there are.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Takes one room from the shared budget; `false` when `limit` rooms are already held.
    pub(crate) fn take_room(&self, limit: usize) -> bool {
        self.rooms
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < limit).then_some(held + 1)
            })
            .is_ok()
    }

    /// Gives back a room taken with [`Shard::take_room`].
    pub(crate) fn release_room(&self) {
        self.rooms.fetch_sub(1, Ordering::AcqRel);
    }

    /// The SFU-wide number of this worker's `local`-th track (counting from 0).
    pub(crate) fn track_number(&self, local: u64) -> u64 {
        local * self.count as u64 + self.index as u64 + 1
    }
}

/// The worker that holds `room`, of `workers`. Stable for the life of the process (a fixed
/// SipHash key), so a room's commands always reach the same worker; spread evenly over many
/// rooms. One room is never split, so one very large room still runs on one worker.
pub fn placement(room: &RoomKey, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    let mut h = std::hash::DefaultHasher::new();
    room.as_str().hash(&mut h);
    (h.finish() % workers as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn track_numbers_are_unique_across_workers_and_plain_for_one() {
        let shards = Shard::split(3);
        let mut seen = std::collections::HashSet::new();
        for s in &shards {
            for local in 0..100 {
                assert!(seen.insert(s.track_number(local)), "duplicate");
            }
        }
        let solo = Shard::solo();
        let first: Vec<u64> = (0..3).map(|l| solo.track_number(l)).collect();
        assert_eq!(first, [1, 2, 3]);
    }

    #[test]
    fn the_room_budget_is_shared() {
        let shards = Shard::split(2);
        assert!(shards[0].take_room(2));
        assert!(shards[1].take_room(2));
        assert!(
            !shards[0].take_room(2),
            "two rooms are held between the workers"
        );
        shards[1].release_room();
        assert!(shards[0].take_room(2));
    }

    #[test]
    fn placement_is_stable_and_spreads_rooms() {
        let mut per_worker = [0usize; 4];
        for i in 0..400 {
            let room = RoomKey::new(format!("room-{i}"));
            let w = placement(&room, 4);
            assert_eq!(w, placement(&room, 4), "same room, same worker");
            per_worker[w] += 1;
        }
        assert!(per_worker.iter().all(|n| *n > 50), "{per_worker:?}");
        assert_eq!(placement(&RoomKey::new("any"), 1), 0);
    }
}
