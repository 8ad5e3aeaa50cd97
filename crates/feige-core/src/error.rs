//! The one error type of Feige. Each variant maps to an HTTP status; each carries a stable
//! snake_case `code` that clients can match on (DESIGN.md, "Errors").

/// Result with Feige's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure a use case or adapter can report.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// 400: the request is malformed or violates a rule of the API.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 401: missing, bad, expired or revoked credentials.
    #[error("{message}")]
    Unauthorized { code: &'static str, message: String },
    /// 403: authenticated, but not allowed to do this.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// 404: the id names nothing (or nothing the caller may see).
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// 409: conflicts with existing state (`username_taken`, `group_full`).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// 413: the request body is over the limit.
    #[error("request body is too large")]
    PayloadTooLarge,
    /// 429: too many requests; retry after the given number of seconds.
    #[error("rate limited; retry in {retry_after_secs}s")]
    RateLimited { retry_after_secs: u64 },
    /// 503: a backend is unreachable. Nothing was half-written.
    #[error("backend {backend} is unavailable: {message}")]
    Unavailable { backend: &'static str, message: String },
    /// 500: a bug or an unexpected backend answer. The message is logged, not shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Error::BadRequest { code, message: message.into() }
    }
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Error::Unauthorized { code, message: message.into() }
    }
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Error::Forbidden { code, message: message.into() }
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Error::NotFound { code, message: message.into() }
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Error::Conflict { code, message: message.into() }
    }
    pub fn unavailable(backend: &'static str, message: impl std::fmt::Display) -> Self {
        Error::Unavailable { backend, message: message.to_string() }
    }
    pub fn internal(message: impl std::fmt::Display) -> Self {
        Error::Internal(message.to_string())
    }

    /// The HTTP status this error is reported with.
    pub fn status(&self) -> u16 {
        match self {
            Error::BadRequest { .. } => 400,
            Error::Unauthorized { .. } => 401,
            Error::Forbidden { .. } => 403,
            Error::NotFound { .. } => 404,
            Error::Conflict { .. } => 409,
            Error::PayloadTooLarge => 413,
            Error::RateLimited { .. } => 429,
            Error::Unavailable { .. } => 503,
            Error::Internal(_) => 500,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest { code, .. }
            | Error::Unauthorized { code, .. }
            | Error::Forbidden { code, .. }
            | Error::NotFound { code, .. }
            | Error::Conflict { code, .. } => code,
            Error::PayloadTooLarge => "body_too_large",
            Error::RateLimited { .. } => "rate_limited",
            Error::Unavailable { .. } => "backend_unavailable",
            Error::Internal(_) => "internal",
        }
    }

    /// The text shown to clients: internal details stay in the logs.
    pub fn public_message(&self) -> String {
        match self {
            Error::Internal(_) => "internal error".to_string(),
            Error::Unavailable { backend, .. } => format!("backend {backend} is unavailable"),
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes_are_stable() {
        assert_eq!(Error::conflict("username_taken", "x").status(), 409);
        assert_eq!(Error::conflict("username_taken", "x").code(), "username_taken");
        assert_eq!(Error::PayloadTooLarge.status(), 413);
        assert_eq!(Error::RateLimited { retry_after_secs: 1 }.code(), "rate_limited");
        let e = Error::internal("db password is hunter2");
        assert_eq!(e.status(), 500);
        assert!(!e.public_message().contains("hunter2"));
    }
}
