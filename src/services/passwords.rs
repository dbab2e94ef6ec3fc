//! Password hashing (argon2id) on one dedicated thread with one reused work area, so memory
//! stays bounded and flat under login storms.
//!
//! Every argon2 run needs its whole memory cost at once. Run on the blocking pool, N concurrent
//! logins would take N times that, and the C allocator keeps such blocks per thread arena for the
//! life of the process (RSS grew by tens of MiB after a few logins). Here one worker thread,
//! fed by a bounded queue, hashes into a work area it allocates on first use and keeps: after the
//! first login the process holds exactly one area (7 MiB; larger only if a stored hash asks for
//! more, capped at [`MAX_MEMORY_KIB`]). New hashes use OWASP's 7 MiB / 5 passes argon2id setting
//! (as strong as 19 MiB / 2 passes by OWASP's reckoning, with a third of the memory); stored
//! hashes keep the parameters written in their PHC string. The price: logins are checked one at a
//! time, ~15 ms each on this project's 2-core test machine, so a node checks at most some 60
//! passwords a second.

use std::sync::OnceLock;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::RngCore;
use tokio::sync::{mpsc, oneshot};

/// Memory cost of new hashes, KiB.
const MEMORY_KIB: u32 = 7 * 1024;
/// Passes over the memory.
const PASSES: u32 = 5;
/// Largest memory cost a stored hash may ask for (argon2's former default is 19 MiB).
pub const MAX_MEMORY_KIB: u32 = 64 * 1024;
/// Requests waiting for the worker; more callers wait for a slot.
const QUEUE: usize = 256;

enum Job {
    Hash {
        password: String,
        reply: oneshot::Sender<Result<String, String>>,
    },
    Verify {
        hash: String,
        password: String,
        reply: oneshot::Sender<bool>,
    },
}

/// The worker's reused argon2 work area.
#[derive(Default)]
struct Worker {
    memory: Vec<Block>,
}

impl Worker {
    /// argon2 of `password` and `salt` with `argon`'s parameters, into an output of `len` bytes.
    fn compute(
        &mut self,
        argon: &Argon2<'_>,
        params: &Params,
        password: &[u8],
        salt: &[u8],
        len: usize,
    ) -> Result<Output, String> {
        if params.m_cost() > MAX_MEMORY_KIB {
            return Err(format!(
                "hash asks for {} KiB of memory, more than the {MAX_MEMORY_KIB} KiB allowed",
                params.m_cost()
            ));
        }
        let blocks = params.block_count();
        if self.memory.len() < blocks {
            self.memory.resize(blocks, Block::new());
        }
        let area = &mut self.memory[..blocks];
        Output::init_with(len, |out| {
            argon
                .hash_password_into_with_memory(password, salt, out, &mut *area)
                .map_err(|_| argon2::password_hash::Error::Crypto)
        })
        .map_err(|e| e.to_string())
    }

    fn hash(&mut self, password: &str) -> Result<String, String> {
        let params = Params::new(MEMORY_KIB, PASSES, 1, None).map_err(|e| e.to_string())?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let mut raw = [0u8; 16];
        rand::rng().fill_bytes(&mut raw);
        let salt = SaltString::encode_b64(&raw).map_err(|e| e.to_string())?;
        let output = self.compute(
            &argon,
            &params,
            password.as_bytes(),
            &raw,
            Params::DEFAULT_OUTPUT_LEN,
        )?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params).map_err(|e| e.to_string())?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(phc.to_string())
    }

    /// Whether `password` matches `hash`; a malformed hash never matches.
    fn verify(&mut self, hash: &str, password: &str) -> Result<bool, String> {
        let parsed = PasswordHash::new(hash).map_err(|e| e.to_string())?;
        let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| e.to_string())?;
        let version = parsed
            .version
            .map(Version::try_from)
            .transpose()
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let params = Params::try_from(&parsed).map_err(|e| e.to_string())?;
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return Ok(false);
        };
        let mut buf = [0u8; 64];
        let salt = salt.decode_b64(&mut buf).map_err(|e| e.to_string())?;
        let argon = Argon2::new(algorithm, version, params.clone());
        let computed = self.compute(&argon, &params, password.as_bytes(), salt, expected.len())?;
        // Output's equality is constant-time.
        Ok(computed == expected)
    }

    /// Runs one job; a job whose caller has gone (timed out, connection closed) is skipped, so a
    /// burst of abandoned logins does not delay the ones still waiting.
    fn run(&mut self, job: Job) {
        match job {
            Job::Hash { reply, .. } if reply.is_closed() => {}
            Job::Verify { reply, .. } if reply.is_closed() => {}
            Job::Hash { password, reply } => {
                let _ = reply.send(self.hash(&password));
            }
            Job::Verify {
                hash,
                password,
                reply,
            } => {
                let ok = self.verify(&hash, &password).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "stored password hash not usable");
                    false
                });
                let _ = reply.send(ok);
            }
        }
    }
}

/// The queue of the worker thread, started on first use and shared by the whole process.
fn queue() -> Result<&'static mpsc::Sender<Job>, String> {
    static QUEUE_TX: OnceLock<Result<mpsc::Sender<Job>, String>> = OnceLock::new();
    QUEUE_TX
        .get_or_init(|| {
            let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
            std::thread::Builder::new()
                .name("password-hasher".to_owned())
                .spawn(move || {
                    let mut worker = Worker::default();
                    while let Some(job) = rx.blocking_recv() {
                        worker.run(job);
                    }
                })
                .map(|_| tx)
                .map_err(|e| format!("cannot start the password hashing thread: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Queues the job `make` builds around its reply channel and waits for the worker's answer.
async fn submit<T>(make: impl FnOnce(oneshot::Sender<T>) -> Job) -> Result<T, String> {
    let (reply, answer) = oneshot::channel();
    queue()?
        .send(make(reply))
        .await
        .map_err(|_| "the password hashing thread has stopped".to_owned())?;
    answer
        .await
        .map_err(|_| "the password hashing thread dropped the request".to_owned())
}

/// An argon2id PHC string for `password`.
pub async fn hash(password: String) -> Result<String, String> {
    submit(|reply| Job::Hash { password, reply }).await?
}

/// Whether `password` matches the stored PHC `hash`. A malformed hash, or a hasher that cannot
/// run, never matches (and the latter is logged).
pub async fn verify(hash: String, password: String) -> bool {
    submit(|reply| Job::Verify {
        hash,
        password,
        reply,
    })
    .await
    .unwrap_or_else(|e| {
        tracing::error!(error = %e, "password not checked");
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_record_their_parameters() {
        let stored = hash("s3cret".to_owned()).await.unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"),
            "{stored}"
        );
        assert!(verify(stored.clone(), "s3cret".to_owned()).await);
        assert!(!verify(stored, "wrong".to_owned()).await);
        assert!(!verify("not a hash".to_owned(), "x".to_owned()).await);
    }

    #[tokio::test]
    async fn hashes_written_with_the_former_parameters_still_verify() {
        use argon2::password_hash::PasswordHasher as _;
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let old = Argon2::default()
            .hash_password(b"legacy", &salt)
            .unwrap()
            .to_string();
        assert!(old.contains("m=19456,t=2,p=1"), "{old}");
        assert!(verify(old.clone(), "legacy".to_owned()).await);
        assert!(!verify(old, "other".to_owned()).await);
    }

    #[test]
    fn hashes_asking_for_too_much_memory_are_refused() {
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let greedy = format!(
            "$argon2id$v=19$m={},t=1,p=1${}$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            MAX_MEMORY_KIB + 1,
            salt.as_str()
        );
        let err = Worker::default().verify(&greedy, "x").unwrap_err();
        assert!(err.contains("more than"), "{err}");
    }
}
