//! The link's frame letters and fields as data (PROTOCOL.md §4, §8).
//!
//! Builds differ only in a few letters and fields of the same `%…$` text, so a
//! [`Frames`] table says which, and every writer and parser reads it. The known
//! builds are presets named by [`Dialect`]; a deployment can override single
//! fields ([`FrameOverrides`]) for a build none of them matches.

use std::fmt;

use super::Dialect;

/// Which of the two block frames (`%+B<id>$`, `%+T<id>$`) means "temporary";
/// the other means "permanent". Builds disagree (§8), so it is a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum BlockLetter {
    /// `%+B` is temporary, `%+T` permanent (the widely circulated Delphi gate).
    B,
    /// `%+T` is temporary, `%+B` permanent (the Delphi LoginSrv's own reading).
    T,
}

impl BlockLetter {
    /// The letter after `%+`.
    pub fn byte(self) -> u8 {
        match self {
            BlockLetter::B => b'B',
            BlockLetter::T => b'T',
        }
    }

    /// The letter of the other kind of block.
    pub fn other(self) -> BlockLetter {
        match self {
            BlockLetter::B => BlockLetter::T,
            BlockLetter::T => BlockLetter::B,
        }
    }
}

/// The frame letters and fields of one build's link.
///
/// Heartbeats (`%--$`, `%++$`), kicks (`%+-<id>$`), replies (`%<id>/…$`) and the
/// block frames are the same in every build; only what is listed here differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
pub struct Frames {
    /// Letter of the "client opened" frame (`O`, `N`, `L`).
    #[cfg_attr(feature = "serde", serde(with = "letter"))]
    pub open: u8,
    /// Letter of the "client message" frame (`A`, `D`).
    #[cfg_attr(feature = "serde", serde(with = "letter"))]
    pub data: u8,
    /// Letter of the "client closed" frame (`X`, `C`).
    #[cfg_attr(feature = "serde", serde(with = "letter"))]
    pub close: u8,
    /// Whether the open frame carries the gate address after the client's
    /// (`%O<id>/<clientIP>/<gateIP>$`); Wemade's does not.
    pub open_gate_ip: bool,
    /// Whether the server follows each reply and heartbeat reply with one 0x00 (Wemade).
    pub nul_after_reply: bool,
    /// Whether the build's gates act on block frames. A server writing for a gate
    /// that does not sends a kick instead: such a gate would count `%+B…$` as a
    /// heartbeat reply and leave the client connected.
    pub block_frames: bool,
    /// Which block letter means a temporary block.
    pub temporary_block: BlockLetter,
}

impl Frames {
    /// Wemade C++: `%O<id>/<ip>$`, `%A`, `%X`, replies followed by 0x00.
    pub const WEMADE: Frames = Frames {
        open: b'O',
        data: b'A',
        close: b'X',
        open_gate_ip: false,
        nul_after_reply: true,
        block_frames: false,
        temporary_block: BlockLetter::B,
    };
    /// Classic Delphi: `%O<id>/<ip>/<gateIp>$`, `%A`, `%X`.
    pub const DELPHI: Frames = Frames {
        open_gate_ip: true,
        nul_after_reply: false,
        ..Frames::WEMADE
    };
    /// The widely circulated Delphi set: `%N`, `%D`, `%C`, block frames.
    pub const HAPPYM2: Frames = Frames {
        open: b'N',
        data: b'D',
        close: b'C',
        block_frames: true,
        ..Frames::DELPHI
    };
    /// The Delphi LoginSrv build that opens with `L` and closes with `X` (`%L`, `%D`, `%X`,
    /// gate IP included). No source shows its gates reading block frames, so blocks
    /// are sent to it as kicks.
    pub const LDX: Frames = Frames {
        open: b'L',
        data: b'D',
        close: b'X',
        ..Frames::DELPHI
    };

    /// Checks that the three letters can never be mistaken for each other or for
    /// the frames every build shares; the error names the field.
    pub fn check(&self) -> Result<(), FramesError> {
        let letters = [
            ("open", self.open),
            ("data", self.data),
            ("close", self.close),
        ];
        for (i, &(field, letter)) in letters.iter().enumerate() {
            if !letter.is_ascii_alphabetic() {
                return Err(FramesError {
                    field,
                    problem: format!(
                        "must be one ASCII letter (A-Z or a-z), got {}: any other byte \
                         could be read as a heartbeat (`-`, `+`), a kick, a session id \
                         (digits) or the framing (`%`, `$`, `/`)",
                        LetterDisplay(letter)
                    ),
                });
            }
            if let Some(&(other, _)) = letters[..i].iter().find(|(_, l)| *l == letter) {
                return Err(FramesError {
                    field,
                    problem: format!(
                        "{} is already the letter of `{other}`: each frame needs its own",
                        LetterDisplay(letter)
                    ),
                });
            }
        }
        Ok(())
    }
}

impl AsRef<Frames> for Frames {
    fn as_ref(&self) -> &Frames {
        self
    }
}

impl AsRef<Frames> for Dialect {
    fn as_ref(&self) -> &Frames {
        self.frames()
    }
}

/// A frame table that cannot work, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("frame field `{field}` {problem}")]
pub struct FramesError {
    /// The field (`open`, `data`, `close`).
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

/// A letter for messages: the character when printable, else its code.
struct LetterDisplay(u8);

impl fmt::Display for LetterDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "{:?}", char::from(self.0))
        } else {
            write!(f, "byte {:#04x}", self.0)
        }
    }
}

/// Per-field overrides of a preset (`[server.frames]` in a config file); an
/// absent field keeps the preset's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields, default)
)]
pub struct FrameOverrides {
    /// Replaces [`Frames::open`].
    #[cfg_attr(
        feature = "serde",
        serde(with = "letter_opt", skip_serializing_if = "Option::is_none")
    )]
    pub open: Option<u8>,
    /// Replaces [`Frames::data`].
    #[cfg_attr(
        feature = "serde",
        serde(with = "letter_opt", skip_serializing_if = "Option::is_none")
    )]
    pub data: Option<u8>,
    /// Replaces [`Frames::close`].
    #[cfg_attr(
        feature = "serde",
        serde(with = "letter_opt", skip_serializing_if = "Option::is_none")
    )]
    pub close: Option<u8>,
    /// Replaces [`Frames::open_gate_ip`].
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub open_gate_ip: Option<bool>,
    /// Replaces [`Frames::nul_after_reply`].
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub nul_after_reply: Option<bool>,
    /// Replaces [`Frames::block_frames`].
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub block_frames: Option<bool>,
    /// Replaces [`Frames::temporary_block`].
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub temporary_block: Option<BlockLetter>,
}

impl FrameOverrides {
    /// `base` with every present field replaced.
    pub fn apply(&self, base: Frames) -> Frames {
        Frames {
            open: self.open.unwrap_or(base.open),
            data: self.data.unwrap_or(base.data),
            close: self.close.unwrap_or(base.close),
            open_gate_ip: self.open_gate_ip.unwrap_or(base.open_gate_ip),
            nul_after_reply: self.nul_after_reply.unwrap_or(base.nul_after_reply),
            block_frames: self.block_frames.unwrap_or(base.block_frames),
            temporary_block: self.temporary_block.unwrap_or(base.temporary_block),
        }
    }

    /// Every field set to `f`'s value, so the whole table is written out.
    pub fn pinned(f: Frames) -> FrameOverrides {
        FrameOverrides {
            open: Some(f.open),
            data: Some(f.data),
            close: Some(f.close),
            open_gate_ip: Some(f.open_gate_ip),
            nul_after_reply: Some(f.nul_after_reply),
            block_frames: Some(f.block_frames),
            temporary_block: Some(f.temporary_block),
        }
    }

    /// Whether no field is overridden.
    pub fn is_empty(&self) -> bool {
        *self == FrameOverrides::default()
    }
}

/// A letter as a one-character string in config files (`open = "O"`).
#[cfg(feature = "serde")]
mod letter {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(letter: &u8, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 4];
        s.serialize_str(char::from(*letter).encode_utf8(&mut buf))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
        let text = String::deserialize(d)?;
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii() => Ok(c as u8),
            _ => Err(D::Error::custom(format!(
                "expected one ASCII letter, got {text:?}"
            ))),
        }
    }
}

/// [`letter`] for an optional field.
#[cfg(feature = "serde")]
mod letter_opt {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(letter: &Option<u8>, s: S) -> Result<S::Ok, S::Error> {
        match letter {
            Some(l) => super::letter::serialize(l, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
        super::letter::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn presets_are_valid_and_distinct() {
        for d in Dialect::ALL {
            d.frames().check().unwrap();
            for e in Dialect::ALL {
                assert_eq!(d == e, d.frames() == e.frames(), "{d} {e}");
            }
        }
    }

    #[test]
    fn letters_that_could_collide_are_refused_by_field() {
        for bad in [
            b'-', b'+', b'0', b'9', b'%', b'$', b'/', b'#', b'!', b' ', 0, 0xC4,
        ] {
            let f = Frames {
                data: bad,
                ..Frames::DELPHI
            };
            let err = f.check().unwrap_err();
            assert_eq!(err.field, "data", "{bad:#04x}");
        }
        let f = Frames {
            close: b'O',
            ..Frames::DELPHI
        };
        let err = f.check().unwrap_err();
        assert_eq!(err.field, "close");
        assert!(err.to_string().contains("`open`"), "{err}");
        Frames {
            open: b'q',
            ..Frames::DELPHI
        }
        .check()
        .unwrap();
    }

    #[test]
    fn overrides_replace_only_what_they_name() {
        let o = FrameOverrides {
            open: Some(b'L'),
            temporary_block: Some(BlockLetter::T),
            ..FrameOverrides::default()
        };
        let f = o.apply(Frames::HAPPYM2);
        assert_eq!((f.open, f.data, f.close), (b'L', b'D', b'C'));
        assert_eq!(f.temporary_block, BlockLetter::T);
        assert!(f.block_frames);
        assert_eq!(FrameOverrides::pinned(f).apply(Frames::WEMADE), f);
        assert!(FrameOverrides::default().is_empty());
        assert!(!o.is_empty());
    }
}
