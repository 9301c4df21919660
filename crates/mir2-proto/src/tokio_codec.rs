//! `tokio_util::codec::Decoder` for the framers, by delegation (feature `tokio-codec`).

use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

use crate::client_framer::{ClientFrameError, ClientFramer};
use crate::link::{LinkError, LinkFramer};

/// A framing error or the I/O error a `FramedRead` reports.
#[derive(Debug, thiserror::Error)]
pub enum CodecError<E> {
    /// The framer rejected the stream.
    #[error(transparent)]
    Frame(E),
    /// Reading failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Decoder for ClientFramer {
    type Item = Bytes;
    type Error = CodecError<ClientFrameError>;
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, Self::Error> {
        ClientFramer::decode(self, src).map_err(CodecError::Frame)
    }
}

impl Decoder for LinkFramer {
    /// The frame body between `%` and `$`.
    type Item = Bytes;
    type Error = CodecError<LinkError>;
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, Self::Error> {
        self.next_frame(src).map_err(CodecError::Frame)
    }
}
