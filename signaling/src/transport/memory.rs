//! Giving memory back to the system after the server sheds a slow client, and after many
//! connections close.
//!
//! A client dropped for not reading can have held megabytes (its outbox, socketioxide's packet
//! buffer, a frame half written); ten thousand idle connections hold about 150 MB between them.
//! Once they are gone that memory is free, but glibc's allocator keeps freed memory for reuse
//! rather than returning it, so the process's RSS would stay at the peak an attack or a
//! connection storm pushed it to (measured: 9,000 raw WebSocket connections closed, RSS stayed
//! at 150 MB; one `malloc_trim` brought it to 22 MB). Three things return it:
//! - [`shrink_heaps_on_free`] (called once at start) fixes glibc's trim threshold, so the heaps
//!   of worker threads shrink as soon as their free top exceeds it. By default glibc raises that
//!   threshold (up to 64 MiB) whenever a large block is freed, and `malloc_trim` never shrinks a
//!   thread's heap from the top: the freed top would stay resident for good.
//! - [`release_soon`] asks glibc (`malloc_trim`) to return the free pages inside the heaps too,
//!   once things have settled: [`PAUSE`] after the last request, so the tasks that owned a dropped
//!   connection have let go of it, and at most [`MAX_DELAY`] after the first, so a steady stream
//!   of requests still trims. One trim at a time, however many clients are shed.
//! - [`connection_closed`], called as each signaling connection ends, asks for such a trim once
//!   every [`CLOSES_PER_TRIM`] closes: a storm of closes costs one trim at its end, and the
//!   steady churn of a busy node one every few hundred connections, not one per connection.
//!
//! Why this and not another allocator or a lower mmap threshold: ADR 0043. Elsewhere than Linux
//! with glibc both do nothing: other allocators return memory their own way.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Free memory at the top of a heap beyond which glibc gives it back on `free` (glibc's own
/// starting value, kept fixed).
pub const TRIM_THRESHOLD: usize = 128 * 1024;
/// Quiet time after the last request before the trim runs.
pub const PAUSE: Duration = Duration::from_secs(1);
/// Longest a trim waits after the first request, however many follow.
pub const MAX_DELAY: Duration = Duration::from_secs(5);

/// Connections that close between two trims they ask for.
pub const CLOSES_PER_TRIM: usize = 256;

/// Connections closed since the last trim [`connection_closed`] asked for.
static CLOSED: AtomicUsize = AtomicUsize::new(0);

/// When the pending trim is due, if one is; requests meanwhile push it back.
static DUE: Mutex<Option<Instant>> = Mutex::new(None);

/// Fixes the allocator's trim threshold at [`TRIM_THRESHOLD`]. Process-wide: the binary calls it
/// once when it starts serving. It also fixes the size from which blocks are mapped on their own
/// (128 KiB unless raised before), which glibc would otherwise raise as large blocks are freed.
pub fn shrink_heaps_on_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets allocator parameters, under the allocator's own lock.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int);
    }
}

/// Schedules a trim of the allocator's free memory [`PAUSE`] from now, joining the pending one
/// if there is one. Outside a tokio runtime it does nothing.
pub fn release_soon() {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let at = Instant::now() + PAUSE;
    let mut due = DUE.lock().unwrap_or_else(|e| e.into_inner());
    if due.replace(at).is_none() {
        runtime.spawn(trim_when_due(at + MAX_DELAY - PAUSE));
    }
}

/// Notes that a signaling connection ended; every [`CLOSES_PER_TRIM`]th asks for a trim
/// ([`release_soon`]).
pub fn connection_closed() {
    if CLOSED.fetch_add(1, Ordering::Relaxed) + 1 >= CLOSES_PER_TRIM {
        CLOSED.store(0, Ordering::Relaxed);
        release_soon();
    }
}

async fn trim_when_due(latest: Instant) {
    loop {
        let due = DUE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|at| at.min(latest));
        let Some(at) = due else { break };
        tokio::time::sleep_until(at).await;
        let mut due = DUE.lock().unwrap_or_else(|e| e.into_inner());
        if due.is_some_and(|at| at > Instant::now() && at < latest) {
            // Pushed back by a later request.
            continue;
        }
        *due = None;
        break;
    }
    // Walks the heaps: off the async workers.
    let started = std::time::Instant::now();
    let _ = tokio::task::spawn_blocking(trim).await;
    tracing::debug!(took = ?started.elapsed(), "gave free heap memory back to the system");
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: `malloc_trim` only releases memory the allocator holds as free; it takes the
    // allocator's own locks and may be called from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
