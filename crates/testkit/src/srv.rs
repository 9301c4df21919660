//! A scripted LoginSrv: a plain listener the gate links to, reading and
//! writing the link's raw bytes so a test states every frame exactly.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use mir2_proto::MsgHeader;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::STEP;

/// The scripted LoginSrv's listening side.
pub struct Srv {
    pub listener: TcpListener,
}

impl Srv {
    pub async fn bind() -> Srv {
        Srv {
            listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    pub async fn bind_at(addr: SocketAddr) -> Srv {
        Srv {
            listener: TcpListener::bind(addr).await.unwrap(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap()
    }

    /// Accept the gate's link.
    pub async fn accept(&self) -> SrvConn {
        let (stream, _) = tokio::time::timeout(STEP, self.listener.accept())
            .await
            .expect("gate connects to the LoginSrv in time")
            .unwrap();
        SrvConn {
            stream,
            buf: BytesMut::new(),
        }
    }
}

/// One link connection as seen by the scripted LoginSrv.
pub struct SrvConn {
    pub stream: TcpStream,
    pub buf: BytesMut,
}

impl SrvConn {
    /// The next frame, exact bytes from `%` to `$`. The gate writes frames
    /// back to back, so anything else in between is a failure.
    pub async fn frame(&mut self) -> Vec<u8> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'$') {
                assert_eq!(
                    self.buf.first(),
                    Some(&b'%'),
                    "gate wrote bytes outside a frame: {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
                let f = self.buf.split_to(end + 1).to_vec();
                return f;
            }
            let n = tokio::time::timeout(STEP, self.stream.read_buf(&mut self.buf))
                .await
                .expect("a frame from the gate in time")
                .unwrap();
            assert!(
                n > 0,
                "link closed while waiting for a frame; have {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    /// The next frame that is not a heartbeat.
    pub async fn frame_no_hb(&mut self) -> Vec<u8> {
        loop {
            let f = self.frame().await;
            if f != b"%--$" {
                return f;
            }
        }
    }

    /// Next frame as text (the gate only writes ASCII).
    pub async fn text(&mut self) -> String {
        String::from_utf8(self.frame().await).unwrap()
    }

    /// The next frame must be an open frame; returns the session id.
    pub async fn open_id(&mut self) -> u32 {
        let f = self.text().await;
        open_id(&f)
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Nothing arrives for `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        assert!(
            self.buf.is_empty(),
            "unexpected bytes {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        match tokio::time::timeout(d, self.stream.read_buf(&mut self.buf)).await {
            Err(_) => {}
            Ok(r) => panic!(
                "expected silence, got {:?} {:?}",
                r,
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// The gate closes the link (EOF or reset), possibly after more frames;
    /// returns the frames received before the end.
    pub async fn frames_until_eof(&mut self) -> Vec<String> {
        let mut frames = Vec::new();
        loop {
            while let Some(end) = self.buf.iter().position(|&b| b == b'$') {
                frames.push(String::from_utf8(self.buf.split_to(end + 1).to_vec()).unwrap());
            }
            match tokio::time::timeout(STEP, self.stream.read_buf(&mut self.buf))
                .await
                .expect("link ends in time")
            {
                Ok(0) | Err(_) => {
                    assert!(self.buf.is_empty(), "partial frame at EOF");
                    return frames;
                }
                Ok(_) => {}
            }
        }
    }
}

/// The id of an open frame `%O<id>/…$`, `%N<id>/…$` or `%L<id>/…$`.
pub fn open_id(frame: &str) -> u32 {
    assert!(
        ["%O", "%N", "%L"].iter().any(|p| frame.starts_with(p)),
        "not an open frame: {frame:?}"
    );
    let rest = &frame[2..];
    let end = rest.find('/').expect("open frame has '/'");
    rest[..end].parse().expect("numeric id")
}

/// A client message `#1<header>!` whose header carries `n` (so every
/// client's message is distinct).
pub fn client_msg(n: i32) -> Vec<u8> {
    let mut m = b"#1".to_vec();
    m.extend_from_slice(&MsgHeader::new(2001, n, 0, 0, 0).encode());
    m.extend_from_slice(b"YSIaX^ylTSIo!");
    m
}

/// A server message `#<header>!` carrying `n`.
pub fn server_msg(n: i32) -> Vec<u8> {
    let mut m = b"#".to_vec();
    m.extend_from_slice(&MsgHeader::new(530, n, 0, 0, 0).encode());
    m.push(b'!');
    m
}

/// The PROTOCOL.md login example.
pub const LOGIN: &[u8] = b"#1<<<<<I@C<<<<<<<<YSIaX^ylTSIo!";
/// The PROTOCOL.md server reply example.
pub const REPLY: &[u8] = b"#JO<<<=D><<<<<<<<HODsG_<jH>tmGoXmH?<kHODoI?P!";
