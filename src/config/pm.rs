//! The process manager: `pm` and the `pm_*` keys, with php-fpm's rules for `pm = "dynamic"`.

use super::error::Report;
use super::file::{Field, RawPoolKeys};
use super::validate::{duration, int_in, optional, set, size, string};
use super::{PmMode, Pool};

/// Fills the pool's `pm` and `pm_*` fields except `pm_max_children`. `max_children` is that
/// key's value when it was valid: the rules comparing with it are skipped otherwise.
pub(super) fn apply(k: &RawPoolKeys<'_>, pool: &mut Pool, max_children: Option<usize>, r: &mut Report<'_>) {
    set(&mut pool.pm, optional(&k.pm, r, mode));
    let mode = pool.pm;
    // As in php-fpm, the spare servers matter only to "dynamic": elsewhere they are kept, unused.
    let least = if mode == PmMode::Dynamic { 1 } else { 0 };
    let servers = |f: &Field<'_>, r: &mut Report<'_>| int_in(f, r, least..=i64::MAX).map(|n| n as usize);
    pool.pm_start_servers = optional(&k.pm_start_servers, r, servers);
    pool.pm_min_spare_servers = optional(&k.pm_min_spare_servers, r, servers);
    pool.pm_max_spare_servers = optional(&k.pm_max_spare_servers, r, servers);
    if let (PmMode::Dynamic, Some(pm)) = (mode, &k.pm) {
        dynamic(k, pool, pm.line, max_children, r);
    }

    let rate = |f: &Field<'_>, r: &mut Report<'_>| int_in(f, r, 1..=i64::MAX).map(|n| n as usize);
    set(&mut pool.pm_max_spawn_rate, optional(&k.pm_max_spawn_rate, r, rate));
    let idle = |f: &Field<'_>, r: &mut Report<'_>| {
        let timeout = duration(f, r)?;
        if mode == PmMode::Ondemand && timeout.is_zero() {
            r.bad(f, "must be greater than 0s when pm = \"ondemand\"");
            return None;
        }
        Some(timeout)
    };
    set(&mut pool.pm_process_idle_timeout, optional(&k.pm_process_idle_timeout, r, idle));
    let requests = |f: &Field<'_>, r: &mut Report<'_>| int_in(f, r, 0..=i64::MAX).map(|n| n as u64);
    set(&mut pool.pm_max_requests, optional(&k.pm_max_requests, r, requests));
    pool.pm_max_memory = optional(&k.pm_max_memory, r, size).filter(|&bytes| bytes > 0);
    pool.pm_max_lifetime = optional(&k.pm_max_lifetime, r, duration).filter(|d| !d.is_zero());
}

fn mode(f: &Field<'_>, r: &mut Report<'_>) -> Option<PmMode> {
    let s = string(f, r)?;
    let found = PmMode::ALL.iter().find(|(name, _)| *name == s);
    if found.is_none() {
        let names: Vec<&str> = PmMode::ALL.iter().map(|(name, _)| *name).collect();
        r.bad(f, format!("must be one of: {}", names.join(", ")));
    }
    found.map(|(_, mode)| *mode)
}

/// php-fpm's rules for `pm = "dynamic"`, with its messages: both spare server counts are
/// required (reported on the `pm` line, `pm_line`), min_spare <= start <= max_spare <=
/// pm_max_children, and an unset `pm_start_servers` becomes `min + (max - min) / 2`.
fn dynamic(k: &RawPoolKeys<'_>, pool: &mut Pool, pm_line: usize, max_children: Option<usize>, r: &mut Report<'_>) {
    for (key, field) in
        [("pm_min_spare_servers", &k.pm_min_spare_servers), ("pm_max_spare_servers", &k.pm_max_spare_servers)]
    {
        if field.is_none() {
            r.push(Some(pm_line), Some(key), None, "is required when pm = \"dynamic\"");
        }
    }
    let min = k.pm_min_spare_servers.as_ref().zip(pool.pm_min_spare_servers);
    let max = k.pm_max_spare_servers.as_ref().zip(pool.pm_max_spare_servers);
    if let Some(children) = max_children {
        for (field, count) in [min, max].into_iter().flatten() {
            if count > children {
                r.bad(field, format!("cannot be greater than pm_max_children ({children})"));
            }
        }
    }
    // The other comparisons need both counts; a missing or bad one is already reported.
    let (Some((_, min)), Some((max_field, max))) = (min, max) else {
        return;
    };
    if max < min {
        r.bad(max_field, format!("must not be less than pm_min_spare_servers ({min})"));
        return;
    }
    match (&k.pm_start_servers, pool.pm_start_servers) {
        (None, _) => {
            pool.pm_start_servers = Some(min + (max - min) / 2);
            pool.pm_start_servers_defaulted = true;
        }
        (Some(field), Some(start)) if start < min || start > max => r.bad(
            field,
            format!(
                "must not be less than pm_min_spare_servers ({min}) and not greater than pm_max_spare_servers ({max})"
            ),
        ),
        _ => {}
    }
}
