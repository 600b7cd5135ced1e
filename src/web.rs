//! The demo page, embedded in the binary so `chorus serve` needs no files beside it.
//! Plain HTML, CSS and JavaScript with no build step; it speaks the raw WebSocket protocol.

use axum::Router;
use axum::http::header;
use axum::routing::get;

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file of the page: path, body, content type.
const FILES: &[(&str, &str, &str)] = &[
    ("/", include_str!("../web/index.html"), HTML),
    ("/app.js", include_str!("../web/app.js"), JS),
    ("/style.css", include_str!("../web/style.css"), CSS),
    ("/chat.js", include_str!("../web/chat.js"), JS),
    ("/chat.css", include_str!("../web/chat.css"), CSS),
];

pub fn router() -> Router {
    FILES
        .iter()
        .fold(Router::new(), |router, (path, body, content_type)| {
            router.route(
                path,
                get(move || async move {
                    (
                        [
                            (header::CONTENT_TYPE, *content_type),
                            (header::CACHE_CONTROL, "no-cache"),
                            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                        ],
                        *body,
                    )
                }),
            )
        })
}
