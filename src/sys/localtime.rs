//! Local time from the C library, the one place rustfpm breaks a time down by the time zone:
//! `localtime_r` (thread-safe) and `strftime` in the C locale, as php-fpm lays its times out.

/// `secs` since the epoch in local time, laid out by C's `strftime(3)` (`%b` is the English
/// month: rustfpm never calls `setlocale`). None when the C library cannot break the time down
/// (a year out of `int`'s range), the layout holds a NUL, or the text passes 255 bytes.
pub fn strftime(layout: &str, secs: i64) -> Option<String> {
    let layout = std::ffi::CString::new(layout).ok()?;
    // time_t is 64 bits on every target rustfpm runs on (64-bit Linux).
    let secs = secs as libc::time_t;
    // SAFETY: `tm` is plain data for which all-zero bytes are a valid value (its `tm_zone`
    // pointer becomes null until localtime_r sets it).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live, aligned locals; localtime_r writes only into `tm`.
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return None;
    }
    let mut buf = [0u8; 256];
    // SAFETY: strftime writes at most buf.len() bytes into `buf`, reads the NUL-terminated
    // layout and the `tm` localtime_r filled in.
    let n = unsafe { libc::strftime(buf.as_mut_ptr().cast(), buf.len(), layout.as_ptr(), &tm) };
    (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// The current time laid out by [`strftime`] (`-` if it cannot be).
pub fn now(layout: &str) -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    strftime(layout, secs as i64).unwrap_or_else(|| "-".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_a_time_as_c_strftime_does() {
        // Midday UTC: the same calendar day in every time zone.
        let text = strftime("%d-%b-%Y|%e|%%", 1_700_049_600).unwrap();
        assert_eq!(text, "15-Nov-2023|15|%");
        assert_eq!(strftime("", 0), None, "an empty result is no result");
        assert_eq!(strftime("a\0b", 0), None);
        assert_eq!(strftime("%Y", i64::MAX), None, "a year past int's range");
        assert_eq!(now("%Y").len(), 4);
    }
}
