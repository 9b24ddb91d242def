//! The HTTP API (axum): a handler per use case (`api/`), bearer tokens,
//! JSON errors, and the HTTP/1.1 server both the API and the web app run on.

pub mod api;
mod auth;
mod error;
pub mod serve;

pub use error::ApiError;
