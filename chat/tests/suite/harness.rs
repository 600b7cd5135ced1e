//! Test harness: a [`ChatService`] on a fresh database of either backend, a manual clock, and
//! helpers. PostgreSQL tests each get their own schema, dropped when the harness is dropped (also
//! after a failed assertion), so tests run in parallel and leave nothing behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use chat::store::{self};
use chat::{
    Actor, ChatService, ConversationId, HistoryQuery, ManualClock, MemberRole, Message,
    MessageKind, SendMessage, Sent, Settings, TempId, UserId,
};
use sqlx::Connection as _;
use sqlx::Executor as _;

/// Which storage a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each listed `async fn case(backend: Backend)` once per backend, as
/// `<module>::sqlite::case` and `<module>::postgres::case`.
#[macro_export]
macro_rules! both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($crate::harness::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($crate::harness::Backend::Postgres).await;
                }
            )*
        }
    };
}

/// The PostgreSQL to test against: `CHORUS_TEST_POSTGRES_URL` or the development default.
pub fn postgres_base_url() -> String {
    std::env::var("CHORUS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Where a harness keeps its data; dropping it removes the data.
pub enum Location {
    Sqlite(tempfile::TempDir),
    Postgres(PgSchema),
}

/// A throwaway PostgreSQL schema.
pub struct PgSchema {
    pub name: String,
    /// The base URL with `search_path` set to the schema.
    pub url: String,
}

impl PgSchema {
    pub async fn create() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "chat_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let base = postgres_base_url();
        let mut conn = sqlx::PgConnection::connect(&base)
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "PostgreSQL is required for the chat tests and is unreachable at {base} \
                 (set CHORUS_TEST_POSTGRES_URL): {error}"
                )
            });
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .await
            .expect("create test schema");
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-csearch_path%3D{name}");
        Self { name, url }
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        // Drop runs outside async context (and possibly while unwinding), so clean up on a
        // private runtime in a plain thread.
        let name = self.name.clone();
        let base = postgres_base_url();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&base).await {
                    let _ = conn
                        .execute(sqlx::AssertSqlSafe(format!(
                            "DROP SCHEMA IF EXISTS {name} CASCADE"
                        )))
                        .await;
                }
            });
        })
        .join();
    }
}

/// A chat service on fresh storage.
pub struct Harness {
    pub chat: ChatService,
    pub clock: Arc<ManualClock>,
    pub settings: Settings,
    pub location: Location,
}

impl Harness {
    /// Default settings.
    pub async fn new(backend: Backend) -> Self {
        Self::with(backend, |_| {}).await
    }

    /// Settings adjusted by `tweak` (the storage location is filled in afterwards).
    pub async fn with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = Settings::default();
        tweak(&mut settings);
        let location = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                settings.database_url = None;
                settings.data_dir = dir.path().join("data");
                Location::Sqlite(dir)
            }
            Backend::Postgres => {
                let schema = PgSchema::create().await;
                settings.database_url = Some(schema.url.clone());
                settings.max_connections = 4;
                Location::Postgres(schema)
            }
        };
        let clock = Arc::new(ManualClock::new());
        let chat = service(&settings, clock.clone()).await;
        Self {
            chat,
            clock,
            settings,
            location,
        }
    }

    /// Another service on the same storage with its own pools: a second server process.
    pub async fn another_process(&self) -> ChatService {
        service(&self.settings, self.clock.clone()).await
    }

    /// A conversation with the given owner and members.
    pub async fn conversation(
        &self,
        id: &str,
        owner: &Actor,
        members: &[&Actor],
    ) -> ConversationId {
        let id = ConversationId::parse(id).unwrap();
        self.chat
            .add_member(&id, &owner.user_id, MemberRole::Owner)
            .await
            .unwrap();
        for member in members {
            self.chat
                .add_member(&id, &member.user_id, MemberRole::Member)
                .await
                .unwrap();
        }
        id
    }
}

impl Harness {
    /// Runs one statement on the database behind the service's back (a botched manual change, a
    /// trigger that makes the database fail): `sqlite` on SQLite, `postgres` on PostgreSQL.
    pub async fn execute_behind_the_back(&self, sqlite: &str, postgres: &[&str]) {
        match &self.location {
            Location::Sqlite(dir) => {
                let path = dir.path().join("data/chat.db");
                let url = format!("sqlite://{}", path.display());
                let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
                conn.execute(sqlx::AssertSqlSafe(sqlite.to_owned()))
                    .await
                    .unwrap();
            }
            Location::Postgres(schema) => {
                let mut conn = sqlx::PgConnection::connect(&schema.url).await.unwrap();
                for statement in postgres {
                    conn.execute(sqlx::AssertSqlSafe((*statement).to_owned()))
                        .await
                        .unwrap();
                }
            }
        }
    }
}

/// Every message of `conversation`, oldest first, read page by page as `reader`.
pub async fn all_messages(
    chat: &ChatService,
    reader: &Actor,
    conversation: &ConversationId,
) -> Vec<Message> {
    let mut stored = Vec::new();
    let mut before = None;
    loop {
        let page = chat
            .history(
                reader,
                conversation,
                HistoryQuery {
                    before,
                    limit: Some(100),
                },
            )
            .await
            .unwrap();
        before = page.messages.first().map(|m| m.message.sequence_number);
        stored.splice(0..0, page.messages.into_iter().map(|m| m.message));
        if !page.has_more {
            return stored;
        }
    }
}

pub async fn service(settings: &Settings, clock: Arc<ManualClock>) -> ChatService {
    let store = store::connect(settings).await.expect("open chat store");
    ChatService::new(settings.clone(), store, clock)
}

pub fn user(id: &str) -> Actor {
    let mut name = id.to_owned();
    name[..1].make_ascii_uppercase();
    Actor::user(UserId::parse(id).unwrap(), name)
}

pub fn admin(id: &str) -> Actor {
    Actor::admin(UserId::parse(id).unwrap(), id)
}

pub fn text(conversation: &ConversationId, content: &str, temp_id: &str) -> SendMessage {
    SendMessage {
        conversation_id: conversation.clone(),
        content: content.to_owned(),
        kind: MessageKind::Text,
        temp_id: Some(TempId::parse(temp_id).unwrap()),
        reply_to_id: None,
    }
}

/// Sends `content` and returns the outcome, panicking on failure.
pub async fn say(
    chat: &ChatService,
    actor: &Actor,
    conversation: &ConversationId,
    content: &str,
) -> Sent {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let temp = format!("auto-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    chat.send(actor, text(conversation, content, &temp))
        .await
        .expect("send")
}
