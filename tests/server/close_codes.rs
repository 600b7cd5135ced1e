//! WebSocket protocol errors close with their RFC 6455 status code. Hand-made frames over a raw
//! TCP connection, after a real upgrade; the server's close frame is read and decoded here.

use crate::server::TestServer;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TEXT: u8 = 0x1;
const CONTINUATION: u8 = 0x0;
const CLOSE: u8 = 0x8;
const RSV1: u8 = 0b100;

#[tokio::test]
async fn protocol_errors_close_with_their_status_code() {
    let server = TestServer::start().await;
    let cases: [(&str, Vec<u8>, u16); 7] = [
        (
            "invalid UTF-8 in a text frame",
            frame(TEXT, 0, Mask::Yes, &[b'{', 0xff, 0xfe, b'}']),
            1007,
        ),
        (
            "an unmasked client frame",
            frame(TEXT, 0, Mask::No, br#"{"event":"activity:ping"}"#),
            1002,
        ),
        (
            "a reserved data opcode",
            frame(0x3, 0, Mask::Yes, b"{}"),
            1002,
        ),
        (
            "a reserved control opcode",
            frame(0xB, 0, Mask::Yes, b""),
            1002,
        ),
        (
            "a reserved bit without an extension",
            frame(TEXT, RSV1, Mask::Yes, b"{}"),
            1002,
        ),
        (
            "a continuation with nothing to continue",
            frame(CONTINUATION, 0, Mask::Yes, b"{}"),
            1002,
        ),
        (
            "a message over limits.max_frame_bytes",
            frame(TEXT, 0, Mask::Yes, &vec![b' '; 70 * 1024]),
            1009,
        ),
    ];
    for (what, bytes, code) in cases {
        let mut socket = upgraded(&server).await;
        socket.write_all(&bytes).await.unwrap();
        assert_eq!(close_code(&mut socket).await, Some(code), "{what}");
    }
    // A well-formed client is unaffected.
    let mut socket = upgraded(&server).await;
    socket
        .write_all(&frame(
            TEXT,
            0,
            Mask::Yes,
            br#"{"event":"activity:ping","id":1}"#,
        ))
        .await
        .unwrap();
    // (`session:ready` comes first on every connection.)
    let (opcode, payload) = loop {
        let (opcode, payload) = read_frame(&mut socket).await.expect("an ack");
        if !String::from_utf8_lossy(&payload).contains(r#""event":"session:ready""#) {
            break (opcode, payload);
        }
    };
    assert_eq!(opcode, TEXT);
    assert!(
        String::from_utf8_lossy(&payload).contains(r#""ack":1"#),
        "{payload:?}"
    );
    server.stop().await.unwrap();
}

#[derive(Clone, Copy)]
enum Mask {
    Yes,
    No,
}

/// One unfragmented frame from a client: `opcode`, reserved bits `rsv` (RSV1..3 as 0b100..0b001).
fn frame(opcode: u8, rsv: u8, mask: Mask, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | rsv << 4 | opcode];
    let masked = matches!(mask, Mask::Yes) as u8;
    match payload.len() {
        n if n < 126 => out.push(masked << 7 | n as u8),
        n if n <= 0xffff => {
            out.push(masked << 7 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(masked << 7 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Mask::Yes => {
            let key = [0x37, 0xfa, 0x21, 0x3d];
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        Mask::No => out.extend_from_slice(payload),
    }
    out
}

/// A raw TCP connection upgraded to a WebSocket at `/ws`.
async fn upgraded(server: &TestServer) -> TcpStream {
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET /ws?access_token={} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        server.token("alice"),
        server.addr
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    // The response head, byte by byte, so no frame byte after it is consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        socket.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    socket
}

/// The status code of the server's close frame (`None` if it closed without one).
async fn close_code(socket: &mut TcpStream) -> Option<u16> {
    loop {
        let (opcode, payload) = read_frame(socket).await?;
        if opcode == CLOSE {
            return payload
                .get(..2)
                .map(|code| u16::from_be_bytes([code[0], code[1]]));
        }
    }
}

/// One frame from the server (unmasked), or `None` once the connection ends.
async fn read_frame(socket: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let read = async {
        let mut header = [0u8; 2];
        socket.read_exact(&mut header).await.ok()?;
        let len = match header[1] & 0x7f {
            126 => {
                let mut n = [0u8; 2];
                socket.read_exact(&mut n).await.ok()?;
                u16::from_be_bytes(n) as usize
            }
            127 => {
                let mut n = [0u8; 8];
                socket.read_exact(&mut n).await.ok()?;
                u64::from_be_bytes(n) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        socket.read_exact(&mut payload).await.ok()?;
        Some((header[0] & 0x0f, payload))
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the server answers within 5 s")
}
