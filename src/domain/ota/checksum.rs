//! Checksums of a package computed while its bytes stream by, rendered as ThingsBoard renders
//! them (Guava's `HashCode.toString()`: lowercase hex of the hash bytes, which for CRC32 and
//! MURMUR3 are the little-endian bytes of the hash's integers). MURMUR3 (seed 0, as Guava's
//! `murmur3_32()` / `murmur3_128()`) comes from the `mur3` crate's incremental hashers.

use std::hash::Hasher as _;

use md5::Digest as _;

use super::ChecksumAlgorithm;

static CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

enum State {
    Md5(md5::Md5),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
    Crc32(crc::Digest<'static, u32>),
    Murmur32(mur3::Hasher32),
    Murmur128(mur3::Hasher128),
}

impl State {
    fn new(algorithm: ChecksumAlgorithm) -> Self {
        match algorithm {
            ChecksumAlgorithm::Md5 => Self::Md5(md5::Md5::new()),
            ChecksumAlgorithm::Sha256 => Self::Sha256(sha2::Sha256::new()),
            ChecksumAlgorithm::Sha384 => Self::Sha384(sha2::Sha384::new()),
            ChecksumAlgorithm::Sha512 => Self::Sha512(sha2::Sha512::new()),
            ChecksumAlgorithm::Crc32 => Self::Crc32(CRC32.digest()),
            ChecksumAlgorithm::Murmur3_32 => Self::Murmur32(mur3::Hasher32::with_seed(0)),
            ChecksumAlgorithm::Murmur3_128 => Self::Murmur128(mur3::Hasher128::with_seed(0)),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Md5(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Sha384(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
            Self::Crc32(h) => h.update(data),
            Self::Murmur32(h) => h.write(data),
            Self::Murmur128(h) => h.write(data),
        }
    }

    fn finish(self) -> String {
        match self {
            Self::Md5(h) => hex::encode(h.finalize()),
            Self::Sha256(h) => hex::encode(h.finalize()),
            Self::Sha384(h) => hex::encode(h.finalize()),
            Self::Sha512(h) => hex::encode(h.finalize()),
            Self::Crc32(h) => hex::encode(h.finalize().to_le_bytes()),
            Self::Murmur32(h) => hex::encode(h.finish32().to_le_bytes()),
            Self::Murmur128(h) => {
                let (h1, h2) = h.finish128();
                let mut out = [0u8; 16];
                out[..8].copy_from_slice(&h1.to_le_bytes());
                out[8..].copy_from_slice(&h2.to_le_bytes());
                hex::encode(out)
            }
        }
    }
}

/// Computes one algorithm's checksum, or every algorithm's when the algorithm is not known yet
/// (a multipart form may name it after the file).
pub struct Checksummer {
    states: Vec<(ChecksumAlgorithm, State)>,
}

impl Checksummer {
    pub fn new(algorithm: Option<ChecksumAlgorithm>) -> Self {
        let algorithms: Vec<ChecksumAlgorithm> = match algorithm {
            Some(a) => vec![a],
            None => ChecksumAlgorithm::ALL.to_vec(),
        };
        Self {
            states: algorithms.into_iter().map(|a| (a, State::new(a))).collect(),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        for (_, state) in &mut self.states {
            state.update(data);
        }
    }

    /// The checksum of `algorithm`; None when it was not computed.
    pub fn finish(self, algorithm: ChecksumAlgorithm) -> Option<String> {
        self.states
            .into_iter()
            .find(|(a, _)| *a == algorithm)
            .map(|(_, s)| s.finish())
    }

    /// The checksum of a whole slice.
    pub fn of(algorithm: ChecksumAlgorithm, data: &[u8]) -> String {
        let mut state = State::new(algorithm);
        state.update(data);
        state.finish()
    }
}

/// Bytes of an unfinished block, kept between updates.
#[cfg(test)]
mod tests {
    use super::*;

    const FOX: &[u8] = b"The quick brown fox jumps over the lazy dog";

    #[test]
    fn renders_as_guava() {
        // CRC32 of "123456789" is 0xcbf43926; Guava prints its little-endian bytes.
        assert_eq!(
            Checksummer::of(ChecksumAlgorithm::Crc32, b"123456789"),
            "2639f4cb"
        );
        // Guava's test vectors: murmur3_32 0x2e4ff723, murmur3_128 (0xe34bbc7bbc071b6c, 0x7a433ca9c49a9347).
        assert_eq!(
            Checksummer::of(ChecksumAlgorithm::Murmur3_32, FOX),
            "23f74f2e"
        );
        assert_eq!(
            Checksummer::of(ChecksumAlgorithm::Murmur3_128, FOX),
            "6c1b07bc7bbc4be347939ac4a93c437a"
        );
        assert_eq!(
            Checksummer::of(ChecksumAlgorithm::Md5, FOX),
            "9e107d9d372bb6826bd81d3542a419d6"
        );
        assert_eq!(
            Checksummer::of(ChecksumAlgorithm::Sha256, FOX),
            "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592"
        );
    }

    #[test]
    fn streaming_equals_whole() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 251) as u8).collect();
        for alg in ChecksumAlgorithm::ALL {
            let whole = Checksummer::of(alg, &data);
            for step in [1, 3, 7, 16, 17, 333] {
                let mut c = Checksummer::new(None);
                for part in data.chunks(step) {
                    c.update(part);
                }
                assert_eq!(
                    c.finish(alg).as_deref(),
                    Some(whole.as_str()),
                    "{alg:?} {step}"
                );
            }
        }
    }
}
