//! Client-facing behaviour against a scripted LoginSrv: exact frames in every
//! preset, stream framing, routing, kicks, blocks, and every way a
//! client gets itself closed without disturbing its neighbours.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use logingate::config::Dialect;
use tokio::io::AsyncWriteExt;

fn dialect_frames(d: Dialect, id: u32) -> (String, String, String, &'static [u8]) {
    let login = String::from_utf8(LOGIN.to_vec()).unwrap();
    match d {
        Dialect::Wemade => (
            format!("%O{id}/127.0.0.1$"),
            format!("%A{id}/{login}$"),
            format!("%X{id}$"),
            b"\0",
        ),
        Dialect::Delphi => (
            format!("%O{id}/127.0.0.1/127.0.0.1$"),
            format!("%A{id}/{login}$"),
            format!("%X{id}$"),
            b"",
        ),
        Dialect::HappyM2 => (
            format!("%N{id}/127.0.0.1/127.0.0.1$"),
            format!("%D{id}/{login}$"),
            format!("%C{id}$"),
            b"",
        ),
        Dialect::Ldx => (
            format!("%L{id}/127.0.0.1/127.0.0.1$"),
            format!("%D{id}/{login}$"),
            format!("%X{id}$"),
            b"",
        ),
    }
}

async fn open_data_reply_close(d: Dialect) {
    let (gate, _srv, mut link) = gate_with_srv(|_| {}, d).await;
    let mut client = connect(gate_addr(&gate)).await;
    let open = link.text().await;
    let id = open_id(&open);
    let (want_open, want_data, want_close, reply_tail) = dialect_frames(d, id);
    assert_eq!(open, want_open);

    client.write_all(LOGIN).await.unwrap();
    assert_eq!(link.text().await, want_data);

    let mut reply = format!("%{id}/").into_bytes();
    reply.extend_from_slice(REPLY);
    reply.push(b'$');
    reply.extend_from_slice(reply_tail);
    link.send(&reply).await;
    assert_eq!(read_n(&mut client, REPLY.len()).await, REPLY);

    drop(client);
    assert_eq!(link.text().await, want_close);
    link.expect_silence(Duration::from_millis(100)).await;
    eventually("session gone", || gate.sessions().is_empty()).await;
    assert_eq!(gate.counts().closed("peer_closed"), 1);
}

#[tokio::test]
async fn wemade_frames_are_exact() {
    open_data_reply_close(Dialect::Wemade).await;
}

#[tokio::test]
async fn delphi_frames_are_exact() {
    open_data_reply_close(Dialect::Delphi).await;
}

#[tokio::test]
async fn happym2_frames_are_exact() {
    open_data_reply_close(Dialect::HappyM2).await;
}

#[tokio::test]
async fn ldx_frames_are_exact() {
    open_data_reply_close(Dialect::Ldx).await;
}

#[tokio::test]
async fn split_and_coalesced_messages_each_become_one_frame() {
    let (gate, _srv, mut link) = gate_with_srv(|_| {}, Dialect::Delphi).await;
    let mut client = connect(gate_addr(&gate)).await;
    let id = link.open_id().await;

    // One message dribbled a few bytes per write.
    let m0 = client_msg(0);
    for chunk in m0.chunks(5) {
        client.write_all(chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    // Three messages, Delphi `*` acks and a split tail in one write.
    let (m1, m2, m3, m4) = (client_msg(1), client_msg(2), client_msg(3), client_msg(4));
    let mut burst = Vec::new();
    burst.extend_from_slice(&m1);
    burst.push(b'*');
    burst.extend_from_slice(&m2);
    burst.extend_from_slice(&m3);
    burst.push(b'*');
    burst.extend_from_slice(&m4[..10]);
    client.write_all(&burst).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    client.write_all(&m4[10..]).await.unwrap();

    for m in [&m0, &m1, &m2, &m3, &m4] {
        let want = format!("%A{id}/{}$", String::from_utf8_lossy(m));
        assert_eq!(link.text().await, want);
    }
    link.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn replies_reach_the_right_client_among_1000() {
    const N: usize = 1000;
    let (gate, _srv, mut link) =
        gate_with_srv(|c| c.gate.max_connections = 2 * N, Dialect::Wemade).await;
    let addr = gate_addr(&gate);

    let mut clients = Vec::with_capacity(N);
    for _ in 0..N {
        clients.push(connect(addr).await);
        link.open_id().await;
    }
    // Each client says who it is; the LoginSrv learns id -> client.
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(&client_msg(i as i32)).await.unwrap();
    }
    let mut who: HashMap<u32, i32> = HashMap::new();
    for _ in 0..N {
        let f = link.text().await;
        let body = f.strip_prefix("%A").expect("data frame");
        let (id, msg) = body.split_once('/').unwrap();
        let msg = msg.strip_suffix('$').unwrap().as_bytes();
        let i = (0..N as i32)
            .find(|&i| client_msg(i) == msg)
            .expect("known message");
        who.insert(id.parse().unwrap(), i);
    }
    assert_eq!(who.len(), N);

    // All replies in one write, in an order unlike the connect order, with
    // Wemade's 0x00 after each and replies for ids nobody has.
    let mut batch = Vec::new();
    let mut ids: Vec<_> = who.iter().map(|(&id, &i)| (id, i)).collect();
    ids.sort_by_key(|&(id, _)| std::cmp::Reverse(id));
    for (n, &(id, i)) in ids.iter().enumerate() {
        batch.extend_from_slice(format!("%{id}/").as_bytes());
        batch.extend_from_slice(&server_msg(i));
        batch.extend_from_slice(b"$\0");
        if n % 250 == 0 {
            batch.extend_from_slice(format!("%{}/", 900_000 + n).as_bytes());
            batch.extend_from_slice(&server_msg(-1));
            batch.extend_from_slice(b"$\0");
        }
    }
    link.send(&batch).await;
    for (i, c) in clients.iter_mut().enumerate() {
        let want = server_msg(i as i32);
        assert_eq!(read_n(c, want.len()).await, want, "client {i}");
    }
    eventually("unknown replies counted", || {
        gate.link().stats().replies_dropped == 4
    })
    .await;
}

#[tokio::test]
async fn kick_delivers_pending_reply_then_closes() {
    let (gate, _srv, mut link) = gate_with_srv(|_| {}, Dialect::Delphi).await;
    let mut client = connect(gate_addr(&gate)).await;
    let mut neighbour = connect(gate_addr(&gate)).await;
    let id = link.open_id().await;
    let nid = link.open_id().await;

    let mut order = format!("%{id}/").into_bytes();
    order.extend_from_slice(REPLY);
    order.extend_from_slice(format!("$%+-{id}$").as_bytes());
    link.send(&order).await;

    assert_eq!(read_to_close(&mut client).await, REPLY);
    assert_eq!(link.text().await, format!("%X{id}$"));
    assert_eq!(gate.counts().closed("kicked"), 1);

    // A kick for an id nobody has is counted, nothing else happens.
    link.send(b"%+-999999$").await;
    eventually("unknown kick counted", || {
        gate.link().stats().replies_dropped == 1
    })
    .await;
    neighbour.write_all(LOGIN).await.unwrap();
    assert_eq!(
        link.text().await,
        format!("%A{nid}/{}$", String::from_utf8_lossy(LOGIN))
    );
}

#[tokio::test]
async fn temporary_block_refuses_the_ip_until_it_expires() {
    let (gate, _srv, mut link) =
        gate_with_srv(|c| c.gate.temp_block_secs = 2, Dialect::HappyM2).await;
    let addr = gate_addr(&gate);
    let mut client = connect(addr).await;
    let id = link.open_id().await;

    link.send(format!("%+B{id}$").as_bytes()).await;
    assert!(read_to_close(&mut client).await.is_empty());
    assert_eq!(link.text().await, format!("%C{id}$"));

    // Refused at admission: closed at once, the LoginSrv hears nothing.
    let mut again = connect(addr).await;
    assert!(read_to_close(&mut again).await.is_empty());
    link.expect_silence(Duration::from_millis(50)).await;

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let _back = connect(addr).await;
    let id2 = link.open_id().await;
    assert!(id2 > id);
}

#[tokio::test]
async fn permanent_block_is_recorded_and_the_file_is_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blocked.txt");
    std::fs::write(&file, "# operators' list\n10.9.8.7\n").unwrap();
    let path = file.to_str().unwrap().to_owned();
    let (gate, _srv, mut link) = gate_with_srv(
        |c| {
            c.gate.block_list_file = path;
            c.gate.block_list_poll_secs = 1;
        },
        Dialect::HappyM2,
    )
    .await;
    let addr = gate_addr(&gate);
    assert!(gate.admission().is_blocked("10.9.8.7".parse().unwrap()));

    let mut client = connect(addr).await;
    let id = link.open_id().await;
    link.send(format!("%+T{id}$").as_bytes()).await;
    assert!(read_to_close(&mut client).await.is_empty());
    assert_eq!(link.text().await, format!("%C{id}$"));
    let mut refused = connect(addr).await;
    assert!(read_to_close(&mut refused).await.is_empty());

    // Recorded in the file.
    eventually("block appended", || {
        std::fs::read_to_string(&file)
            .map(|t| t.lines().any(|l| l.starts_with("127.0.0.1 #")))
            .unwrap_or(false)
    })
    .await;

    // The operator edits the file: the static list follows it.
    std::fs::write(&file, "10.1.0.0/16\nbogus line\n").unwrap();
    eventually("reloaded", || {
        gate.admission().is_blocked("10.1.2.3".parse().unwrap())
            && !gate.admission().is_blocked("10.9.8.7".parse().unwrap())
    })
    .await;
    // The LoginSrv's permanent block stays (it is not a file entry).
    assert!(gate.admission().is_blocked("127.0.0.1".parse().unwrap()));
}

/// Sends `prefix` + `bad` in one write; `prefix` (valid messages) must be
/// forwarded, nothing of `bad`, and the client closed with `reason`.
async fn offender(
    gate: &logingate::app::Gate,
    link: &mut SrvConn,
    prefix: &[u8],
    bad: &[u8],
    forwarded: usize,
) {
    let mut c = connect(gate_addr(gate)).await;
    let id = link.open_id().await;
    let mut bytes = prefix.to_vec();
    bytes.extend_from_slice(bad);
    c.write_all(&bytes).await.unwrap();
    for _ in 0..forwarded {
        let f = link.text().await;
        assert!(f.starts_with(&format!("%A{id}/#1")), "{f:?}");
    }
    assert_eq!(
        link.text().await,
        format!("%X{id}$"),
        "offender {:?} closed",
        String::from_utf8_lossy(bad)
    );
    read_to_close(&mut c).await;
}

#[tokio::test]
async fn injection_attempts_never_reach_the_server() {
    let (gate, _srv, mut link) = gate_with_srv(|_| {}, Dialect::Wemade).await;
    let mut neighbour = connect(gate_addr(&gate)).await;
    let nid = link.open_id().await;
    let good = client_msg(7);

    let header = mir2_proto::MsgHeader::new(2001, 0, 0, 0, 0).encode();
    let msg_with = |inner: &[u8]| {
        let mut m = b"#1".to_vec();
        m.extend_from_slice(&header);
        m.extend_from_slice(inner);
        m.push(b'!');
        m
    };
    // Closing the neighbour's session from inside a message.
    offender(
        &gate,
        &mut link,
        &good,
        &msg_with(format!("%X{nid}$").as_bytes()),
        1,
    )
    .await;
    // Inventing a session between messages.
    offender(&gate, &mut link, b"", b"$%O9/1.2.3.4$", 0).await;
    // A NUL, as the C++ gate's own padding.
    offender(&gate, &mut link, &good, &msg_with(b"\0<<"), 1).await;
    // GBK text where only 6-bit text may be.
    offender(&gate, &mut link, b"", &msg_with(b"\xB0\xA1"), 0).await;
    // The id separator.
    offender(&gate, &mut link, &good, &msg_with(b"/1"), 1).await;
    assert_eq!(gate.counts().closed("forbidden_byte"), 5);

    neighbour.write_all(&good).await.unwrap();
    assert_eq!(
        link.text().await,
        format!("%A{nid}/{}$", String::from_utf8_lossy(&good))
    );
    link.expect_silence(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn oversize_short_and_flooding_clients_are_closed() {
    let (gate, _srv, mut link) = gate_with_srv(
        |c| {
            c.gate.max_packet_bytes = 64;
            c.gate.max_packets_per_sec = 5;
        },
        Dialect::Delphi,
    )
    .await;
    let good = client_msg(1);
    // A message that never ends.
    let mut endless = b"#1".to_vec();
    endless.extend_from_slice(&[b'<'; 100]);
    offender(&gate, &mut link, &good, &endless, 1).await;
    // A whole message over the limit.
    let mut long = b"#1".to_vec();
    long.extend_from_slice(&[b'<'; 70]);
    long.push(b'!');
    offender(&gate, &mut link, b"", &long, 0).await;
    // Shorter than a header.
    offender(&gate, &mut link, &good, b"#1<<<!", 1).await;
    // Six messages at once: five pass, the sixth closes the session.
    let mut five = Vec::new();
    for _ in 0..5 {
        five.extend_from_slice(&good);
    }
    offender(&gate, &mut link, &five, &good, 5).await;

    assert_eq!(gate.counts().closed("oversize"), 2);
    assert_eq!(gate.counts().closed("short_packet"), 1);
    assert_eq!(gate.counts().closed("flooding"), 1);
}

#[tokio::test]
async fn slow_reader_is_closed_and_neighbours_are_served() {
    let (gate, _srv, mut link) = gate_with_srv(
        |c| {
            c.gate.max_outbound_bytes = 64 * 1024;
        },
        Dialect::Delphi,
    )
    .await;
    let addr = gate_addr(&gate);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let _slow = socket.connect(addr).await.unwrap();
    let sid = link.open_id().await;
    let mut neighbour = connect(addr).await;
    let nid = link.open_id().await;

    // Far more than kernel buffers and the gate's queue can hold.
    let mut reply = format!("%{sid}/#").into_bytes();
    reply.extend_from_slice(&[b'<'; 8000]);
    reply.extend_from_slice(b"!$");
    let (mut rd, mut wr) = link.stream.into_split();
    let writer = tokio::spawn(async move {
        for _ in 0..4000 {
            if wr.write_all(&reply).await.is_err() {
                break;
            }
        }
        wr
    });
    let mut seen = bytes::BytesMut::new();
    let close = format!("%X{sid}$");
    loop {
        let n = tokio::time::timeout(STEP, tokio::io::AsyncReadExt::read_buf(&mut rd, &mut seen))
            .await
            .expect("slow reader closed in time")
            .unwrap();
        assert!(n > 0);
        if seen.windows(close.len()).any(|w| w == close.as_bytes()) {
            break;
        }
    }
    let mut wr = writer.await.unwrap();
    assert_eq!(gate.counts().closed("slow_reader"), 1);

    // The neighbour is unaffected.
    wr.write_all(format!("%{nid}/").as_bytes()).await.unwrap();
    wr.write_all(REPLY).await.unwrap();
    wr.write_all(b"$").await.unwrap();
    assert_eq!(read_n(&mut neighbour, REPLY.len()).await, REPLY);
    expect_open(&mut neighbour, Duration::from_millis(50)).await;
}

#[tokio::test]
async fn gate_limits_reach_the_core() {
    let (gate, _srv, mut link) = gate_with_srv(
        |c| {
            c.gate.max_conn_per_ip = 2;
            c.gate.first_packet_timeout_secs = 1;
        },
        Dialect::Wemade,
    )
    .await;
    let addr = gate_addr(&gate);
    let mut a = connect(addr).await;
    // `a` speaks at once, `b` stays silent past first_packet_timeout_secs.
    a.write_all(LOGIN).await.unwrap();
    let ida = link.open_id().await;
    assert_eq!(
        link.text().await,
        format!("%A{ida}/{}$", String::from_utf8_lossy(LOGIN))
    );
    let mut b = connect(addr).await;
    let idb = link.open_id().await;
    // A third from the same IP is refused before any open frame.
    let mut c = connect(addr).await;
    assert!(read_to_close(&mut c).await.is_empty());

    assert!(read_to_close(&mut b).await.is_empty());
    assert_eq!(link.text().await, format!("%X{idb}$"));
    assert_eq!(gate.counts().closed("first_packet_timeout"), 1);
    expect_open(&mut a, Duration::from_millis(50)).await;
}
