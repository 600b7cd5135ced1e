//! When the database fails, callers get `storage_unavailable` (details only in the error's
//! source, for logs), nothing panics, and nothing half-happens.

use chat::{ErrorCode, HistoryQuery};

use crate::harness::{Backend, Harness, say, text, user};

async fn broken_database_is_storage_unavailable(backend: Backend) {
    let h = Harness::new(backend).await;
    let alice = user("alice");
    let call = h.conversation("call-1", &alice, &[]).await;
    say(&h.chat, &alice, &call, "before").await;

    // Break the schema under the running service, as a botched manual change would.
    let break_it = "ALTER TABLE chat_messages RENAME TO chat_messages_gone";
    h.execute_behind_the_back(break_it, &[break_it]).await;

    let error = h
        .chat
        .send(&alice, text(&call, "after", "t-after"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::StorageUnavailable);
    assert_eq!(
        error.to_string(),
        "storage unavailable",
        "no SQL details on the wire"
    );
    assert!(
        std::error::Error::source(&error).is_some(),
        "details kept for logs"
    );
    let error = h
        .chat
        .history(&alice, &call, HistoryQuery::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::StorageUnavailable);
}

async fn closed_service_refuses_cleanly(backend: Backend) {
    let h = Harness::new(backend).await;
    let alice = user("alice");
    let call = h.conversation("call-1", &alice, &[]).await;
    h.chat.close().await;
    let error = h
        .chat
        .send(&alice, text(&call, "late", "t-late"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::StorageUnavailable);
    // The data is intact for the next start.
    let restarted = h.another_process().await;
    assert!(restarted.is_member(&call, &alice.user_id).await.unwrap());
}

crate::both_backends!(
    broken_database_is_storage_unavailable,
    closed_service_refuses_cleanly
);
