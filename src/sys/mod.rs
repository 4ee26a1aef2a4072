//! Thin, Linux-specific system helpers: process-tree guard, socket peer lookup,
//! /proc readers, local time. Each wraps one kernel facility and knows nothing of pools.

pub mod daemon;
pub mod guard;
pub(crate) mod localtime;
pub(crate) mod pidfd;
pub(crate) mod private_ini;
pub(crate) mod proc_events;
pub(crate) mod procfs;
pub mod rlimit;
pub(crate) mod rundir;
pub mod safe_fs;
pub(crate) mod sockdiag;
pub(crate) mod syslog;
pub mod systemd;
