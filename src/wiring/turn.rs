//! The TURN relay in the binary: config mapping, and whether it can start at all.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Maps `[turn]` (and the shared `ice.turn_secret`) onto the turn crate's settings.
///
/// `Ok(None)` when TURN cannot authenticate anyone (no secret and no static user): it is then
/// not started, and the caller says so. Dev mode binds to loopback.
pub fn settings(config: &config::Config) -> Result<Option<turn::Settings>, String> {
    let c = &config.turn;
    let mut secrets = Vec::new();
    if !config.ice.turn_secret.is_empty() {
        secrets.push(config.ice.turn_secret.clone());
    }
    secrets.extend(c.previous_secrets.iter().filter(|s| !s.is_empty()).cloned());
    let static_users = c
        .static_users
        .iter()
        .map(|u| {
            turn::StaticUser::from_str(u)
                .map_err(|e| format!("invalid value for `turn.static_users`: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !c.enabled || (secrets.is_empty() && static_users.is_empty()) {
        return Ok(None);
    }
    let dev = config.server.dev;
    let local = |addr: SocketAddr| {
        if dev && !addr.ip().is_loopback() {
            SocketAddr::new(IpAddr::from([127, 0, 0, 1]), addr.port())
        } else {
            addr
        }
    };
    let ranges = |key: &str, list: &[String]| {
        list.iter()
            .map(|r| {
                turn::peer::IpRange::from_str(r)
                    .map_err(|e| format!("invalid value for `{key}`: `{r}`: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let ip = |s: &str| s.parse::<IpAddr>().ok();
    let udp = local(c.udp_listen);
    let relay_ip = ip(&c.relay_ip).or_else(|| {
        if udp.ip().is_unspecified() {
            sfu::detect_public_ips().first().copied()
        } else {
            Some(udp.ip())
        }
    });
    let tls = !c.tls_cert.is_empty();
    Ok(Some(turn::Settings {
        udp_listen: vec![udp],
        tcp_listen: vec![local(c.tcp_listen)],
        tls_listen: if tls {
            vec![local(c.tls_listen)]
        } else {
            Vec::new()
        },
        tls_cert_path: tls.then(|| c.tls_cert.clone().into()),
        tls_key_path: tls.then(|| c.tls_key.clone().into()),
        realm: c.realm.clone(),
        secrets,
        static_users,
        relay_ip,
        external_ip: ip(&c.external_ip),
        relay_ports: c.relay_port_min..=c.relay_port_max,
        allowed_peer_ranges: ranges("turn.allowed_peer_ranges", &c.allowed_peer_ranges)?,
        denied_peer_ranges: ranges("turn.denied_peer_ranges", &c.denied_peer_ranges)?,
        max_allocations_per_user: c.max_allocations_per_user,
        max_allocations_total: c.max_allocations_total,
        max_stream_connections_per_ip: c.max_connections_per_ip,
        max_permissions_per_allocation: c.max_permissions_per_allocation,
        max_channels_per_allocation: c.max_channels_per_allocation,
        max_lifetime: c.max_lifetime.get(),
        max_allocation_bytes_per_second: c.max_allocation_bytes_per_second,
        workers: c.workers,
        relay_io: match c.relay_io {
            config::TurnRelayIo::Auto => turn::RelayIo::Auto,
            config::TurnRelayIo::IoUring => turn::RelayIo::IoUring,
            config::TurnRelayIo::Epoll => turn::RelayIo::Epoll,
        },
        ..turn::Settings::default()
    }))
}

/// Binds the relay per `config`, or explains why it does not run.
pub async fn bind(
    config: &config::Config,
    registry: &prometheus::Registry,
) -> Result<Option<turn::Server>, String> {
    let Some(settings) = settings(config)? else {
        if config.turn.enabled {
            tracing::info!(
                "TURN not started: set ice.turn_secret (or turn.static_users) to run it"
            );
        }
        return Ok(None);
    };
    turn::Server::bind(settings, registry)
        .await
        .map(Some)
        .map_err(|e| format!("cannot start TURN (`turn.*`): {e}"))
}
