//! Runs the Chorus TURN server on its own, for the benchmark script and manual tests, until the
//! `chorus turn` subcommand exists.
//!
//! ```text
//! cargo run --release --example turn-server -- --listen 127.0.0.1:3478 --user u:p \
//!     --secret s --realm test --allow 127.0.0.0/8 [--workers N] [--tls-cert C --tls-key K --tls-listen A]
//! ```
//! Prints `ready udp=… tcp=… tls=…` once bound, then runs until SIGINT or SIGTERM.

use std::{net::SocketAddr, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut s = turn::Settings::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => {
                let a: SocketAddr = value()?.parse()?;
                s.udp_listen = vec![a];
                s.tcp_listen = vec![a];
            }
            "--tls-listen" => s.tls_listen = vec![value()?.parse()?],
            "--tls-cert" => s.tls_cert_path = Some(PathBuf::from(value()?)),
            "--tls-key" => s.tls_key_path = Some(PathBuf::from(value()?)),
            "--user" => s.static_users.push(value()?.parse()?),
            "--secret" => s.secrets.push(value()?),
            "--realm" => s.realm = value()?,
            "--allow" => s.allowed_peer_ranges.push(value()?.parse()?),
            "--relay-ip" => s.relay_ip = Some(value()?.parse()?),
            "--workers" => s.workers = value()?.parse()?,
            "--max-allocations-per-user" => s.max_allocations_per_user = value()?.parse()?,
            "--max-bps" => s.max_allocation_bytes_per_second = value()?.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    if s.tls_cert_path.is_none() {
        s.tls_listen.clear();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let registry = prometheus::Registry::new();
        let server = turn::Server::bind(s, &registry).await?;
        let a = server.local_addrs();
        println!("ready udp={:?} tcp={:?} tls={:?}", a.udp, a.tcp, a.tls);
        server
            .run(async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("SIGTERM handler");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            })
            .await?;
        Ok::<_, turn::Error>(())
    })?;
    Ok(())
}
