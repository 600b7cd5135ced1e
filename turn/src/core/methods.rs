//! One handler per TURN method (RFC 8656 §7–§12) plus Binding (RFC 8489).

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use crate::{
    auth::{AuthFailure, Authenticated},
    wire::{self, Attrs, Builder, Class, Message},
};

use super::{
    Core, DontFragment, Event, FiveTuple, Parity, Quota, RelayFailure, RelayId, Transmit,
    allocation::{Allocation, Bucket, CHANNEL_LIFETIME, Channel},
    reply::*,
};

impl Core {
    pub(super) fn request(
        &mut self,
        now: Instant,
        from: FiveTuple,
        msg: &Message<'_>,
    ) -> Option<Transmit<'_>> {
        let attrs = Attrs::parse(msg);
        if msg.method == wire::METHOD_BINDING {
            return self.binding(from, msg, &attrs);
        }
        if !matches!(
            msg.method,
            wire::METHOD_ALLOCATE
                | wire::METHOD_REFRESH
                | wire::METHOD_CREATE_PERMISSION
                | wire::METHOD_CHANNEL_BIND
        ) {
            return self.error(from, msg, BAD_REQUEST, None);
        }
        if attrs.bad {
            return self.error(from, msg, BAD_REQUEST, None);
        }
        let shared = self.shared.clone();
        let auth = match shared
            .auth
            .check(msg, &attrs, from.client.ip(), shared.unix(now))
        {
            Ok(a) => a,
            Err(failure) => {
                shared
                    .metrics
                    .auth_failures
                    .with_label_values(&[failure.label()])
                    .inc();
                return match failure {
                    AuthFailure::Malformed => self.error(from, msg, BAD_REQUEST, None),
                    AuthFailure::StaleNonce => self.challenge(now, from, msg, STALE_NONCE),
                    _ => self.challenge(now, from, msg, UNAUTHENTICATED),
                };
            }
        };
        // RFC 8489 §6.3.1: unknown comprehension-required attributes are checked after
        // authentication. We keep no port reservations, so RESERVATION-TOKEN and EVEN-PORT with
        // the R bit are refused the same way (RFC 8656 §7.2 lets a server treat attributes it does
        // not support as unknown). EVEN-PORT without R is honoured: it costs nothing.
        let mut unknown = [0u16; 10];
        let mut n = attrs.unknown_count;
        unknown[..n].copy_from_slice(&attrs.unknown[..n]);
        if msg.method == wire::METHOD_ALLOCATE {
            if attrs.even_port.is_some_and(|e| e.reserve) {
                unknown[n] = wire::ATTR_EVEN_PORT;
                n += 1;
            }
            if attrs.reservation_token {
                unknown[n] = wire::ATTR_RESERVATION_TOKEN;
                n += 1;
            }
        }
        if n > 0 {
            return self.unknown_attributes(from, msg, &unknown[..n], Some(&auth));
        }
        match msg.method {
            wire::METHOD_ALLOCATE => self.allocate(now, from, msg, &attrs, auth),
            wire::METHOD_REFRESH => self.refresh(now, from, msg, &attrs, &auth),
            wire::METHOD_CREATE_PERMISSION => self.create_permission(now, from, msg, &attrs, &auth),
            _ => self.channel_bind(now, from, msg, &attrs, &auth),
        }
    }

    fn binding(
        &mut self,
        from: FiveTuple,
        msg: &Message<'_>,
        attrs: &Attrs<'_>,
    ) -> Option<Transmit<'_>> {
        if attrs.unknown_count > 0 {
            let unknown = attrs.unknown;
            return self.unknown_attributes(from, msg, &unknown[..attrs.unknown_count], None);
        }
        Builder::new(&mut self.out, msg.method, Class::Success, msg.txid)
            .xor_address(wire::ATTR_XOR_MAPPED_ADDRESS, from.client);
        self.seal(from, None)
    }

    fn allocate(
        &mut self,
        now: Instant,
        from: FiveTuple,
        msg: &Message<'_>,
        attrs: &Attrs<'_>,
        auth: Authenticated,
    ) -> Option<Transmit<'_>> {
        let metrics = self.shared.metrics.clone();
        let result = |r: &str| metrics.allocations_total.with_label_values(&[r]).inc();
        if let Some(&idx) = self.by_tuple.get(&from) {
            let alloc = self.slots[idx as usize].as_ref()?;
            // A retransmitted Allocate gets the original success again (RFC 8656 §7.2).
            if alloc.txid == msg.txid && alloc.username == auth.username {
                return match alloc.relayed {
                    Some(_) => self.allocate_success(idx, msg.txid),
                    None => None,
                };
            }
            result("mismatch");
            return self.error(from, msg, ALLOCATION_MISMATCH, Some(&auth));
        }
        match attrs.requested_transport {
            None => {
                result("bad_request");
                return self.error(from, msg, BAD_REQUEST, Some(&auth));
            }
            Some(wire::PROTO_UDP) => {}
            Some(_) => {
                result("unsupported_transport");
                return self.error(from, msg, UNSUPPORTED_TRANSPORT, Some(&auth));
            }
        }
        let ip = self.shared.settings.relay_ip.unwrap_or(from.server.ip());
        let family_ok = match attrs.requested_family {
            None | Some(wire::FAMILY_V4) => ip.is_ipv4(),
            Some(wire::FAMILY_V6) => ip.is_ipv6(),
            Some(_) => false,
        };
        if !family_ok || ip.is_unspecified() {
            result("family");
            return self.error(from, msg, FAMILY_NOT_SUPPORTED, Some(&auth));
        }
        if let Err(q) = self.shared.reserve(&auth.user) {
            let (label, code) = match q {
                Quota::Total => ("allocations_total", INSUFFICIENT_CAPACITY),
                Quota::PerUser => ("allocations_per_user", QUOTA_REACHED),
            };
            result("quota");
            metrics.quota_refusals.with_label_values(&[label]).inc();
            return self.error(from, msg, code, Some(&auth));
        }
        let lifetime = self.lifetime(attrs.lifetime);
        let rate = self.shared.settings.max_allocation_bytes_per_second;
        let alloc = Allocation {
            five: from,
            username: auth.username,
            user: auth.user,
            key: auth.key,
            kind: auth.kind,
            txid: msg.txid,
            relayed: None,
            expires: now + Duration::from_secs(u64::from(lifetime)),
            lifetime,
            perms: Vec::new(),
            channels: Vec::new(),
            up: Bucket::new(rate, now),
            down: Bucket::new(rate, now),
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(alloc);
                i
            }
            None => {
                self.slots.push(Some(alloc));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_tuple.insert(from, idx);
        self.events.push_back(Event::OpenRelay {
            relay: RelayId(idx),
            ip,
            parity: if attrs.even_port.is_some() {
                Parity::Even
            } else {
                Parity::Any
            },
            dont_fragment: if attrs.dont_fragment {
                DontFragment::Set
            } else {
                DontFragment::Unset
            },
        });
        None
    }

    pub(super) fn finish_allocate(
        &mut self,
        now: Instant,
        relay: RelayId,
        result: Result<SocketAddr, RelayFailure>,
    ) -> Option<Transmit<'_>> {
        let idx = relay.0;
        let pending = matches!(self.slots.get(idx as usize), Some(Some(a)) if a.relayed.is_none());
        if !pending {
            // Deleted while the driver was opening the socket: have it closed again.
            if result.is_ok() {
                self.events.push_back(Event::CloseRelay { relay });
            }
            return None;
        }
        let metrics = self.shared.metrics.clone();
        match result {
            Ok(local) => {
                let external = self.shared.settings.external_ip;
                let alloc = self.slots[idx as usize].as_mut()?;
                alloc.relayed =
                    Some(external.map_or(local, |ip| SocketAddr::new(ip, local.port())));
                // The lifetime runs from the success response, not from the request.
                alloc.expires = now + Duration::from_secs(u64::from(alloc.lifetime));
                metrics.allocations_total.with_label_values(&["ok"]).inc();
                metrics.allocations_active.inc();
                let txid = alloc.txid;
                self.allocate_success(idx, txid)
            }
            Err(RelayFailure::NoPort) => {
                let alloc = self.slots[idx as usize].take()?;
                self.by_tuple.remove(&alloc.five);
                self.free.push(idx);
                self.shared.release(&alloc.user);
                metrics
                    .allocations_total
                    .with_label_values(&["no_port"])
                    .inc();
                Builder::new(
                    &mut self.out,
                    wire::METHOD_ALLOCATE,
                    Class::Error,
                    alloc.txid,
                )
                .error_code(INSUFFICIENT_CAPACITY.0, INSUFFICIENT_CAPACITY.1);
                self.seal(alloc.five, Some((&alloc.key, alloc.kind)))
            }
        }
    }

    fn allocate_success(&mut self, idx: u32, txid: [u8; 12]) -> Option<Transmit<'_>> {
        let alloc = self.slots[idx as usize].as_ref()?;
        let (five, key, kind) = (alloc.five, alloc.key, alloc.kind);
        Builder::new(&mut self.out, wire::METHOD_ALLOCATE, Class::Success, txid)
            .xor_address(wire::ATTR_XOR_RELAYED_ADDRESS, alloc.relayed?)
            .attr_u32(wire::ATTR_LIFETIME, alloc.lifetime)
            .xor_address(wire::ATTR_XOR_MAPPED_ADDRESS, five.client);
        self.seal(five, Some((&key, kind)))
    }

    /// RFC 8656 §7.2: max(default, min(requested, max)).
    fn lifetime(&self, requested: Option<u32>) -> u32 {
        let s = &self.shared.settings;
        let default = s.default_lifetime.as_secs() as u32;
        let max = s.max_lifetime.as_secs() as u32;
        requested.map_or(default, |r| r.min(max).max(default))
    }

    /// Finds the caller's live allocation, or the error to answer (437, 441).
    fn own_allocation(&self, from: FiveTuple, auth: &Authenticated) -> Result<u32, Code> {
        let found = self
            .by_tuple
            .get(&from)
            .copied()
            .filter(|&i| matches!(&self.slots[i as usize], Some(a) if a.relayed.is_some()));
        let Some(idx) = found else {
            return Err(ALLOCATION_MISMATCH);
        };
        if self.slots[idx as usize]
            .as_ref()
            .is_some_and(|a| a.username != auth.username)
        {
            self.shared
                .metrics
                .auth_failures
                .with_label_values(&["wrong_user"])
                .inc();
            return Err(WRONG_CREDENTIALS);
        }
        Ok(idx)
    }

    fn refresh(
        &mut self,
        now: Instant,
        from: FiveTuple,
        msg: &Message<'_>,
        attrs: &Attrs<'_>,
        auth: &Authenticated,
    ) -> Option<Transmit<'_>> {
        let idx = match self.own_allocation(from, auth) {
            Ok(i) => i,
            Err(code) => return self.error(from, msg, code, Some(auth)),
        };
        let granted = if attrs.lifetime == Some(0) {
            self.delete(idx);
            0
        } else {
            let lifetime = self.lifetime(attrs.lifetime);
            let alloc = self.slots[idx as usize].as_mut()?;
            alloc.expires = now + Duration::from_secs(u64::from(lifetime));
            alloc.lifetime = lifetime;
            lifetime
        };
        Builder::new(&mut self.out, msg.method, Class::Success, msg.txid)
            .attr_u32(wire::ATTR_LIFETIME, granted);
        self.seal(from, Some((&auth.key, auth.kind)))
    }

    /// Checks one peer for CreatePermission/ChannelBind: policy (403), then family (443).
    fn vet_peer(&self, idx: u32, peer: SocketAddr) -> Result<(), Code> {
        if let Err(refusal) = self.shared.policy.check(peer.ip()) {
            self.shared
                .metrics
                .peer_refusals
                .with_label_values(&[refusal.label()])
                .inc();
            return Err(FORBIDDEN);
        }
        // Policy first, so `[::ffff:127.0.0.1]` is a 403 even on an IPv4 allocation.
        let relayed = self.slots[idx as usize].as_ref().and_then(|a| a.relayed);
        if relayed.is_some_and(|r| r.is_ipv4() != peer.is_ipv4()) {
            return Err(PEER_FAMILY_MISMATCH);
        }
        Ok(())
    }

    fn create_permission(
        &mut self,
        now: Instant,
        from: FiveTuple,
        msg: &Message<'_>,
        attrs: &Attrs<'_>,
        auth: &Authenticated,
    ) -> Option<Transmit<'_>> {
        let idx = match self.own_allocation(from, auth) {
            Ok(i) => i,
            Err(code) => return self.error(from, msg, code, Some(auth)),
        };
        let peers: Vec<IpAddr> = match attrs.peer_list() {
            Some(list) => list.map(|p| p.ip()).collect(),
            None => return self.error(from, msg, BAD_REQUEST, Some(auth)),
        };
        if peers.is_empty() {
            return self.error(from, msg, BAD_REQUEST, Some(auth));
        }
        for &ip in &peers {
            if let Err(code) = self.vet_peer(idx, SocketAddr::new(ip, 0)) {
                return self.error(from, msg, code, Some(auth));
            }
        }
        let max = self.shared.settings.max_permissions_per_allocation;
        let alloc = self.slots[idx as usize].as_mut()?;
        alloc.prune(now);
        let new = peers
            .iter()
            .filter(|ip| !alloc.perms.iter().any(|(p, _)| p == *ip))
            .count();
        if alloc.perms.len() + new > max {
            self.shared
                .metrics
                .quota_refusals
                .with_label_values(&["permissions"])
                .inc();
            return self.error(from, msg, INSUFFICIENT_CAPACITY, Some(auth));
        }
        for ip in peers {
            alloc.permit(ip, now);
        }
        Builder::new(&mut self.out, msg.method, Class::Success, msg.txid);
        self.seal(from, Some((&auth.key, auth.kind)))
    }

    fn channel_bind(
        &mut self,
        now: Instant,
        from: FiveTuple,
        msg: &Message<'_>,
        attrs: &Attrs<'_>,
        auth: &Authenticated,
    ) -> Option<Transmit<'_>> {
        let idx = match self.own_allocation(from, auth) {
            Ok(i) => i,
            Err(code) => return self.error(from, msg, code, Some(auth)),
        };
        let (Some(number), 1, Some(peer)) = (attrs.channel, attrs.peer_count, attrs.peers[0])
        else {
            return self.error(from, msg, BAD_REQUEST, Some(auth));
        };
        // RFC 8656 narrowed channels to 0x4000..=0x4FFF, but RFC 5766 clients (coturn's own
        // tools among them) still use up to 0x7FFF; both fit ChannelData's `01` prefix.
        if !(0x4000..=0x7fff).contains(&number) {
            return self.error(from, msg, BAD_REQUEST, Some(auth));
        }
        if let Err(code) = self.vet_peer(idx, peer) {
            return self.error(from, msg, code, Some(auth));
        }
        let max = self.shared.settings.max_channels_per_allocation;
        let max_perms = self.shared.settings.max_permissions_per_allocation;
        let alloc = self.slots[idx as usize].as_mut()?;
        alloc.prune(now);
        let by_number = alloc.channels.iter().position(|c| c.number == number);
        let by_peer = alloc.channels.iter().position(|c| c.peer == peer);
        let expires = now + CHANNEL_LIFETIME;
        match (by_number, by_peer) {
            // Refresh of an existing binding.
            (Some(a), Some(b)) if a == b => alloc.channels[a].expires = expires,
            // Number or peer already bound to something else (RFC 8656 §12.2).
            (Some(_), _) | (_, Some(_)) => {
                return self.error(from, msg, BAD_REQUEST, Some(auth));
            }
            (None, None) => {
                let needs_perm = !alloc.perms.iter().any(|(p, _)| *p == peer.ip());
                if alloc.channels.len() >= max || (needs_perm && alloc.perms.len() >= max_perms) {
                    self.shared
                        .metrics
                        .quota_refusals
                        .with_label_values(&["channels"])
                        .inc();
                    return self.error(from, msg, INSUFFICIENT_CAPACITY, Some(auth));
                }
                alloc.channels.push(Channel {
                    number,
                    peer,
                    expires,
                });
            }
        }
        alloc.permit(peer.ip(), now);
        Builder::new(&mut self.out, msg.method, Class::Success, msg.txid);
        self.seal(from, Some((&auth.key, auth.kind)))
    }

    /// Send indication (RFC 8656 §11.2): no response ever; dropped unless permitted.
    pub(super) fn send_indication<'a>(
        &'a mut self,
        now: Instant,
        from: FiveTuple,
        msg: &Message<'a>,
    ) -> Option<Transmit<'a>> {
        let &idx = self.by_tuple.get(&from)?;
        let attrs = Attrs::parse(msg);
        let (Some(peer), Some(data)) = (attrs.peers[0], attrs.data) else {
            return None;
        };
        let alloc = self.slots[idx as usize].as_mut()?;
        alloc.relayed?;
        if !alloc.permitted(peer.ip(), now) {
            self.counts.no_permission_drops += 1;
            return None;
        }
        if alloc.up.spend(data.len(), now) == super::Budget::Exceeded {
            self.counts.bandwidth_drops += 1;
            return None;
        }
        self.counts.up_packets += 1;
        self.counts.up_bytes += data.len() as u64;
        Some(Transmit {
            destination: super::Destination::Peer {
                relay: RelayId(idx),
                peer,
            },
            data,
        })
    }
}
