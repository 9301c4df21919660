//! `mirtool login`: walk the login path like a real client.
//!
//! CM_PROTOCOL (the Delphi client's version handshake; `--no-protocol`
//! skips it), optionally CM_ADDNEWUSER and CM_CHANGEPASSWORD, then
//! CM_IDPASSWORD, the server list and CM_SELECTSERVER. Each step is printed;
//! the last line names the SelGate and the session id.
//! Exit 0 on success, 1 when the server refuses (with its reason), 2 on a
//! usage, connection or timeout error, or when the gate closes the
//! connection (with what that close means). Refusals are worded in English
//! or Chinese (`--lang`, default from the locale).

pub mod conn;
pub mod words;

use std::process::ExitCode;
use std::time::Duration;

use mir2_proto::ids::{IdTable, MsgKind};
use mir2_proto::records::{UserEntry, UserEntryAdd};
use mir2_proto::text::{gbk_decode_lossy, gbk_encode};

use conn::Conn;
pub use words::Lang;

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
    /// Language of refusals: en or zh (default: from LC_ALL, LC_MESSAGES or LANG).
    #[arg(long, value_enum)]
    lang: Option<Lang>,
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
    let lang = args
        .lang
        .unwrap_or_else(|| Lang::from_locale(|name| std::env::var(name).ok()));
    match runtime.block_on(walk(&args, lang)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(why)) => {
            println!("{}", lang.refused(&why));
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

async fn walk(args: &Args, lang: Lang) -> Result<(), Failure> {
    let ids = id_table(&args.ids)?;
    let timeout = Duration::from_secs(args.timeout_secs);
    let mut conn = Conn::connect(&args.addr, ids, timeout, args.proxy).await?;
    println!("connected to {}", args.addr);
    match steps(&mut conn, args, lang).await {
        Err(Failure::Ended(detail)) => Err(Failure::Ended(lang.closed(conn.answered(), &detail))),
        Err(Failure::Refused(why)) if why == conn::OUT_OF_CONNECTION => {
            Err(Failure::Refused(lang.out_of_connection()))
        }
        other => other,
    }
}

/// The login path on an open connection.
async fn steps(conn: &mut Conn, args: &Args, lang: Lang) -> Result<(), Failure> {
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
            return Err(Failure::Refused(lang.version_too_old(args.client_version)));
        }
        println!("client version {} accepted", args.client_version);
    }

    if args.register {
        register(conn, args, lang).await?;
    }

    let mut password = args.password.as_str();
    if let Some(new) = &args.change_password {
        let body = text(&format!("{}\t{}\t{}", args.user, args.password, new))?;
        conn.send(MsgKind::CmChangePassword, 0, &[&body]).await?;
        let r = conn
            .reply(&[MsgKind::SmChgPasswdSuccess, MsgKind::SmChgPasswdFail])
            .await?;
        if r.kind == Some(MsgKind::SmChgPasswdFail) {
            return Err(Failure::Refused(lang.change_password(r.header.recog)));
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
        return Err(Failure::Refused(lang.login(r.header.recog)));
    }
    let servers = parse_servers(&gbk_decode_lossy(&r.body));
    println!("logged in as {}; {} server(s):", args.user, servers.len());
    for (name, status) in &servers {
        println!("  {name} ({})", lang.status(status));
    }

    let name = match (&args.server, servers.first()) {
        (Some(n), _) => n.clone(),
        (None, Some((n, _))) => n.clone(),
        (None, None) => return Err(Failure::Refused(lang.empty_list())),
    };
    conn.send(MsgKind::CmSelectServer, 0, &[&text(&name)?])
        .await?;
    let r = conn
        .reply(&[MsgKind::SmSelectServerOk, MsgKind::SmStartFail])
        .await?;
    if r.kind == Some(MsgKind::SmStartFail) {
        return Err(Failure::Refused(lang.start_fail(&name)));
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

async fn register(conn: &mut Conn, args: &Args, lang: Lang) -> Result<(), Failure> {
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
        return Err(Failure::Refused(lang.register(r.header.recog)));
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
        assert_eq!(Lang::En.status("4"), "full 满员");
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
