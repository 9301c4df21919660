//! `loginsrv import-delphi DIR`: a Delphi LoginSrv directory as an equivalent
//! TOML configuration.
//!
//! Reads `Logsrv.ini`, `!ServerAddr.txt`, `!UserLimit.txt` and `!addrtable.txt`
//! (each optional, GBK or UTF-8, at most [`MAX_FILE_BYTES`], `;` comments).
//! Every setting without an equivalent is kept as a comment saying so.
//! Accounts stay in the Delphi `Id.DB`, whose format is not read.

use std::fmt::Write as _;
use std::path::Path;

/// Largest file read; the originals' files are a few KiB.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Delphi's `!UserLimit.txt` default.
const DEFAULT_MAX_USERS: u32 = 3000;

/// Why a directory cannot be imported.
#[derive(Debug)]
pub struct ImportError(pub String);

impl std::error::Error for ImportError {}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Read `name` in `dir` as text (`None` if absent), GBK unless valid UTF-8.
fn read(dir: &Path, name: &str) -> Result<Option<String>, ImportError> {
    let path = dir.join(name);
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ImportError(format!("{}: {e}", path.display()))),
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(ImportError(format!(
            "{}: {} bytes, more than {MAX_FILE_BYTES}",
            path.display(),
            meta.len()
        )));
    }
    let bytes =
        std::fs::read(&path).map_err(|e| ImportError(format!("{}: {e}", path.display())))?;
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
    Ok(Some(match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => encoding_rs::GBK
            .decode_without_bom_handling(bytes)
            .0
            .into_owned(),
    }))
}

/// Lines without `;` comments, trimmed, non-empty.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|l| l.split(';').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A comment line (one line whatever the input).
fn comment(out: &mut String, text: &str) {
    let one: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let _ = writeln!(out, "# {one}");
}

struct Route {
    server: String,
    title: String,
    gate: String,
    public: String,
    selgates: Vec<String>,
}

/// The TOML equivalent of the Delphi LoginSrv in `dir`.
pub fn import(dir: &Path) -> Result<String, ImportError> {
    let ini = read(dir, "Logsrv.ini")?;
    let server_addr = read(dir, "!ServerAddr.txt")?;
    let user_limit = read(dir, "!UserLimit.txt")?;
    let addr_table = read(dir, "!addrtable.txt")?;
    if ini.is_none() && server_addr.is_none() && user_limit.is_none() && addr_table.is_none() {
        return Err(ImportError(format!(
            "{}: none of Logsrv.ini, !ServerAddr.txt, !UserLimit.txt, !addrtable.txt",
            dir.display()
        )));
    }
    let mut out = String::new();
    comment(
        &mut out,
        &format!("Imported from the Delphi LoginSrv in {}.", dir.display()),
    );
    comment(
        &mut out,
        "Accounts stay in Id.DB: its format is not imported; players register again.",
    );
    let mut head = String::new();
    let mut game = String::new();
    let mut unmapped = String::new();
    let (mut gate_addr, mut gate_port) = ("0.0.0.0".to_owned(), "5500".to_owned());
    let (mut srv_addr, mut srv_port) = ("0.0.0.0".to_owned(), "5600".to_owned());
    if let Some(ini) = &ini {
        let mut section = String::new();
        for line in lines(ini) {
            if line.starts_with('[') {
                section = line
                    .trim_matches(|c| c == '[' || c == ']')
                    .trim()
                    .to_owned();
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                comment(
                    &mut unmapped,
                    &format!("Logsrv.ini: {line:?} is not key=value; ignored"),
                );
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            match k.to_ascii_lowercase().as_str() {
                "gateaddr" => v.clone_into(&mut gate_addr),
                "gateport" => v.clone_into(&mut gate_port),
                "serveraddr" => v.clone_into(&mut srv_addr),
                "serverport" => v.clone_into(&mut srv_port),
                _ => comment(
                    &mut unmapped,
                    &format!("Logsrv.ini [{section}] {k} = {v}: no equivalent"),
                ),
            }
        }
        comment(&mut head, "Logsrv.ini GateAddr/GatePort");
        let _ = writeln!(
            head,
            "listen = {}",
            quote(&format!("{gate_addr}:{gate_port}"))
        );
    }
    let _ = writeln!(game, "\n[game_servers]");
    comment(&mut game, "Logsrv.ini ServerAddr/ServerPort");
    let _ = writeln!(
        game,
        "listen = {}",
        quote(&format!("{srv_addr}:{srv_port}"))
    );
    comment(
        &mut game,
        "the numbering of your M2Server/DBServer build: \"100\" or \"1000\"; check it",
    );
    let _ = writeln!(game, "id_set = \"1000\"");
    if let Some(text) = &server_addr {
        let mut nets = Vec::new();
        for ip in lines(text).take(100) {
            let ip = ip.split_whitespace().next().unwrap_or("");
            match ip.parse::<std::net::IpAddr>() {
                Ok(ip) => nets.push(quote(&format!(
                    "{ip}/{}",
                    if ip.is_ipv4() { 32 } else { 128 }
                ))),
                Err(_) => comment(
                    &mut unmapped,
                    &format!("!ServerAddr.txt: {ip:?} is not an IP; skipped"),
                ),
            }
        }
        if !nets.is_empty() {
            comment(&mut game, "!ServerAddr.txt");
            let _ = writeln!(game, "allow = [{}]", nets.join(", "));
        }
    }
    let mut routes = Vec::new();
    if let Some(text) = &addr_table {
        for line in lines(text) {
            let mut cols = line.split_whitespace();
            let (Some(server), Some(title), Some(gate), Some(public)) =
                (cols.next(), cols.next(), cols.next(), cols.next())
            else {
                comment(
                    &mut unmapped,
                    &format!("!addrtable.txt: {line:?} has fewer than 4 columns; skipped"),
                );
                continue;
            };
            let selgates: Vec<String> = cols
                .take(10)
                .filter(|g| {
                    g.trim_start_matches('*')
                        .parse::<std::net::SocketAddr>()
                        .is_ok()
                })
                .map(str::to_owned)
                .collect();
            if gate.parse::<std::net::IpAddr>().is_err() || selgates.is_empty() {
                comment(
                    &mut unmapped,
                    &format!(
                        "!addrtable.txt: {line:?} has no gate IP or no ip:port SelGate; skipped"
                    ),
                );
                continue;
            }
            routes.push(Route {
                server: server.to_owned(),
                title: title.to_owned(),
                gate: gate.to_owned(),
                public: if public.parse::<std::net::IpAddr>().is_ok() {
                    public.to_owned()
                } else {
                    String::new()
                },
                selgates,
            });
        }
    }
    let mut servers = String::new();
    let mut names: Vec<String> = Vec::new();
    if let Some(text) = &user_limit {
        for line in lines(text) {
            let mut cols = line.split_whitespace();
            let Some(name) = cols.next() else { continue };
            let alias = cols.next().unwrap_or(name);
            let max = cols
                .next()
                .and_then(|m| m.parse::<u32>().ok())
                .unwrap_or(DEFAULT_MAX_USERS);
            if names.iter().any(|n| n == name) {
                comment(
                    &mut unmapped,
                    &format!("!UserLimit.txt: {name} listed twice; the first kept"),
                );
                continue;
            }
            names.push(name.to_owned());
            let _ = writeln!(servers, "\n[[servers]]");
            comment(&mut servers, "!UserLimit.txt");
            let _ = writeln!(servers, "name = {}", quote(name));
            if alias != name {
                comment(
                    &mut servers,
                    &format!(
                        "alias {alias}: no equivalent; game servers must report the name above"
                    ),
                );
            }
            let _ = writeln!(servers, "max_users = {max}");
            write_selgates(&mut servers, name, &routes);
        }
    }
    for r in &routes {
        if !names.contains(&r.server) {
            names.push(r.server.clone());
            let _ = writeln!(servers, "\n[[servers]]");
            comment(&mut servers, "from !addrtable.txt (not in !UserLimit.txt)");
            let _ = writeln!(servers, "name = {}", quote(&r.server));
            let _ = writeln!(servers, "max_users = {DEFAULT_MAX_USERS}");
            write_selgates(&mut servers, &r.server, &routes);
        }
    }
    let mut route_text = String::new();
    for r in &routes {
        let _ = writeln!(route_text, "\n[[routes]]");
        comment(
            &mut route_text,
            &format!("!addrtable.txt; title {}: no equivalent", r.title),
        );
        let _ = writeln!(route_text, "gate = {}", quote(&r.gate));
        let _ = writeln!(route_text, "public = {}", quote(&r.public));
        let _ = writeln!(route_text, "server = {}", quote(&r.server));
        let list: Vec<String> = r.selgates.iter().map(|g| quote(g)).collect();
        let _ = writeln!(route_text, "selgates = [{}]", list.join(", "));
    }
    out.push_str(&head);
    if !unmapped.is_empty() {
        out.push('\n');
        out.push_str(&unmapped);
    }
    out.push_str(&game);
    out.push_str(&servers);
    out.push_str(&route_text);
    Ok(out)
}

/// A server's own SelGates: its first route's, else the local default.
fn write_selgates(out: &mut String, name: &str, routes: &[Route]) {
    match routes.iter().find(|r| r.server == name) {
        Some(r) => {
            comment(out, "the first !addrtable.txt line of this server");
            let list: Vec<String> = r.selgates.iter().map(|g| quote(g)).collect();
            let _ = writeln!(out, "selgates = [{}]", list.join(", "));
        }
        None => {
            comment(out, "no !addrtable.txt line: the SelGate default, check it");
            let _ = writeln!(out, "selgates = [\"127.0.0.1:7100\"]");
        }
    }
}
