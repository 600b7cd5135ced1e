//! Group commit: messages that arrive while a commit is in flight go into the next transaction
//! together.
//!
//! The [`Writer`] has one or more *lanes*, each a task that owns a share of the conversations
//! (by hash of the id). A lane takes every message queued for it — at most
//! [`MAX_GROUP`](crate::store::MAX_GROUP) — stores them with one
//! [`ChatStore::insert_messages`] (one transaction, one fsync or WAL flush), answers each sender
//! with its own outcome, and starts over with whatever queued up meanwhile. Under light load a
//! group is one message and costs what a single commit costs; under heavy load one commit
//! serves hundreds of senders, so the disk's commit latency stops bounding throughput.
//!
//! Guarantees kept from one-commit-per-message:
//! - a sender hears back only after the commit that holds its message (or its refusal);
//! - per-conversation sequence numbers stay gap-free: numbers are assigned inside the
//!   transaction, and a failed transaction stores nothing and uses up nothing;
//! - one refused message (not a member) does not fail the others of its group; a storage
//!   failure fails every message of the group with `storage_unavailable`, none half-stored;
//! - each conversation belongs to exactly one lane, so its messages commit in the order the
//!   lane received them and its [`DeliveryTurn`]s are handed out in sequence order.
//!
//! Lifecycle: [`Writer::spawn`] starts the lanes on the current tokio runtime; they end when
//! the `Writer` is dropped (its queues close) after finishing the groups they hold.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::delivery::{DeliveryTurn, Sequencer};
use crate::error::ChatError;
use crate::id::UserId;
use crate::store::{ChatStore, Inserted, MAX_GROUP, NewMessage};

/// Messages queued per lane before senders wait: a few groups' worth.
const QUEUE: usize = 4 * MAX_GROUP;

/// The group-commit writer; see the module docs.
#[derive(Debug)]
pub(crate) struct Writer {
    lanes: Vec<mpsc::Sender<Pending>>,
    stats: Arc<Counters>,
}

/// How much grouping happened: groups committed (or failed) and the messages in them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteStats {
    /// Transactions the lanes ran, each for one group.
    pub groups: u64,
    /// Messages in those groups (refused and duplicate ones included).
    pub messages: u64,
}

#[derive(Debug, Default)]
struct Counters {
    groups: AtomicU64,
    messages: AtomicU64,
}

/// A stored (or refused) message, as its sender learns it.
#[derive(Debug)]
pub(crate) struct Written {
    /// What the group commit did with it.
    pub inserted: Inserted,
    /// The conversation's members, read in the same transaction.
    pub members: Arc<[UserId]>,
    /// Its live-delivery turn; [`DeliveryTurn::none`] unless it was newly created.
    pub turn: DeliveryTurn,
}

#[derive(Debug)]
struct Pending {
    message: NewMessage,
    reply: oneshot::Sender<Result<Written, ChatError>>,
}

impl Writer {
    /// Starts `store.write_lanes()` lanes on the current tokio runtime.
    pub(crate) fn spawn(store: Arc<dyn ChatStore>) -> Self {
        let stats = Arc::new(Counters::default());
        let lanes = (0..store.write_lanes().max(1))
            .map(|_| {
                let (queue, arrivals) = mpsc::channel(QUEUE);
                tokio::spawn(run_lane(store.clone(), arrivals, stats.clone()));
                queue
            })
            .collect();
        Self { lanes, stats }
    }

    /// Groups and messages committed so far.
    pub(crate) fn stats(&self) -> WriteStats {
        WriteStats {
            groups: self.stats.groups.load(Ordering::Relaxed),
            messages: self.stats.messages.load(Ordering::Relaxed),
        }
    }

    /// Queues `message` for the next group commit of its conversation's lane and waits for the
    /// outcome. If this future is dropped once queued, the message may still be stored: a retry
    /// with the same tempId then finds it.
    pub(crate) async fn write(&self, message: NewMessage) -> Result<Written, ChatError> {
        let mut hasher = std::hash::DefaultHasher::new();
        message.conversation_id.hash(&mut hasher);
        let lane = &self.lanes[(hasher.finish() % self.lanes.len() as u64) as usize];
        let (reply, outcome) = oneshot::channel();
        lane.send(Pending { message, reply })
            .await
            .map_err(|_| writer_gone())?;
        outcome.await.map_err(|_| writer_gone())?
    }
}

/// One lane: commit whatever is queued, answer, repeat.
async fn run_lane(
    store: Arc<dyn ChatStore>,
    mut arrivals: mpsc::Receiver<Pending>,
    stats: Arc<Counters>,
) {
    let mut sequencer = Sequencer::default();
    let mut group: Vec<Pending> = Vec::with_capacity(MAX_GROUP);
    // `recv_many` waits for the first message, then takes every one already queued.
    while arrivals.recv_many(&mut group, MAX_GROUP).await > 0 {
        let (messages, replies): (Vec<NewMessage>, Vec<_>) =
            group.drain(..).map(|p| (p.message, p.reply)).unzip();
        let result = store.insert_messages(&messages).await;
        stats.groups.fetch_add(1, Ordering::Relaxed);
        stats
            .messages
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        match result {
            Ok(committed) => {
                for ((message, reply), inserted) in
                    messages.iter().zip(replies).zip(committed.outcomes)
                {
                    let turn = match inserted {
                        Inserted::Created(_) => sequencer.next(&message.conversation_id),
                        Inserted::Duplicate(_) | Inserted::NotMember => DeliveryTurn::none(),
                    };
                    let members = committed
                        .members
                        .get(&message.conversation_id)
                        .cloned()
                        .unwrap_or_else(|| Arc::from(Vec::new()));
                    // A sender that stopped waiting drops its turn here, releasing the next.
                    let _ = reply.send(Ok(Written {
                        inserted,
                        members,
                        turn,
                    }));
                }
                sequencer.prune();
            }
            Err(error) => {
                tracing::error!(%error, source = ?std::error::Error::source(&error), messages = messages.len(),
                    "chat group commit failed; nothing of it was stored");
                let text = format!("group commit failed: {error:?}");
                for reply in replies {
                    let _ = reply.send(Err(ChatError::StorageUnavailable(sqlx::Error::Protocol(
                        text.clone(),
                    ))));
                }
            }
        }
    }
}

fn writer_gone() -> ChatError {
    ChatError::StorageUnavailable(sqlx::Error::PoolClosed)
}
