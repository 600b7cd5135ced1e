//! Live delivery in sequence order: a [`DeliveryTurn`] per committed message.
//!
//! Messages of one conversation commit in sequence order (one write lane owns each
//! conversation, see `writer.rs`), but the tasks that then push `message:new` to the members
//! run concurrently and could overtake each other on their way to the connections. So each
//! committed message gets a turn chained to the previous message of its conversation committed
//! by this process: the wiring [`waits`](DeliveryTurn::wait) for its turn, hands the event to
//! the connections, then drops the turn, which lets the next message go. A task that gives up
//! (its connection closed, an error) drops its turn too, so nothing waits forever.
//!
//! Lifecycle: [`Sequencer::next`] hands out turns in commit order and remembers only the last
//! turn of each conversation; [`Sequencer::prune`] forgets conversations whose last turn is
//! done, so memory follows the messages in flight, not every conversation ever seen.

use std::collections::HashMap;

use tokio::sync::oneshot;
use tokio::sync::oneshot::error::TryRecvError;

use crate::id::ConversationId;

/// One message's place in its conversation's live delivery order; see the module docs.
#[must_use = "dropping the turn lets the next message of the conversation be delivered"]
pub struct DeliveryTurn {
    /// Resolves when the previous message's turn is dropped.
    previous: Option<oneshot::Receiver<()>>,
    /// Dropped (closed) when this message is delivered: that releases the next one.
    _released_on_drop: Option<oneshot::Sender<()>>,
}

impl DeliveryTurn {
    /// A turn that waits for nothing and holds nobody up: for a retry whose original was
    /// delivered when it was first committed.
    pub(crate) fn none() -> Self {
        Self {
            previous: None,
            _released_on_drop: None,
        }
    }

    /// Waits until every earlier message of this conversation committed by this process has
    /// been handed to the connections (or given up). Deliver, then drop the turn.
    pub async fn wait(&mut self) {
        if let Some(previous) = self.previous.take() {
            // Err only means the previous turn was dropped without a send: released all the same.
            let _ = previous.await;
        }
    }
}

impl std::fmt::Debug for DeliveryTurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryTurn")
            .field("waits", &self.previous.is_some())
            .finish()
    }
}

/// Hands out [`DeliveryTurn`]s in commit order, per conversation. Owned by one write lane.
#[derive(Debug, Default)]
pub(crate) struct Sequencer {
    /// The receiving end of the last turn handed out in each conversation.
    last: HashMap<ConversationId, oneshot::Receiver<()>>,
    /// Prune when `last` grows past this.
    prune_at: usize,
}

impl Sequencer {
    /// The turn of the next message committed in `conversation`.
    pub(crate) fn next(&mut self, conversation: &ConversationId) -> DeliveryTurn {
        let (release, released) = oneshot::channel();
        let previous = self.last.insert(conversation.clone(), released);
        DeliveryTurn {
            previous,
            _released_on_drop: Some(release),
        }
    }

    /// Forgets conversations whose last turn is done; amortised (runs when the map doubled).
    pub(crate) fn prune(&mut self) {
        if self.last.len() < self.prune_at {
            return;
        }
        self.last
            .retain(|_, released| matches!(released.try_recv(), Err(TryRecvError::Empty)));
        self.prune_at = (self.last.len() * 2).max(64);
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.last.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[tokio::test]
    async fn turns_release_in_commit_order_whoever_finishes_first() {
        let mut sequencer = Sequencer::default();
        let call = ConversationId::parse("c").unwrap();
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Later messages' tasks start first and are fastest: without turns they would win.
        let turns: Vec<_> = (0..5).map(|_| sequencer.next(&call)).collect();
        for (seq, mut turn) in turns.into_iter().enumerate().rev() {
            let delivered = delivered.clone();
            tasks.push(tokio::spawn(async move {
                turn.wait().await;
                tokio::time::sleep(Duration::from_millis(5 - seq as u64)).await;
                delivered.lock().unwrap().push(seq);
                drop(turn);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*delivered.lock().unwrap(), [0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn an_abandoned_turn_releases_the_next_and_other_conversations_do_not_wait() {
        let mut sequencer = Sequencer::default();
        let (a, b) = (
            ConversationId::parse("a").unwrap(),
            ConversationId::parse("b").unwrap(),
        );
        let first = sequencer.next(&a);
        let mut in_b = sequencer.next(&b);
        let mut second = sequencer.next(&a);
        tokio::time::timeout(Duration::from_secs(1), in_b.wait())
            .await
            .expect("another conversation is independent");
        assert!(
            tokio::time::timeout(Duration::from_millis(20), second.wait())
                .await
                .is_err(),
            "waits for the first"
        );
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), second.wait())
            .await
            .expect("released by the drop");
    }

    #[test]
    fn pruning_forgets_finished_conversations() {
        let mut sequencer = Sequencer::default();
        let mut live = Vec::new();
        for i in 0..100 {
            let turn = sequencer.next(&ConversationId::parse(format!("c{i}")).unwrap());
            if i % 10 == 0 {
                live.push(turn);
            }
        }
        sequencer.prune();
        assert_eq!(sequencer.remembered(), 10);
    }
}
