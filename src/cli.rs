//! Command-line interface: `chorus serve`, `chorus check-config`, `chorus token`, and the
//! server API commands (`chorus rooms|participants|calls|tokens`, see [`crate::admin_cli`]).

use clap::{Args, Parser, Subcommand};
use config::{Config, ConfigError, LogFormat, Overrides};
use signaling::auth::{Authenticator, Grants};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Chorus: one binary for real-time calls (signaling, presence, calls).
#[derive(Parser, Debug)]
#[command(name = "chorus", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (HTTP, WebSocket at /ws, Socket.IO at /socket.io/, metrics, health).
    Serve(ServeArgs),
    /// Validate a configuration (file + environment + --set) without starting anything.
    CheckConfig(ConfigArgs),
    /// Run only the TURN/STUN relay (UDP and TCP 3478, TLS 5349), with /health and /metrics.
    Turn(ConfigArgs),
    /// Mint a JWT with the configured key, for testing and scripts.
    Token(TokenArgs),
    /// Server API: list, create and delete rooms, set their metadata, send them data.
    Rooms {
        #[command(flatten)]
        api: crate::admin_cli::ApiArgs,
        #[command(subcommand)]
        command: crate::admin_cli::RoomsCommand,
    },
    /// Server API: list, remove and mute a room's participants.
    Participants {
        #[command(flatten)]
        api: crate::admin_cli::ApiArgs,
        #[command(subcommand)]
        command: crate::admin_cli::ParticipantsCommand,
    },
    /// Server API: list and end calls.
    Calls {
        #[command(flatten)]
        api: crate::admin_cli::ApiArgs,
        #[command(subcommand)]
        command: crate::admin_cli::CallsCommand,
    },
    /// Server API: revoke tokens and list revocations.
    Tokens {
        #[command(flatten)]
        api: crate::admin_cli::ApiArgs,
        #[command(subcommand)]
        command: crate::admin_cli::TokensCommand,
    },
    /// Server API: list, create, show, change (or rotate the secret of) and delete webhook
    /// endpoints.
    Webhooks {
        #[command(flatten)]
        api: crate::admin_cli::ApiArgs,
        #[command(subcommand)]
        command: crate::admin_cli::WebhooksCommand,
    },
}

/// Where the configuration comes from; shared by every command.
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// TOML configuration file (see chorus.example.toml for every key).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Development mode: loopback only, generated secret, sample token logged, dev token endpoint.
    #[arg(long)]
    pub dev: bool,
    /// Override any key, e.g. --set calls.ring_timeout=30s (repeatable; wins over file and env).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// HTTP listen address (server.listen), e.g. 0.0.0.0:8080.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Data directory (server.data_dir).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// Log format (log.format): pretty or json.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Log filter (log.level), e.g. info or chorus_signaling=debug.
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
}

#[derive(Args, Debug)]
pub struct TokenArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// User id (the `sub` claim).
    #[arg(long)]
    pub user: String,
    /// Display name (the `name` claim).
    #[arg(long)]
    pub name: String,
    /// Grant access to this named room.
    #[arg(long)]
    pub room: Option<String>,
    /// Lifetime, e.g. 1h, 30m.
    #[arg(long, default_value = "1h")]
    pub ttl: String,
    /// Grants: admin, no-publish, no-subscribe, no-data, no-chat (repeatable or comma-separated).
    #[arg(long = "grant", value_delimiter = ',')]
    pub grants: Vec<String>,
}

impl ConfigArgs {
    /// Loads the configuration from the file, the process environment, `--dev` and `--set`,
    /// plus `extra` overrides from command-specific flags.
    pub fn load(&self, extra: &[(&str, Option<&String>)]) -> Result<Config, ConfigError> {
        self.load_for(config::Role::Full, extra)
    }

    /// [`ConfigArgs::load`] for a process in `role` (`chorus turn` needs no `[auth]`).
    pub fn load_for(
        &self,
        role: config::Role,
        extra: &[(&str, Option<&String>)],
    ) -> Result<Config, ConfigError> {
        let mut overrides = Overrides::default();
        if self.dev {
            overrides.set("server.dev", "true");
        }
        for (key, value) in extra {
            if let Some(v) = value {
                overrides.set(*key, format!("\"{}\"", v.replace('"', "")));
            }
        }
        for assignment in &self.set {
            overrides.parse_assignment(assignment)?;
        }
        let mut config =
            Config::load_for(role, self.config.as_deref(), std::env::vars(), &overrides)?;
        if config.server.dev {
            config.server.listen = loopback(config.server.listen);
        }
        Ok(config)
    }
}

/// Dev mode never listens beyond this machine.
pub fn loopback(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V6(v6) if v6.is_loopback() || v6.is_unspecified() => {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        }
        ip if ip.is_loopback() => ip,
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    SocketAddr::new(ip, addr.port())
}

/// The HS256 secret dev mode uses: the configured one when set, else one generated once and
/// kept in `<data_dir>/dev-secret` so `chorus token --dev` mints tokens the running server takes.
pub fn dev_secret(config: &Config) -> std::io::Result<Option<String>> {
    if !config.server.dev || config.auth.secret.len() >= config::MIN_SECRET_BYTES {
        return Ok(None);
    }
    let path = config.server.data_dir.join("dev-secret");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_owned();
        if existing.len() >= config::MIN_SECRET_BYTES {
            return Ok(Some(existing));
        }
    }
    std::fs::create_dir_all(&config.server.data_dir)?;
    let bytes: [u8; 32] = rand::random();
    let secret = hex::encode(bytes);
    write_private(&path, &secret)?;
    Ok(Some(secret))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents.as_bytes())
}

/// Builds the authenticator for `config`, with dev mode's generated secret when it applies.
pub fn authenticator(config: &Config) -> Result<Authenticator, String> {
    let secret = dev_secret(config).map_err(|e| {
        format!(
            "cannot keep the dev secret in `server.data_dir` ({}): {e}",
            config.server.data_dir.display()
        )
    })?;
    Authenticator::new(&config.auth, secret.as_deref())
}

/// `chorus token`: prints a freshly minted token.
pub fn mint(args: &TokenArgs, config: &Config) -> Result<String, String> {
    let ttl = humantime::parse_duration(&args.ttl)
        .map_err(|e| format!("invalid --ttl `{}`: {e}", args.ttl))?;
    if ttl > Duration::from_secs(366 * 24 * 3600) {
        return Err("--ttl is longer than a year".into());
    }
    if !protocol::valid_id(&args.user) {
        return Err("--user must be 1-128 characters without control characters".into());
    }
    let mut grants = Grants {
        room: args.room.clone(),
        ..Grants::default()
    };
    for g in args
        .grants
        .iter()
        .map(|g| g.trim())
        .filter(|g| !g.is_empty())
    {
        match g {
            "admin" => grants.admin = true,
            "no-publish" => grants.can_publish = false,
            "no-subscribe" => grants.can_subscribe = false,
            "no-data" => grants.can_publish_data = false,
            "no-chat" => grants.can_chat = false,
            other => {
                return Err(format!(
                    "unknown --grant `{other}` (admin, no-publish, no-subscribe, no-data, no-chat)"
                ));
            }
        }
    }
    authenticator(config)?.mint(&args.user, &args.name, grants, ttl, SystemTime::now())
}

/// Installs the global tracing subscriber per `config.log` (RUST_LOG wins when set).
pub fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
