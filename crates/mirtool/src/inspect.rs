//! `mirtool encode` / `mirtool decode`: build one packet from a header and a GBK body, or
//! turn `#…!` packets into JSON lines. Bad input exits 2 with the offending offset.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;

use bytes::Bytes;
use mir2_proto::codec::{self, DecodeError};
use mir2_proto::ids::{self, IdTable};
use mir2_proto::packet::{self, PacketError};
use mir2_proto::records::{UserEntry, UserEntryAdd};
use mir2_proto::{text, MsgHeader, Packet};
use serde::Serialize;

/// Exit code for input the tool cannot accept.
const BAD_INPUT: u8 = 2;

#[derive(clap::Args)]
pub struct EncodeArgs {
    /// Message id: a number or a name such as CM_IDPASSWORD.
    #[arg(long)]
    ident: String,
    /// Header recog (i32).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    recog: i32,
    /// Header param.
    #[arg(long, default_value_t = 0)]
    param: u16,
    /// Header tag.
    #[arg(long, default_value_t = 0)]
    tag: u16,
    /// Header series.
    #[arg(long, default_value_t = 0)]
    series: u16,
    /// Body text, encoded as GBK before the 6-bit encoding.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    body: String,
    /// Client check digit 1-9; without it the packet is server-style (`#` + header…).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=9))]
    seq: Option<u8>,
    /// Per-build id override NAME=ID (repeatable), e.g. CM_GETBACKPASSWORD=2010.
    #[arg(long = "id", value_name = "NAME=ID")]
    ids: Vec<String>,
}

#[derive(clap::Args)]
pub struct DecodeArgs {
    /// `#…!` packets, with or without check digit; none = read one per line from stdin.
    packets: Vec<std::ffi::OsString>,
    /// Per-build id override NAME=ID (repeatable), e.g. SM_GETBACKPASSWD_SUCCESS=5005.
    #[arg(long = "id", value_name = "NAME=ID")]
    ids: Vec<String>,
}

/// Builds the id table from the Delphi defaults and `NAME=ID` overrides.
fn id_table(overrides: &[String]) -> Result<IdTable, String> {
    let mut table = IdTable::delphi();
    for o in overrides {
        let (name, id) = o
            .split_once('=')
            .ok_or_else(|| format!("--id {o:?}: expected NAME=ID"))?;
        let id: u16 = id
            .trim()
            .parse()
            .map_err(|_| format!("--id {o:?}: {id:?} is not a number 0..=65535"))?;
        table
            .set(name.trim(), id)
            .map_err(|e| format!("--id {o:?}: {e}"))?;
    }
    Ok(table)
}

fn fail(cmd: &str, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("mirtool {cmd}: {msg}");
    ExitCode::from(BAD_INPUT)
}

pub fn encode(args: EncodeArgs) -> ExitCode {
    let table = match id_table(&args.ids) {
        Ok(t) => t,
        Err(e) => return fail("encode", e),
    };
    let ident = match args.ident.parse::<u16>() {
        Ok(id) => id,
        Err(_) => match ids::MsgKind::from_name(&args.ident) {
            Some(kind) => table.id(kind),
            None => {
                return fail(
                    "encode",
                    format!(
                        "--ident {:?} is neither a number nor a known message name",
                        args.ident
                    ),
                )
            }
        },
    };
    let body = match text::gbk_encode(&args.body) {
        Ok(b) => b,
        Err(e) => return fail("encode", format!("--body: {e}")),
    };
    let header = MsgHeader::new(ident, args.recog, args.param, args.tag, args.series);
    let mut out =
        Vec::with_capacity(2 + MsgHeader::ENCODED_LEN + codec::encoded_len(body.len()) + 2);
    match args.seq {
        Some(_) => packet::write_client_packet(&mut out, args.seq, &header, &[&body]),
        None => packet::write_server_packet(&mut out, &header, &[&body]),
    }
    out.push(b'\n');
    match io::stdout().lock().write_all(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail("encode", format!("writing stdout: {e}")),
    }
}

/// One decoded packet, printed as a JSON line (field order is the output order).
#[derive(Serialize)]
struct Decoded {
    seq: Option<u8>,
    recog: i32,
    ident: u16,
    ident_name: Option<&'static str>,
    param: u16,
    tag: u16,
    series: u16,
    body_hex: String,
    body: String,
}

/// A rejected packet: where (offset within the packet text) and why.
struct Rejection {
    offset: usize,
    reason: String,
}

fn packet_rejection(err: &PacketError, len: usize) -> Rejection {
    Rejection {
        offset: err.offset(len),
        reason: err.to_string(),
    }
}

/// Decodes the body; bodies of CM_ADDNEWUSER / CM_UPDATEUSER are two separately encoded
/// records (198 + 135 chars), which strict whole-body decoding would reject.
fn decode_body(p: &Packet) -> Result<Vec<u8>, Rejection> {
    let two_records = matches!(p.header.ident, ids::CM_ADDNEWUSER | ids::CM_UPDATEUSER)
        && p.body.len() == UserEntry::ENCODED_LEN + UserEntryAdd::ENCODED_LEN;
    let decoded = if two_records {
        p.body_parts(&[Some(UserEntry::SIZE), Some(UserEntryAdd::SIZE)])
            .map(|parts| parts.concat())
    } else {
        p.body_decoded()
    };
    decoded.map_err(|e| {
        let base = p.body_offset();
        match e {
            DecodeError::BadChar { offset, byte } => {
                let shifted = DecodeError::BadChar { offset: base + offset, byte };
                Rejection { offset: base + offset, reason: shifted.to_string() }
            }
            DecodeError::BadLength { len } => Rejection {
                offset: base,
                reason: format!("body of {len} chars cannot be 6-bit text (length is 1 more than a multiple of 4)"),
            },
        }
    })
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xF)]));
    }
    s
}

fn decode_one(table: &IdTable, text: &[u8]) -> Result<Decoded, Rejection> {
    let p = Packet::parse(Bytes::copy_from_slice(text))
        .map_err(|e| packet_rejection(&e, text.len()))?;
    let body = decode_body(&p)?;
    let h = p.header;
    Ok(Decoded {
        seq: p.seq,
        recog: h.recog,
        ident: h.ident,
        ident_name: table.name(h.ident),
        param: h.param,
        tag: h.tag,
        series: h.series,
        body_hex: hex(&body),
        body: text::gbk_decode_lossy(&body),
    })
}

pub fn decode(args: DecodeArgs) -> ExitCode {
    let table = match id_table(&args.ids) {
        Ok(t) => t,
        Err(e) => return fail("decode", e),
    };
    // Blank lines on stdin are separators; an argument is a packet the caller named,
    // so an empty one is malformed input like any other.
    let from_stdin = args.packets.is_empty();
    let inputs: Vec<Vec<u8>> = if from_stdin {
        let mut lines = Vec::new();
        for line in io::stdin().lock().split(b'\n') {
            match line {
                Ok(l) => lines.push(l),
                Err(e) => return fail("decode", format!("reading stdin: {e}")),
            }
        }
        lines
    } else {
        args.packets
            .iter()
            .map(|a| a.as_encoded_bytes().to_vec())
            .collect()
    };
    let mut stdout = io::stdout().lock();
    let mut bad = 0usize;
    for (n, raw) in inputs.iter().enumerate() {
        let packet = raw.trim_ascii();
        if packet.is_empty() {
            if !from_stdin {
                bad += 1;
                eprintln!("mirtool decode: packet {} is empty", n + 1);
            }
            continue;
        }
        match decode_one(&table, packet) {
            Ok(d) => {
                let line = serde_json::to_string(&d).unwrap_or_default();
                if let Err(e) = writeln!(stdout, "{line}") {
                    return fail("decode", format!("writing stdout: {e}"));
                }
            }
            Err(r) => {
                bad += 1;
                eprintln!(
                    "mirtool decode: packet {} rejected at offset {}: {}",
                    n + 1,
                    r.offset,
                    r.reason
                );
            }
        }
    }
    if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(BAD_INPUT)
    }
}
