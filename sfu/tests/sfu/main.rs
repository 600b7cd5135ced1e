//! Integration tests of the running SFU (driver + sockets on 127.0.0.1). One binary to
//! keep link time down; one behaviour per module.

mod bad_sdp;
mod ice_tcp;
mod media;
mod workers;

use std::time::Duration;

use sfu::{Settings, Sfu, SfuHandle};

/// Starts an SFU on ephemeral loopback ports advertising only 127.0.0.1.
pub fn start_sfu() -> (SfuHandle, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    let sfu = Sfu::start(Settings::loopback(), &registry).expect("sfu starts");
    (sfu, registry)
}

/// Value of a metric sample (counter or gauge) with the given label value, if any.
pub fn metric(registry: &prometheus::Registry, name: &str, label: Option<&str>) -> f64 {
    let Some(family) = registry.gather().into_iter().find(|m| m.name() == name) else {
        return 0.0;
    };
    family
        .get_metric()
        .iter()
        .filter(|x| label.is_none_or(|l| x.get_label().iter().any(|p| p.value() == l)))
        .map(|x| x.get_counter().get_value() + x.get_gauge().get_value())
        .sum()
}

/// Polls `snapshot` until `f` holds or `limit` passes.
pub async fn eventually<F: Fn(&sfu::Stats) -> bool>(
    sfu: &SfuHandle,
    limit: Duration,
    f: F,
) -> sfu::Stats {
    let end = tokio::time::Instant::now() + limit;
    loop {
        let s = sfu.snapshot().await.expect("sfu alive");
        if f(&s) || tokio::time::Instant::now() > end {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
