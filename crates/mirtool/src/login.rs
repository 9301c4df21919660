//! `mirtool login`: walk the login path like a real client.
//!
//! CM_PROTOCOL (the Delphi client's version handshake; `--no-protocol`
//! skips it), optionally CM_ADDNEWUSER and CM_CHANGEPASSWORD, then
//! CM_IDPASSWORD, the server list and CM_SELECTSERVER. Each step is printed;
//! the last line names the SelGate and the session id.
//! Exit 0 on success, 1 when the server refuses (with its reason), 2 on a
//! usage, connection or timeout error.

pub mod conn;

use std::process::ExitCode;
use std::time::Duration;

use mir2_proto::ids::{IdTable, MsgKind};
use mir2_proto::records::{UserEntry, UserEntryAdd};
use mir2_proto::text::{gbk_decode_lossy, gbk_encode};

use conn::Conn;

#[derive(clap::Args)]
pub struct Args {
    /// Gate address, HOST:PORT.
    #[arg(long)]
    addr: String,
    /// Account name.
    #[arg(long)]
    user: String,
    /// Password.
    #[arg(long)]
    password: String,
    /// Create the account first (CM_ADDNEWUSER).
    #[arg(long)]
    register: bool,
    /// Server to select (default: the first in the list).
    #[arg(long)]
    server: Option<String>,
    /// Change the password to this before logging in (CM_CHANGEPASSWORD).
    #[arg(long, value_name = "NEW")]
    change_password: Option<String>,
    /// Deadline for connecting and for each reply, seconds (1..=3600).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout_secs: u64,
    /// Client build date sent in CM_PROTOCOL.
    #[arg(long, default_value_t = 20_020_522)]
    client_version: i32,
    /// Do not send CM_PROTOCOL first.
    #[arg(long)]
    no_protocol: bool,
    /// Per-build id override NAME=ID (repeatable), e.g. CM_GETBACKPASSWORD=2010.
    #[arg(long = "id", value_name = "NAME=ID")]
    ids: Vec<String>,
    /// A PROXY protocol header before the first message, as a front would send.
    #[command(flatten)]
    proxy: crate::proxy::ProxyArgs,
}

/// Why the walk stopped.
#[derive(Debug)]
pub enum Failure {
    /// The server said no; exit 1.
    Refused(String),
    /// Bad arguments, network error or timeout; exit 2.
    Connection(String),
    /// The gate closed or reset the connection before a reply; exit 2.
    Ended(String),
}

pub fn run(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mirtool login: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(walk(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(why)) => {
            println!("refused: {why}");
            ExitCode::from(1)
        }
        Err(Failure::Connection(why) | Failure::Ended(why)) => {
            eprintln!("mirtool login: {why}");
            ExitCode::from(2)
        }
    }
}

fn id_table(overrides: &[String]) -> Result<IdTable, Failure> {
    let mut table = IdTable::delphi();
    for o in overrides {
        let usage = || {
            Failure::Connection(format!(
                "--id {o:?}: expected NAME=ID, e.g. CM_GETBACKPASSWORD=2010"
            ))
        };
        let (name, id) = o.split_once('=').ok_or_else(usage)?;
        let id: u16 = id.trim().parse().map_err(|_| usage())?;
        table.set(name.trim(), id).map_err(|_| usage())?;
    }
    Ok(table)
}

async fn walk(args: &Args) -> Result<(), Failure> {
    let ids = id_table(&args.ids)?;
    let timeout = Duration::from_secs(args.timeout_secs);
    let mut conn = Conn::connect(&args.addr, ids, timeout, args.proxy).await?;
    println!("connected to {}", args.addr);

    if !args.no_protocol {
        conn.send(MsgKind::CmProtocol, args.client_version, &[])
            .await?;
        let r = conn
            .reply(&[
                MsgKind::SmCertificationSuccess,
                MsgKind::SmCertificationFail,
            ])
            .await?;
        if r.kind == Some(MsgKind::SmCertificationFail) {
            return Err(Failure::Refused(format!(
                "client version {} is too old",
                args.client_version
            )));
        }
        println!("client version {} accepted", args.client_version);
    }

    if args.register {
        register(&mut conn, args).await?;
    }

    let mut password = args.password.as_str();
    if let Some(new) = &args.change_password {
        let body = text(&format!("{}\t{}\t{}", args.user, args.password, new))?;
        conn.send(MsgKind::CmChangePassword, 0, &[&body]).await?;
        let r = conn
            .reply(&[MsgKind::SmChgPasswdSuccess, MsgKind::SmChgPasswdFail])
            .await?;
        if r.kind == Some(MsgKind::SmChgPasswdFail) {
            return Err(Failure::Refused(change_reason(r.header.recog)));
        }
        println!("password changed");
        password = new;
    }

    let body = text(&format!("{}/{}", args.user, password))?;
    conn.send(MsgKind::CmIdPassword, 0, &[&body]).await?;
    let r = conn
        .reply(&[MsgKind::SmPassOkSelectServer, MsgKind::SmPasswdFail])
        .await?;
    if r.kind == Some(MsgKind::SmPasswdFail) {
        return Err(Failure::Refused(login_reason(r.header.recog)));
    }
    let servers = parse_servers(&gbk_decode_lossy(&r.body));
    println!("logged in as {}; {} server(s):", args.user, servers.len());
    for (name, status) in &servers {
        println!("  {name} ({})", status_word(status));
    }

    let name = match (&args.server, servers.first()) {
        (Some(n), _) => n.clone(),
        (None, Some((n, _))) => n.clone(),
        (None, None) => return Err(Failure::Refused("the server list is empty".into())),
    };
    conn.send(MsgKind::CmSelectServer, 0, &[&text(&name)?])
        .await?;
    let r = conn
        .reply(&[MsgKind::SmSelectServerOk, MsgKind::SmStartFail])
        .await?;
    if r.kind == Some(MsgKind::SmStartFail) {
        return Err(Failure::Refused(format!(
            "server {name:?} is full or unknown (SM_STARTFAIL)"
        )));
    }
    let body = gbk_decode_lossy(&r.body);
    let mut parts = body.split('/');
    let (Some(ip), Some(port), Some(sid)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Failure::Connection(format!(
            "SM_SELECTSERVER_OK body {body:?} is not ip/port/session"
        )));
    };
    println!("selected {name}: SelGate {ip}:{port} session {sid}");
    Ok(())
}

async fn register(conn: &mut Conn, args: &Args) -> Result<(), Failure> {
    let entry = UserEntry {
        account: args.user.clone(),
        password: args.password.clone(),
        user_name: args.user.clone(),
        quiz: "mirtool".into(),
        answer: "mirtool".into(),
        ..UserEntry::default()
    };
    let add = UserEntryAdd::default();
    let bad =
        |e: mir2_proto::records::RecordError| Failure::Connection(format!("account record: {e}"));
    let entry = entry.to_bytes().map_err(bad)?;
    let add = add.to_bytes().map_err(bad)?;
    conn.send(MsgKind::CmAddNewUser, 0, &[&entry, &add]).await?;
    let r = conn
        .reply(&[MsgKind::SmNewIdSuccess, MsgKind::SmNewIdFail])
        .await?;
    if r.kind == Some(MsgKind::SmNewIdFail) {
        let why = match r.header.recog {
            0 => "account name already taken".to_owned(),
            -1 => "account name or password not accepted".to_owned(),
            c => format!("new account refused (code {c})"),
        };
        return Err(Failure::Refused(why));
    }
    println!("account {} created", args.user);
    Ok(())
}

fn text(s: &str) -> Result<Vec<u8>, Failure> {
    gbk_encode(s).map_err(|_| Failure::Connection(format!("{s:?} has no GBK form")))
}

/// `name/status/name/status/…/` → pairs.
fn parse_servers(list: &str) -> Vec<(String, String)> {
    let fields: Vec<&str> = list.split('/').collect();
    fields
        .chunks(2)
        .filter_map(|c| match c {
            [name, status] if !name.is_empty() => Some(((*name).to_owned(), (*status).to_owned())),
            _ => None,
        })
        .collect()
}

/// The Delphi LoginSrv's list status numbers.
fn status_word(status: &str) -> String {
    match status {
        "0" => "offline".into(),
        "1" => "idle 空闲".into(),
        "2" => "good 良好".into(),
        "3" => "busy 繁忙".into(),
        "4" => "full 满员".into(),
        other => format!("status {other}"),
    }
}

fn login_reason(code: i32) -> String {
    match code {
        0 => "no such account".into(),
        -1 => "wrong password".into(),
        -2 => "account locked after repeated failures; try again later".into(),
        -3 => "account already logged in; the old session was kicked, try again".into(),
        -4 => "login request not understood by the server".into(),
        -5 => "server error".into(),
        c => format!("login refused (code {c})"),
    }
}

fn change_reason(code: i32) -> String {
    match code {
        0 => "password not changed: no such account or new password not accepted".into(),
        -1 => "password not changed: wrong current password".into(),
        -2 => "password not changed: account locked".into(),
        c => format!("password change refused (code {c})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_list_parses() {
        assert_eq!(
            parse_servers("demo/1/传奇/4/"),
            vec![("demo".into(), "1".into()), ("传奇".into(), "4".into())]
        );
        assert!(parse_servers("").is_empty());
        assert_eq!(status_word("4"), "full 满员");
    }

    #[test]
    fn id_overrides() {
        let t = id_table(&["CM_GETBACKPASSWORD=2010".into()])
            .map_err(|_| ())
            .unwrap_or_else(|()| panic!());
        assert_eq!(t.id(MsgKind::CmGetBackPassword), 2010);
        assert!(id_table(&["nope".into()]).is_err());
    }
}
