//! Bearer-token check for the API, compared in constant time.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;

/// The configured token, kept as a digest: comparing digests takes the same time for any
/// guess, whatever its length or how many leading bytes it gets right.
#[derive(Clone)]
pub struct ApiToken([u8; 32]);

impl ApiToken {
    pub fn new(token: &str) -> ApiToken {
        ApiToken(Sha256::digest(token.as_bytes()).into())
    }

    pub fn matches(&self, candidate: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        self.0.ct_eq(&digest).into()
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

/// Runs before the body is read, so an unauthorized request costs nothing and writes nothing.
pub async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Result<Response, ApiError> {
    if let Some(expected) = &state.token {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
        match presented {
            None => return Err(ApiError::unauthorized("missing bearer token (Authorization: Bearer <token>)")),
            Some(token) if !expected.matches(token.trim()) => {
                return Err(ApiError::unauthorized("invalid bearer token"));
            }
            Some(_) => {}
        }
    }
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_matches() {
        let token = ApiToken::new("correct horse battery staple");
        assert!(token.matches("correct horse battery staple"));
        for wrong in ["", "correct", "correct horse battery staple ", "Correct horse battery staple"] {
            assert!(!token.matches(wrong), "{wrong:?}");
        }
        assert_eq!(format!("{token:?}"), "ApiToken(<redacted>)");
    }
}
