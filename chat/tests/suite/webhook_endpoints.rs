//! Webhook endpoints created at once from several processes never exceed the maximum.

use chat::webhook_endpoints::{Inserted, StoredEndpoint};

use crate::both_backends;
use crate::harness::{Backend, Harness};

both_backends!(creations_racing_from_three_processes_stop_at_the_maximum);

const MAX: u32 = 5;

fn endpoint(id: String) -> StoredEndpoint {
    StoredEndpoint {
        url: format!("https://hooks.example.com/{id}"),
        id,
        events: vec!["room.*".into()],
        secrets: Vec::new(),
        created_at: 1,
        revision: 1,
    }
}

async fn creations_racing_from_three_processes_stop_at_the_maximum(backend: Backend) {
    let h = Harness::new(backend).await;
    let processes = [
        h.chat.clone(),
        h.another_process().await,
        h.another_process().await,
    ];
    let mut tasks = Vec::new();
    for (p, chat) in processes.iter().enumerate() {
        for i in 0..4 {
            let store = chat.webhook_endpoints();
            tasks.push(tokio::spawn(async move {
                store.insert(&endpoint(format!("e{p}_{i}")), MAX).await
            }));
        }
    }
    let mut stored = 0;
    for t in tasks {
        match t.await.unwrap().unwrap() {
            Inserted::Stored => stored += 1,
            Inserted::Full => {}
            Inserted::Exists => panic!("ids are distinct"),
        }
    }
    assert_eq!(stored, MAX, "twelve racing creations, a maximum of {MAX}");
    let listed = h.chat.webhook_endpoints().list().await.unwrap();
    assert_eq!(listed.len(), MAX as usize);
}
