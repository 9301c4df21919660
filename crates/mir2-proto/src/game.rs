//! The LoginSrv ↔ game-server link (port 5600, PROTOCOL.md §7): text messages
//! `(ident/field/field…)` with no length and no checksum.
//!
//! Two numbering sets exist ([`IdSet`]); both ends of a deployment must use the
//! same. [`GameFramer`] cuts frames out of a byte stream (bounded, junk outside
//! parentheses skipped and counted), [`GameMessage::parse`] splits one frame,
//! [`write_message`] writes one.

use bytes::{Bytes, BytesMut};

use crate::delimited::{DelimitedFramer, FrameTooLong};

/// The messages of the game-server link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GameKind {
    /// LS → game servers: a session was issued (`account/sessionId/payFlag/payMode/clientIP`).
    OpenSession,
    /// LS → holder and DBServers: drop this session (`account/sessionId`).
    CloseSession,
    /// Game server → LS: the player left (`account/sessionId`).
    SoftOutSession,
    /// Game server → LS: `name/index/online` (index 99 = a DBServer).
    ServerInfo,
    /// LS → game server: the total online count, in answer to SERVERINFO.
    KeepAlive,
    /// LS → M2Server: billing sweep of unpaid sessions.
    KickUser,
    /// LS → M2Server: five load counters (never sent by the Delphi LS).
    ServerLoad,
    /// M2Server → LS: `account/minutes` (no handler in the Delphi LS).
    LoginCost,
    /// The "unknown message" id of the set.
    UnknownMsg,
}

impl GameKind {
    /// Every kind, for table checks.
    pub const ALL: [GameKind; 9] = [
        GameKind::OpenSession,
        GameKind::CloseSession,
        GameKind::SoftOutSession,
        GameKind::ServerInfo,
        GameKind::KeepAlive,
        GameKind::KickUser,
        GameKind::ServerLoad,
        GameKind::LoginCost,
        GameKind::UnknownMsg,
    ];

    /// The Delphi constant's name, for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            GameKind::OpenSession => "SS_OPENSESSION",
            GameKind::CloseSession => "SS_CLOSESESSION",
            GameKind::SoftOutSession => "SS_SOFTOUTSESSION",
            GameKind::ServerInfo => "SS_SERVERINFO",
            GameKind::KeepAlive => "SS_KEEPALIVE",
            GameKind::KickUser => "SS_KICKUSER",
            GameKind::ServerLoad => "SS_SERVERLOAD",
            GameKind::LoginCost => "SS_LOGINCOST",
            GameKind::UnknownMsg => "UNKNOWMSG",
        }
    }
}

/// Which numbering a deployment's game servers were built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum IdSet {
    /// The original and OpenMir2 numbering (OPENSESSION 100 …).
    #[default]
    #[cfg_attr(feature = "serde", serde(rename = "100"))]
    Hundred,
    /// The widely circulated Delphi numbering (OPENSESSION 1000 …).
    #[cfg_attr(feature = "serde", serde(rename = "1000"))]
    Thousand,
}

impl IdSet {
    /// The ident of `kind` in this set.
    pub fn id(self, kind: GameKind) -> u16 {
        use GameKind::*;
        match (self, kind) {
            (IdSet::Hundred, OpenSession) => 100,
            (IdSet::Hundred, CloseSession) => 101,
            (IdSet::Hundred, SoftOutSession) => 102,
            (IdSet::Hundred, ServerInfo) => 103,
            (IdSet::Hundred, KeepAlive) => 104,
            (IdSet::Hundred, KickUser) => 111,
            (IdSet::Hundred, ServerLoad) => 113,
            (IdSet::Hundred, LoginCost) => 30002,
            (IdSet::Hundred, UnknownMsg) => 199,
            (IdSet::Thousand, OpenSession) => 1000,
            (IdSet::Thousand, CloseSession) => 1010,
            (IdSet::Thousand, SoftOutSession) => 1020,
            (IdSet::Thousand, ServerInfo) => 1030,
            (IdSet::Thousand, KeepAlive) => 1040,
            (IdSet::Thousand, KickUser) => 1110,
            (IdSet::Thousand, ServerLoad) => 1130,
            (IdSet::Thousand, LoginCost) => 103,
            (IdSet::Thousand, UnknownMsg) => 1007,
        }
    }

    /// The kind `ident` names in this set.
    pub fn kind(self, ident: u16) -> Option<GameKind> {
        GameKind::ALL.into_iter().find(|k| self.id(*k) == ident)
    }

    /// As written in configuration and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            IdSet::Hundred => "100",
            IdSet::Thousand => "1000",
        }
    }
}

impl std::str::FromStr for IdSet {
    type Err = String;
    fn from_str(s: &str) -> Result<IdSet, String> {
        match s {
            "100" => Ok(IdSet::Hundred),
            "1000" => Ok(IdSet::Thousand),
            other => Err(format!("id set {other:?} is neither \"100\" nor \"1000\"")),
        }
    }
}

/// Why bytes from a game server were not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GameError {
    /// A frame longer than the configured maximum: fatal for the stream.
    #[error("game-server frame longer than {max} bytes")]
    TooLong {
        /// The limit, counting `(` and `)`.
        max: usize,
    },
    /// The ident is not a decimal u16.
    #[error("game-server frame ident is not a number 0..=65535")]
    BadIdent,
    /// A field that cannot be written inside a frame (`(`, `)` or `/`).
    #[error("field contains '(', ')' or '/'")]
    BadField,
}

impl GameError {
    /// Stable label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            GameError::TooLong { .. } => "game_frame_oversize",
            GameError::BadIdent => "game_frame_bad_ident",
            GameError::BadField => "game_frame_bad_field",
        }
    }
}

/// Incremental `(…)` framer.
///
/// Bytes outside parentheses are skipped and counted (line ends between frames are
/// expected); a `(` inside an unterminated frame restarts the frame there and the
/// abandoned bytes count as junk (the Delphi receivers cut at the last `(` before a `)` too).
#[derive(Debug, Clone)]
pub struct GameFramer(DelimitedFramer);

impl GameFramer {
    /// A framer accepting frames of at most `max_frame_bytes` (counting the parentheses; at least 2).
    pub fn new(max_frame_bytes: usize) -> Self {
        GameFramer(DelimitedFramer::new(
            b'(',
            b')',
            |b| matches!(b, b'\r' | b'\n' | 0),
            max_frame_bytes,
        ))
    }

    /// Bytes skipped so far. Line ends between frames are not junk.
    pub fn junk_skipped(&self) -> u64 {
        self.0.junk_skipped()
    }

    /// The body (between `(` and `)`) of the next whole frame, `Ok(None)` when
    /// more bytes are needed. `Err(TooLong)` is fatal for the stream.
    pub fn next_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, GameError> {
        self.0
            .next_frame(buf)
            .map_err(|FrameTooLong { max }| GameError::TooLong { max })
    }
}

/// One message: its ident and `/`-separated fields (raw bytes, GBK or ASCII).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GameMessage {
    /// The numeric ident, to be looked up in the deployment's [`IdSet`].
    pub ident: u16,
    /// The fields after the ident; empty when the frame is the ident alone.
    pub fields: Vec<Bytes>,
}

/// More fields than any message has; beyond it the rest stays in the last field.
pub const MAX_FIELDS: usize = 16;

impl GameMessage {
    /// Split a frame body (as [`GameFramer`] returns it) at `/`.
    pub fn parse(body: Bytes) -> Result<GameMessage, GameError> {
        let (ident, rest) = match memchr::memchr(b'/', &body) {
            Some(i) => (body.slice(..i), Some(body.slice(i + 1..))),
            None => (body.clone(), None),
        };
        let ident = std::str::from_utf8(&ident)
            .ok()
            .filter(|s| !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or(GameError::BadIdent)?;
        let mut fields = Vec::new();
        if let Some(mut rest) = rest {
            while fields.len() + 1 < MAX_FIELDS {
                match memchr::memchr(b'/', &rest) {
                    Some(i) => {
                        fields.push(rest.slice(..i));
                        rest = rest.slice(i + 1..);
                    }
                    None => break,
                }
            }
            fields.push(rest);
        }
        Ok(GameMessage { ident, fields })
    }

    /// Field `i` as text (GBK decoded), `None` if absent or not GBK.
    pub fn text(&self, i: usize) -> Option<String> {
        crate::text::gbk_decode(self.fields.get(i)?).ok()
    }

    /// Field `i` as a decimal number, `None` if absent or not a number.
    pub fn number<T: std::str::FromStr>(&self, i: usize) -> Option<T> {
        std::str::from_utf8(self.fields.get(i)?)
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// Append `(ident/field/…)` to `out`. Fields must not contain `(`, `)` or `/`.
pub fn write_message(out: &mut BytesMut, ident: u16, fields: &[&[u8]]) -> Result<(), GameError> {
    if fields
        .iter()
        .any(|f| f.iter().any(|b| matches!(b, b'(' | b')' | b'/')))
    {
        return Err(GameError::BadField);
    }
    out.extend_from_slice(b"(");
    out.extend_from_slice(ident.to_string().as_bytes());
    for f in fields {
        out.extend_from_slice(b"/");
        out.extend_from_slice(f);
    }
    out.extend_from_slice(b")");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn frames(framer: &mut GameFramer, buf: &mut BytesMut) -> Vec<Bytes> {
        let mut out = Vec::new();
        while let Some(f) = framer.next_frame(buf).unwrap() {
            out.push(f);
        }
        out
    }

    #[test]
    fn both_sets_are_one_to_one() {
        for set in [IdSet::Hundred, IdSet::Thousand] {
            for k in GameKind::ALL {
                assert_eq!(set.kind(set.id(k)), Some(k), "{set:?} {k:?}");
            }
        }
        assert_eq!(IdSet::Thousand.id(GameKind::LoginCost), 103);
        assert_eq!(IdSet::Hundred.kind(103), Some(GameKind::ServerInfo));
    }

    #[test]
    fn junk_restart_and_too_long() {
        let mut f = GameFramer::new(16);
        let mut b = BytesMut::from(&b"xx(103/a(103/demo/0/5)\r\n(104/5)"[..]);
        assert_eq!(
            frames(&mut f, &mut b),
            vec![&b"103/demo/0/5"[..], &b"104/5"[..]]
        );
        assert_eq!(f.junk_skipped(), 2 + 6);
        let mut b = BytesMut::from(&b"(0123456789abcdef"[..]);
        assert_eq!(f.next_frame(&mut b), Err(GameError::TooLong { max: 16 }));
    }

    #[test]
    fn parse_fields() {
        let m = GameMessage::parse(Bytes::from_static(b"103/demo/0/12")).unwrap();
        assert_eq!(m.ident, 103);
        assert_eq!(m.text(0).as_deref(), Some("demo"));
        assert_eq!(m.number::<i32>(1), Some(0));
        assert_eq!(m.number::<u32>(2), Some(12));
        assert_eq!(
            GameMessage::parse(Bytes::from_static(b"104"))
                .unwrap()
                .fields,
            Vec::<Bytes>::new()
        );
        assert_eq!(
            GameMessage::parse(Bytes::from_static(b"x/1")),
            Err(GameError::BadIdent)
        );
        assert_eq!(
            GameMessage::parse(Bytes::from_static(b"70000")),
            Err(GameError::BadIdent)
        );
    }

    fn field() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            any::<u8>().prop_filter("separator", |b| !b"()/".contains(b)),
            0..12,
        )
    }

    proptest! {
        #[test]
        fn written_messages_come_back_under_any_split(
            msgs in proptest::collection::vec((any::<u16>(), proptest::collection::vec(field(), 0..6)), 1..6),
            cuts in proptest::collection::vec(1usize..9, 1..8),
        ) {
            let mut wire = BytesMut::new();
            for (ident, fields) in &msgs {
                let refs: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
                write_message(&mut wire, *ident, &refs).unwrap();
            }
            let mut framer = GameFramer::new(4096);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut pos = 0;
            let mut cut = cuts.iter().cycle();
            while pos < wire.len() {
                let end = (pos + cut.next().copied().unwrap_or(1)).min(wire.len());
                buf.extend_from_slice(&wire[pos..end]);
                pos = end;
                got.extend(frames(&mut framer, &mut buf));
            }
            prop_assert_eq!(got.len(), msgs.len());
            prop_assert_eq!(framer.junk_skipped(), 0);
            for (body, (ident, fields)) in got.into_iter().zip(&msgs) {
                let m = GameMessage::parse(body).unwrap();
                prop_assert_eq!(m.ident, *ident);
                let want: Vec<Bytes> = if fields.is_empty() {
                    Vec::new()
                } else {
                    fields.iter().map(|f| Bytes::copy_from_slice(f)).collect()
                };
                prop_assert_eq!(m.fields, want);
            }
        }

        #[test]
        fn the_framer_is_bounded_and_total(data in proptest::collection::vec(any::<u8>(), 0..512), max in 2usize..64) {
            let mut framer = GameFramer::new(max);
            let mut buf = BytesMut::from(&data[..]);
            loop {
                match framer.next_frame(&mut buf) {
                    Ok(Some(f)) => {
                        prop_assert!(f.len() + 2 <= max);
                        prop_assert!(!f.contains(&b'(') && !f.contains(&b')'));
                        let _ = GameMessage::parse(f);
                    }
                    Ok(None) => { prop_assert!(buf.len() < max); break }
                    Err(GameError::TooLong { .. }) => break,
                    Err(e) => prop_assert!(false, "{e}"),
                }
            }
        }
    }
}
