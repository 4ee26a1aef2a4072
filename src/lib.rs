//! rustfpm: a FastCGI process manager for PHP that replaces php-fpm.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod config;
pub mod fastcgi;
