//! The LoginSrv over a scripted gate link: every login message, its
//! failure codes, lockout, duplicate login, persistence. Each test runs on
//! SQLite and, when `DATABASE_URL` is a postgres:// URL, on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{assert_reply, config, start, Backend, Db, Gate};
use loginsrv::code;
use mir2_proto::ids::MsgKind;
use mir2_proto::Dialect;

macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Backend::Sqlite).await } )+
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Backend::Postgres).await } )+
        }
    };
}

both_backends!(
    register_login_select,
    lockout_and_expiry,
    duplicate_login_kicks_the_first,
    change_password,
    get_back_password,
    update_user,
    persists_across_restart,
    simultaneous_recoveries_one_wins,
    look_alike_names_are_one_account,
);

async fn register_login_select(backend: Backend) {
    let Some(db) = Db::new(backend).await else {
        return;
    };
    let server = start(config(&db)).await;
    let mut gate = Gate::connect(server.local_addr(), Dialect::Delphi).await;
    let user = db.account("alice");
    gate.open(1).await;

    assert_reply(
        &gate.register(1, &user, "pw1234").await,
        MsgKind::SmNewIdSuccess,
        0,
    );
    // Same name again, also in another letter case.
    assert_reply(
        &gate.register(1, &user, "other").await,
        MsgKind::SmNewIdFail,
        code::NEWID_EXISTS,
    );
    assert_reply(
        &gate.register(1, &user.to_uppercase(), "other").await,
        MsgKind::SmNewIdFail,
        code::NEWID_EXISTS,
    );
    // Invalid name and too-short password.
    assert_reply(
        &gate.register(1, "bad$name", "pw1234").await,
        MsgKind::SmNewIdFail,
        code::INVALID,
    );
    assert_reply(
        &gate.register(1, &db.account("bob"), "pw").await,
        MsgKind::SmNewIdFail,
        code::INVALID,
    );

    assert_reply(
        &gate.login(1, &user, "wrong").await,
        MsgKind::SmPasswdFail,
        code::WRONG_PASSWORD,
    );
    assert_reply(
        &gate.login(1, &db.account("nobody"), "x").await,
        MsgKind::SmPasswdFail,
        code::NO_ACCOUNT,
    );

    let ok = gate.login(1, &user, "pw1234").await;
    assert_reply(&ok, MsgKind::SmPassOkSelectServer, 0);
    assert_eq!(ok.header.series, 2, "server count");
    assert_eq!(ok.body_text(), "alpha/1/传奇/1/");

    assert_reply(&gate.select(1, "nope").await, MsgKind::SmStartFail, 0);
    let sel = gate.select(1, "alpha").await;
    assert_eq!(sel.kind(), Some(MsgKind::SmSelectServerOk), "{sel:?}");
    let sid = sel.header.recog;
    assert!(sid > 0);
    assert_eq!(sel.body_text(), format!("127.0.0.1/7100/{sid}"));
    assert_eq!(server.session_account(sid), Some(user.to_ascii_lowercase()));
    // Round-robin over the SelGates.
    let sel2 = gate.select(1, "alpha").await;
    assert_eq!(
        sel2.body_text(),
        format!("127.0.0.1/7101/{}", sel2.header.recog)
    );
    assert_ne!(sel2.header.recog, sid);
    // Selecting again replaced the account's first id.
    assert_eq!(server.session_account(sid), None);
    assert_eq!(server.sessions_in_use("alpha"), 1);
    // "传奇" has capacity 1: another account is refused while this one holds it,
    // and this account re-selecting only replaces its own id.
    let other = db.account("carol");
    gate.open(3).await;
    assert_reply(
        &gate.register(3, &other, "pw1234").await,
        MsgKind::SmNewIdSuccess,
        0,
    );
    assert_reply(
        &gate.login(3, &other, "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
    assert_eq!(
        gate.select(1, "传奇").await.kind(),
        Some(MsgKind::SmSelectServerOk)
    );
    assert_reply(&gate.select(3, "传奇").await, MsgKind::SmStartFail, 0);
    assert_eq!(
        gate.select(1, "传奇").await.kind(),
        Some(MsgKind::SmSelectServerOk)
    );
    assert_eq!(server.sessions_in_use("传奇"), 1);
    let full = gate.login(3, &other, "pw1234").await;
    assert_eq!(
        full.body_text(),
        "alpha/1/传奇/4/",
        "full server shows status 4"
    );

    // A fresh client may not select without logging in.
    gate.open(2).await;
    assert_reply(&gate.select(2, "alpha").await, MsgKind::SmStartFail, 0);
    let relog = gate.login(2, &user, "pw1234").await;
    assert_reply(&relog, MsgKind::SmPasswdFail, code::ALREADY_ONLINE);
    server.shutdown().await;
}

async fn lockout_and_expiry(backend: Backend) {
    let Some(db) = Db::new(backend).await else {
        return;
    };
    let server = start(config(&db)).await; // 3 failures lock for 1 s
    let mut gate = Gate::connect(server.local_addr(), Dialect::Delphi).await;
    let user = db.account("lock");
    gate.open(1).await;
    assert_reply(
        &gate.register(1, &user, "right1").await,
        MsgKind::SmNewIdSuccess,
        0,
    );
    assert_reply(
        &gate.login(1, &user, "bad").await,
        MsgKind::SmPasswdFail,
        code::WRONG_PASSWORD,
    );
    assert_reply(
        &gate.login(1, &user, "bad").await,
        MsgKind::SmPasswdFail,
        code::WRONG_PASSWORD,
    );
    assert_reply(
        &gate.login(1, &user, "bad").await,
        MsgKind::SmPasswdFail,
        code::LOCKED,
    );
    // Even the right password is refused while locked.
    assert_reply(
        &gate.login(1, &user, "right1").await,
        MsgKind::SmPasswdFail,
        code::LOCKED,
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_reply(
        &gate.login(1, &user, "right1").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
    server.shutdown().await;
}

async fn duplicate_login_kicks_the_first(backend: Backend) {
    let Some(db) = Db::new(backend).await else {
        return;
    };
    let server = start(config(&db)).await;
    let mut g1 = Gate::connect(server.local_addr(), Dialect::Delphi).await;
    let mut g2 = Gate::connect(server.local_addr(), Dialect::HappyM2).await;
    let user = db.account("dup");
    g1.open(7).await;
    assert_reply(
        &g1.register(7, &user, "pw1234").await,
        MsgKind::SmNewIdSuccess,
        0,
    );
    assert_reply(
        &g1.login(7, &user, "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );

    // Same gate id on another gate: a different client.
    g2.open(7).await;
    assert_reply(
        &g2.login(7, &user, "pw1234").await,
        MsgKind::SmPasswdFail,
        code::ALREADY_ONLINE,
    );
    g1.kicked(7).await;
    // The kicked client can no longer select a server.
    assert_reply(&g1.select(7, "alpha").await, MsgKind::SmStartFail, 0);
    // The retry succeeds.
    assert_reply(
        &g2.login(7, &user, "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
    assert_eq!(
        g2.select(7, "alpha").await.kind(),
        Some(MsgKind::SmSelectServerOk)
    );

    // Closing the client frees the account.
    g2.close(7).await;
    g1.close(7).await;
    g1.open(8).await;
    let mut ok = false;
    for _ in 0..50 {
        let r = g1.login(8, &user, "pw1234").await;
        if r.kind() == Some(MsgKind::SmPassOkSelectServer) {
            ok = true;
            break;
        }
        // The close may still be in flight; -3 also evicts, so the next try wins.
        assert_reply(&r, MsgKind::SmPasswdFail, code::ALREADY_ONLINE);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "login after close");
    server.shutdown().await;
}

async fn change_password(backend: Backend) {
    let Some(db) = Db::new(backend).await else {
        return;
    };
    let server = start(config(&db)).await;
    let mut gate = Gate::connect(server.local_addr(), Dialect::Delphi).await;
    let user = db.account("chg");
    gate.open(1).await;
    assert_reply(
        &gate.register(1, &user, "old123").await,
        MsgKind::SmNewIdSuccess,
        0,
    );
    let chg = |old: &str, new: &str| format!("{user}\t{old}\t{new}");
    gate.send(
        1,
        MsgKind::CmChangePassword,
        0,
        &[chg("nope", "new123").as_bytes()],
    )
    .await;
    assert_reply(
        &gate.reply(1).await,
        MsgKind::SmChgPasswdFail,
        code::WRONG_SECRET,
    );
    gate.send(
        1,
        MsgKind::CmChangePassword,
        0,
        &[chg("old123", "ab").as_bytes()],
    )
    .await;
    assert_reply(
        &gate.reply(1).await,
        MsgKind::SmChgPasswdFail,
        code::CHG_REFUSED,
    );
    gate.send(1, MsgKind::CmChangePassword, 0, &[b"only\ttwo"])
        .await;
    assert_reply(
        &gate.reply(1).await,
        MsgKind::SmChgPasswdFail,
        code::CHG_REFUSED,
    );
    gate.send(
        1,
        MsgKind::CmChangePassword,
        0,
        &[chg("old123", "new123").as_bytes()],
    )
    .await;
    assert_reply(&gate.reply(1).await, MsgKind::SmChgPasswdSuccess, 0);
    assert_reply(
        &gate.login(1, &user, "old123").await,
        MsgKind::SmPasswdFail,
        code::WRONG_PASSWORD,
    );
    assert_reply(
        &gate.login(1, &user, "new123").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
    server.shutdown().await;
}

async fn get_back_password(backend: Backend) {
    use common::{ANSWER1, ANSWER2, BIRTHDAY, QUIZ1, QUIZ2};
    let Some(db) = Db::new(backend).await else {
        return;
    };
    let mut c = config(&db);
    // The lock below must outlast the test (the default test lockout is 1 s,
    // counted in whole seconds).
    c.security.lockout_secs = 600;
    let server = start(c).await;
    let mut gate = Gate::connect(server.local_addr(), Dialect::Delphi).await;
    let user = db.account("lost");
    gate.open(1).await;
    assert_reply(
        &gate.register(1, &user, "forgot").await,
        MsgKind::SmNewIdSuccess,
        0,
    );

    let ask = |a1: &str| {
        mir2_proto::text::gbk_encode(&format!(
            "{user}\t{QUIZ1}\t{a1}\t{QUIZ2}\t{ANSWER2}\t{BIRTHDAY}"
        ))
        .unwrap()
    };
    gate.send(1, MsgKind::CmGetBackPassword, 0, &[&ask("dog")])
        .await;
    assert_reply(
        &gate.reply(1).await,
        MsgKind::SmGetBackPasswdFail,
        code::WRONG_SECRET,
    );
    gate.send(1, MsgKind::CmGetBackPassword, 0, &[&ask(ANSWER1)])
        .await;
    let r = gate.reply(1).await;
    assert_reply(&r, MsgKind::SmGetBackPasswdSuccess, 0);
    let fresh = r.body_text();
    assert_eq!(fresh.len(), 8, "{fresh:?}");
    assert_reply(
        &gate.login(1, &user, "forgot").await,
        MsgKind::SmPasswdFail,
        code::WRONG_PASSWORD,
    );
    assert_reply(
        &gate.login(1, &user, &fresh).await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
    // Guessing answers counts toward the lockout (3 failures in the test config).
    for expect in [
        code::WRONG_SECRET,
        code::WRONG_SECRET,
        code::LOCKED,
        code::LOCKED,
    ] {
        gate.send(1, MsgKind::CmGetBackPassword, 0, &[&ask("guess")])
            .await;
        assert_reply(&gate.reply(1).await, MsgKind::SmGetBackPasswdFail, expect);
    }
    server.shutdown().await;
}

async fn update_user(backend: Backend) {
    let Some(db) = Db::new(backend).await else {
        return;
    };
    let server = start(config(&db)).await;
    let mut gate = Gate::connect(server.local_addr(), Dialect::Delphi).await;
    let user = db.account("upd");
    gate.open(1).await;
    assert_reply(
        &gate.register(1, &user, "pw1234").await,
        MsgKind::SmNewIdSuccess,
        0,
    );
    let mut entry = mir2_proto::records::UserEntry {
        account: user.clone(),
        password: "ignored".into(),
        user_name: "李四".into(),
        quiz: "color".into(),
        answer: "blue".into(),
        ..Default::default()
    };
    let add = mir2_proto::records::UserEntryAdd::default()
        .to_bytes()
        .unwrap();
    // Not logged in yet.
    gate.send(
        1,
        MsgKind::CmUpdateUser,
        0,
        &[&entry.to_bytes().unwrap(), &add],
    )
    .await;
    assert_reply(
        &gate.reply(1).await,
        MsgKind::SmUpdateIdFail,
        code::NOT_LOGGED_IN,
    );
    assert_reply(
        &gate.login(1, &user, "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
    gate.send(
        1,
        MsgKind::CmUpdateUser,
        0,
        &[&entry.to_bytes().unwrap(), &add],
    )
    .await;
    assert_reply(&gate.reply(1).await, MsgKind::SmUpdateIdSuccess, 0);
    // Someone else's account, while logged in as this one.
    entry.account = db.account("other");
    gate.send(
        1,
        MsgKind::CmUpdateUser,
        0,
        &[&entry.to_bytes().unwrap(), &add],
    )
    .await;
    assert_reply(
        &gate.reply(1).await,
        MsgKind::SmUpdateIdFail,
        code::NOT_LOGGED_IN,
    );
    // The password in the record was ignored; the new recovery answers count.
    assert_reply(
        &gate.login(1, &user, "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
    let ask = format!("{user}\tcolor\tblue\t\t\t");
    gate.send(1, MsgKind::CmGetBackPassword, 0, &[ask.as_bytes()])
        .await;
    assert_reply(&gate.reply(1).await, MsgKind::SmGetBackPasswdSuccess, 0);
    server.shutdown().await;
}

async fn persists_across_restart(backend: Backend) {
    let Some(db) = Db::new(backend).await else {
        return;
    };
    let user = db.account("keep");
    let server = start(config(&db)).await;
    let mut gate = Gate::connect(server.local_addr(), Dialect::Delphi).await;
    gate.open(1).await;
    assert_reply(
        &gate.register(1, &user, "pw1234").await,
        MsgKind::SmNewIdSuccess,
        0,
    );
    drop(gate);
    server.shutdown().await;

    let server = start(config(&db)).await;
    let mut gate = Gate::connect(server.local_addr(), Dialect::Delphi).await;
    gate.open(1).await;
    assert_reply(
        &gate.login(1, &user, "pw1234").await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
    assert_reply(
        &gate.register(1, &user, "pw1234").await,
        MsgKind::SmNewIdFail,
        code::NEWID_EXISTS,
    );
    server.shutdown().await;
}

/// Three clients recover the same account at once with the right answers:
/// exactly one gets a new password (which works); the others are told the
/// password changed meanwhile, instead of being handed passwords that never
/// worked.
async fn simultaneous_recoveries_one_wins(backend: Backend) {
    use common::{ANSWER1, ANSWER2, BIRTHDAY, QUIZ1, QUIZ2};
    let Some(db) = Db::new(backend).await else {
        return;
    };
    let mut c = config(&db);
    // One hash at a time, slow enough that all three are verified (against the
    // same stored password) before any new password is hashed and stored.
    c.security.argon2_m_kib = 16 * 1024;
    c.security.argon2_t = 2;
    c.security.max_concurrent_hashes = 1;
    let server = start(c).await;
    let mut gate = Gate::connect(server.local_addr(), Dialect::Delphi).await;
    let user = db.account("cas");
    for id in 1..=3 {
        gate.open(id).await;
    }
    assert_reply(
        &gate.register(1, &user, "forgot").await,
        MsgKind::SmNewIdSuccess,
        0,
    );
    let ask = mir2_proto::text::gbk_encode(&format!(
        "{user}\t{QUIZ1}\t{ANSWER1}\t{QUIZ2}\t{ANSWER2}\t{BIRTHDAY}"
    ))
    .unwrap();
    // All three in one write: the LoginSrv reads them together and queues all
    // three verifications for the one hash permit before any new password is
    // hashed, however loaded the machine is.
    let mut batch = bytes::BytesMut::new();
    for id in 1..=3u8 {
        let header =
            mir2_proto::MsgHeader::new(common::IDS.id(MsgKind::CmGetBackPassword), 0, 0, 0, 0);
        let mut msg = bytes::BytesMut::new();
        mir2_proto::packet::write_client_packet(&mut msg, Some(id), &header, &[&ask]);
        mir2_proto::link::write_data(Dialect::Delphi, &mut batch, u32::from(id), &msg);
    }
    gate.write(&batch).await;
    let mut won = Vec::new();
    for id in 1..=3 {
        let r = gate.reply(id).await;
        if r.kind() == Some(MsgKind::SmGetBackPasswdSuccess) {
            won.push(r.body_text());
        } else {
            assert_reply(&r, MsgKind::SmGetBackPasswdFail, code::CONFLICT);
        }
    }
    assert_eq!(won.len(), 1, "{backend:?}: {won:?}");
    assert_reply(
        &gate.login(1, &user, &won[0]).await,
        MsgKind::SmPassOkSelectServer,
        0,
    );
    server.shutdown().await;
}

/// U+F92C (a CJK compatibility ideograph) and U+90CE (its unified form) are
/// the same character: one account, whichever is typed.
async fn look_alike_names_are_one_account(backend: Backend) {
    let Some(db) = Db::new(backend).await else {
        return;
    };
    let server = start(config(&db)).await;
    let mut gate = Gate::connect(server.local_addr(), Dialect::Delphi).await;
    let compat = db.account("\u{F92C}");
    let unified = db.account("\u{90CE}");
    gate.open(1).await;
    assert_reply(
        &gate.register(1, &compat, "pw1234").await,
        MsgKind::SmNewIdSuccess,
        0,
    );
    assert_reply(
        &gate.register(1, &unified, "other1").await,
        MsgKind::SmNewIdFail,
        code::NEWID_EXISTS,
    );
    let body = mir2_proto::text::gbk_encode(&format!("{unified}/pw1234")).unwrap();
    gate.send(1, MsgKind::CmIdPassword, 0, &[&body]).await;
    assert_reply(&gate.reply(1).await, MsgKind::SmPassOkSelectServer, 0);
    server.shutdown().await;
}
