//! `chorus-load`: WebRTC load for a Chorus room or a Janus VideoRoom, from its own process.
//!
//! Publishers send synthetic VP8 (with keyframes, optionally three simulcast rids) and Opus;
//! subscribers receive and count. Publishers receive everyone else too (a meeting), as a
//! Chorus room does by default; with Janus each publisher also subscribes to the others.
//!
//! A run: clients start at `--ramp-per-second` (publishers first), the tool waits until every
//! peer is connected (or has failed) plus `--settle` seconds, then measures for `--duration`
//! seconds: packets received by all clients in that window are the server's forwarded
//! packets. With `--server-pid` it samples the server's CPU time (user + system from
//! `/proc/PID/stat`) over exactly that window, and its RSS before any client and at the end.
//! Loss is counted from sequence gaps over the whole run. See `docs/benchmarks.md` for how
//! `bench/sfu-vs-janus.sh` uses it.
//!
//! ```text
//! chorus-load --url http://127.0.0.1:8080 --room demo --publishers 1 --subscribers 50 \
//!     --video-bitrate 1500000 --audio --duration 20 --token-secret "$SECRET" --json
//! chorus-load --target janus --janus-url ws://127.0.0.1:8188 --publishers 8 --audio
//! ```

mod chorus;
mod janus;
mod media;
mod peer;
mod proc;
mod stats;
mod token;

use clap::{Parser, ValueEnum};
use peer::Publish;
use stats::{ClientReport, Live, Summary};
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TargetKind {
    Chorus,
    Janus,
}

#[derive(Parser, Debug)]
#[command(
    name = "chorus-load",
    version,
    about = "WebRTC load for a Chorus room or a Janus VideoRoom"
)]
struct Options {
    /// Which server to drive.
    #[arg(long, value_enum, default_value = "chorus")]
    target: TargetKind,
    /// Chorus's HTTP listener (signaling at /ws).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Janus's WebSocket transport.
    #[arg(long, default_value = "ws://127.0.0.1:8188")]
    janus_url: String,
    /// Room name (Chorus) or numeric room id (Janus; a random id when not a number). The
    /// Janus room is created by the tool and destroyed at the end.
    #[arg(long, default_value = "load")]
    room: String,
    #[arg(long, default_value_t = 1)]
    publishers: u32,
    /// Receive-only clients.
    #[arg(long, default_value_t = 0)]
    subscribers: u32,
    /// Video bitrate in bit/s of each publisher (of its top layer with --simulcast); 0 sends
    /// no video. Accepts k and M suffixes.
    #[arg(long, default_value = "1.5M", value_parser = bitrate)]
    video_bitrate: u64,
    /// Send three simulcast layers (rids q, h, f at 1/16, 1/4 and all of the bitrate).
    #[arg(long)]
    simulcast: bool,
    /// Publishers also send Opus audio.
    #[arg(long)]
    audio: bool,
    /// Length of the measurement window, in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds between everyone being connected and the window's start.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// Clients started per second.
    #[arg(long, default_value_t = 20.0)]
    ramp_per_second: f64,
    /// Mint HS256 tokens with this secret (Chorus's auth.secret); without it, tokens come
    /// from a `--dev` server's POST /api/v1/dev/token.
    #[arg(long, env = "CHORUS_AUTH_SECRET", hide_env_values = true)]
    token_secret: Option<String>,
    /// Local address for the clients' media sockets.
    #[arg(long, default_value = "127.0.0.1")]
    bind_ip: IpAddr,
    /// Sample this process's CPU time and RSS (the server under test).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn bitrate(s: &str) -> Result<u64, String> {
    let (number, scale) = match s.trim().char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1e3),
        Some((i, 'm' | 'M')) => (&s[..i], 1e6),
        _ => (s, 1.0),
    };
    let v: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a bitrate (e.g. 1500000, 800k, 1.5M)"))?;
    Ok((v * scale) as u64)
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = Options::parse();
    match run(options).await {
        Ok((summary, json)) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&summary).expect("the summary serialises")
                );
            } else {
                print!("{}", summary.table());
            }
            if summary.failed > 0 {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("chorus-load: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(o: Options) -> Result<(Summary, bool), String> {
    let rss_before = o.server_pid.map(proc::rss_kb).transpose()?;
    let live = Arc::new(Live::default());
    let (stop_tx, stop) = watch::channel(false);
    let publish = Publish {
        audio: o.audio,
        video_bps: (o.video_bitrate > 0).then_some(o.video_bitrate),
        simulcast: o.simulcast,
    };
    let total = o.publishers + o.subscribers;
    let run_id: u32 = rand::random::<u32>() & 0xffffff;
    let mut clients: JoinSet<ClientReport> = JoinSet::new();
    let ramp = Duration::from_secs_f64(1.0 / o.ramp_per_second.max(0.01));
    let target_name;
    // Peers per client: a Janus publisher in a meeting has a second peer for receiving.
    let mut peers = u64::from(total);
    let janus_room;
    match o.target {
        TargetKind::Chorus => {
            target_name = format!("chorus {}", o.url);
            janus_room = None;
            let authority = authority(&o.url)?;
            let tokens = match &o.token_secret {
                Some(s) => token::TokenSource::Secret(s.clone()),
                None => token::TokenSource::DevEndpoint(authority.clone()),
            };
            let target = chorus::Target {
                authority,
                room: o.room.clone(),
                tokens,
                bind: o.bind_ip,
            };
            for i in 0..total {
                let (user, publish) = if i < o.publishers {
                    (format!("pub{i}-{run_id:06x}"), publish.clone())
                } else {
                    (format!("sub{i}-{run_id:06x}"), Publish::default())
                };
                clients.spawn(chorus::client(
                    target.clone(),
                    user,
                    publish,
                    live.clone(),
                    stop.clone(),
                ));
                tokio::time::sleep(ramp).await;
            }
        }
        TargetKind::Janus => {
            target_name = format!("janus {}", o.janus_url);
            let room = janus::Room::create(&o.janus_url, &o.room, o.publishers).await?;
            if o.publishers > 1 {
                peers += u64::from(o.publishers);
            }
            for i in 0..total {
                let role = if i < o.publishers {
                    janus::Role::Publisher(publish.clone())
                } else {
                    janus::Role::Subscriber
                };
                clients.spawn(janus::client(
                    room.clone(),
                    format!("client{i}"),
                    role,
                    o.bind_ip,
                    live.clone(),
                    stop.clone(),
                ));
                tokio::time::sleep(ramp).await;
            }
            janus_room = Some(room);
        }
    }

    // Everyone connected (or failed), then settle.
    let deadline = Instant::now() + peer::CONNECT_TIMEOUT + Duration::from_secs(10);
    while live.connected.load(Ordering::Relaxed) + live.failed.load(Ordering::Relaxed) < peers
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs_f64(o.settle)).await;

    let cpu_start = o.server_pid.map(proc::cpu_seconds).transpose()?;
    let (rx0, bytes0, sent0) = live.snapshot();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(o.duration)).await;
    let (rx1, bytes1, sent1) = live.snapshot();
    let window = t0.elapsed().as_secs_f64();
    let cpu_end = o.server_pid.map(proc::cpu_seconds).transpose()?;
    let rss_loaded = o.server_pid.map(proc::rss_kb).transpose()?;

    let _ = stop_tx.send(true);
    let mut reports = Vec::new();
    while let Some(r) = clients.join_next().await {
        reports.push(r.map_err(|e| format!("a client task panicked: {e}"))?);
    }
    if let Some(room) = janus_room {
        room.destroy().await;
    }

    let mut summary = Summary {
        target: target_name,
        window_seconds: window,
        window_packets: rx1 - rx0,
        window_packets_per_second: (rx1 - rx0) as f64 / window,
        window_bitrate_bps: (bytes1 - bytes0) as f64 * 8.0 / window,
        window_sent_packets: sent1 - sent0,
        ..Summary::default()
    };
    summary.add_reports(&reports);
    if let (Some(pid), Some(a), Some(b), Some(before), Some(loaded)) =
        (o.server_pid, cpu_start, cpu_end, rss_before, rss_loaded)
    {
        let cpu = b - a;
        summary.server = Some(stats::ServerUsage {
            pid,
            cpu_seconds: cpu,
            rss_before_kb: before,
            rss_loaded_kb: loaded,
        });
        if summary.window_packets > 0 {
            summary.server_cpu_us_per_packet = Some(cpu * 1e6 / summary.window_packets as f64);
        }
        if total > 0 {
            summary.server_rss_kb_per_client =
                Some(loaded.saturating_sub(before) as f64 / f64::from(total));
        }
    }
    Ok((summary, o.json))
}

/// `host:port` from `http://host:port[/...]`.
fn authority(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--url must be http://host:port, not `{url}`"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    Ok(if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrates_and_urls_parse() {
        assert_eq!(bitrate("1.5M"), Ok(1_500_000));
        assert_eq!(bitrate("800k"), Ok(800_000));
        assert_eq!(bitrate("64000"), Ok(64_000));
        assert!(bitrate("fast").is_err());
        assert_eq!(
            authority("http://127.0.0.1:8080/").as_deref(),
            Ok("127.0.0.1:8080")
        );
        assert!(authority("ws://x").is_err());
    }
}
