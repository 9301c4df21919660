//! `echo`: every whole `#…!` message read on a connection is written back on it.
//!
//! No parsing beyond finding the last `!` of each read: the echo is the
//! ceiling the proxies are measured against, so it does as little as it can.
//! Everything up to that `!` goes back in one write; the partial tail waits.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Read buffer per connection; grows only while a message is longer than this.
const READ_BUFFER_BYTES: usize = 16 * 1024;

pub async fn serve(listener: TcpListener, max_message_bytes: usize) -> anyhow::Result<()> {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                eprintln!("echo: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(echo_connection(stream, max_message_bytes));
    }
}

async fn echo_connection(mut stream: TcpStream, max_message_bytes: usize) {
    let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    loop {
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(READ_BUFFER_BYTES);
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let Some(last) = memchr::memrchr(b'!', &buf) else {
            if buf.len() > max_message_bytes {
                return; // a message without an end: the peer is not a client
            }
            continue;
        };
        let whole = last + 1;
        if stream.write_all(&buf[..whole]).await.is_err() {
            return;
        }
        buf.advance(whole);
    }
}
