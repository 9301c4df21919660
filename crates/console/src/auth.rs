//! The bearer token: every request that changes state (anything but GET and
//! HEAD) must carry `Authorization: Bearer TOKEN` when a token is configured.
//! Reading stays open so a browser can show the page; the token guards kicks,
//! blocks and reloads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The configured token and the count of refused requests; cheap to clone.
#[derive(Clone)]
pub struct Guard {
    inner: Arc<GuardInner>,
}

struct GuardInner {
    /// The token; `None` = state changes need none (a loopback console). Replaced on a
    /// configuration reload; requests are rare enough for a lock.
    token: parking_lot::RwLock<Option<Box<[u8]>>>,
    /// Counter name of refused requests (`<program>_admin_unauthorized_total`).
    metric: String,
    /// The same count, readable for the status page.
    refused: AtomicU64,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("token_set", &self.token_set())
            .finish()
    }
}

impl Guard {
    /// A guard for `token` ("" = none); refusals count as `metric`.
    pub fn new(token: &str, metric: impl Into<String>) -> Self {
        Guard {
            inner: Arc::new(GuardInner {
                token: parking_lot::RwLock::new(token_bytes(token)),
                metric: metric.into(),
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// Whether a token is configured.
    pub fn token_set(&self) -> bool {
        self.inner.token.read().is_some()
    }

    /// Replaces the token ("" = none) for every later request.
    pub fn set_token(&self, token: &str) {
        *self.inner.token.write() = token_bytes(token);
    }

    /// Requests refused for a wrong or missing token so far.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Whether `headers` carry the token (always, when none is configured).
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let expected = self.inner.token.read();
        let Some(expected) = expected.as_deref() else {
            return true;
        };
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
        else {
            return false;
        };
        // Constant time in the content; only a length mismatch returns early.
        bool::from(given.as_bytes().ct_eq(expected))
    }

    fn refuse(&self) -> Response {
        self.inner.refused.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(self.inner.metric.clone()).increment(1);
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authorization: a valid `Authorization: Bearer TOKEN` header is required ([admin] token)",
        )
        .into_response()
    }
}

fn token_bytes(token: &str) -> Option<Box<[u8]>> {
    (!token.is_empty()).then(|| token.as_bytes().into())
}

/// The credentials of `Bearer TOKEN` (scheme case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Middleware: state-changing methods pass only with the token.
pub async fn require_token(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    if reads || guard.allows(request.headers()) {
        next.run(request).await
    } else {
        guard.refuse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("header"),
        );
        h
    }

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let g = Guard::new("s3cret", "test_unauthorized_total");
        assert!(g.allows(&headers("Bearer s3cret")));
        assert!(g.allows(&headers("bearer  s3cret ")));
        assert!(!g.allows(&headers("Bearer s3cre")));
        assert!(!g.allows(&headers("Bearer s3cretx")));
        assert!(!g.allows(&headers("Basic s3cret")));
        assert!(!g.allows(&headers("s3cret")));
        assert!(!g.allows(&HeaderMap::new()));
        let open = Guard::new("", "test_unauthorized_total");
        assert!(open.allows(&HeaderMap::new()));
        assert!(!open.token_set());
    }
}
