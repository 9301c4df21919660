//! Live configuration reload (SIGHUP, `POST /api/reload`): the whole file is read and
//! validated first; an invalid one changes nothing, is logged once with its key and
//! counted. A valid one is diffed against what runs: every live key is put in force
//! for new and existing sessions alike, restart-only keys
//! ([`config::RESTART_ONLY`](crate::config::RESTART_ONLY)) are reported as "changed;
//! applies on restart".

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use netcore::{Admission, Tuning};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::attack::AttackMode;
use crate::client::GateHandler;
use crate::config::{changed_keys, is_restart_only, Config, ConfigError};
use crate::dispatch::NetDispatch;
use crate::link::{LinkSet, LinkTiming};
use crate::punish::Punisher;
use crate::{allowlist, blocklist};

/// Reloads refused because the new file was invalid.
pub const METRIC_FAILURES: &str = "gate_config_reload_failures_total";

/// Reads the configuration again: the file with the command line's flags over it.
pub type Source = Box<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// What a reload did, as the console's `/api/reload` returns it.
pub use bootstrap::config::ReloadOutcome as Outcome;

/// The running gate's handles a reload changes.
pub struct Parts {
    /// Caps, rates, session deadlines, outbound bound.
    pub tuning: Tuning,
    /// Message size and rate, account limits.
    pub handler: Arc<GateHandler>,
    /// Punishment table, block duration, block file.
    pub punisher: Arc<Punisher>,
    /// Temporary block duration and block file for the LoginSrv's orders.
    pub dispatch: Arc<NetDispatch>,
    /// Attack thresholds and strict limits.
    pub attack: Arc<AttackMode>,
    /// Where block and allow lists are installed.
    pub admission: Admission,
    /// Heartbeat, dead and reconnect timing.
    pub links: Arc<LinkSet>,
    /// The console's token, when it runs.
    pub guard: Option<console::Guard>,
    /// The block file the console's block endpoints record in.
    pub console_block_file: Option<Arc<arc_swap::ArcSwapOption<PathBuf>>>,
    /// The log filter.
    pub log: Option<Arc<bootstrap::LogControl>>,
    /// Parent of the list watchers' tokens (cancelled at shutdown).
    pub stop: CancellationToken,
    /// Largest `gate.max_packet_bytes` the receive buffers (sized at start) can hold.
    pub max_packet_bytes_fit: usize,
}

/// Watcher tasks of the block and allow list files, restarted when their path or
/// poll interval changes.
#[derive(Default)]
struct Watchers {
    /// Stops the block list watcher.
    block: Option<CancellationToken>,
    /// Stops the allow list watcher.
    allow: Option<CancellationToken>,
}

/// Applies reloads to a running gate; one reload at a time.
pub struct Reloader {
    /// Where a reload reads from; `None` for a gate started in-process from a value.
    source: Option<Source>,
    /// The handles changed.
    parts: Parts,
    /// The configuration the process started with (what restart-only keys are
    /// compared with), and the one last applied (what live keys are compared with).
    state: Mutex<(Config, Config)>,
    /// The list watchers.
    watchers: Mutex<Watchers>,
}

impl Reloader {
    /// A reloader for a gate started with `config`; starts the list watchers.
    pub fn new(config: Config, source: Option<Source>, parts: Parts) -> Self {
        let reloader = Reloader {
            source,
            parts,
            state: Mutex::new((config.clone(), config.clone())),
            watchers: Mutex::new(Watchers::default()),
        };
        reloader.load_lists(&config, true, true);
        reloader
    }

    /// The configuration in force (live keys as last applied).
    pub fn current(&self) -> Config {
        self.state.lock().1.clone()
    }

    /// Whether a reload can read a file (the gate was started from one).
    pub fn has_source(&self) -> bool {
        self.source.is_some()
    }

    /// Reads the configuration again and applies it ([`Reloader::apply`]). Blocking
    /// (file I/O): call it off the async workers.
    pub fn reload(&self) -> Outcome {
        let Some(source) = &self.source else {
            return self.apply(Ok(self.current()));
        };
        self.apply(source())
    }

    /// Applies a configuration read elsewhere (or its error).
    pub fn apply(&self, new: Result<Config, ConfigError>) -> Outcome {
        let new = new.and_then(|c| c.validate().map(|()| c));
        let new = match new {
            Ok(new) => new,
            Err(e) => return self.refuse(e),
        };
        let mut state = self.state.lock();
        let (started, applied) = &mut *state;
        let mut restart_required: Vec<String> = changed_keys(started, &new)
            .into_iter()
            .filter(|k| is_restart_only(k))
            .collect();
        let mut live: Vec<String> = changed_keys(applied, &new)
            .into_iter()
            .filter(|k| !is_restart_only(k))
            .collect();
        let mut new = new;
        if new.gate.max_packet_bytes > self.parts.max_packet_bytes_fit {
            // Receive buffers are sized at start; a longer message needs new ones.
            new.gate.max_packet_bytes = applied.gate.max_packet_bytes;
            live.retain(|k| k != "gate.max_packet_bytes");
            restart_required.push("gate.max_packet_bytes".to_owned());
        }
        if let Err(problem) = self.put_in_force(applied, &new) {
            drop(state);
            return self.refuse(ConfigError::new("gate", problem));
        }
        let (lists_block, lists_allow) = (
            ["gate.block_list_file", "gate.block_list_poll_secs"]
                .iter()
                .any(|k| live.iter().any(|l| l == k)),
            ["gate.allow_list_file", "gate.block_list_poll_secs"]
                .iter()
                .any(|k| live.iter().any(|l| l == k)),
        );
        *applied = new.clone();
        drop(state);
        // A reload re-reads both lists, and restarts a watcher whose file or interval changed.
        self.load_lists(&new, lists_block, lists_allow);
        for key in &restart_required {
            warn!(key = %key, "config reload: changed; applies on restart");
        }
        info!(applied = ?live, restart_required = ?restart_required, "config reloaded");
        Outcome::applied(live, restart_required)
    }

    fn refuse(&self, e: ConfigError) -> Outcome {
        metrics::counter!(METRIC_FAILURES).increment(1);
        error!(key = %e.key, problem = %e.problem, "config reload refused; the running configuration is kept");
        Outcome::refused(e)
    }

    /// Every live key of `new` into the running gate.
    fn put_in_force(&self, old: &Config, new: &Config) -> Result<(), &'static str> {
        let p = &self.parts;
        let core = crate::app::core_config(new);
        p.tuning.apply(&netcore::LiveLimits::of(&core))?;
        if new.log_filter != old.log_filter {
            if let Some(log) = &p.log {
                if let Err(e) = log.set_filter(&new.log_filter) {
                    warn!(error = %e, "config reload: log_filter not applied");
                }
            }
        }
        p.handler.retune(old, new);
        let temp_block = Duration::from_secs(new.gate.temp_block_secs);
        let block_file = new.block_list_path();
        p.punisher
            .update(new.gate.punish, temp_block, block_file.clone());
        p.dispatch.set_blocking(temp_block, block_file.clone());
        if let Some(view_file) = &p.console_block_file {
            view_file.store(block_file.map(Arc::new));
        }
        if new.gate.attack != old.gate.attack {
            p.attack.reconfigure(&p.admission, new.gate.attack);
        }
        let timing = LinkTiming::from_config(new);
        if timing != LinkTiming::from_config(old) {
            for link in p.links.links() {
                link.retime(timing);
            }
        }
        if new.admin.token != old.admin.token {
            if let Some(guard) = &p.guard {
                guard.set_token(&new.admin.token);
            }
        }
        Ok(())
    }

    /// Loads the block and allow lists of `config` now; (re)starts the watcher of each
    /// list whose flag is set (its file or interval changed, or at start).
    fn load_lists(&self, config: &Config, restart_block: bool, restart_allow: bool) {
        let p = &self.parts;
        let poll = Duration::from_secs(config.gate.block_list_poll_secs);
        let mut watchers = self.watchers.lock();
        let block = config.block_list_path();
        let stamp = block.as_deref().map(blocklist::stamp);
        match &block {
            Some(path) => {
                blocklist::load_into(path, &p.admission);
            }
            None => p.admission.replace_static(Vec::new()),
        }
        if restart_block {
            if let Some(old) = watchers.block.take() {
                old.cancel();
            }
            if let (Some(path), Some(stamp)) = (block, stamp) {
                let token = p.stop.child_token();
                tokio::spawn(blocklist::watch(
                    path,
                    stamp,
                    p.admission.clone(),
                    poll,
                    token.clone(),
                ));
                watchers.block = Some(token);
            }
        }
        let allow = config.allow_list_path();
        let stamp = allow.as_deref().map(blocklist::stamp);
        match &allow {
            Some(path) => allowlist::load_into(path, &p.admission),
            None => p.admission.replace_allow_list(Vec::new()),
        }
        if restart_allow {
            if let Some(old) = watchers.allow.take() {
                old.cancel();
            }
            if let (Some(path), Some(stamp)) = (allow, stamp) {
                let token = p.stop.child_token();
                tokio::spawn(blocklist::watch_file(
                    path,
                    stamp,
                    p.admission.clone(),
                    poll,
                    token.clone(),
                    allowlist::load_into,
                ));
                watchers.allow = Some(token);
            }
        }
    }
}
