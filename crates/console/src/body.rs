//! Request bodies: at most [`MAX_BODY_BYTES`], read within [`BODY_TIMEOUT`],
//! parsed as JSON into the handler's type with errors that name the field.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest request body; more is answered 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// A body must arrive whole within this, so a slow client cannot hold a
/// console connection with a trickle.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes of an oversized body still read (and dropped) before the 413, so
/// the answer is not lost to a reset from closing on unread input.
const DRAIN_BYTES: usize = 1024 * 1024;

/// Read `body` whole, within the size and time bounds.
pub async fn read_bytes(body: Body) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(BODY_TIMEOUT, collect(body)).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("body: not received within {} s", BODY_TIMEOUT.as_secs()),
        )),
        Ok(result) => result,
    }
}

async fn collect(mut body: Body) -> Result<Bytes, ApiError> {
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_field("body", format!("cannot be read: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        seen = seen.saturating_add(data.len());
        if seen <= MAX_BODY_BYTES {
            buf.extend_from_slice(&data);
        } else if seen > MAX_BODY_BYTES + DRAIN_BYTES {
            break;
        }
    }
    if seen > MAX_BODY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body: larger than {MAX_BODY_BYTES} bytes"),
        ));
    }
    Ok(Bytes::from(buf))
}

/// Read `body` and parse it as a JSON `T`. The error names the field at
/// fault (`secs: invalid type: …`) or the missing one.
pub async fn read_json<T: DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let bytes = read_bytes(body).await?;
    parse_json(&bytes)
}

/// Parse `bytes` as a JSON `T`, naming the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_field("body", "empty: expected a JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // Syntax errors have no field (`?`); a missing field is named by serde itself.
        if inner.is_syntax() || inner.is_eof() || matches!(path.as_str(), "." | "?" | "") {
            ApiError::bad_field("body", inner)
        } else {
            ApiError::bad_field(&path, inner)
        }
    })?;
    de.end()
        .map_err(|e| ApiError::bad_field("body", format!("trailing data: {e}")))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Req {
        net: String,
        secs: Option<u64>,
    }

    fn err(text: &str) -> String {
        parse_json::<Req>(text.as_bytes()).expect_err(text).message
    }

    #[test]
    fn errors_name_the_field() {
        assert!(err(r#"{"net": "x", "secs": "ten"}"#).starts_with("secs: "));
        assert!(err(r#"{"net": 5}"#).starts_with("net: "));
        assert!(err(r#"{"secs": 5}"#).contains("`net`"));
        assert!(err(r#"{"net": "x", "bogus": 1}"#).contains("`bogus`"));
        assert!(err("").starts_with("body: "));
        assert!(err("{").starts_with("body: "));
        assert!(err(r#"{"net": "x"} {}"#).starts_with("body: "));
        assert!(parse_json::<Req>(br#"{"net": "x"}"#).is_ok());
    }

    #[tokio::test]
    async fn oversized_bodies_are_413() {
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        let e = read_bytes(Body::from(big)).await.expect_err("too big");
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        let ok = vec![b' '; MAX_BODY_BYTES];
        assert!(read_bytes(Body::from(ok)).await.is_ok());
    }
}
