//! A connection's queue of server events, bounded in bytes and in events.
//!
//! The hub's driver renders each server event once into a [`Frame`] (the JSON text, shared by
//! every recipient) and pushes it into each recipient's [`Outbox`]; the connection's writer takes
//! frames from its [`OutboxReader`] and writes them to the socket. Each queued frame is charged
//! its text length to its connection until the writer has written it (the [`Queued`] guard
//! releases it on drop), so what one connection holds is bounded by
//! `limits.outbound_queue_bytes` (plus the one frame in the writer's hands) and by
//! `limits.outbound_queue` events, whichever comes first.
//!
//! A full outbox means the client does not keep up. [`Outbox::push`] then marks it overflowed
//! and refuses: the driver drops the connection from the hub, and the writer stops at once
//! ([`Ended::Overflowed`]) instead of writing out a backlog the client will not read: it closes
//! the connection, and everything queued is freed.
//!
//! Lifecycle: [`channel`] makes both halves when a connection registers with the hub; the driver
//! holds the [`Outbox`] until the connection disconnects or overflows; the writer holds the
//! [`OutboxReader`] until the connection ends.

use crate::session::SessionLimits;
use axum::extract::ws::Utf8Bytes;
use protocol::{CallId, ServerEvent};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::mpsc;

/// One server event, rendered once and shared by all its recipients. It keeps only the text
/// (not the typed event, which would double what a queued event holds), so what an outbox is
/// charged is what it holds.
#[derive(Clone, Debug)]
pub struct Frame(Arc<Rendered>);

#[derive(Debug)]
struct Rendered {
    name: &'static str,
    /// For `call:incoming`: the call, which Socket.IO asks the device to ack.
    incoming_call: Option<CallId>,
    /// The raw-WebSocket frame, `{"event": ..., "data": ...}`.
    text: Utf8Bytes,
    /// Where the `data` member's JSON lies in `text` (Socket.IO sends it without the envelope).
    data: Range<usize>,
}

impl Frame {
    /// Serializes `event`: once per event, however many connections receive it.
    pub fn render(event: &ServerEvent) -> Self {
        let text = event.to_frame();
        let data = data_span(&text, event.name()).unwrap_or(0..0);
        let incoming_call = match event {
            ServerEvent::CallIncoming(incoming) => Some(incoming.call_id.clone()),
            _ => None,
        };
        Self(Arc::new(Rendered {
            name: event.name(),
            incoming_call,
            text: text.into(),
            data,
        }))
    }

    /// The event's wire name.
    pub fn name(&self) -> &'static str {
        self.0.name
    }

    /// The call a `call:incoming` event rings this device for; `None` for other events.
    pub fn incoming_call(&self) -> Option<&CallId> {
        self.0.incoming_call.as_ref()
    }

    /// The raw-WebSocket frame text (cheap to clone: the bytes are shared).
    pub fn text(&self) -> Utf8Bytes {
        self.0.text.clone()
    }

    /// The event's payload as JSON text, for transports that frame it themselves.
    pub fn data(&self) -> &RawValue {
        let json = &self.0.text.as_str()[self.0.data.clone()];
        // `data_span` found it by parsing this very text, so it parses again; `null` keeps a
        // frame without payload well-formed all the same.
        serde_json::from_str(json).unwrap_or_else(|_| null())
    }

    /// What queuing this frame costs a connection.
    pub fn len(&self) -> usize {
        self.0.text.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.text.is_empty()
    }
}

/// The driver's half: where the hub's events for one connection go.
#[derive(Debug)]
pub struct Outbox {
    tx: mpsc::Sender<Frame>,
    shared: Arc<Shared>,
    max_bytes: usize,
}

/// The writer's half.
#[derive(Debug)]
pub struct OutboxReader {
    rx: mpsc::Receiver<Frame>,
    shared: Arc<Shared>,
    /// What was taken lately, so that a resumed session can get back what its old connection
    /// took but the client never received (see [`OutboxReader::rewind`]).
    taken: Taken,
}

/// Frames taken from an outbox: how many, the last few (at most [`RECENT_EVENTS`] and
/// [`RECENT_BYTES`]), and those to hand out again before the queue after a rewind.
#[derive(Debug, Default)]
struct Taken {
    count: u64,
    recent: VecDeque<Frame>,
    bytes: usize,
    replay: VecDeque<Frame>,
}

/// Events a resumed session can get back from before its drop (in flight when the connection
/// broke: in the socket's buffers, or lost on the way).
pub const RECENT_EVENTS: usize = 64;
/// Bytes of those events kept at most.
pub const RECENT_BYTES: usize = 64 * 1024;

/// Why [`OutboxReader::rewind`] cannot give the client what it missed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rewind {
    /// More events were in flight than are kept.
    TooFar,
    /// The client says it received more events than were taken.
    Ahead,
}

/// Whether an event counts in [`OutboxReader::taken`]: what clients count too. Errors and
/// expiry warnings are per connection, written by the transport, not resumed.
pub fn counted(name: &str) -> bool {
    !matches!(name, "error" | "session:expiring")
}

#[derive(Debug, Default)]
struct Shared {
    /// Bytes pushed and not yet written (or dropped) by the writer.
    queued: AtomicUsize,
    overflowed: AtomicBool,
}

/// The outbox cannot take the frame: the connection is too slow, or its writer is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the connection does not keep up with its events")]
pub struct Overflow;

/// Why an [`OutboxReader`] has no more frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The client fell behind by more than the limits; the hub has dropped it.
    Overflowed,
    /// The hub let go of the connection: it disconnected, or the hub stopped.
    Released,
}

/// A frame taken from the outbox; it stays charged to the connection until dropped, so drop it
/// once it is written.
#[derive(Debug)]
pub struct Queued {
    frame: Frame,
    shared: Arc<Shared>,
    /// Whether its bytes are charged to the outbox (a replayed frame is not).
    charged: bool,
}

/// A new outbox for one connection, sized by `limits`.
pub fn channel(limits: &SessionLimits) -> (Outbox, OutboxReader) {
    let (tx, rx) = mpsc::channel(limits.outbound_queue);
    let shared = Arc::new(Shared::default());
    (
        Outbox {
            tx,
            shared: shared.clone(),
            max_bytes: limits.outbound_queue_bytes,
        },
        OutboxReader {
            rx,
            shared,
            taken: Taken::default(),
        },
    )
}

impl Outbox {
    /// Queues `frame`, or marks the outbox overflowed and refuses it. A frame larger than the
    /// whole byte budget is still taken when the queue is empty, so one big event cannot wedge
    /// a connection.
    pub fn push(&self, frame: &Frame) -> Result<(), Overflow> {
        let len = frame.len();
        let queued = self.shared.queued.load(Ordering::Acquire);
        if queued > 0 && queued + len > self.max_bytes {
            return Err(self.overflow());
        }
        // Charged before sending, so the writer never releases more than was charged.
        self.shared.queued.fetch_add(len, Ordering::AcqRel);
        if self.tx.try_send(frame.clone()).is_err() {
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            return Err(self.overflow());
        }
        Ok(())
    }

    fn overflow(&self) -> Overflow {
        self.shared.overflowed.store(true, Ordering::Release);
        Overflow
    }
}

impl OutboxReader {
    /// The next frame, or why there are no more. After an overflow the backlog is not handed
    /// out: the client would not read it in time anyway.
    pub async fn recv(&mut self) -> Result<Queued, Ended> {
        if self.overflowed() {
            return Err(Ended::Overflowed);
        }
        if let Some(replayed) = self.replayed() {
            return Ok(replayed);
        }
        let frame = self.rx.recv().await;
        if self.overflowed() {
            return Err(Ended::Overflowed);
        }
        match frame {
            Some(frame) => {
                self.note(&frame);
                Ok(Queued {
                    frame,
                    shared: self.shared.clone(),
                    charged: true,
                })
            }
            None => Err(Ended::Released),
        }
    }

    /// The next frame if one is queued now: what a writer sends before an ack, so the ack
    /// never overtakes an event queued before it (ADR 0046).
    pub fn try_recv(&mut self) -> Option<Queued> {
        if self.overflowed() {
            return None;
        }
        if let Some(replayed) = self.replayed() {
            return Some(replayed);
        }
        let frame = self.rx.try_recv().ok()?;
        self.note(&frame);
        Some(Queued {
            frame,
            shared: self.shared.clone(),
            charged: true,
        })
    }

    /// Events taken so far (those [`counted`]).
    pub fn taken(&self) -> u64 {
        self.taken.count
    }

    /// A resumed session's client received `received` events of this outbox: the ones taken
    /// after those (in flight when the old connection broke) are handed out again first, in
    /// order. Returns how many.
    pub fn rewind(&mut self, received: u64) -> Result<usize, Rewind> {
        let missing = self
            .taken
            .count
            .checked_sub(received)
            .ok_or(Rewind::Ahead)?;
        let missing = usize::try_from(missing).map_err(|_| Rewind::TooFar)?;
        if missing > self.taken.recent.len() {
            return Err(Rewind::TooFar);
        }
        for _ in 0..missing {
            if let Some(frame) = self.taken.recent.pop_back() {
                self.taken.bytes -= frame.len();
                self.taken.replay.push_front(frame);
            }
        }
        self.taken.count -= missing as u64;
        Ok(missing)
    }

    fn replayed(&mut self) -> Option<Queued> {
        let frame = self.taken.replay.pop_front()?;
        self.note(&frame);
        Some(Queued {
            frame,
            shared: self.shared.clone(),
            charged: false,
        })
    }

    fn note(&mut self, frame: &Frame) {
        if !counted(frame.name()) {
            return;
        }
        let t = &mut self.taken;
        t.count += 1;
        t.bytes += frame.len();
        t.recent.push_back(frame.clone());
        while t.recent.len() > RECENT_EVENTS || t.bytes > RECENT_BYTES {
            match t.recent.pop_front() {
                Some(old) => t.bytes -= old.len(),
                None => break,
            }
        }
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }

    fn overflowed(&self) -> bool {
        self.shared.overflowed.load(Ordering::Acquire)
    }

    /// Whether the outbox overflowed (the driver dropped its connection then).
    pub fn is_overflowed(&self) -> bool {
        self.overflowed()
    }

    /// Whether the driver let go of the outbox (its connection left the hub).
    pub fn is_released(&self) -> bool {
        self.rx.is_closed()
    }
}

impl Drop for OutboxReader {
    fn drop(&mut self) {
        // Frames still in the channel are released with it.
        self.rx.close();
        while let Ok(frame) = self.rx.try_recv() {
            self.shared.queued.fetch_sub(frame.len(), Ordering::AcqRel);
        }
        if self.overflowed() {
            // A backlog was just freed: hand it back to the system.
            super::memory::release_soon();
        }
    }
}

impl Queued {
    pub fn frame(&self) -> &Frame {
        &self.frame
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        if self.charged {
            self.shared
                .queued
                .fetch_sub(self.frame.len(), Ordering::AcqRel);
        }
    }
}

/// Where the `data` member's JSON lies in a rendered frame.
///
/// Every frame [`ServerEvent::to_frame`] writes with a payload has the shape
/// `{"event":"<name>","data":<payload>}`, so the span is read off that shape without parsing the
/// payload (which is what rendering an event cost twice before). Anything else, such as an
/// event without a payload, is parsed.
fn data_span(text: &str, name: &str) -> Option<Range<usize>> {
    const HEAD: &str = r#"{"event":""#;
    const MIDDLE: &str = r#"","data":"#;
    let shaped = text
        .strip_prefix(HEAD)
        .and_then(|rest| rest.strip_prefix(name));
    if let Some(rest) = shaped.and_then(|rest| rest.strip_prefix(MIDDLE))
        && rest.ends_with('}')
    {
        let start = text.len() - rest.len();
        return Some(start..text.len() - 1);
    }
    parsed_data_span(text)
}

fn parsed_data_span(text: &str) -> Option<Range<usize>> {
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        data: &'a RawValue,
    }
    let envelope: Envelope = serde_json::from_str(text).ok()?;
    let data = envelope.data.get();
    // `data` borrows from `text`, so its address lies inside it.
    let start = data.as_ptr() as usize - text.as_ptr() as usize;
    Some(start..start + data.len())
}

fn null() -> &'static RawValue {
    serde_json::from_str("null").expect("`null` is JSON")
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{CallEnded, CallId, ChatEvent};
    use serde_json::{Value, json};

    fn limits(events: usize, bytes: usize) -> SessionLimits {
        SessionLimits {
            outbound_queue: events,
            outbound_queue_bytes: bytes,
            ..SessionLimits::from_config(&config::Config::default())
        }
    }

    fn frame(pad: usize) -> Frame {
        Frame::render(&ServerEvent::Chat(ChatEvent {
            name: "typing",
            data: json!({"pad": "x".repeat(pad)}),
        }))
    }

    fn numbered(n: usize) -> Frame {
        Frame::render(&ServerEvent::Chat(ChatEvent {
            name: "typing",
            data: json!({"n": n}),
        }))
    }

    fn n_of(q: &Queued) -> u64 {
        let data: Value = serde_json::from_str(q.frame().data().get()).unwrap();
        data["n"].as_u64().unwrap()
    }

    #[test]
    fn a_rewind_hands_out_what_the_client_missed_again_in_order() {
        let (outbox, mut reader) = channel(&limits(256, 1 << 20));
        for n in 0..10 {
            outbox.push(&numbered(n)).unwrap();
        }
        // The old connection took six; the client got four of them.
        let taken: Vec<u64> = (0..6).map(|_| n_of(&reader.try_recv().unwrap())).collect();
        assert_eq!(taken, [0, 1, 2, 3, 4, 5]);
        assert_eq!(reader.taken(), 6);
        assert_eq!(reader.rewind(4), Ok(2));
        assert_eq!(reader.taken(), 4);
        // Then 4 and 5 again, then the rest of the queue; the count goes on from there.
        let rest: Vec<u64> = (0..6).map(|_| n_of(&reader.try_recv().unwrap())).collect();
        assert_eq!(rest, [4, 5, 6, 7, 8, 9]);
        assert_eq!(reader.taken(), 10);
        assert!(reader.try_recv().is_none());
        // Replayed frames were not charged again: the account is back at zero.
        assert_eq!(reader.queued_bytes(), 0);
        // A client cannot claim more than was sent, nor get back more than is kept.
        assert_eq!(reader.rewind(11), Err(Rewind::Ahead));
        assert_eq!(reader.rewind(10), Ok(0));
        let (outbox, mut reader) = channel(&limits(256, 1 << 20));
        for n in 0..RECENT_EVENTS + 6 {
            outbox.push(&numbered(n)).unwrap();
            reader.try_recv().unwrap();
        }
        assert_eq!(reader.rewind(5), Err(Rewind::TooFar));
        assert_eq!(reader.rewind(6), Ok(RECENT_EVENTS));
    }

    #[test]
    fn errors_and_expiry_warnings_are_not_counted() {
        assert!(!counted("error") && !counted("session:expiring"));
        assert!(counted("session:ready") && counted("call:participant:left"));
    }

    #[test]
    fn a_frame_is_the_websocket_text_and_its_data_the_payload() {
        let event = ServerEvent::CallEnded(CallEnded {
            call_id: CallId("c1".into()),
            reason: protocol::EndReason::Ended,
        });
        let f = Frame::render(&event);
        assert_eq!(f.text().as_str(), event.to_frame());
        assert_eq!((f.name(), f.incoming_call()), ("call:ended", None));
        let data: Value = serde_json::from_str(f.data().get()).unwrap();
        assert_eq!(data, event.data());
        let chat = frame(3);
        let data: Value = serde_json::from_str(chat.data().get()).unwrap();
        assert_eq!(data, json!({"pad": "xxx"}));
        assert_eq!(chat.len(), chat.text().len());
    }

    #[test]
    fn the_payload_span_read_off_the_frame_is_the_one_parsing_finds() {
        let tricky = json!({"text": "}\",\"data\":{", "nested": [{"data": 1}], "empty": {}});
        let events = [
            ServerEvent::CallEnded(CallEnded {
                call_id: CallId("c\"1".into()),
                reason: protocol::EndReason::Ended,
            }),
            ServerEvent::Chat(ChatEvent {
                name: "message:new",
                data: tricky.clone(),
            }),
            ServerEvent::Chat(ChatEvent {
                name: "typing",
                data: Value::Null,
            }),
        ];
        for event in &events {
            let text = event.to_frame();
            let read = data_span(&text, event.name());
            assert_eq!(read, parsed_data_span(&text), "{text}");
            assert!(read.is_some(), "{text}");
        }
        // A frame of another shape (here, a name that does not match) is parsed instead.
        let text = events[1].to_frame();
        assert_eq!(data_span(&text, "typing"), parsed_data_span(&text));
        let data: Value = serde_json::from_str(Frame::render(&events[1]).data().get()).unwrap();
        assert_eq!(data, tricky);
    }

    #[tokio::test]
    async fn bytes_are_charged_until_the_written_frame_is_dropped() {
        let (outbox, mut reader) = channel(&limits(100, 10_000));
        let f = frame(1000);
        outbox.push(&f).unwrap();
        outbox.push(&f).unwrap();
        assert_eq!(reader.queued_bytes(), 2 * f.len());
        let first = reader.recv().await.unwrap();
        assert_eq!(reader.queued_bytes(), 2 * f.len(), "still being written");
        drop(first);
        assert_eq!(reader.queued_bytes(), f.len());
        drop(reader);
        assert_eq!(outbox.shared.queued.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn the_byte_budget_overflows_and_the_reader_stops_at_once() {
        let f = frame(1000);
        let (outbox, mut reader) = channel(&limits(100, 3 * f.len()));
        for _ in 0..3 {
            outbox.push(&f).unwrap();
        }
        assert_eq!(outbox.push(&f), Err(Overflow));
        // The backlog is not handed out after an overflow.
        assert_eq!(reader.recv().await.unwrap_err(), Ended::Overflowed);
        drop(reader);
        assert_eq!(outbox.shared.queued.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn the_event_count_bounds_too_and_a_big_frame_passes_an_empty_queue() {
        let small = frame(1);
        let (outbox, _reader) = channel(&limits(2, 1 << 20));
        outbox.push(&small).unwrap();
        outbox.push(&small).unwrap();
        assert_eq!(outbox.push(&small), Err(Overflow));

        let big = frame(5000);
        let (outbox, mut reader) = channel(&limits(16, 1000));
        outbox.push(&big).unwrap();
        assert_eq!(outbox.push(&small), Err(Overflow));
        assert_eq!(reader.recv().await.unwrap_err(), Ended::Overflowed);
    }

    #[tokio::test]
    async fn a_released_outbox_hands_out_its_backlog_then_ends() {
        let (outbox, mut reader) = channel(&limits(16, 1 << 20));
        outbox.push(&frame(1)).unwrap();
        drop(outbox);
        assert!(reader.recv().await.is_ok());
        assert_eq!(reader.recv().await.unwrap_err(), Ended::Released);
    }
}
