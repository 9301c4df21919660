//! Free list of receive buffers. A session holds a buffer only while bytes are
//! pending, so idle sessions cost no buffer memory (CIOCPServer kept one per posted read).

use bytes::BytesMut;
use parking_lot::Mutex;

/// Free lists, so sessions on different workers rarely meet on one lock.
const SHARDS: usize = 8;

/// Shared pool of equally sized receive buffers.
pub(crate) struct BufferPool {
    /// Reusable empty buffers, each with at least `buffer_bytes` capacity; a session
    /// uses the shard its id selects.
    free: Box<[Mutex<Vec<BytesMut>>]>,
    /// Capacity of every buffer handed out.
    buffer_bytes: usize,
    /// Most buffers kept per shard (`buffer_pool_max` split evenly); surplus ones are freed.
    max_free_per_shard: usize,
}

impl BufferPool {
    pub(crate) fn new(buffer_bytes: usize, max_free: usize) -> Self {
        BufferPool {
            free: (0..SHARDS).map(|_| Mutex::new(Vec::new())).collect(),
            buffer_bytes: buffer_bytes.max(1),
            max_free_per_shard: max_free.div_ceil(SHARDS),
        }
    }

    fn shard(&self, key: u32) -> &Mutex<Vec<BytesMut>> {
        &self.free[key as usize % SHARDS]
    }

    pub(crate) fn buffer_bytes(&self) -> usize {
        self.buffer_bytes
    }

    /// An empty buffer with `buffer_bytes` of spare capacity.
    pub(crate) fn take(&self, key: u32) -> BytesMut {
        self.shard(key)
            .lock()
            .pop()
            .unwrap_or_else(|| BytesMut::with_capacity(self.buffer_bytes))
    }

    /// Returns an emptied buffer. Kept only when its whole allocation is ours again
    /// (the handler may still hold frozen slices of it) and the free list has room.
    pub(crate) fn give(&self, key: u32, mut buf: BytesMut) {
        buf.clear();
        if !buf.try_reclaim(self.buffer_bytes) {
            return;
        }
        let mut free = self.shard(key).lock();
        if free.len() < self.max_free_per_shard {
            free.push(buf);
        }
    }

    #[cfg(test)]
    pub(crate) fn free_len(&self) -> usize {
        self.free.iter().map(|shard| shard.lock().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_and_bounds_free_list() {
        let pool = BufferPool::new(1024, 1);
        let a = pool.take(7);
        let b = pool.take(7);
        assert!(a.capacity() >= 1024);
        let a_ptr = a.as_ptr();
        pool.give(7, a);
        pool.give(7, b);
        assert_eq!(pool.free_len(), 1, "free list is capped at max_free");
        let again = pool.take(7);
        assert_eq!(again.as_ptr(), a_ptr, "buffer is reused");
        assert!(again.is_empty());
    }

    #[test]
    fn shared_buffer_is_not_pooled() {
        let pool = BufferPool::new(64, 4);
        let mut buf = pool.take(7);
        buf.extend_from_slice(b"frame");
        let frame = buf.split_to(5).freeze();
        pool.give(7, buf);
        assert_eq!(pool.free_len(), 0, "a slice of it is still alive");
        drop(frame);
        let mut buf = pool.take(7);
        buf.extend_from_slice(b"frame");
        let frame = buf.split_to(5).freeze();
        drop(frame);
        pool.give(7, buf);
        assert_eq!(pool.free_len(), 1, "whole allocation reclaimed");
        assert!(pool.take(7).capacity() >= 64);
    }
}
