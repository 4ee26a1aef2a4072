//! A pool: its php-cgi parent and children, its workers, its balancer and its
//! actor. [`Pool::start`] builds all of it from a validated pool config.

pub mod actor;
pub mod admin_ini;
pub mod balancer;
pub mod crash;
pub mod finish;
pub mod health;
pub mod msg;
pub mod notes;
pub mod output;
pub mod recycle;
pub mod snapshot;
pub mod spec;
pub mod usage;
pub mod worker;

use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio::sync::oneshot;

pub use balancer::{AcquireError, Balancer};
use msg::PoolEvent;
pub use msg::{AbandonCause, Abandoned, Note, PoolMsg, PoolSnapshot, RequestInfo, SlotState};
pub use worker::{ChildSocket, Worker};

use crate::accesslog::PoolLogs;
use crate::config;
use crate::supervisor::Supervisor;

/// Default limit on the FastCGI params of one request (bytes).
pub const DEFAULT_MAX_PARAMS: usize = 256 * 1024;

/// Errors while setting a pool up.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Its private socket directory or socket could not be made.
    #[error("[pool {pool}] cannot create the children's socket {path}: {source}")]
    ChildSocket { pool: String, path: PathBuf, source: std::io::Error },
    /// A user/group/privilege problem.
    #[error("[pool {pool}] {message}")]
    Credentials { pool: String, message: String },
    /// Its access log or slowlog cannot be opened for writing.
    #[error("[pool {pool}] cannot open the log {path}: {source}")]
    Logs { pool: String, path: PathBuf, source: std::io::Error },
    /// The `fastcgi_finish_request()` polyfill could not be written.
    #[error("[pool {pool}] cannot write the fastcgi_finish_request() polyfill {path}: {source}")]
    Polyfill { pool: String, path: PathBuf, source: std::io::Error },
    /// The pipes or thread for the children's output could not be set up.
    #[error("[pool {pool}] cannot capture the children's output: {source}")]
    Output { pool: String, source: std::io::Error },
    /// php-cgi could not be found.
    #[error("[pool {pool}] php_cgi {path}: {message}")]
    PhpCgi { pool: String, path: PathBuf, message: String },
}

/// How a pool's php-cgi is doing, for a reload deciding whether to switch to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Every child has been forked and one answers FastCGI.
    Answering,
    /// Not yet.
    Starting,
    /// Its php-cgi parent exited after it started, or its actor is gone.
    Failed,
}

/// php-fpm's ping and status pages of a pool.
#[derive(Debug, Clone)]
pub struct Pages {
    /// `pm_status_path`
    pub status_path: Option<String>,
    /// `ping_path`
    pub ping_path: Option<String>,
    /// `ping_response`
    pub ping_response: String,
    /// The process manager's name, for the status page.
    pub pm: &'static str,
    /// `X-Powered-By` as the pool's php-cgi sends it (`expose_php`), if it does.
    pub powered_by: Option<String>,
}

/// What the front end needs of a pool: shared by all its connection tasks.
#[derive(Debug)]
pub struct Pool {
    /// Pool name.
    pub name: String,
    /// Idle workers.
    pub balancer: Arc<Balancer>,
    /// The children's socket.
    pub socket: Arc<ChildSocket>,
    /// The actor's mailbox.
    pub actor: UnboundedSender<PoolMsg>,
    /// What the actor reads without being woken for each ([`Pool::note`]).
    notes: notes::NoteSender,
    /// The actor's second inbox, when the pool samples each request's usage
    /// (its status page): where the sampler answers ([`Pool::sample_usage`]).
    usage: Option<UnboundedSender<PoolEvent>>,
    /// `security_limit_extensions` (empty: no limit).
    pub limit_extensions: Vec<String>,
    /// Largest accepted params block of one request.
    pub max_params: usize,
    /// The ping and status pages.
    pub pages: Pages,
    /// `chroot` of the children: scripts are looked up inside it.
    pub chroot: Option<PathBuf>,
    /// The pool's share of the script lookups.
    pub lookups: LookupShare,
    /// The children's `cgi.fix_pathinfo` (php-fpm splits Apache's path info only with it).
    pub fix_pathinfo: bool,
    /// `request_terminate_timeout`.
    pub terminate_timeout: Option<std::time::Duration>,
    /// `request_read_timeout`: for a request head, and each pause in a request body.
    pub read_timeout: Option<std::time::Duration>,
    /// `listen_idle_timeout`: for a kept-alive connection between requests.
    pub idle_timeout: Option<std::time::Duration>,
    /// The access log and slowlog.
    pub logs: Arc<PoolLogs>,
    /// `request_terminate_timeout_track_finished`: the timeout still runs
    /// after `fastcgi_finish_request()`.
    pub track_finished: bool,
    /// The `fastcgi_finish_request()` polyfill of the children, if any.
    pub finish: Option<finish::Polyfill>,
    /// When the actor's loop last ran (for systemd's watchdog).
    pub heartbeat: Arc<health::Heartbeat>,
    /// The children's output in the log (`catch_workers_output`), if caught.
    pub output: Option<output::OutputHandle>,
    /// `listen_allowed_clients` (empty: any client).
    pub allowed_clients: Vec<std::net::IpAddr>,
    /// Warnings about what a web server sent or failed to send (malformed
    /// FastCGI, a request head or body that stopped coming): at most one a second,
    /// so that a peer cannot fill root's log.
    pub client_warnings: crate::log::Throttle,
}

/// Functions that fork the php-cgi child a script runs in. php-fpm has no
/// pcntl; Debian's php-cgi has. A fork is a second php-cgi child on the same
/// worker connection: it ends its copy of the request there (rustfpm takes its
/// answer for the next request's: users get each other's pages) and serves
/// requests beside the real child, out of reach of the pool's timeouts.
const FORKS: [&str; 2] = ["pcntl_fork", "pcntl_rfork"];

/// The `-d disable_functions=` that adds [`FORKS`] to the functions PHP
/// already disables (`disabled`, from php.ini and the pool's own `-d`s): a
/// `-d` replaces the list, so it carries them too.
fn no_forks(disabled: &str) -> [std::ffi::OsString; 2] {
    let mut list: Vec<&str> = disabled.split(',').map(str::trim).filter(|f| !f.is_empty()).collect();
    for f in FORKS {
        if !list.iter().any(|d| d.eq_ignore_ascii_case(f)) {
            list.push(f);
        }
    }
    ["-d".into(), spec::define("disable_functions", &list.join(",")).into()]
}

/// A pool's part of the script lookups (the front end's `scripts`): how many
/// of its own wait for or run on a lookup thread, and the throttle of its
/// "queue full" line.
#[derive(Debug)]
pub struct LookupShare {
    /// Its lookups queued or running.
    pub queued: Arc<std::sync::atomic::AtomicUsize>,
    /// "script lookup queue full" is logged at most once a second per pool.
    pub busy_log: crate::log::Throttle,
    /// The uid and gid the pool's lookups run as (its user's), if rustfpm switches users.
    pub ids: Option<(u32, u32)>,
    /// With them, the user's supplementary groups (its children's).
    pub groups: Arc<[u32]>,
}

impl Default for LookupShare {
    fn default() -> Self {
        let busy_log = crate::log::Throttle::new(std::time::Duration::from_secs(1));
        LookupShare { queued: Arc::default(), busy_log, ids: None, groups: Arc::from([]) }
    }
}

impl Pool {
    /// Creates the pool's socket, asks the supervisor to start php-cgi and
    /// spawns the actor. Must run inside the tokio runtime.
    pub fn start(
        cfg: &config::Pool,
        global: &config::Global,
        supervisor: &Supervisor,
        allow_root: bool,
        probes: &finish::Probes,
    ) -> Result<Arc<Pool>, PoolError> {
        explain_settings(cfg);
        let logs =
            PoolLogs::new(cfg).map_err(|(path, source)| PoolError::Logs { pool: cfg.name.clone(), path, source })?;
        let logs = Arc::new(logs);
        let socket = spec::child_socket(&cfg.name)?;
        let socket = Arc::new(socket);
        let mut spec = spec::child_spec(cfg, &socket, allow_root)?;
        let output = match cfg.catch_workers_output {
            true => {
                let (handle, capture) = output::start(&cfg.name, cfg.decorate_workers_output)
                    .map_err(|source| PoolError::Output { pool: cfg.name.clone(), source })?;
                spec.output = crate::spawn::Output::Capture(capture);
                Some(handle)
            }
            false => None,
        };
        let settings = finish::Settings::of(cfg, &spec, supervisor, probes);
        if spec::ini_searched(cfg, &spec) {
            // The php.ini php-cgi read for its phpinfo (run in /, so one a wrapper gives it),
            // else the directory it was built with, which then holds none.
            match settings.loaded_ini().or_else(|| settings.config_dir()) {
                Some(ini) => spec.args.extend(["-c".into(), ini.into_os_string()]),
                None => crate::warning!(
                    "[pool {}] php-cgi did not say where its php.ini is: it may read one from its working directory; set php_ini",
                    cfg.name
                ),
            }
        }
        // The list replaces php.ini's: given only when php-cgi said what that is.
        match settings.disabled_functions() {
            Some(disabled) => spec.args.extend(no_forks(&disabled)),
            None => crate::warning!(
                "[pool {}] php-cgi did not show its settings: pcntl_fork() is not disabled (set it in disable_functions)",
                cfg.name
            ),
        }
        let finish = finish::Polyfill::for_pool(cfg, &settings, &spec)?;
        spec.args.extend(finish.as_ref().map(finish::Polyfill::args).unwrap_or_default());
        let lock = admin_ini::lock_args(cfg, &spec.args);
        spec.args.extend(lock); // php-cgi's last -d
        let lookup_ids = spec.credentials.as_ref().map(|c| (c.uid.as_raw(), c.gid.as_raw()));
        let lookup_groups: Arc<[u32]> =
            spec.credentials.as_ref().map_or_else(|| Arc::from([]), |c| c.groups.iter().map(|g| g.as_raw()).collect());
        let spec = Arc::new(spec);
        let (tx, rx) = unbounded_channel();
        let (events_tx, events_rx) = unbounded_channel();
        let (notes, notes_rx) = notes::channel();
        let epochs: Arc<[AtomicU32]> = (0..cfg.pm_max_children).map(|_| AtomicU32::new(0)).collect();
        let workers = (0..cfg.pm_max_children).map(|slot| Worker::new(slot, epochs.clone())).collect();
        let balancer = Arc::new(Balancer::new(workers, cfg.queue_max_len, cfg.queue_max_wait));
        let heartbeat = Arc::new(health::Heartbeat::default());
        let usage = cfg.pm_status_path.as_ref().map(|_| events_tx.clone());
        let actor = actor::PoolActor::new(actor::ActorSetup {
            spec,
            socket: socket.clone(),
            supervisor: supervisor.clone(),
            events_tx,
            policy: policy(cfg, global),
            epochs,
            balancer: balancer.clone(),
            logs: logs.clone(),
            sample_usage: usage.is_some(),
            heartbeat: heartbeat.clone(),
            notes: notes_rx,
        });
        tokio::spawn(actor.run(rx, events_rx));
        Ok(Arc::new(Pool {
            name: cfg.name.clone(),
            balancer,
            socket,
            actor: tx,
            notes,
            usage,
            limit_extensions: cfg.security_limit_extensions.clone(),
            max_params: DEFAULT_MAX_PARAMS,
            terminate_timeout: cfg.request_terminate_timeout,
            track_finished: cfg.request_terminate_timeout_track_finished,
            read_timeout: cfg.request_read_timeout,
            idle_timeout: cfg.listen_idle_timeout,
            finish,
            output,
            allowed_clients: cfg.listen_allowed_clients.clone(),
            client_warnings: crate::log::Throttle::new(std::time::Duration::from_secs(1)),
            chroot: cfg.chroot.clone(),
            lookups: LookupShare { ids: lookup_ids, groups: lookup_groups, ..Default::default() },
            fix_pathinfo: settings.fix_pathinfo(),
            logs,
            heartbeat,
            pages: Pages {
                status_path: cfg.pm_status_path.clone(),
                ping_path: cfg.ping_path.clone(),
                ping_response: cfg.ping_response.clone(),
                pm: match cfg.pm {
                    config::PmMode::Static => "static",
                    config::PmMode::Dynamic => "dynamic",
                    config::PmMode::Ondemand => "ondemand",
                },
                powered_by: settings.powered_by(),
            },
        }))
    }

    /// `listen_allowed_clients`: whether a TCP client at `peer` may be served. A refused one
    /// is logged as php-fpm logs it; its connection is closed unanswered, as php-fpm's.
    pub fn allows(&self, peer: Option<std::net::IpAddr>) -> bool {
        match peer {
            _ if self.allowed_clients.is_empty() => true,
            Some(ip) if self.allowed_clients.contains(&ip) => true,
            Some(ip) => {
                crate::error!("[pool {}] Connection disallowed: IP address '{ip}' has been dropped.", self.name);
                false
            }
            None => false,
        }
    }

    /// A new request's `fastcgi_finish_request()` marker, if the pool has the polyfill.
    pub fn finish_marker(&self) -> Option<finish::Marker> {
        self.finish.as_ref().map(finish::Polyfill::request_marker)
    }

    /// Sends a message to the actor (never blocks).
    pub fn tell(&self, msg: PoolMsg) {
        let _ = self.actor.send(msg);
    }

    /// Tells the actor without waking it for this note: it reads the note
    /// first thing when it wakes for anything else, or once
    /// [`notes::NOTES_PER_READING`] wait, at the latest on its next tick
    /// (`actor::REPAIR_INTERVAL`). A request's start and its express end cost
    /// no wake-up of their own so.
    pub fn note(&self, note: Note) {
        self.notes.send(note);
    }

    /// Has the usage sampler read what the request that `slot`'s child `pid`
    /// has just ended cost, when the pool shows it (its status page), as the
    /// actor does for the requests that end through it
    /// (`PoolActor::request_ended`): for a request whose worker went straight
    /// back, the actor noted of its end first. The sampler tells the actor.
    pub fn sample_usage(&self, slot: usize, pid: i32, duration: std::time::Duration) {
        if let Some(reply) = self.usage.as_ref().filter(|_| pid > 0) {
            usage::request(usage::Sample { pid, slot, duration, reply: reply.clone(), awaited: false });
        }
    }

    /// Asks the actor for a snapshot.
    pub async fn snapshot(&self) -> Option<PoolSnapshot> {
        let (respond_to, rx) = oneshot::channel();
        self.tell(PoolMsg::Snapshot { respond_to });
        rx.await.ok()
    }

    /// True once the php-cgi parent runs with all its children forked and one
    /// of them answers a FastCGI request on the children's socket.
    pub async fn answers(&self) -> bool {
        let Some(snapshot) = self.snapshot().await else { return false };
        self.answers_in(&snapshot).await
    }

    /// Whether every child is forked (as the supervisor read it for the
    /// snapshot) and one answers.
    async fn answers_in(&self, snapshot: &PoolSnapshot) -> bool {
        snapshot.parent_pid.is_some()
            && snapshot.forked >= snapshot.slots.len()
            && health::answers(&self.socket.path).await
    }

    /// How the pool's php-cgi is doing: answering, still starting, or its
    /// parent exited after it started (a php_cgi that cannot serve).
    pub async fn health(&self) -> Health {
        let Some(snapshot) = self.snapshot().await else {
            return Health::Failed;
        };
        match snapshot.parent_pid {
            None if snapshot.parent_starts > 0 => Health::Failed,
            Some(_) if self.answers_in(&snapshot).await => Health::Answering,
            _ => Health::Starting,
        }
    }

    /// Retires the pool after a reload: queued requests move to the new pool,
    /// in-flight ones end (within `limit`, if set), then the children stop.
    pub fn retire(&self, limit: Option<std::time::Duration>) {
        self.balancer.close();
        self.tell(PoolMsg::Retire { limit });
    }

    /// Stops handing out workers and stops restarting children.
    pub fn stop(&self) {
        self.balancer.close();
        self.tell(PoolMsg::Stop);
    }
}

/// The recycling rules of a pool's config.
fn policy(cfg: &config::Pool, global: &config::Global) -> recycle::Policy {
    recycle::Policy {
        max_requests: cfg.pm_max_requests,
        max_memory: cfg.pm_max_memory,
        max_lifetime: cfg.pm_max_lifetime,
        idle_timeout: (cfg.pm == config::PmMode::Ondemand).then_some(cfg.pm_process_idle_timeout),
        max_spare: cfg.pm_max_spare_servers.filter(|_| cfg.pm == config::PmMode::Dynamic),
        emergency: global
            .emergency_restart_interval
            .filter(|_| global.emergency_restart_threshold > 0)
            .map(|interval| (global.emergency_restart_threshold, interval)),
    }
}

/// php-fpm settings that have no effect here are named, never silently ignored.
fn explain_settings(cfg: &config::Pool) {
    if let (true, Some(n)) = (cfg.pm_start_servers_defaulted, cfg.pm_start_servers) {
        crate::notice!("[pool {}] pm.start_servers is not set. It's been set to {n}.", cfg.name);
    }
    if cfg.pm != config::PmMode::Static {
        crate::notice!(
            "[pool {}] pm = {:?}: all {} children are forked at start from one php-cgi parent (they share its \
             OPcache; an unused child costs ~50 KB); used children are replaced when idle, so \
             pm_start_servers and pm_max_spawn_rate have no effect",
            cfg.name,
            cfg.pm,
            cfg.pm_max_children
        );
    }
    if !cfg.process_dumpable && cfg.user.is_some() && nix::unistd::Uid::effective().is_root() {
        crate::notice!(
            "[pool {}] process_dumpable = no has no effect: exec() makes php-cgi dumpable again (its /proc \
             files belong to its user, as with process_dumpable = yes)",
            cfg.name
        );
    }
    if cfg.request_terminate_timeout_track_finished && cfg.chroot.is_some() {
        crate::warning!(
            "[pool {}] request_terminate_timeout_track_finished has no effect: chroot pools have no \
             fastcgi_finish_request()",
            cfg.name
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forks_join_the_functions_already_disabled() {
        let arg = |disabled: &str| no_forks(disabled)[1].to_string_lossy().into_owned();
        assert_eq!(arg(""), "disable_functions=\"pcntl_fork,pcntl_rfork\"");
        assert_eq!(arg("exec, system,"), "disable_functions=\"exec,system,pcntl_fork,pcntl_rfork\"");
        assert_eq!(arg("PCNTL_FORK,exec"), "disable_functions=\"PCNTL_FORK,exec,pcntl_rfork\"");
    }
}
