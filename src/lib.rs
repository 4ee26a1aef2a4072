//! rustfpm: a FastCGI process manager for PHP that replaces php-fpm.
//!
//! nginx → `frontend` (tokio) → `pool` balancer (a queue of idle workers and a
//! FIFO semaphore) → one persistent FastCGI connection per php-cgi child, started
//! and reaped by the `supervisor`. Worker state has one owner: the pool actor,
//! which the front end tells of requests' starts and ends (notes the actor reads in
//! batches, and messages on a tokio channel).
#![deny(unsafe_op_in_unsafe_fn)]

#[macro_use]
pub mod log;
pub(crate) mod accesslog;
pub mod config;
pub(crate) mod exporter;
pub mod fastcgi;
pub(crate) mod frontend;
/// Why a pool's socket could not be made (the binary words it as php-fpm for php-fpm configs).
pub use frontend::listen::ListenError;
pub mod fuzzing;
pub(crate) mod metrics;
pub(crate) mod notify;
pub mod php;
pub(crate) mod phpinfo;
pub mod ping;
pub(crate) mod pool;
pub mod server;
pub(crate) mod signals;
pub(crate) mod spawn;
pub(crate) mod status;
pub(crate) mod supervisor;
pub mod sys;
pub mod top;
