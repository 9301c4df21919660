//! The link's only writer: takes the whole pending buffer at once and writes
//! it with one `write_all`, so under load one write carries many frames.

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::stats::Count;
use super::supervisor::DownReason;
use super::Link;

/// Initial capacity of each of the two batch buffers.
pub(super) const BATCH_START_BYTES: usize = 64 * 1024;
/// A batch buffer grown past this by a burst is freed after its write.
const SPARE_KEEP_BYTES: usize = 1024 * 1024;

/// Write batches until the socket fails or `stop` is cancelled; on `stop`,
/// write what is pending (the close frames of the shutdown) and half-close.
pub(super) async fn write_loop(
    link: &Link,
    mut wr: OwnedWriteHalf,
    stop: &CancellationToken,
) -> DownReason {
    let counters = link.counters();
    // The buffer last written, kept to be swapped in next: no allocation
    // per batch once both have grown.
    let mut spare = BytesMut::with_capacity(BATCH_START_BYTES);
    loop {
        let stopping = tokio::select! {
            biased;
            () = link.state.wake.notified() => false,
            () = stop.cancelled() => true,
        };
        // Let the session tasks that are already runnable append their frames before we
        // take the batch: under load one write then carries many frames (the point of a
        // single link), and when idle this costs one scheduler pass, not a timer.
        tokio::task::yield_now().await;
        spare.clear();
        let frames = link.take(&mut spare);
        if !spare.is_empty() {
            if let Err(e) = wr.write_all(&spare).await {
                return DownReason::Io(e);
            }
            counters.add(Count::Frames, frames);
            counters.add(Count::Writes, 1);
            counters.add(Count::BytesOut, spare.len() as u64);
            // Give back memory after a burst instead of keeping it forever.
            if spare.capacity() > SPARE_KEEP_BYTES {
                spare = BytesMut::with_capacity(BATCH_START_BYTES);
            }
        }
        if stopping {
            if let Err(e) = wr.shutdown().await {
                debug!(error = %e, "link: half-close failed");
            }
            return DownReason::Stopped;
        }
    }
}
