//! Argon2id hashing off the reactor, with a bound on concurrent hashes and
//! on the memory they hold.
//!
//! Each hash needs `argon2_m_kib` of working memory and a CPU for tens of
//! milliseconds, so hashes run on the blocking pool behind a semaphore: a
//! burst of logins queues instead of exhausting memory or stalling I/O.
//!
//! The working memory is one buffer per permit, reused from hash to hash
//! (`hash_password_into_with_memory`) and freed when no hash is running or
//! waiting. Allocating ~19 MiB afresh per hash instead leaves glibc's heap
//! holding hundreds of MiB after a burst: once the first such block is
//! returned, its dynamic mmap threshold rises above the block size and later
//! blocks come from per-thread arenas that fragment and are never trimmed.
//! Each buffer reserves enough address space to always be its own mapping
//! (`MIN_RESERVED_BLOCKS`), so freeing it gives the memory back.
//!
//! Stored hashes stay PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`);
//! verification recomputes the raw output with the stored salt and cost and
//! compares it in constant time.

use std::sync::Arc;

use anyhow::Context as _;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use parking_lot::Mutex;
use rand::Rng as _;
use subtle::ConstantTimeEq as _;
use tokio::sync::Semaphore;

use crate::config::SecurityConfig;

/// Salt bytes per hash (the PHC recommendation).
const SALT_BYTES: usize = 16;
/// Raw output bytes of new hashes (the argon2 crate's default).
const OUTPUT_BYTES: usize = 32;
/// Longest salt a PHC string may carry (the PHC limit).
const MAX_SALT_BYTES: usize = 64;
/// Largest cost a stored hash may ask for (as `security.argon2_m_kib`'s cap):
/// a corrupt or hostile row cannot make one verification allocate more.
const MAX_STORED_BLOCKS: usize = 1024 * 1024;

/// Hashes and verifies secrets with the configured Argon2id cost.
#[derive(Clone)]
pub struct Hasher {
    /// Cost for new hashes; verification reads the cost stored in each hash.
    params: Params,
    /// Permits and their working memory.
    pool: Arc<MemoryPool>,
}

/// One permit per concurrent hash, and the buffers they reuse.
struct MemoryPool {
    /// Bounds hashes in flight (each holds one buffer).
    permits: Arc<Semaphore>,
    /// Blocks of one buffer at the configured cost.
    blocks: usize,
    /// Free buffers, and how many hashes want or hold a permit.
    state: Mutex<PoolState>,
}

/// The mutable part of the pool.
#[derive(Default)]
struct PoolState {
    /// Buffers not checked out now (at most one per permit).
    free: Vec<Vec<Block>>,
    /// Hashes waiting for or holding a permit; when it falls to 0 the free
    /// buffers are dropped, so an idle server holds no hash memory.
    wanted: usize,
}

/// A permit with its buffer; returns the buffer to the pool when dropped.
struct Checkout {
    /// The pool it goes back to.
    pool: Arc<MemoryPool>,
    /// The working memory (`pool.blocks` long).
    memory: Vec<Block>,
    /// Held for as long as the buffer is in use.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl MemoryPool {
    /// Wait for a permit and take a buffer (allocated on first use).
    async fn checkout(self: &Arc<Self>) -> anyhow::Result<Checkout> {
        self.state.lock().wanted += 1;
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            self.release(None);
            anyhow::bail!("hasher closed");
        };
        let reused = self.state.lock().free.pop();
        let memory = reused.unwrap_or_else(|| working_memory(self.blocks));
        Ok(Checkout {
            pool: self.clone(),
            memory,
            _permit: permit,
        })
    }

    /// A hash is done (or gave up waiting): keep its buffer for the next one,
    /// or free every buffer if nobody else wants one.
    fn release(&self, memory: Option<Vec<Block>>) {
        let mut st = self.state.lock();
        st.wanted = st.wanted.saturating_sub(1);
        if st.wanted == 0 {
            st.free.clear();
        } else if let Some(m) = memory {
            st.free.push(m);
        }
    }
}

/// Blocks of address space reserved per buffer at least: just above glibc's
/// ceiling for its dynamic mmap threshold (32 MiB on 64-bit). An allocation
/// that large is always its own mapping, returned to the system when freed,
/// and freeing it never raises the threshold (which would send the next
/// buffers to the heap, where they stay resident after the burst). Only the
/// blocks a hash uses are ever touched, so the rest costs no memory.
const MIN_RESERVED_BLOCKS: usize = 32 * 1024 + 1;

/// A zeroed buffer of `blocks` Argon2 blocks (see `MIN_RESERVED_BLOCKS`).
fn working_memory(blocks: usize) -> Vec<Block> {
    let mut memory = Vec::with_capacity(blocks.max(MIN_RESERVED_BLOCKS));
    memory.resize(blocks, Block::new());
    memory
}

impl Drop for Checkout {
    fn drop(&mut self) {
        self.pool.release(Some(std::mem::take(&mut self.memory)));
    }
}

impl Hasher {
    /// Build from `[security]` (already validated).
    pub fn new(sec: &SecurityConfig) -> anyhow::Result<Hasher> {
        let params = Params::new(sec.argon2_m_kib, sec.argon2_t, sec.argon2_p, None)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let pool = MemoryPool {
            permits: Arc::new(Semaphore::new(sec.hash_permits())),
            blocks: params.block_count(),
            state: Mutex::new(PoolState::default()),
        };
        Ok(Hasher {
            params,
            pool: Arc::new(pool),
        })
    }

    /// Argon2id PHC string of `secret` with a fresh random salt.
    pub async fn hash(&self, secret: String) -> anyhow::Result<String> {
        let _timer = crate::timing::Timer::hash("hash");
        let mut checkout = self.pool.checkout().await?;
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || {
            let mut salt = [0u8; SALT_BYTES];
            rand::rng().fill(&mut salt[..]);
            let mut out = [0u8; OUTPUT_BYTES];
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
                .hash_password_into_with_memory(
                    secret.as_bytes(),
                    &salt,
                    &mut out,
                    &mut checkout.memory[..],
                )
                .map_err(|e| anyhow::anyhow!("argon2 hash: {e}"))?;
            let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
            let phc = PasswordHash {
                algorithm: Algorithm::Argon2id.ident(),
                version: Some(Version::V0x13.into()),
                params: ParamsString::try_from(&params)
                    .map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?,
                salt: Some(salt.as_salt()),
                hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("output: {e}"))?),
            };
            Ok(phc.to_string())
        })
        .await
        .context("hash task")?
    }

    /// Constant-time check of `secret` against a stored PHC string, with the
    /// algorithm, version, cost and salt stored in it (so raising the config
    /// keeps old hashes valid). A malformed stored hash is an error.
    pub async fn verify(&self, secret: String, phc: String) -> anyhow::Result<bool> {
        let _timer = crate::timing::Timer::hash("verify");
        let mut checkout = self.pool.checkout().await?;
        tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&phc)
                .map_err(|e| anyhow::anyhow!("stored hash unreadable: {e}"))?;
            let algorithm = Algorithm::try_from(parsed.algorithm)
                .map_err(|e| anyhow::anyhow!("stored hash algorithm: {e}"))?;
            let version = parsed
                .version
                .map_or(Ok(Version::V0x13), Version::try_from)
                .map_err(|e| anyhow::anyhow!("stored hash version: {e}"))?;
            let params = Params::try_from(&parsed)
                .map_err(|e| anyhow::anyhow!("stored hash parameters: {e}"))?;
            let expected = parsed
                .hash
                .ok_or_else(|| anyhow::anyhow!("stored hash has no output"))?;
            let mut salt = [0u8; MAX_SALT_BYTES];
            let salt = parsed
                .salt
                .ok_or_else(|| anyhow::anyhow!("stored hash has no salt"))?
                .decode_b64(&mut salt)
                .map_err(|e| anyhow::anyhow!("stored hash salt: {e}"))?;
            let needed = params.block_count();
            if needed > MAX_STORED_BLOCKS {
                anyhow::bail!("stored hash cost m={} above the cap", params.m_cost());
            }
            // A hash stored at a higher cost than configured gets memory of its own.
            let mut larger;
            let memory = if needed <= checkout.memory.len() {
                &mut checkout.memory[..]
            } else {
                larger = working_memory(needed);
                &mut larger[..]
            };
            let mut out = vec![0u8; expected.len()];
            Argon2::new(algorithm, version, params)
                .hash_password_into_with_memory(secret.as_bytes(), salt, &mut out, memory)
                .map_err(|e| anyhow::anyhow!("argon2 verify: {e}"))?;
            Ok(bool::from(out.ct_eq(expected.as_bytes())))
        })
        .await
        .context("verify task")?
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

    #[tokio::test]
    async fn hash_verifies_and_is_salted() {
        let h = Hasher::new(&SecurityConfig::test_speed()).unwrap();
        let a = h.hash("secret".into()).await.unwrap();
        let b = h.hash("secret".into()).await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{a}");
        assert_ne!(a, b, "salts must differ");
        assert!(!a.contains("secret"));
        assert!(h.verify("secret".into(), a.clone()).await.unwrap());
        assert!(!h.verify("Secret".into(), a).await.unwrap());
        assert!(h.verify("x".into(), "not a hash".into()).await.is_err());
    }

    #[tokio::test]
    async fn phc_strings_stay_compatible_with_the_argon2_crate() {
        let h = Hasher::new(&SecurityConfig::test_speed()).unwrap();
        // Ours verify with the crate's own verifier...
        let ours = h.hash("pw1234".into()).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(b"pw1234", &parsed)
            .is_ok());
        // ...and the crate's (stored before, at a higher cost) verify with ours.
        let salt = SaltString::encode_b64(&[7u8; SALT_BYTES]).unwrap();
        let params = Params::new(64, 2, 1, None).unwrap();
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"old-pw", &salt)
            .unwrap()
            .to_string();
        assert!(h.verify("old-pw".into(), theirs.clone()).await.unwrap());
        assert!(!h.verify("old-px".into(), theirs).await.unwrap());
    }

    #[tokio::test]
    async fn buffers_are_reused_then_freed_when_idle() {
        let sec = SecurityConfig {
            max_concurrent_hashes: 2,
            ..SecurityConfig::test_speed()
        };
        let h = Hasher::new(&sec).unwrap();
        h.hash("a".into()).await.unwrap();
        assert!(h.pool.state.lock().free.is_empty(), "idle: nothing kept");
        let held = h.pool.checkout().await.unwrap();
        let hashed = h.hash("b".into()).await.unwrap();
        assert_eq!(
            h.pool.state.lock().free.len(),
            1,
            "kept while one is wanted"
        );
        drop(held);
        assert!(h.pool.state.lock().free.is_empty());
        assert!(h.verify("b".into(), hashed).await.unwrap());
    }
}
