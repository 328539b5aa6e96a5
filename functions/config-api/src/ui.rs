//! The settings page at `/ui/`: static HTML, CSS and JavaScript compiled into
//! the binary, served without a token (every data call the page makes goes
//! to the API with the user's token), cached by ETag, under a strict
//! Content-Security-Policy.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One asset: its bytes, type and ETag (computed at compile time).
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: &'static str,
}

/// FNV-1a, 64 bits: enough to tell two versions of an asset apart.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `"<16 hex digits>"`, as an ETag header wants it.
const fn etag(bytes: &[u8]) -> [u8; 18] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = fnv1a(bytes);
    let mut out = [b'"'; 18];
    let mut i = 0;
    while i < 16 {
        out[1 + i] = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

macro_rules! asset {
    ($file:literal, $type:literal) => {{
        const BODY: &str = include_str!(concat!("../ui/", $file));
        const TAG: [u8; 18] = etag(BODY.as_bytes());
        Asset {
            body: BODY,
            content_type: $type,
            etag: match std::str::from_utf8(&TAG) {
                Ok(tag) => tag,
                Err(_) => panic!("an ETag is ASCII"),
            },
        }
    }};
}

const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");
const SCRIPT: Asset = asset!("app.js", "text/javascript; charset=utf-8");
const STYLE: Asset = asset!("app.css", "text/css; charset=utf-8");

/// Scripts and styles only from this origin, no inline code, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == asset.etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.body.into_response()
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, asset.content_type),
        (header::ETAG, asset.etag),
        (header::CACHE_CONTROL, "no-cache"),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Where `/ui` sends the browser: relative, so that it stays under any base
/// path the API is served at.
pub const UI_REDIRECT: &str = "ui/";

/// `/ui/` (the page), `/ui/app.js`, `/ui/app.css`; `/ui` redirects to
/// `/ui/`, where the page's relative `app.js` and `app.css` resolve (served
/// at `/ui`, they would resolve to `/app.js`: no script would run).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/ui",
            get(|| async { axum::response::Redirect::permanent(UI_REDIRECT) }),
        )
        .route("/ui/", get(|h: HeaderMap| async move { serve(&INDEX, &h) }))
        .route(
            "/ui/app.js",
            get(|h: HeaderMap| async move { serve(&SCRIPT, &h) }),
        )
        .route(
            "/ui/app.css",
            get(|h: HeaderMap| async move { serve(&STYLE, &h) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_differ_with_the_content_and_are_quoted() {
        assert_ne!(INDEX.etag, SCRIPT.etag);
        assert_ne!(etag(b"a"), etag(b"b"));
        assert_eq!(etag(b"a"), etag(b"a"));
        assert!(INDEX.etag.starts_with('"') && INDEX.etag.ends_with('"'));
        assert_eq!(INDEX.etag.len(), 18);
    }

    #[test]
    fn the_page_loads_its_script_and_style_from_files_not_inline() {
        assert!(
            INDEX
                .body
                .contains(r#"<script src="app.js" defer></script>"#)
        );
        assert!(!INDEX.body.contains("<script>"));
        assert!(!INDEX.body.contains("<style") && !INDEX.body.contains(" style="));
        // No inline event handlers (` onclick=`, ` onload=`, ...).
        let handlers = INDEX.body.match_indices(" on").filter(|(at, _)| {
            let rest = &INDEX.body[at + 3..];
            let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            name_len > 0 && rest[name_len..].starts_with('=')
        });
        assert_eq!(handlers.count(), 0, "no inline event handlers");
        assert!(
            !SCRIPT.body.contains("innerHTML"),
            "tenant text is set as text"
        );
    }
}
