//! Admitting connections safely, shared by every accept loop in Chorus: the HTTP listener,
//! the SFU's ICE-TCP listener and the TURN relay's TCP and TLS listeners.
//!
//! Two things every listener needs before it reads a byte from a client:
//!
//! - [`Backoff`]: what to do when `accept` fails. When the process is out of file descriptors
//!   (`EMFILE`), the system is (`ENFILE`), or the kernel is out of buffers or memory
//!   (`ENOBUFS`, `ENOMEM`), the pending connection stays in the listen queue and the listener
//!   stays readable, so a loop that simply retries spins a core at 100 % and logs on every
//!   attempt. [`Backoff::failed`] says how long to stop accepting (growing from
//!   [`FIRST_PAUSE`] to [`LONGEST_PAUSE`] while the failures last) and logs at most once per
//!   [`REPORT_EVERY`] per listener, with the count of failures it did not log.
//! - [`SourceLimiter`]: a cap on connections held at once from one source, counted at accept,
//!   before any byte is read or any token checked, so one address cannot hold every descriptor
//!   with connections that never authenticate. A source is an IPv4 address or an IPv6 /64
//!   (see [`Source`]).
//!
//! Neither touches a socket or reads the clock: callers pass `now` and the error they got,
//! and carry out the pause with their own timer (a tokio sleep, a `mio` poll timeout).

mod backoff;
mod source;

pub use backoff::{Backoff, FIRST_PAUSE, Failure, LONGEST_PAUSE, REPORT_EVERY, Reporter};
pub use source::{OverCap, Source, SourceLimiter, SourcePermit};
