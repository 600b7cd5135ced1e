//! Where revocations are kept across restarts: an append-only file of JSON lines,
//! `<server.data_dir>/revocations.jsonl`, written and synced before a revocation is applied.
//!
//! Lifecycle: [`FileStore::open`] reads the file, keeps the entries that have not lapsed and
//! rewrites it with only those (to a temporary file renamed over it, so a crash leaves one or
//! the other); then each revocation is appended and synced. The file holds at most
//! `admin.max_revocations` live entries plus those appended since the last start. A line that
//! does not parse (a torn last write) is skipped.

use async_trait::async_trait;
use signaling::revocation::{Revocation, RevocationStore};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

/// An append-only revocation file; see the module docs.
pub struct FileStore {
    path: PathBuf,
    /// Serializes appends, so lines never interleave.
    file: Mutex<std::fs::File>,
}

impl FileStore {
    /// Opens (creating if needed) the file in `dir`, dropping entries lapsed at `now`.
    pub fn open(dir: &std::path::Path, now: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("revocations.jsonl");
        let live: Vec<Revocation> = read(&path)?
            .into_iter()
            .filter(|r| r.expires_at > now)
            .collect();
        let tmp = dir.join("revocations.jsonl.tmp");
        {
            let mut out = std::fs::File::create(&tmp)?;
            for r in &live {
                writeln!(out, "{}", serde_json::to_string(r)?)?;
            }
            out.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        let file = std::fs::OpenOptions::new().append(true).open(&path)?;
        Ok(Self {
            path,
            file: Mutex::new(file),
        })
    }
}

fn read(path: &std::path::Path) -> std::io::Result<Vec<Revocation>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[async_trait]
impl RevocationStore for FileStore {
    async fn load(&self, now: u64) -> Result<Vec<Revocation>, String> {
        let path = self.path.clone();
        let all = tokio::task::spawn_blocking(move || read(&path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        Ok(all.into_iter().filter(|r| r.expires_at > now).collect())
    }

    async fn keep(&self, revocation: &Revocation) -> Result<(), String> {
        let line = serde_json::to_string(revocation).map_err(|e| e.to_string())? + "\n";
        let file = {
            let guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
            guard.try_clone().map_err(|e| e.to_string())?
        };
        // One write per line on an O_APPEND file: appends from several tasks do not tear.
        tokio::task::spawn_blocking(move || {
            let mut file = file;
            file.write_all(line.as_bytes())?;
            file.sync_data()
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signaling::revocation::Target;

    #[tokio::test]
    async fn kept_revocations_survive_a_reopen_and_lapsed_ones_go() {
        let dir =
            std::env::temp_dir().join(format!("chorus-revocations-{}", rand::random::<u32>()));
        let store = FileStore::open(&dir, 100).unwrap();
        let live = Revocation {
            target: Target::User("u".into()),
            revoked_at: 100,
            expires_at: 1000,
        };
        let lapsing = Revocation {
            target: Target::Token("j".into()),
            revoked_at: 100,
            expires_at: 200,
        };
        store.keep(&live).await.unwrap();
        store.keep(&lapsing).await.unwrap();
        assert_eq!(store.load(150).await.unwrap().len(), 2);
        drop(store);
        let reopened = FileStore::open(&dir, 300).unwrap();
        assert_eq!(reopened.load(300).await.unwrap(), vec![live]);
        let text = std::fs::read_to_string(dir.join("revocations.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 1, "compacted: {text}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
