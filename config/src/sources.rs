//! Reading and merging the configuration sources.

use crate::{Config, Role, SECTIONS};
use std::path::Path;
use toml::{Table, Value};

/// Why a configuration could not be used. Every variant names the key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {message}")]
    Read { path: String, message: String },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error("invalid value for `{key}`: {message}")]
    Invalid { key: String, message: String },
}

/// Command-line overrides, applied last: `key=value` pairs with dotted keys.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pairs: Vec<(String, String)>,
}

impl Overrides {
    /// Adds `section.key = value`; `value` is read like an environment variable's.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.pairs.push((key.into(), value.into()));
        self
    }

    /// Parses `section.key=value` as given to `--set`.
    pub fn parse_assignment(&mut self, assignment: &str) -> Result<&mut Self, ConfigError> {
        let (key, value) = assignment
            .split_once('=')
            .ok_or_else(|| ConfigError::Invalid {
                key: assignment.into(),
                message: "expected `section.key=value`".into(),
            })?;
        Ok(self.set(key.trim(), value.trim()))
    }
}

impl Config {
    /// Merges defaults, `file`, the given environment and `overrides`, then validates for
    /// [`Role::Full`].
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        Config::load_for(Role::Full, file, env, overrides)
    }

    /// [`Config::load`] for a process in `role`.
    pub fn load_for(
        role: Role,
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut tree = match Value::try_from(Config::default()) {
            Ok(Value::Table(t)) => t,
            _ => unreachable!("Config serialises to a table"),
        };
        if let Some(path) = file {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                path: shown.clone(),
                message: e.to_string(),
            })?;
            let table: Table = text
                .parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: shown,
                    message: e.to_string(),
                })?;
            merge(&mut tree, table, "")?;
        }
        let mut env: Vec<_> = env
            .into_iter()
            .filter_map(|(k, v)| env_key(&k).map(|key| (key, v)))
            .collect();
        env.sort();
        for (key, value) in env {
            assign(&mut tree, &key, &value)?;
        }
        for (key, value) in &overrides.pairs {
            assign(&mut tree, key, value)?;
        }
        let config: Config = serde_path_to_error::deserialize(Value::Table(tree)).map_err(|e| {
            ConfigError::Invalid {
                key: e.path().to_string(),
                message: e.inner().to_string(),
            }
        })?;
        config.validate_for(role)?;
        Ok(config)
    }

    /// Reads and validates one file with no environment or overrides (`chorus check-config`).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        Config::load(Some(path), std::iter::empty(), &Overrides::default())
    }
}

/// `CHORUS_CALLS_RING_TIMEOUT` → `calls.ring_timeout`, for known sections only: other
/// `CHORUS_*` variables (test settings, for instance) are not configuration.
fn env_key(var: &str) -> Option<String> {
    let rest = var.strip_prefix("CHORUS_")?.to_ascii_lowercase();
    let (section, key) = rest.split_once('_')?;
    SECTIONS
        .contains(&section)
        .then(|| format!("{section}.{key}"))
}

fn merge(into: &mut Table, from: Table, prefix: &str) -> Result<(), ConfigError> {
    for (key, value) in from {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (into.get_mut(&key), value) {
            (Some(Value::Table(existing)), Value::Table(incoming)) => {
                merge(existing, incoming, &path)?
            }
            (Some(Value::Table(_)), _) => {
                return Err(ConfigError::Invalid {
                    key: path,
                    message: "expected a table (a [section])".into(),
                });
            }
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
    Ok(())
}

fn assign(tree: &mut Table, dotted: &str, raw: &str) -> Result<(), ConfigError> {
    let unknown = || ConfigError::Invalid {
        key: dotted.into(),
        message: "no such configuration key".into(),
    };
    let (section, key) = dotted.split_once('.').ok_or_else(unknown)?;
    let Some(Value::Table(table)) = tree.get_mut(section) else {
        return Err(unknown());
    };
    // Optional keys are absent from the default tree, so only a known section is required here;
    // deserialisation (deny_unknown_fields) rejects a misspelt key with its name.
    let current = table.get(key);
    let value = match toml::from_str::<Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap_or(Value::String(raw.into())),
        Err(_) => Value::String(raw.into()),
    };
    let value = match (current, value) {
        (Some(Value::Array(_)), Value::String(s)) => Value::Array(
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.into()))
                .collect(),
        ),
        // A number given for a string key (a numeric secret) stays a string.
        (Some(Value::String(_)), v) if !v.is_str() => Value::String(raw.into()),
        (_, v) => v,
    };
    table.insert(key.into(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn the_example_file_parses_and_matches_the_defaults_it_documents() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../chorus.example.toml");
        let config = Config::load(
            Some(&path),
            env(&[("CHORUS_AUTH_SECRET", SECRET)]),
            &Overrides::default(),
        )
        .unwrap();
        let mut expected = Config::default();
        expected.auth.secret = SECRET.into();
        assert_eq!(
            config, expected,
            "chorus.example.toml drifted from the defaults"
        );
    }

    #[test]
    fn later_sources_win() {
        let dir = std::env::temp_dir().join(format!("chorus-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            format!("[auth]\nsecret = \"{SECRET}\"\n[calls]\nring_timeout = \"10s\"\nmax_participants = 7\n"),
        )
        .unwrap();
        let mut overrides = Overrides::default();
        overrides
            .parse_assignment("calls.max_participants=9")
            .unwrap();
        let config = Config::load(
            Some(&file),
            env(&[
                ("CHORUS_CALLS_RING_TIMEOUT", "20s"),
                ("CHORUS_CALLS_MAX_PARTICIPANTS", "8"),
                ("CHORUS_ICE_STUN_URLS", "stun:a:3478, stun:b:3478"),
                ("CHORUS_TEST_SOMETHING", "ignored"),
                ("HOME", "/root"),
            ]),
            &overrides,
        )
        .unwrap();
        assert_eq!(config.calls.ring_timeout.get(), Duration::from_secs(20));
        assert_eq!(config.calls.max_participants, 9);
        assert_eq!(config.ice.stun_urls, vec!["stun:a:3478", "stun:b:3478"]);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("CHORUS_CALLS_RING_TIMEOUT", "soon", "calls.ring_timeout"),
            (
                "CHORUS_LIMITS_EVENTS_PER_SECOND",
                "-3",
                "limits.events_per_second",
            ),
            (
                "CHORUS_LIMITS_EVENTS_PER_SECOND",
                "0",
                "limits.events_per_second",
            ),
            ("CHORUS_AUTH_LEEWAY", "5m", "auth.leeway"),
            ("CHORUS_AUTH_ALGORITHM", "none", "auth.algorithm"),
            ("CHORUS_AUTH_ALGORITHM", "RS256", "auth.public_key_file"),
            ("CHORUS_SERVER_LISTEN", "nowhere", "server.listen"),
            ("CHORUS_CALLS_RING_TIMEUOT", "5s", "calls.ring_timeuot"),
            ("CHORUS_ICE_TURN_URLS", "turn:x:3478", "ice.turn_secret"),
        ];
        for (var, value, key) in cases {
            let err = Config::load(
                None,
                env(&[("CHORUS_AUTH_SECRET", SECRET), (var, value)]),
                &Overrides::default(),
            )
            .unwrap_err();
            assert!(
                err.to_string().contains(&format!("`{key}`")),
                "{var}={value}: {err}"
            );
        }
    }

    #[test]
    fn hs256_needs_a_real_secret_outside_dev_mode() {
        let err = Config::load(
            None,
            env(&[("CHORUS_AUTH_SECRET", "short")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("`auth.secret`"), "{err}");
        let mut dev = Overrides::default();
        dev.set("server.dev", "true");
        assert!(Config::load(None, env(&[]), &dev).is_ok());
    }

    #[test]
    fn unknown_override_keys_and_bad_files_are_refused() {
        let mut o = Overrides::default();
        o.set("nosuch.key", "1");
        assert!(
            Config::load(None, env(&[]), &o)
                .unwrap_err()
                .to_string()
                .contains("nosuch.key")
        );
        assert!(Overrides::default().parse_assignment("novalue").is_err());
        let err = Config::from_file(Path::new("/nonexistent/chorus.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
    }

    #[test]
    fn turn_workers_are_bounded() {
        let mut o = Overrides::default();
        o.set("auth.secret", SECRET).set("turn.workers", "257");
        let err = Config::load(None, Vec::new(), &o).unwrap_err();
        assert!(err.to_string().contains("`turn.workers`"), "{err}");
        o.set("turn.workers", "256");
        assert_eq!(
            Config::load(None, Vec::new(), &o).unwrap().turn.workers,
            256
        );
    }

    #[test]
    fn turn_only_processes_need_no_jwt_secret() {
        let overrides = Overrides::default();
        let full = Config::load(None, Vec::new(), &overrides).unwrap_err();
        assert!(full.to_string().contains("`auth.secret`"), "{full}");
        let turn = Config::load_for(Role::TurnOnly, None, Vec::new(), &overrides).unwrap();
        assert!(turn.auth.secret.is_empty());
        // The rest is still checked.
        let mut bad = Overrides::default();
        bad.set("turn.relay_port_min", "0");
        let err = Config::load_for(Role::TurnOnly, None, Vec::new(), &bad).unwrap_err();
        assert!(err.to_string().contains("turn.relay_port_min"), "{err}");
    }
}
