//! Shutdown by signal: the first SIGTERM or SIGINT starts the graceful drain; a second one,
//! while the drain runs, ends the process at once.
//!
//! Why the second: a drain waits up to `server.drain_timeout` for clients to leave, and an
//! operator (or a supervisor escalating) who signals again wants the process gone now, not
//! after the timeout. The exit code is the one a shell reports for a process killed by that
//! signal, 128 + its number: 143 for SIGTERM, 130 for SIGINT, so a supervisor can tell a forced
//! exit from a clean one (0) or a failure (1, 2). Nothing is lost that a crash would not lose:
//! acked chat messages are already committed.

/// Resolves on the first SIGTERM or SIGINT, and from then on exits the process at the next
/// one. The handlers are installed when this is first polled.
pub async fn requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut interrupt)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::warn!("cannot install SIGTERM/SIGINT handlers; stop chorus with SIGKILL");
            return std::future::pending().await;
        };
        let first = next(&mut term, &mut interrupt).await;
        tracing::info!(
            signal = first.name(),
            "shutting down; send SIGTERM or SIGINT again to exit at once without draining"
        );
        tokio::spawn(async move {
            let second = next(&mut term, &mut interrupt).await;
            exit_now(second);
        });
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tokio::spawn(async {
            let _ = tokio::signal::ctrl_c().await;
            exit_now(Signal::Interrupt);
        });
    }
}

#[cfg(unix)]
async fn next(
    term: &mut tokio::signal::unix::Signal,
    interrupt: &mut tokio::signal::unix::Signal,
) -> Signal {
    tokio::select! {
        _ = term.recv() => Signal::Term,
        _ = interrupt.recv() => Signal::Interrupt,
    }
}

/// A shutdown signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Term,
    Interrupt,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Term => "SIGTERM",
            Signal::Interrupt => "SIGINT",
        }
    }

    /// 128 + the signal's number, as a shell reports a process that signal killed.
    pub fn exit_code(self) -> i32 {
        match self {
            Signal::Term => 128 + 15,
            Signal::Interrupt => 128 + 2,
        }
    }
}

fn exit_now(signal: Signal) -> ! {
    tracing::warn!(
        signal = signal.name(),
        code = signal.exit_code(),
        "second shutdown signal: exiting now without finishing the drain"
    );
    std::process::exit(signal.exit_code())
}
