//! The open-file limit (`RLIMIT_NOFILE`) against what the configured caps can hold open.
//!
//! Every signaling connection, TURN relay socket, TURN TCP/TLS connection and SFU ICE-TCP
//! connection holds one file descriptor. A process whose limit is below what its caps allow
//! fails at `accept` with `EMFILE` long before it reaches them (every accept loop then backs
//! off, see [`admission::Backoff`], but clients are refused all the same). So at start
//! [`check`] raises the soft limit to the hard limit, which an unprivileged process may do
//! (systemd's default is 1024 soft, 524288 hard), computes [`Need`] from the configuration,
//! and warns, naming the key that needs the most, when the limit is below it.
//! `docs/operations.md` says what `LimitNOFILE` to set.

use config::{Config, Role};

/// Descriptors the process holds whatever its load: listeners, the runtime's and the TURN
/// workers' polls and rings, the chat database and its pool, log files.
pub const BASE: u64 = 256;

/// What the configured caps can hold open at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub parts: Vec<Part>,
}

/// One cap's share of [`Need`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The configuration key that drives it.
    pub key: &'static str,
    pub descriptors: u64,
}

impl Need {
    /// The descriptors `config` allows a process in `role` to hold at once.
    pub fn of(config: &Config, role: Role) -> Need {
        let mut parts = Vec::new();
        if role == Role::Full {
            parts.push(Part {
                key: "server.max_connections",
                descriptors: config.server.max_connections.into(),
            });
            if config.sfu.enabled && !config.sfu.tcp_listen.is_empty() {
                parts.push(Part {
                    key: "sfu.tcp_listen",
                    descriptors: sfu::MAX_ICE_TCP_CONNECTIONS as u64,
                });
            }
        }
        if matches!(crate::wiring::turn::settings(config), Ok(Some(_))) {
            // A relay socket per allocation, and a TCP or TLS connection for each client that
            // reaches the relay over one.
            parts.push(Part {
                key: "turn.max_allocations_total",
                descriptors: 2 * u64::from(config.turn.max_allocations_total),
            });
        }
        Need { parts }
    }

    pub fn total(&self) -> u64 {
        BASE + self.parts.iter().map(|p| p.descriptors).sum::<u64>()
    }

    /// The part that needs the most.
    pub fn largest(&self) -> Option<&Part> {
        self.parts.iter().max_by_key(|p| p.descriptors)
    }

    /// `key value + key value ...`, for the log.
    fn breakdown(&self) -> String {
        let mut text = format!("{BASE} base");
        for p in &self.parts {
            text.push_str(&format!(" + {} `{}`", p.descriptors, p.key));
        }
        text
    }
}

/// The open-file limit after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub soft: u64,
    pub hard: u64,
    /// The soft limit the process started with.
    pub started_with: u64,
}

/// Raises the soft open-file limit to the hard one (or, where that is refused, as an infinite
/// hard limit is, to `wanted`), and returns the result.
#[cfg(unix)]
// `rlim_t` is `u64` here but 32 bits wide on some targets.
#[allow(clippy::unnecessary_cast)]
pub fn raise(wanted: u64) -> std::io::Result<Limit> {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` only writes the struct it is given, which lives on this stack frame.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut current) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let started_with = current.rlim_cur as u64;
    let wanted = wanted.min(current.rlim_max as u64) as libc::rlim_t;
    for target in [current.rlim_max, wanted] {
        if target <= current.rlim_cur {
            continue;
        }
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: current.rlim_max,
        };
        // SAFETY: `setrlimit` only reads the struct it is given. It fails, changing nothing,
        // where the target is above what the kernel allows per process (an infinite hard limit).
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            current.rlim_cur = target;
            break;
        }
    }
    Ok(Limit {
        soft: current.rlim_cur as u64,
        hard: current.rlim_max as u64,
        started_with,
    })
}

/// Raises the limit and logs how it compares with what `config` needs; see the module docs.
pub fn check(config: &Config, role: Role) {
    #[cfg(unix)]
    {
        let need = Need::of(config, role);
        match raise(need.total()) {
            Ok(limit) => report(&limit, &need),
            Err(e) => tracing::warn!(error = %e, "cannot read the open-file limit (RLIMIT_NOFILE)"),
        }
    }
    #[cfg(not(unix))]
    let _ = (config, role);
}

fn report(limit: &Limit, need: &Need) {
    let total = need.total();
    if limit.soft >= total {
        tracing::info!(
            soft = limit.soft,
            hard = limit.hard,
            started_with = limit.started_with,
            need = total,
            "open-file limit (RLIMIT_NOFILE) covers the configured caps"
        );
        return;
    }
    let largest = need.largest().map_or("server.max_connections", |p| p.key);
    tracing::warn!(
        soft = limit.soft,
        hard = limit.hard,
        need = total,
        largest,
        "open-file limit (RLIMIT_NOFILE) {} is below the {total} descriptors the configured caps \
         can hold ({}); the largest share is `{largest}`. Raise LimitNOFILE in the systemd unit \
         (or `ulimit -n`) to at least {total}, or lower the caps: see docs/operations.md",
        limit.soft,
        need.breakdown(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let mut c = Config::default();
        c.ice.turn_secret = "turn-secret".into();
        c
    }

    #[test]
    fn every_cap_that_holds_descriptors_is_counted_with_its_key() {
        let need = Need::of(&config(), Role::Full);
        let keys: Vec<_> = need.parts.iter().map(|p| (p.key, p.descriptors)).collect();
        assert_eq!(
            keys,
            [
                ("server.max_connections", 20_000),
                ("sfu.tcp_listen", sfu::MAX_ICE_TCP_CONNECTIONS as u64),
                ("turn.max_allocations_total", 20_000),
            ]
        );
        assert_eq!(
            need.total(),
            BASE + 40_000 + sfu::MAX_ICE_TCP_CONNECTIONS as u64
        );
        assert!(need.breakdown().contains("20000 `server.max_connections`"));
    }

    #[test]
    fn parts_that_do_not_run_are_not_counted() {
        let mut c = config();
        c.ice.turn_secret.clear();
        c.ice.turn_urls.clear();
        c.sfu.tcp_listen.clear();
        c.server.max_connections = 700;
        let need = Need::of(&c, Role::Full);
        assert_eq!(need.total(), BASE + 700);
        assert_eq!(need.largest().unwrap().key, "server.max_connections");
        // `chorus turn` holds no signaling or SFU connections.
        let turn_only = Need::of(&config(), Role::TurnOnly);
        assert_eq!(
            turn_only.largest().unwrap().key,
            "turn.max_allocations_total"
        );
        assert_eq!(turn_only.total(), BASE + 20_000);
    }

    #[cfg(unix)]
    #[test]
    fn raising_never_lowers_the_limit_and_leaves_it_within_the_hard_one() {
        let limit = raise(BASE).unwrap();
        assert!(limit.soft >= limit.started_with && limit.soft <= limit.hard);
    }
}
