//! `chorus rooms|participants|calls|tokens|webhooks`: the server API from the command line.
//!
//! Each command is one HTTP request to `--url` (env `CHORUS_URL`) with `--token` (env
//! `CHORUS_TOKEN`: an admin JWT or an API key), printing a table, or the JSON answer with
//! `--json`. An answer `wrong_node` (421: another node of the cluster owns the room or call) is
//! followed once, to the URL it names. Plain `http://` only: put TLS in front of the API and
//! reach it over a private network or a tunnel.

mod webhooks;

pub use webhooks::{WebhooksCommand, webhooks};

use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{Value, json};
use std::time::Duration;

/// Where the server API is and who calls it; shared by every API command.
#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    /// The server's base URL.
    #[arg(
        long,
        global = true,
        env = "CHORUS_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// An admin JWT (`chorus token --grant admin`) or an `admin.api_keys` entry (required).
    #[arg(long, global = true, env = "CHORUS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the server's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum RoomsCommand {
    /// List the rooms of the node asked.
    List,
    /// Create a room that stays open while empty.
    Create {
        name: String,
        #[arg(long)]
        metadata: Option<String>,
    },
    /// Delete a room; its participants hear `call:ended` (terminated).
    Delete { name: String },
    /// Set a room's metadata (empty clears it).
    Metadata { name: String, metadata: String },
    /// Send a `room:data` event to a room's participants.
    Send {
        name: String,
        /// Any JSON value.
        #[arg(long)]
        data: String,
        #[arg(long)]
        topic: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ParticipantsCommand {
    /// List a room's participants (and WHEP viewers, as kind `viewer`) with their
    /// connections, nodes and tracks.
    List { room: String },
    /// Remove a participant from a room.
    Remove { room: String, user: String },
    /// Mute (or with --unmute, unmute) a track a participant publishes.
    Mute {
        room: String,
        user: String,
        track: String,
        #[arg(long)]
        unmute: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum CallsCommand {
    /// List the calls of the node asked.
    List,
    /// End a call for everyone.
    End { call: String },
}

#[derive(Subcommand, Debug)]
pub enum TokensCommand {
    /// Revoke a user's tokens (--user) or one token (--jti): live sessions close at once.
    Revoke {
        #[arg(long, conflicts_with = "jti", required_unless_present = "jti")]
        user: Option<String>,
        #[arg(long)]
        jti: Option<String>,
        /// Unix second when the revocation lapses (default: now + admin.revocation_ttl).
        #[arg(long)]
        expires_at: Option<u64>,
    },
    /// List the revocations in force.
    List,
}

/// One request the commands make.
struct Call {
    method: &'static str,
    path: String,
    body: Option<Value>,
}

impl Call {
    fn get(path: String) -> Self {
        Self {
            method: "GET",
            path,
            body: None,
        }
    }
}

/// Runs `chorus rooms ...`; returns what to print, or the error.
pub async fn rooms(api: &ApiArgs, command: &RoomsCommand) -> Result<String, String> {
    let call = match command {
        RoomsCommand::List => Call::get("/api/v1/admin/rooms".into()),
        RoomsCommand::Create { name, metadata } => Call {
            method: "POST",
            path: "/api/v1/admin/rooms".into(),
            body: Some(json!({"name": name, "metadata": metadata})),
        },
        RoomsCommand::Delete { name } => Call {
            method: "DELETE",
            path: format!("/api/v1/admin/rooms/{}", segment(name)),
            body: None,
        },
        RoomsCommand::Metadata { name, metadata } => Call {
            method: "PUT",
            path: format!("/api/v1/admin/rooms/{}/metadata", segment(name)),
            body: Some(json!({"metadata": metadata})),
        },
        RoomsCommand::Send { name, data, topic } => {
            let data: Value =
                serde_json::from_str(data).map_err(|e| format!("--data is not JSON: {e}"))?;
            Call {
                method: "POST",
                path: format!("/api/v1/admin/rooms/{}/data", segment(name)),
                body: Some(json!({"data": data, "topic": topic})),
            }
        }
    };
    let answer = request(api, &call).await?;
    Ok(match command {
        RoomsCommand::List if !api.json => table(
            &[
                "NAME",
                "PARTICIPANTS",
                "CONNECTIONS",
                "VIEWERS",
                "KEPT",
                "NODE",
                "CREATED",
            ],
            rows(&answer, |r| {
                vec![
                    text(&r["name"]),
                    text(&r["participants"]),
                    text(&r["connections"]),
                    text(&r["viewers"]),
                    text(&r["kept"]),
                    text(&r["node"]),
                    text(&r["createdAt"]),
                ]
            }),
        ),
        RoomsCommand::Create { name, .. } if !api.json => format!("created room {name}"),
        _ => summary(api, &answer),
    })
}

/// Runs `chorus participants ...`.
pub async fn participants(api: &ApiArgs, command: &ParticipantsCommand) -> Result<String, String> {
    let call = match command {
        ParticipantsCommand::List { room } => Call::get(format!(
            "/api/v1/admin/rooms/{}/participants",
            segment(room)
        )),
        ParticipantsCommand::Remove { room, user } => Call {
            method: "DELETE",
            path: format!(
                "/api/v1/admin/rooms/{}/participants/{}",
                segment(room),
                segment(user)
            ),
            body: None,
        },
        ParticipantsCommand::Mute {
            room,
            user,
            track,
            unmute,
        } => Call {
            method: "POST",
            path: format!(
                "/api/v1/admin/rooms/{}/participants/{}/tracks/{}/mute",
                segment(room),
                segment(user),
                segment(track)
            ),
            body: Some(json!({"muted": !unmute})),
        },
    };
    let answer = request(api, &call).await?;
    Ok(match command {
        ParticipantsCommand::List { .. } if !api.json => table(
            &["USER", "NAME", "KIND", "CONNECTIONS", "NODES", "TRACKS"],
            rows(&answer, |p| {
                let conns = p["connections"].as_array().cloned().unwrap_or_default();
                let mut nodes: Vec<String> = conns.iter().map(|c| text(&c["node"])).collect();
                nodes.dedup();
                let tracks: Vec<String> = p["tracks"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|t| {
                        let muted = if t["muted"] == true { " (muted)" } else { "" };
                        format!("{}:{}{muted}", text(&t["kind"]), text(&t["trackId"]))
                    })
                    .collect();
                vec![
                    text(&p["userId"]),
                    text(&p["name"]),
                    text(&p["kind"]),
                    conns.len().to_string(),
                    nodes.join(","),
                    tracks.join(" "),
                ]
            }),
        ),
        _ => summary(api, &answer),
    })
}

/// Runs `chorus calls ...`.
pub async fn calls(api: &ApiArgs, command: &CallsCommand) -> Result<String, String> {
    let call = match command {
        CallsCommand::List => Call::get("/api/v1/admin/calls".into()),
        CallsCommand::End { call } => Call {
            method: "DELETE",
            path: format!("/api/v1/admin/calls/{}", segment(call)),
            body: None,
        },
    };
    let answer = request(api, &call).await?;
    Ok(match command {
        CallsCommand::List if !api.json => table(
            &[
                "CALL",
                "TYPE",
                "MODE",
                "PHASE",
                "INITIATOR",
                "PARTICIPANTS",
                "STARTED",
            ],
            rows(&answer, |c| {
                let people: Vec<String> = c["participants"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|p| format!("{}({})", text(&p["userId"]), text(&p["state"])))
                    .collect();
                vec![
                    text(&c["callId"]),
                    text(&c["callType"]),
                    text(&c["mode"]),
                    text(&c["phase"]),
                    text(&c["initiator"]),
                    people.join(" "),
                    text(&c["startedAt"]),
                ]
            }),
        ),
        _ => summary(api, &answer),
    })
}

/// Runs `chorus tokens ...`.
pub async fn tokens(api: &ApiArgs, command: &TokensCommand) -> Result<String, String> {
    let call = match command {
        TokensCommand::Revoke {
            user,
            jti,
            expires_at,
        } => Call {
            method: "POST",
            path: "/api/v1/admin/revocations".into(),
            body: Some(json!({"userId": user, "jti": jti, "expiresAt": expires_at})),
        },
        TokensCommand::List => Call::get("/api/v1/admin/revocations".into()),
    };
    let answer = request(api, &call).await?;
    Ok(match command {
        TokensCommand::List if !api.json => table(
            &["KIND", "SUBJECT", "REVOKED_AT", "EXPIRES_AT"],
            rows(&answer, |r| {
                vec![
                    text(&r["kind"]),
                    text(&r["subject"]),
                    text(&r["revokedAt"]),
                    text(&r["expiresAt"]),
                ]
            }),
        ),
        TokensCommand::Revoke { .. } if !api.json => format!(
            "revoked {} {} until {}",
            text(&answer["kind"]),
            text(&answer["subject"]),
            text(&answer["expiresAt"])
        ),
        _ => summary(api, &answer),
    })
}

/// The answer of a mutating command: the JSON with `--json`, else a short line.
fn summary(api: &ApiArgs, answer: &Value) -> String {
    if api.json {
        return serde_json::to_string_pretty(answer).unwrap_or_default();
    }
    match answer.get("recipients") {
        Some(n) => format!("done ({n} connections told)"),
        None => "done".into(),
    }
}

/// Sends `call`, following one `wrong_node` answer; the JSON answer of a 2xx, else an error
/// naming the code and message.
async fn request(api: &ApiArgs, call: &Call) -> Result<Value, String> {
    let token = api
        .token
        .as_deref()
        .ok_or("no token: pass --token or set CHORUS_TOKEN (an admin JWT or API key)")?;
    let (status, body) = send(&api.url, token, call).await?;
    let (status, body) = if status == 421 {
        match serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["url"].as_str().map(str::to_owned))
            .filter(|u| !u.is_empty())
        {
            Some(owner) => send(&owner, token, call).await?,
            None => (status, body),
        }
    } else {
        (status, body)
    };
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        return Ok(value);
    }
    if api.json {
        return Err(serde_json::to_string_pretty(&value).unwrap_or_default());
    }
    Err(format!(
        "{} ({status}): {}",
        text(&value["code"]),
        text(&value["message"])
    ))
}

/// One HTTP/1.1 request to `base` + `call.path`: (status, body).
async fn send(base: &str, token: &str, call: &Call) -> Result<(u16, Bytes), String> {
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("--url must start with http:// (got `{base}`)"))?;
    let (authority, prefix) = match rest.split_once('/') {
        Some((a, p)) => (a, format!("/{}", p.trim_end_matches('/'))),
        None => (rest, String::new()),
    };
    let authority = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let body = match &call.body {
        Some(v) => Bytes::from(v.to_string()),
        None => Bytes::new(),
    };
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let mut builder = hyper::Request::builder()
            .method(call.method)
            .uri(format!("{prefix}{}", call.path))
            .header("host", &authority)
            .header("authorization", format!("Bearer {token}"));
        if call.body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        let req = builder.body(Full::new(body)).map_err(|e| e.to_string())?;
        let response = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((status, bytes))
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| format!("{base} did not answer within 30 s"))?
}

/// A path segment, percent-encoded.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn rows(answer: &Value, row: impl Fn(&Value) -> Vec<String>) -> Vec<Vec<String>> {
    answer
        .as_array()
        .map(|items| items.iter().map(row).collect())
        .unwrap_or_default()
}

/// Left-aligned columns, two spaces apart.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = vec![line(headers.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded_and_tables_align() {
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        let t = table(&["A", "BB"], vec![vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    BB\nxyz  1");
    }
}
