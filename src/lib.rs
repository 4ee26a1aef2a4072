//! rustfpm: a FastCGI process manager for PHP that replaces php-fpm.
//!
//! nginx → [`frontend`] (tokio) → [`pool`] balancer (crossbeam channel of idle
//! workers) → one persistent FastCGI connection per php-cgi child, started and
//! reaped by the [`supervisor`]. Worker state has one owner: the pool actor.
#![deny(unsafe_op_in_unsafe_fn)]

#[macro_use]
pub mod log;
pub mod accesslog;
pub mod config;
pub mod exporter;
pub mod fastcgi;
pub mod frontend;
pub mod fuzzing;
pub mod metrics;
pub mod notify;
pub mod php;
pub mod ping;
pub mod pool;
pub mod server;
pub mod signals;
pub mod spawn;
pub mod status;
pub mod supervisor;
pub mod sys;
pub mod top;
