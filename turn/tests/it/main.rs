//! Integration tests through real sockets on 127.0.0.1: coturn's client tools against our server,
//! a Rust TURN client over UDP, TCP and TLS, the default peer policy, credentials, flood and
//! cleanup. One test binary; one module per behaviour.

mod common;
mod credentials;
mod policy;
mod relay;
mod streams;
mod uclient;
mod webrtc_client;
