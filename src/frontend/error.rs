//! Why a connection with nginx ends early: the front end's one error type,
//! shared by the connection, the request body and the proxy.

use crate::fastcgi::CodecError;

/// Why a connection was closed early.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// nginx sent bytes that are not valid FastCGI.
    #[error("malformed FastCGI from the web server: {0}")]
    Codec(#[from] CodecError),
    /// nginx sent records in an order FastCGI does not allow.
    #[error("FastCGI protocol error from the web server: {0}")]
    Protocol(&'static str),
    /// nginx closed the connection in the middle of a record or request.
    #[error("the web server closed the connection mid-request")]
    UnexpectedEof,
    /// A socket error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
