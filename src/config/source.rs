//! Where the configuration comes from and what the command line changes in
//! it, kept so that a reload (SIGUSR2) reads it the same way again.

use std::path::PathBuf;

use super::{load, load_fpm, Config, ConfigErrors};

/// The configuration file's format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// rustfpm's TOML (`--config`).
    Toml,
    /// php-fpm's INI files (`--fpm-config`, `-y`), with php-fpm's prefix (`-p`).
    Fpm {
        /// php-fpm's `-p`.
        prefix: Option<PathBuf>,
    },
}

/// A configuration file plus the command-line overrides php-fpm allows.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
    /// `-c`: the php.ini every pool's children use.
    pub php_ini: Option<PathBuf>,
    /// `-d key=value`: INI settings for every pool's children. A pool's own
    /// `php_value`/`php_admin_value` of the same key wins, as in php-fpm.
    pub defines: Vec<(String, String)>,
    /// PHP's `-n` (no php.ini) and `-e` (extended information), for every pool's children.
    pub php_flags: Vec<String>,
    /// `-g`: the pid file.
    pub pid: Option<PathBuf>,
    /// `-O`: log to stderr too, whatever `error_log` says.
    pub force_stderr: bool,
    /// `-D` (`Some(true)`) or `-F` (`Some(false)`): overrides `daemonize`.
    pub daemonize: Option<bool>,
}

impl Source {
    /// A TOML file without overrides.
    pub fn toml(path: PathBuf) -> Source {
        Source {
            path,
            format: Format::Toml,
            php_ini: None,
            defines: Vec::new(),
            php_flags: Vec::new(),
            pid: None,
            force_stderr: false,
            daemonize: None,
        }
    }

    /// Loads and validates the file and applies the overrides. Returns the
    /// configuration and warnings about directives rustfpm does not honour.
    pub fn load(&self) -> Result<(Config, Vec<String>), ConfigErrors> {
        let (mut config, warnings) = match &self.format {
            Format::Toml => (load(&self.path)?, Vec::new()),
            Format::Fpm { prefix } => load_fpm(&self.path, prefix.as_deref())?,
        };
        self.apply(&mut config);
        Ok((config, warnings))
    }

    /// For a php-fpm config without `-c` or `-n`: the php.ini beside it, as
    /// php-fpm finds its own (Debian's `/etc/php/8.2/fpm/php.ini` beside
    /// `fpm/php-fpm.conf`, RHEL's `/etc/php.ini` beside `/etc/php-fpm.conf`),
    /// where php-cgi would read its own (`cgi/php.ini`). None if there is none.
    fn fpm_php_ini(&self) -> Option<PathBuf> {
        if self.format == Format::Toml || self.php_flags.iter().any(|f| f == "-n") {
            return None;
        }
        Some(self.path.parent()?.join("php.ini")).filter(|p| p.is_file())
    }

    fn apply(&self, config: &mut Config) {
        // `-O` keeps error_log: the log goes to stderr as well (crate::log::force_stderr).
        if let Some(daemonize) = self.daemonize {
            config.global.daemonize = daemonize;
        }
        // As php-fpm's -g: the pid file when the configuration names none.
        if config.global.pid.is_none() {
            config.global.pid.clone_from(&self.pid);
        }
        let beside = self.fpm_php_ini().filter(|_| self.php_ini.is_none());
        for pool in &mut config.pools {
            if let Some(ini) = &self.php_ini {
                pool.php_ini = Some(ini.clone());
            } else if let Some(ini) = &beside {
                pool.php_ini.get_or_insert_with(|| ini.clone());
            }
            pool.php_flags.clone_from(&self.php_flags);
            // php-fpm's -d sets the master's INI, which a pool's php_value overrides: the
            // pool's entries come last, and php-cgi takes the last -d of a key.
            let pooled: Vec<(String, String)> = std::mem::take(&mut pool.ini);
            pool.ini = self
                .defines
                .iter()
                .filter(|(k, _)| !pooled.iter().any(|(p, _)| p == k))
                .map(|(k, v)| (k.clone(), define_value(v)))
                .collect();
            pool.ini.extend(pooled);
        }
    }
}

/// What PHP makes of the value of a `-d KEY=VALUE` (php-cgi's and php-fpm's): the value
/// goes into its ini text as it is, in double quotes when it starts with neither a letter,
/// a digit nor a quote, and is parsed there (quotes removed, `${VAR}` from rustfpm's
/// environment, bare keywords). The pool's ini entries hold values as PHP applies them.
fn define_value(value: &str) -> String {
    let text = crate::sys::private_ini::define_value(value.as_bytes());
    super::fpm::ini::parse_value(&String::from_utf8_lossy(&text), &super::fpm::ini::env_var)
        .map_or_else(|_| value.to_string(), |p| p.text)
}
