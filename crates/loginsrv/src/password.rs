//! Argon2id hashing off the reactor, with a bound on concurrent hashes.
//!
//! Each hash holds `argon2_m_kib` of memory and a CPU for tens of
//! milliseconds, so hashes run on the blocking pool behind a semaphore:
//! a burst of logins queues instead of exhausting memory or stalling I/O.

use std::sync::Arc;

use anyhow::Context as _;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::Rng as _;
use tokio::sync::Semaphore;

use crate::config::SecurityConfig;

/// Salt bytes per hash (the PHC recommendation).
const SALT_BYTES: usize = 16;

/// Hashes and verifies secrets with the configured Argon2id cost.
#[derive(Clone)]
pub struct Hasher {
    /// Cost for new hashes; verification reads the cost stored in each hash.
    params: Params,
    /// Bounds hashes in flight (each holds `m_kib` of memory).
    permits: Arc<Semaphore>,
}

impl Hasher {
    /// Build from `[security]` (already validated).
    pub fn new(sec: &SecurityConfig) -> anyhow::Result<Hasher> {
        let params = Params::new(sec.argon2_m_kib, sec.argon2_t, sec.argon2_p, None)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let permits = match sec.max_concurrent_hashes {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        Ok(Hasher {
            params,
            permits: Arc::new(Semaphore::new(permits)),
        })
    }

    fn argon2(params: Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    /// Argon2id PHC string of `secret` with a fresh random salt.
    pub async fn hash(&self, secret: String) -> anyhow::Result<String> {
        let _timer = crate::timing::Timer::hash("hash");
        let _permit = self.permits.acquire().await.context("hasher closed")?;
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || {
            let mut salt = [0u8; SALT_BYTES];
            rand::rng().fill(&mut salt[..]);
            let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
            Self::argon2(params)
                .hash_password(secret.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("argon2 hash: {e}"))
        })
        .await
        .context("hash task")?
    }

    /// Constant-time check of `secret` against a stored PHC string.
    /// A malformed stored hash verifies as `false` (and is reported as an error).
    pub async fn verify(&self, secret: String, phc: String) -> anyhow::Result<bool> {
        let _timer = crate::timing::Timer::hash("verify");
        let _permit = self.permits.acquire().await.context("hasher closed")?;
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&phc)
                .map_err(|e| anyhow::anyhow!("stored hash unreadable: {e}"))?;
            // The cost comes from the stored hash, so raising the config keeps old hashes valid.
            match Self::argon2(params).verify_password(secret.as_bytes(), &parsed) {
                Ok(()) => Ok(true),
                Err(argon2::password_hash::Error::Password) => Ok(false),
                Err(e) => Err(anyhow::anyhow!("argon2 verify: {e}")),
            }
        })
        .await
        .context("verify task")?
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn hash_verifies_and_is_salted() {
        let h = Hasher::new(&SecurityConfig::test_speed()).unwrap();
        let a = h.hash("secret".into()).await.unwrap();
        let b = h.hash("secret".into()).await.unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "salts must differ");
        assert!(!a.contains("secret"));
        assert!(h.verify("secret".into(), a.clone()).await.unwrap());
        assert!(!h.verify("Secret".into(), a).await.unwrap());
        assert!(h.verify("x".into(), "not a hash".into()).await.is_err());
    }
}
