//! The demo page, embedded in the binary so `chorus serve` needs no files beside it.
//! Plain HTML, CSS and JavaScript with no build step; it speaks the raw WebSocket protocol.
//! Mounted only while `server.demo_page` is on.
//!
//! Every file goes out with `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer` and
//! `X-Content-Type-Options: nosniff`; the page itself with a Content-Security-Policy that
//! allows only its own files ([`policy`]): no inline script or style, no other origin, no
//! framing. The page keeps to that: scripts and styles are files, DOM updates go through
//! `textContent` and CSSOM, never `innerHTML` or `style` attributes.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::IntoResponse;
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
    ("/reactions.js", include_str!("../web/reactions.js"), JS),
    ("/reactions.css", include_str!("../web/reactions.css"), CSS),
    ("/watch", include_str!("../web/watch.html"), HTML),
    ("/watch.js", include_str!("../web/watch.js"), JS),
];

pub fn router() -> Router {
    FILES
        .iter()
        .fold(Router::new(), |router, &(path, body, content_type)| {
            router.route(
                path,
                get(move |request: HeaderMap| async move {
                    let mut headers = HeaderMap::new();
                    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                    headers.insert(
                        header::X_CONTENT_TYPE_OPTIONS,
                        HeaderValue::from_static("nosniff"),
                    );
                    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
                    headers.insert(
                        header::REFERRER_POLICY,
                        HeaderValue::from_static("no-referrer"),
                    );
                    if content_type == HTML {
                        let host = request.get(header::HOST).and_then(|h| h.to_str().ok());
                        if let Ok(csp) = HeaderValue::from_str(&policy(host)) {
                            headers.insert(header::CONTENT_SECURITY_POLICY, csp);
                        }
                    }
                    (headers, body).into_response()
                }),
            )
        })
}

/// The page's Content-Security-Policy. `connect-src` names the page's own host with `ws:` and
/// `wss:` because browsers that implement CSP level 2 do not count a WebSocket to the same
/// host as `'self'`; a `Host` that is not a plain host name or address is left out, and
/// `'self'` alone remains.
pub fn policy(host: Option<&str>) -> String {
    let sockets = match host {
        Some(host) if plain_host(host) => format!(" ws://{host} wss://{host}"),
        _ => String::new(),
    };
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
         media-src 'self' mediastream:; connect-src 'self'{sockets}; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// A host name, IPv4 or bracketed IPv6 address, with an optional port: nothing that could end
/// the directive or add a source.
fn plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_the_pages_own_websocket_and_nothing_injected() {
        let csp = policy(Some("chorus.example.com:8443"));
        assert!(
            csp.contains(
                "connect-src 'self' ws://chorus.example.com:8443 wss://chorus.example.com:8443;"
            ),
            "{csp}"
        );
        assert!(csp.contains("script-src 'self';") && csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe"));
        for hostile in ["evil.test; script-src *", "a b", "x'unsafe-inline'", ""] {
            let csp = policy(Some(hostile));
            assert!(csp.contains("connect-src 'self';"), "{hostile}: {csp}");
        }
        assert!(policy(None).contains("connect-src 'self';"));
        assert!(policy(Some("[::1]:8080")).contains("ws://[::1]:8080"));
    }
}
