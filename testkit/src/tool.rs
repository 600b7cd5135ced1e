//! What a test does when a tool it needs is missing on this machine.
//!
//! Some tests need something outside the repository: coturn's `turnutils_*` programs, a kernel
//! that allows io_uring, Debian's Chromium. On a developer's machine without it such a test may
//! skip, saying so. In CI (`CI=true`) it must fail instead: a CI run that passes without running
//! the test would hide that the test never ran. `scripts/test.sh` installs the Debian packages,
//! so a failure there means the machine really lacks the tool.

/// Whether a test whose prerequisite is `present` should go on.
///
/// When it is missing: under `CI=true` this panics with `why` (the test fails); otherwise it
/// prints `SKIPPED <test>: <why>` and returns `false`, and the test should return at once.
///
/// ```no_run
/// # fn io_uring_supported() -> bool { true }
/// if !testkit::prerequisite(io_uring_supported(), "relay_over_io_uring", "io_uring is not available here") {
///     return;
/// }
/// ```
pub fn prerequisite(present: bool, test: &str, why: &str) -> bool {
    if present {
        return true;
    }
    assert!(
        !in_ci(),
        "{test}: {why}; under CI=true a missing prerequisite fails the test"
    );
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// Whether this is a CI run: `CI` set to `true` or `1` (any case), as CI systems set it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test, so no other test of this crate reads `CI` while it changes.
    #[test]
    fn a_missing_prerequisite_skips_locally_and_fails_in_ci() {
        // SAFETY: no other test of this crate touches the environment.
        unsafe { std::env::remove_var("CI") };
        assert!(prerequisite(true, "t", "present"));
        assert!(!prerequisite(false, "t", "missing here"));

        unsafe { std::env::set_var("CI", "true") };
        assert!(prerequisite(true, "t", "present"));
        let failed = std::panic::catch_unwind(|| prerequisite(false, "t", "missing here"));
        unsafe { std::env::remove_var("CI") };
        let message = failed.expect_err("CI=true fails a test whose tool is missing");
        let text = message
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(text.contains("missing here"), "{text}");
    }
}
