//! The gate link itself: dialect detection and replies in all three
//! dialects, heartbeats, the allow-list, hostile or broken input, ordering
//! per client and concurrency across clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_reply, config, start, Backend, Db, Gate};
use loginsrv::{code, SecurityConfig};
use mir2_proto::ids::MsgKind;
use mir2_proto::link::ServerFrame;
use mir2_proto::Dialect;

async fn db() -> Db {
    Db::new(Backend::Sqlite).await.expect("sqlite")
}

#[tokio::test]
async fn wemade_gate_gets_nul_after_each_frame() {
    let db = db().await;
    let server = start(config(&db)).await;
    let mut gate = Gate::connect(server.local_addr(), Dialect::Wemade).await;
    gate.heartbeat().await;
    let raw = gate.read_raw().await;
    // Default dialect is Delphi: before any %O the heartbeat reply has no NUL.
    assert_eq!(raw, b"%++$");
    gate.open(5).await; // two-field %O reveals Wemade
    gate.send(5, MsgKind::CmProtocol, 20_020_522, &[]).await;
    let mut raw = Vec::new();
    while !raw.ends_with(b"$\0") {
        raw.extend(gate.read_raw().await);
    }
    assert!(
        raw.starts_with(b"%5/#"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    assert!(
        raw.ends_with(b"!$\0"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    gate.heartbeat().await;
    assert_eq!(gate.read_raw().await, b"%++$\0");
    server.shutdown().await;
}

#[tokio::test]
async fn happym2_and_delphi_gates_are_served() {
    let db = db().await;
    let server = start(config(&db)).await;
    for dialect in [Dialect::HappyM2, Dialect::Delphi] {
        let mut gate = Gate::connect(server.local_addr(), dialect).await;
        gate.open(9).await;
        gate.send(9, MsgKind::CmProtocol, 20_020_522, &[]).await;
        let mut raw = Vec::new();
        while !raw.ends_with(b"$") {
            raw.extend(gate.read_raw().await);
        }
        assert!(
            raw.starts_with(b"%9/#") && !raw.contains(&0),
            "{dialect}: {raw:?}"
        );
        let user = db.account(&format!("h{}", dialect.as_str().len()));
        assert_reply(
            &gate.register(9, &user, "pw1234").await,
            MsgKind::SmNewIdSuccess,
            0,
        );
        assert_reply(
            &gate.login(9, &user, "pw1234").await,
            MsgKind::SmPassOkSelectServer,
            0,
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn gates_outside_allow_list_are_refused() {
    let db = db().await;
    let mut c = config(&db);
    c.allow_gates = vec!["10.0.0.0/8".parse().unwrap()];
    let server = start(c).await;
    let mut gate = Gate::connect(server.local_addr(), Dialect::Delphi).await;
    gate.heartbeat().await;
    assert!(
        gate.closed_by_server().await,
        "link from 127.0.0.1 must be closed"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn old_client_versions_are_refused() {
    let db = db().await;
    let mut c = config(&db);
    c.min_client_version = 20_200_101;
    let server = start(c).await;
    let mut gate = Gate::connect(server.local_addr(), Dialect::Delphi).await;
    gate.open(1).await;
    gate.send(1, MsgKind::CmProtocol, 20_190_101, &[]).await;
    assert_reply(&gate.reply(1).await, MsgKind::SmCertificationFail, 0);
    // Refused clients get no service; CM_PROTOCOL again with a good build reopens it.
    gate.send(1, MsgKind::CmIdPassword, 0, &[b"someone/pw"])
        .await;
    gate.send(1, MsgKind::CmProtocol, 20_200_101, &[]).await;
    assert_reply(&gate.reply(1).await, MsgKind::SmCertificationSuccess, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_skips_the_version_check_gets_no_service() {
    let db = db().await;
    let mut c = config(&db);
    c.min_client_version = 20_200_101;
    let server = start(c).await;
    let mut gate = Gate::connect(server.local_addr(), Dialect::Delphi).await;
    let user = db.account("skipper");
    // Registered on a connection that passed the check.
    gate.open(1).await;
    gate.send(1, MsgKind::CmProtocol, 20_200_101, &[]).await;
    assert_reply(&gate.reply(1).await, MsgKind::SmCertificationSuccess, 0);
    assert_reply(
        &gate.register(1, &user, "pw1234").await,
        MsgKind::SmNewIdSuccess,
        0,
    );
    // A connection that never sends CM_PROTOCOL: login, registration and every
    // account command go unanswered. Replies come in order, so the first reply
    // being the version check's proves none of them was served.
    gate.open(2).await;
    let other = db.account("skipper2");
    let login = format!("{user}/pw1234");
    gate.send(2, MsgKind::CmIdPassword, 0, &[login.as_bytes()])
        .await;
    gate.send(2, MsgKind::CmAddNewUser, 0, &[other.as_bytes()])
        .await;
    let change = format!("{user}\tpw1234\tpw5678");
    gate.send(2, MsgKind::CmChangePassword, 0, &[change.as_bytes()])
        .await;
    gate.send(2, MsgKind::CmGetBackPassword, 0, &[user.as_bytes()])
        .await;
    gate.send(2, MsgKind::CmSelectServer, 0, &[b"demo"]).await;
    gate.send(2, MsgKind::CmProtocol, 20_200_101, &[]).await;
    assert_reply(&gate.reply(2).await, MsgKind::SmCertificationSuccess, 0);
    // Checked now: served.
    assert_reply(
        &gate.login(2, &user, "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
    server.shutdown().await;
}

#[tokio::test]
async fn garbage_is_counted_and_others_keep_working() {
    let db = db().await;
    let server = start(config(&db)).await;
    let mut gate = Gate::connect(server.local_addr(), Dialect::Delphi).await;
    let user = db.account("ok");
    gate.open(1).await;
    gate.open(2).await;
    // Junk between frames, an unknown frame command, data for a never-opened client.
    gate.write(b"\0\0junk%Zzz$%A77/#1<<<<<I@C<<<<<<<<!$").await;
    // Forbidden bytes in a client message, a short message, an unknown ident.
    gate.send_raw(1, b"#1<<<<\x01<<!").await;
    gate.send_raw(1, b"#1<<<!").await;
    gate.send_raw(1, b"#1<<<<<<<<<<<<<<<<!").await; // ident 0
                                                    // Body that is not 6-bit text / has no '/'.
    gate.send(1, MsgKind::CmIdPassword, 0, &[b"no-slash-here"])
        .await;
    assert_reply(&gate.reply(1).await, MsgKind::SmPasswdFail, code::MALFORMED);
    // Registration with a truncated record.
    gate.send(1, MsgKind::CmAddNewUser, 0, &[b"short"]).await;
    assert_reply(&gate.reply(1).await, MsgKind::SmNewIdFail, code::INVALID);
    // Wrong field count for recovery.
    gate.send(1, MsgKind::CmGetBackPassword, 0, &[b"a\tb"])
        .await;
    assert_reply(
        &gate.reply(1).await,
        MsgKind::SmGetBackPasswdFail,
        code::NO_ACCOUNT,
    );
    // The same client, and its neighbour, are still served.
    assert_reply(
        &gate.register(1, &user, "pw1234").await,
        MsgKind::SmNewIdSuccess,
        0,
    );
    assert_reply(
        &gate.login(2, &user, "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
    server.shutdown().await;
}

#[tokio::test]
async fn oversize_frame_drops_only_that_link() {
    let db = db().await;
    let mut c = config(&db);
    c.max_link_frame_bytes = 1024;
    c.max_client_message_bytes = 512;
    let server = start(c).await;
    let mut bad = Gate::connect(server.local_addr(), Dialect::Delphi).await;
    let mut good = Gate::connect(server.local_addr(), Dialect::Delphi).await;
    let mut huge = b"%A1/#1".to_vec();
    huge.extend(std::iter::repeat_n(b'<', 4096));
    bad.write(&huge).await;
    assert!(bad.closed_by_server().await, "oversize frame ends the link");
    good.heartbeat().await;
    good.frame(|f| matches!(f, ServerFrame::HeartbeatReply))
        .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_client_order_and_cross_client_concurrency() {
    let db = db().await;
    let mut c = config(&db);
    // A cost that takes a visible while (tens of milliseconds).
    c.security = SecurityConfig {
        argon2_m_kib: 32 * 1024,
        argon2_t: 3,
        ..SecurityConfig::default()
    };
    let server = start(c).await;
    let mut gate = Gate::connect(server.local_addr(), Dialect::Delphi).await;
    let user = db.account("slow");
    gate.open(1).await;
    gate.open(2).await;
    assert_reply(
        &gate.register(1, &user, "pw1234").await,
        MsgKind::SmNewIdSuccess,
        0,
    );
    // Client 1 pipelines a (slow) login and a selection; client 2 asks something cheap.
    // All three in one write, so client 2's message arrives while client 1's
    // hash is running however loaded the machine is.
    let body = format!("{user}/pw1234");
    let mut batch = bytes::BytesMut::new();
    for (seq, (id, kind, recog, part)) in [
        (1, MsgKind::CmIdPassword, 0, body.as_bytes()),
        (1, MsgKind::CmSelectServer, 0, &b"alpha"[..]),
        (2, MsgKind::CmProtocol, 20_020_522, &b""[..]),
    ]
    .into_iter()
    .enumerate()
    {
        let header = mir2_proto::MsgHeader::new(common::IDS.id(kind), recog, 0, 0, 0);
        let mut msg = bytes::BytesMut::new();
        let parts: &[&[u8]] = if part.is_empty() { &[] } else { &[part] };
        let seq = u8::try_from(seq + 1).unwrap();
        mir2_proto::packet::write_client_packet(&mut msg, Some(seq), &header, parts);
        mir2_proto::link::write_data(Dialect::Delphi, &mut batch, id, &msg);
    }
    gate.write(&batch).await;
    // The first data frame back is client 2's: the hash did not hold it up.
    let first = gate.frame(|f| matches!(f, ServerFrame::Data { .. })).await;
    assert!(
        matches!(first, ServerFrame::Data { id: 2, .. }),
        "{first:?}"
    );
    // Client 1's replies come in its own order.
    assert_reply(&gate.reply(1).await, MsgKind::SmPassOkSelectServer, 0);
    assert_eq!(gate.reply(1).await.kind(), Some(MsgKind::SmSelectServerOk));
    server.shutdown().await;
}

#[tokio::test]
async fn id_table_overrides_apply_both_ways() {
    let db = db().await;
    let mut c = config(&db);
    c.ids.insert("CM_GETBACKPASSWORD".into(), 2010);
    c.ids.insert("SM_GETBACKPASSWD_FAIL".into(), 5006);
    let server = start(c).await;
    let mut gate = Gate::connect(server.local_addr(), Dialect::Delphi).await;
    gate.open(1).await;
    gate.send_ident(1, 2010, &[b"nobody\tq\ta\tq\ta\tb"]).await;
    let r = gate.reply(1).await;
    assert_eq!(r.header.ident, 5006, "{r:?}");
    assert_eq!(r.header.recog, code::NO_ACCOUNT);
    // The Delphi id of CM_GETBACKPASSWORD is no longer that message.
    gate.send_ident(1, 5003, &[b"nobody\tq\ta\tq\ta\tb"]).await;
    gate.send(1, MsgKind::CmProtocol, 20_020_522, &[]).await;
    assert_reply(&gate.reply(1).await, MsgKind::SmCertificationSuccess, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn session_ids_expire_and_free_capacity() {
    let db = db().await;
    let mut c = config(&db);
    c.session_ttl_secs = 1;
    let server = start(c).await;
    let mut gate = Gate::connect(server.local_addr(), Dialect::Delphi).await;
    let user = db.account("ttl");
    gate.open(1).await;
    assert_reply(
        &gate.register(1, &user, "pw1234").await,
        MsgKind::SmNewIdSuccess,
        0,
    );
    assert_reply(
        &gate.login(1, &user, "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
    // "传奇" has capacity 1.
    let sel = gate.select(1, "传奇").await;
    let sid = sel.header.recog;
    assert_eq!(server.session_account(sid), Some(user.clone()));
    assert_eq!(server.sessions_in_use("传奇"), 1);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(server.session_account(sid), None, "expired");
    assert_eq!(server.sessions_in_use("传奇"), 0);
    assert_eq!(
        gate.select(1, "传奇").await.kind(),
        Some(MsgKind::SmSelectServerOk)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn clients_beyond_max_clients_per_gate_are_kicked() {
    let db = db().await;
    let mut c = config(&db);
    c.max_clients_per_gate = 2;
    let server = start(c).await;
    let mut gate = Gate::connect(server.local_addr(), Dialect::Delphi).await;
    gate.open(1).await;
    gate.open(2).await;
    gate.open(3).await;
    gate.kicked(3).await;
    gate.send(2, MsgKind::CmProtocol, 20_020_522, &[]).await;
    assert_reply(&gate.reply(2).await, MsgKind::SmCertificationSuccess, 0);
    // Closing one frees a slot once its task has ended.
    gate.close(1).await;
    let mut served = false;
    for id in 10..60 {
        gate.open(id).await;
        gate.send(id, MsgKind::CmProtocol, 20_020_522, &[]).await;
        let f = gate
            .frame(|f| matches!(f, ServerFrame::Data { id: i, .. } | ServerFrame::Kick { id: i } if *i == id))
            .await;
        if matches!(f, ServerFrame::Data { .. }) {
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(served, "a slot frees after a close");
    server.shutdown().await;
}

#[tokio::test]
async fn random_frames_never_break_the_link() {
    use rand::{Rng as _, SeedableRng as _};
    let db = db().await;
    let server = start(config(&db)).await;
    let mut gate = Gate::connect(server.local_addr(), Dialect::Delphi).await;
    gate.open(1).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6d69_7232);
    let alphabet: &[u8] =
        b"%$#!*/0123456789AOXDNC+-<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcxyz{\0\xff\r\n";
    for _ in 0..500 {
        let len = rng.random_range(0..64);
        let junk: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())])
            .collect();
        if rng.random_bool(0.5) {
            // As client 1's data, so client parsing sees it too.
            let mut frame = b"%A1/".to_vec();
            frame.extend(junk.iter().filter(|&&b| b != b'$' && b != b'%'));
            frame.push(b'$');
            gate.write(&frame).await;
        } else {
            gate.write(&junk).await;
        }
    }
    // Close any frame the junk left open, then check the link and a new client.
    gate.write(b"$").await;
    let user = db.account("after");
    gate.open(2).await;
    assert_reply(
        &gate.register(2, &user, "pw1234").await,
        MsgKind::SmNewIdSuccess,
        0,
    );
    assert_reply(
        &gate.login(2, &user, "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
    server.shutdown().await;
}

#[tokio::test]
async fn per_ip_hash_budget() {
    let db = db().await;
    let mut c = config(&db);
    c.security.hashes_per_ip_per_minute = 3;
    let server = start(c).await;
    let mut gate = Gate::connect(server.local_addr(), Dialect::Delphi).await;
    let user = db.account("ipb");
    gate.open(1).await;
    assert_reply(
        &gate.register(1, &user, "pw1234").await,
        MsgKind::SmNewIdSuccess,
        0,
    );
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(gate.login(1, &user, "wrong").await.header.recog);
    }
    // Register used one unit; two wrong guesses, then the budget is gone.
    // (A minute boundary between the calls would reset it: allow that.)
    assert_eq!(codes[..2], [code::WRONG_PASSWORD, code::WRONG_PASSWORD]);
    assert!(codes[2..].contains(&code::SERVER_ERROR), "{codes:?}");
    // Unknown accounts cost no hash and are still answered.
    assert_reply(
        &gate.login(1, &db.account("zz"), "x").await,
        MsgKind::SmPasswdFail,
        code::NO_ACCOUNT,
    );
    server.shutdown().await;
}
