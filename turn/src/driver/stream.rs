//! One TCP or TLS client connection: framing (RFC 8656 §3.1) and buffered writes.
//!
//! Lifecycle: accepted and registered by the worker; [`Conn::fill`] appends received bytes (TLS
//! decrypted) to the input buffer, the worker cuts complete frames out of it; [`Conn::queue`]
//! buffers whole frames up to [`MAX_PENDING`] and [`Conn::flush`] writes them, once per loop
//! iteration; any I/O error or EOF closes the connection, which deletes its allocation.
//! A connection holds its source's slot ([`SourcePermit`]) until it is dropped, and counts as
//! greeted from its first complete frame (the worker closes connections that stay ungreeted
//! past `Settings::stream_handshake_timeout`).

use std::io::{self, ErrorKind, Read, Write};

use admission::SourcePermit;
use mio::net::TcpStream;

use crate::core::FiveTuple;

/// Most bytes queued for a slow reader; frames beyond it are dropped whole (like UDP loss)
/// rather than letting one client grow our memory.
pub const MAX_PENDING: usize = 1 << 20;

/// Outcome of [`Conn::queue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// First bytes queued since the last flush: schedule a flush.
    First,
    /// Appended behind bytes already queued.
    More,
    /// Over [`MAX_PENDING`]: dropped whole.
    Dropped,
}

/// Outcome of [`Conn::fill`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// New bytes are in the input buffer; more may follow.
    Data,
    /// New bytes are in the input buffer and the socket is empty.
    Drained,
    /// Nothing more to read now.
    WouldBlock,
}

pub struct Conn {
    stream: TcpStream,
    five: FiveTuple,
    tls: Option<rustls::ServerConnection>,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Plaintext handed to rustls since its ciphertext queue was last empty.
    tls_pending: usize,
    /// Tells this connection from a later one in the same slot.
    serial: u64,
    /// A complete frame has arrived (for TLS, after the handshake).
    greeted: bool,
    _permit: SourcePermit,
}

impl Conn {
    pub fn new(
        stream: TcpStream,
        five: FiveTuple,
        tls: Option<rustls::ServerConnection>,
        serial: u64,
        permit: SourcePermit,
    ) -> Conn {
        Conn {
            stream,
            five,
            tls,
            input: Vec::new(),
            output: Vec::new(),
            tls_pending: 0,
            serial,
            greeted: false,
            _permit: permit,
        }
    }

    pub fn five(&self) -> FiveTuple {
        self.five
    }

    pub fn serial(&self) -> u64 {
        self.serial
    }

    pub fn greeted(&self) -> bool {
        self.greeted
    }

    /// Records that a complete frame arrived.
    pub fn greet(&mut self) {
        self.greeted = true;
    }

    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Reads what is available (one socket read) into the input buffer, using `scratch`.
    pub fn fill(&mut self, scratch: &mut [u8]) -> io::Result<Fill> {
        match &mut self.tls {
            None => match self.stream.read(scratch) {
                Ok(0) => Err(ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    self.input.extend_from_slice(&scratch[..n]);
                    // A short read drained the socket; on Linux new data re-arms the edge, so
                    // skipping the final EAGAIN read is safe and saves a syscall per wake-up.
                    Ok(if n < scratch.len() && cfg!(target_os = "linux") {
                        Fill::Drained
                    } else {
                        Fill::Data
                    })
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(Fill::WouldBlock),
                Err(e) if e.kind() == ErrorKind::Interrupted => Ok(Fill::Data),
                Err(e) => Err(e),
            },
            Some(tls) => {
                match tls.read_tls(&mut self.stream) {
                    Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Fill::WouldBlock),
                    Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(Fill::Data),
                    Err(e) => return Err(e),
                }
                let state = tls.process_new_packets();
                if let Err(e) = state {
                    // Send the alert before closing.
                    let _ = tls.write_tls(&mut self.stream);
                    return Err(io::Error::new(ErrorKind::InvalidData, e));
                }
                loop {
                    match tls.reader().read(scratch) {
                        Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                        Ok(n) => self.input.extend_from_slice(&scratch[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                self.flush()?;
                Ok(Fill::Data)
            }
        }
    }

    /// Moves the input buffer out (so frames can be handled while the connection is borrowed
    /// elsewhere); give it back with [`Conn::restore_input`].
    pub fn take_input(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.input)
    }

    /// Returns the input buffer, minus the first `consumed` bytes.
    pub fn restore_input(&mut self, mut input: Vec<u8>, consumed: usize) {
        input.drain(..consumed);
        self.input = input;
    }

    /// Queues one whole frame, or drops it if too much is already queued. Nothing is written
    /// until [`Conn::flush`], so frames produced in one loop iteration share one write.
    /// Returns whether the connection was idle before (so the caller schedules one flush).
    pub fn queue(&mut self, frame: &[u8]) -> io::Result<Queued> {
        let was_idle = self.output.is_empty() && self.tls_pending == 0;
        match &mut self.tls {
            None => {
                if self.output.len() + frame.len() > MAX_PENDING {
                    return Ok(Queued::Dropped);
                }
                self.output.extend_from_slice(frame);
            }
            Some(tls) => {
                if self.tls_pending + frame.len() > MAX_PENDING {
                    return Ok(Queued::Dropped);
                }
                tls.writer().write_all(frame)?;
                self.tls_pending += frame.len();
            }
        }
        Ok(if was_idle {
            Queued::First
        } else {
            Queued::More
        })
    }

    /// Writes queued bytes until done or the socket would block.
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.tls {
            None => {
                while !self.output.is_empty() {
                    match self.stream.write(&self.output) {
                        Ok(0) => return Err(ErrorKind::WriteZero.into()),
                        Ok(n) => {
                            self.output.drain(..n);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            Some(tls) => {
                while tls.wants_write() {
                    match tls.write_tls(&mut self.stream) {
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                self.tls_pending = 0;
                Ok(())
            }
        }
    }
}
