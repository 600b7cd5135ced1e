//! What the fuzz targets share: the session's view of one client event, whichever transport
//! framed it. See docs/fuzzing.md for the targets and how to run them.

use protocol::chat::ChatRequest;
use protocol::{CLIENT_EVENT_NAMES, ClientEvent, Failure};
use serde_json::Value;
use signaling::session::{MediaRouting, Route, error_event};

/// Types, routes and round-trips one decoded event.
pub fn typed(name: &str, data: Value, id: Option<u64>) {
    if !CLIENT_EVENT_NAMES.contains(&name) {
        if let Err(failure) = ChatRequest::parse(name, data) {
            rendered(&failure, Some(name), id);
        }
        return;
    }
    let event = match ClientEvent::parse(name, data) {
        Ok(event) => event,
        Err(failure) => return rendered(&failure, Some(name), id),
    };
    assert_eq!(event.name(), name);
    let again = ClientEvent::parse(event.name(), event.data());
    assert_eq!(again.as_ref(), Ok(&event), "event does not survive a relay");
    for media in [MediaRouting::Enabled, MediaRouting::Disabled] {
        if let Err(failure) = Route::of(event.clone(), media) {
            rendered(&failure, Some(name), id);
        }
    }
}

/// The `error` event a failure becomes must be a JSON frame naming the event (cut to a bound).
pub fn rendered(failure: &Failure, event: Option<&str>, id: Option<u64>) {
    let frame = error_event(failure, event, id, None).to_frame();
    let parsed: Value = serde_json::from_str(&frame).expect("error frames are JSON");
    if let Some(name) = parsed["data"]["event"].as_str() {
        assert!(name.len() <= 64, "error frame echoes a long event name");
    }
}
