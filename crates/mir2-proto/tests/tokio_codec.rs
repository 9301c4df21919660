//! The `tokio-codec` feature: the framers as `tokio_util::codec::Decoder`s.
#![cfg(feature = "tokio-codec")]
#![allow(clippy::unwrap_used)]

use bytes::BytesMut;
use mir2_proto::client_framer::ClientFrameError;
use mir2_proto::link::{LinkError, LinkFramer};
use mir2_proto::tokio_codec::CodecError;
use mir2_proto::ClientFramer;
use tokio_util::codec::Decoder;

#[test]
fn client_framer_decodes_and_reports_errors() {
    let mut f = ClientFramer::new(8192);
    let mut buf = BytesMut::from(&b"*#1<<<<<I@C<<<<<<<<YSIaX^ylTSIo!*#1<<"[..]);
    let m = Decoder::decode(&mut f, &mut buf).unwrap().unwrap();
    assert_eq!(&m[..], b"#1<<<<<I@C<<<<<<<<YSIaX^ylTSIo!");
    assert_eq!(Decoder::decode(&mut f, &mut buf).unwrap(), None);
    // A partial message at end of stream is an I/O error ("bytes remaining").
    assert!(matches!(f.decode_eof(&mut buf), Err(CodecError::Io(_))));
    let mut f = ClientFramer::new(8192);
    let mut buf = BytesMut::from(&b"%X1$"[..]);
    assert!(matches!(
        Decoder::decode(&mut f, &mut buf),
        Err(CodecError::Frame(ClientFrameError::ForbiddenByte {
            offset: 0,
            byte: b'%'
        }))
    ));
}

#[test]
fn link_framer_decodes_bodies() {
    let mut f = LinkFramer::new(16);
    let mut buf = BytesMut::from(&b"%++$\0%7/#a!$"[..]);
    assert_eq!(&f.decode(&mut buf).unwrap().unwrap()[..], b"++");
    assert_eq!(&f.decode(&mut buf).unwrap().unwrap()[..], b"7/#a!");
    assert_eq!(f.decode_eof(&mut buf).unwrap(), None);
    let mut buf = BytesMut::from(&b"%0123456789abcdef"[..]);
    assert!(matches!(
        f.decode(&mut buf),
        Err(CodecError::Frame(LinkError::TooLong { max: 16 }))
    ));
}
