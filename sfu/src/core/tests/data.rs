//! Data channel scenarios: str0m clients open the two channels, the core relays between them
//! with the sender stamped, and limits and grants refuse what they must.

use str0m::channel::{ChannelConfig, ChannelId, Reliability};

use super::*;
use crate::core::data::envelope::unwrap_binary;
use crate::core::data::{DataKind, DataRefusal, LOSSY_LABEL, RELIABLE_LABEL};

fn data_world(data: DataLimits) -> World {
    let mut w = World::new(Limits::default());
    w.core = Core::new(
        CoreConfig {
            data,
            ..config(Limits::default())
        },
        Metrics::unregistered().unwrap(),
    );
    w
}

fn lossy() -> ChannelConfig {
    ChannelConfig {
        label: LOSSY_LABEL.into(),
        ordered: false,
        reliability: Reliability::MaxRetransmits { retransmits: 0 },
        ..ChannelConfig::default()
    }
}

fn reliable() -> ChannelConfig {
    ChannelConfig {
        label: RELIABLE_LABEL.into(),
        ..ChannelConfig::default()
    }
}

/// Joins `name` with `grants` and offers only data channels with `configs`; runs until the
/// channels are open.
fn join_data(w: &mut World, name: &str, grants: Grants, configs: &[ChannelConfig]) -> usize {
    let i = w.join_with(name, grants);
    let c = &mut w.clients[i];
    let mut change = c.rtc.sdp_api();
    for cfg in configs {
        change.add_channel_with_config(cfg.clone());
    }
    let (offer, pending) = change.apply().unwrap();
    let key = c.key.clone();
    let reply = w
        .core
        .offer(w.now, &room(), &key, &offer.to_sdp_string(), &[])
        .unwrap();
    let answer = SdpAnswer::from_sdp_string(&reply.answer).unwrap();
    w.clients[i]
        .rtc
        .sdp_api()
        .accept_answer(pending, answer)
        .unwrap();
    w.flush_client(i);
    w.run(Duration::from_secs(2));
    i
}

/// The client's open channel with `label`.
fn channel(w: &World, i: usize, label: &str) -> ChannelId {
    w.clients[i]
        .channel_events
        .iter()
        .find_map(|e| match e {
            Event::ChannelOpen(id, l) if l == label => Some(*id),
            _ => None,
        })
        .unwrap_or_else(|| panic!("client {i} has no open {label}"))
}

fn send(w: &mut World, i: usize, label: &str, binary: bool, data: &[u8]) {
    let id = channel(w, i, label);
    let ok = w.clients[i]
        .rtc
        .channel(id)
        .unwrap()
        .write(binary, data)
        .unwrap();
    assert!(ok, "client send buffer full");
    w.flush_client(i);
}

/// (label, binary, data) of every message client `i` received, in order.
fn received(w: &World, i: usize) -> Vec<(String, bool, Vec<u8>)> {
    let c = &w.clients[i];
    let label = |id: ChannelId| {
        c.channel_events
            .iter()
            .find_map(|e| match e {
                Event::ChannelOpen(x, l) if *x == id => Some(l.clone()),
                _ => None,
            })
            .unwrap()
    };
    c.channel_events
        .iter()
        .filter_map(|e| match e {
            Event::ChannelData(d) => Some((label(d.id), d.binary, d.data.clone())),
            _ => None,
        })
        .collect()
}

fn refusals(w: &World, who: &str) -> Vec<(Option<DataKind>, DataRefusal)> {
    w.events
        .iter()
        .filter_map(|e| match e {
            SfuEvent::DataRefused {
                participant,
                kind,
                refusal,
                ..
            } if participant.user() == who => Some((*kind, refusal.clone())),
            _ => None,
        })
        .collect()
}

fn three(w: &mut World) -> (usize, usize, usize) {
    let both = [reliable(), lossy()];
    let a = join_data(w, "alice", Grants::default(), &both);
    let b = join_data(w, "bob", Grants::default(), &both);
    let c = join_data(w, "carol", Grants::default(), &both);
    (a, b, c)
}

#[test]
fn a_message_reaches_the_others_with_the_sender_stamped() {
    let mut w = data_world(DataLimits::default());
    let (a, b, c) = three(&mut w);
    send(&mut w, a, RELIABLE_LABEL, false, b"hello");
    send(&mut w, b, LOSSY_LABEL, true, &[1, 2, 3]);
    w.run(Duration::from_millis(200));

    let text = (
        RELIABLE_LABEL.to_owned(),
        false,
        br#"{"from":"alice","data":"hello"}"#.to_vec(),
    );
    let for_carol = received(&w, c);
    assert_eq!(for_carol.len(), 2);
    assert!(for_carol.contains(&text));
    assert_eq!(received(&w, b), vec![text]);
    let (label, binary, bytes) = received(&w, a).pop().unwrap();
    assert_eq!((label.as_str(), binary), (LOSSY_LABEL, true));
    assert_eq!(unwrap_binary(&bytes), Some(("bob", &[1u8, 2, 3][..])));
    // Nobody hears their own message.
    assert_eq!(received(&w, a).len(), 1);

    let m = &w.core.metrics;
    assert_eq!(
        m.data_messages.with_label_values(&["in", "reliable"]).get(),
        1
    );
    assert_eq!(
        m.data_messages
            .with_label_values(&["out", "reliable"])
            .get(),
        2
    );
    assert_eq!(m.data_bytes.with_label_values(&["out", "lossy"]).get(), 6);
}

#[test]
fn a_message_goes_only_to_channels_of_the_same_kind() {
    let mut w = data_world(DataLimits::default());
    let a = join_data(&mut w, "alice", Grants::default(), &[reliable(), lossy()]);
    let b = join_data(&mut w, "bob", Grants::default(), &[reliable()]);
    send(&mut w, a, LOSSY_LABEL, false, b"wave");
    send(&mut w, a, RELIABLE_LABEL, false, b"hi");
    w.run(Duration::from_millis(200));
    let got = received(&w, b);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, RELIABLE_LABEL);
}

#[test]
fn an_oversize_message_is_refused_and_reaches_nobody() {
    let limits = DataLimits {
        max_message_bytes: 100,
        ..DataLimits::default()
    };
    let mut w = data_world(limits);
    let (a, b, c) = three(&mut w);
    send(&mut w, a, RELIABLE_LABEL, true, &[7; 101]);
    send(&mut w, a, RELIABLE_LABEL, true, &[7; 100]);
    w.run(Duration::from_millis(200));
    assert_eq!(
        refusals(&w, "alice"),
        vec![(
            Some(DataKind::Reliable),
            DataRefusal::TooLarge { limit: 100 }
        )]
    );
    // The next message, at the limit, still goes through: a refusal never closes anything.
    for i in [b, c] {
        let got = received(&w, i);
        assert_eq!(got.len(), 1);
        assert_eq!(unwrap_binary(&got[0].2).unwrap().1.len(), 100);
    }
    let refused = &w.core.metrics.data_refused;
    assert_eq!(refused.with_label_values(&["too_large"]).get(), 1);
}

#[test]
fn a_sender_without_the_grant_is_refused_but_still_receives() {
    let mut w = data_world(DataLimits::default());
    let both = [reliable(), lossy()];
    let a = join_data(&mut w, "alice", Grants::default(), &both);
    let mute = Grants {
        can_publish_data: false,
        ..Grants::default()
    };
    let m = join_data(&mut w, "mallory", mute, &both);
    send(&mut w, m, LOSSY_LABEL, false, "🎉".as_bytes());
    send(&mut w, a, LOSSY_LABEL, false, b"hi");
    w.run(Duration::from_millis(200));
    assert_eq!(
        refusals(&w, "mallory"),
        vec![(Some(DataKind::Lossy), DataRefusal::NoGrant)]
    );
    assert!(received(&w, a).is_empty());
    assert_eq!(received(&w, m).len(), 1);
}

#[test]
fn a_receiver_without_can_subscribe_gets_nothing() {
    let mut w = data_world(DataLimits::default());
    let a = join_data(&mut w, "alice", Grants::default(), &[reliable()]);
    let blind = Grants {
        can_subscribe: false,
        ..Grants::default()
    };
    let b = join_data(&mut w, "bob", blind, &[reliable()]);
    send(&mut w, a, RELIABLE_LABEL, false, b"hi");
    w.run(Duration::from_millis(200));
    assert!(received(&w, b).is_empty());
}

#[test]
fn the_rate_limit_refuses_a_burst_and_recovers() {
    let limits = DataLimits {
        messages_per_second: 5,
        ..DataLimits::default()
    };
    let mut w = data_world(limits);
    let (a, b, _) = three(&mut w);
    for n in 0..8 {
        send(&mut w, a, RELIABLE_LABEL, false, format!("{n}").as_bytes());
    }
    w.run(Duration::from_millis(50));
    assert_eq!(received(&w, b).len(), 5);
    // Three refusals, one notice.
    assert_eq!(
        refusals(&w, "alice"),
        vec![(Some(DataKind::Reliable), DataRefusal::RateLimited)]
    );
    let refused = &w.core.metrics.data_refused;
    assert_eq!(refused.with_label_values(&["rate_limited"]).get(), 3);
    w.run(Duration::from_millis(500));
    send(&mut w, a, RELIABLE_LABEL, false, b"later");
    w.run(Duration::from_millis(50));
    assert_eq!(received(&w, b).len(), 6);
}

#[test]
fn unknown_and_duplicate_channels_are_closed() {
    let mut w = data_world(DataLimits::default());
    let other = ChannelConfig {
        label: "files".into(),
        ..ChannelConfig::default()
    };
    let a = join_data(
        &mut w,
        "alice",
        Grants::default(),
        &[reliable(), other, reliable()],
    );
    let b = join_data(&mut w, "bob", Grants::default(), &[reliable()]);
    let got = refusals(&w, "alice");
    assert_eq!(got.len(), 1, "one notice per second: {got:?}");
    assert!(matches!(got[0], (None, DataRefusal::UnknownChannel { .. })));
    assert_eq!(
        w.core
            .metrics
            .data_refused
            .with_label_values(&["unknown_channel"])
            .get(),
        2
    );
    let closed = w.clients[a]
        .channel_events
        .iter()
        .filter(|e| matches!(e, Event::ChannelClose(_)))
        .count();
    assert_eq!(closed, 2);
    // The first reliable channel still works.
    send(&mut w, a, RELIABLE_LABEL, false, b"still here");
    w.run(Duration::from_millis(200));
    assert_eq!(received(&w, b).len(), 1);
}

#[test]
fn a_receiver_that_stops_reading_holds_a_bounded_buffer() {
    let limits = DataLimits {
        messages_per_second: 10_000,
        bytes_per_second: 10_000_000,
        max_message_bytes: 16 * 1024,
        max_buffered_bytes: 64 * 1024,
    };
    let mut w = data_world(limits);
    let (a, b, c) = three(&mut w);
    // Bob's network goes away: nothing reaches him, so nothing he received is acknowledged.
    w.online[b] = false;
    let payload = vec![9u8; 8 * 1024];
    for _ in 0..40 {
        send(&mut w, a, LOSSY_LABEL, true, &payload);
        w.run(Duration::from_millis(20));
    }
    let busy = w
        .core
        .metrics
        .data_dropped
        .with_label_values(&["receiver_busy"])
        .get();
    assert!(busy >= 30, "only {busy} dropped for the stalled receiver");
    // Carol, reading, got every one.
    assert_eq!(received(&w, c).len(), 40);
    let session = w.core.session_id(&room(), &"bob".into()).unwrap();
    let p = w.core.sessions.get_mut(&session).unwrap();
    let ch = p.data.channel(DataKind::Lossy).unwrap();
    let held = p.rtc.channel(ch).unwrap().buffered_amount();
    assert!(held <= 64 * 1024, "{held} bytes held");
}
