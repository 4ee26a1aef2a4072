//! Thin, Linux-specific system helpers: process-tree guard, socket peer lookup,
//! /proc readers, local time. Each wraps one kernel facility and knows nothing of pools.

pub mod daemon;
pub mod guard;
pub mod localtime;
pub mod pidfd;
pub mod proc_events;
pub mod procfs;
pub mod rlimit;
pub mod rundir;
pub mod safe_fs;
pub mod sockdiag;
pub mod syslog;
pub mod systemd;
