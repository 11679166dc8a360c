//! Request extractors whose failures speak the API's error shape.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON body: 415 without a JSON content type, 413 over the size limit, 400 when it is
/// not JSON, 422 when it is JSON of the wrong shape (naming the field).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(request.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(body_error)?;
        // The path ("actor.id: …") makes a data error say which field was wrong.
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize(&mut deserializer) {
            Ok(value) => deserializer.end().map(|()| ApiJson(value)).map_err(|e| malformed(&e)),
            Err(e) if e.inner().classify() == serde_json::error::Category::Data => {
                let path = e.path().to_string();
                Err(if path == "." {
                    ApiError::invalid(e.inner().to_string())
                } else {
                    ApiError::invalid(format!("{path}: {}", e.inner()))
                })
            }
            Err(e) => Err(malformed(e.inner())),
        }
    }
}

/// A JSON body that may be left out entirely (no body, no content type): then `T::default()`.
pub struct ApiJsonOrEmpty<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for ApiJsonOrEmpty<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if request.headers().get(header::CONTENT_TYPE).is_some() {
            return ApiJson::<T>::from_request(request, state).await.map(|ApiJson(value)| ApiJsonOrEmpty(value));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(body_error)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            Ok(ApiJsonOrEmpty(T::default()))
        } else {
            Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ))
        }
    }
}

fn malformed(error: &serde_json::Error) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("the body is not valid JSON: {error}"))
}

fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn body_error(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the request body is over the size limit")
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_body", rejection.body_text())
    }
}

/// Query parameters, rejected in the API's error shape.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::invalid(e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        let ok =
            ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/merge-patch+json"];
        for v in ok {
            assert!(is_json(Some(&header::HeaderValue::from_static(v))), "{v}");
        }
        for v in ["text/plain", "application/x-www-form-urlencoded", "json", ""] {
            assert!(!is_json(Some(&header::HeaderValue::from_static(v))), "{v}");
        }
        assert!(!is_json(None));
    }
}
