//! The chat suite. Each behaviour has its own module; almost every case runs on both backends
//! (see `both_backends!`). PostgreSQL must be reachable (`CHORUS_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`); these tests fail rather than skip without it.

mod harness;

mod concurrency;
mod crash;
mod edit_delete;
mod failures;
mod group_commit;
mod history;
mod limits;
mod reactions;
mod reads;
mod retention;
mod send;
mod typing;
mod webhook_endpoints;
