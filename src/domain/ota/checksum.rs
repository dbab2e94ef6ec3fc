//! Checksums of a package computed while its bytes stream by, rendered as ThingsBoard renders
//! them (Guava's `HashCode.toString()`: lowercase hex of the hash bytes, which for CRC32 and
//! MURMUR3 are the little-endian bytes of the hash's integers).

use md5::Digest as _;

use super::ChecksumAlgorithm;

static CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

enum State {
    Md5(md5::Md5),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
    Crc32(crc::Digest<'static, u32>),
    Murmur32(Murmur3_32),
    Murmur128(Murmur3_128),
}

impl State {
    fn new(algorithm: ChecksumAlgorithm) -> Self {
        match algorithm {
            ChecksumAlgorithm::Md5 => Self::Md5(md5::Md5::new()),
            ChecksumAlgorithm::Sha256 => Self::Sha256(sha2::Sha256::new()),
            ChecksumAlgorithm::Sha384 => Self::Sha384(sha2::Sha384::new()),
            ChecksumAlgorithm::Sha512 => Self::Sha512(sha2::Sha512::new()),
            ChecksumAlgorithm::Crc32 => Self::Crc32(CRC32.digest()),
            ChecksumAlgorithm::Murmur3_32 => Self::Murmur32(Murmur3_32::default()),
            ChecksumAlgorithm::Murmur3_128 => Self::Murmur128(Murmur3_128::default()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Md5(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Sha384(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
            Self::Crc32(h) => h.update(data),
            Self::Murmur32(h) => h.update(data),
            Self::Murmur128(h) => h.update(data),
        }
    }

    fn finish(self) -> String {
        match self {
            Self::Md5(h) => hex::encode(h.finalize()),
            Self::Sha256(h) => hex::encode(h.finalize()),
            Self::Sha384(h) => hex::encode(h.finalize()),
            Self::Sha512(h) => hex::encode(h.finalize()),
            Self::Crc32(h) => hex::encode(h.finalize().to_le_bytes()),
            Self::Murmur32(h) => hex::encode(h.finish().to_le_bytes()),
            Self::Murmur128(h) => {
                let (h1, h2) = h.finish();
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
struct Tail<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for Tail<N> {
    fn default() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> Tail<N> {
    /// Feeds `data`, calling `block` for every complete block.
    fn feed(&mut self, mut data: &[u8], mut block: impl FnMut(&[u8; N])) {
        if self.len > 0 {
            let take = (N - self.len).min(data.len());
            self.buf[self.len..self.len + take].copy_from_slice(&data[..take]);
            self.len += take;
            data = &data[take..];
            if self.len < N {
                return;
            }
            block(&self.buf);
            self.len = 0;
        }
        let mut blocks = data.chunks_exact(N);
        for b in &mut blocks {
            if let Ok(b) = <&[u8; N]>::try_from(b) {
                block(b);
            }
        }
        let rest = blocks.remainder();
        self.buf[..rest.len()].copy_from_slice(rest);
        self.len = rest.len();
    }

    fn rest(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Little-endian integer of up to 8 bytes.
fn le(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

/// MurmurHash3 x86_32, seed 0 (Guava's `murmur3_32`).
#[derive(Default)]
struct Murmur3_32 {
    h: u32,
    total: u64,
    tail: Tail<4>,
}

const C1_32: u32 = 0xcc9e_2d51;
const C2_32: u32 = 0x1b87_3593;

fn mix_k32(k: u32) -> u32 {
    k.wrapping_mul(C1_32).rotate_left(15).wrapping_mul(C2_32)
}

impl Murmur3_32 {
    fn update(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let h = &mut self.h;
        self.tail.feed(data, |b| {
            *h ^= mix_k32(u32::from_le_bytes(*b));
            *h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
        });
    }

    fn finish(self) -> u32 {
        let mut h = self.h;
        let rest = self.tail.rest();
        if !rest.is_empty() {
            h ^= mix_k32(le(rest) as u32);
        }
        h ^= self.total as u32;
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^ (h >> 16)
    }
}

/// MurmurHash3 x64_128, seed 0 (Guava's `murmur3_128`).
#[derive(Default)]
struct Murmur3_128 {
    h1: u64,
    h2: u64,
    total: u64,
    tail: Tail<16>,
}

const C1_64: u64 = 0x87c3_7b91_1142_53d5;
const C2_64: u64 = 0x4cf5_ad43_2745_937f;

fn mix_k1(k: u64) -> u64 {
    k.wrapping_mul(C1_64).rotate_left(31).wrapping_mul(C2_64)
}

fn mix_k2(k: u64) -> u64 {
    k.wrapping_mul(C2_64).rotate_left(33).wrapping_mul(C1_64)
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

impl Murmur3_128 {
    fn update(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let (h1, h2) = (&mut self.h1, &mut self.h2);
        self.tail.feed(data, |b| {
            *h1 ^= mix_k1(le(&b[..8]));
            *h1 = h1
                .rotate_left(27)
                .wrapping_add(*h2)
                .wrapping_mul(5)
                .wrapping_add(0x52dc_e729);
            *h2 ^= mix_k2(le(&b[8..]));
            *h2 = h2
                .rotate_left(31)
                .wrapping_add(*h1)
                .wrapping_mul(5)
                .wrapping_add(0x3849_5ab5);
        });
    }

    fn finish(self) -> (u64, u64) {
        let (mut h1, mut h2) = (self.h1, self.h2);
        let rest = self.tail.rest();
        if rest.len() > 8 {
            h2 ^= mix_k2(le(&rest[8..]));
        }
        if !rest.is_empty() {
            h1 ^= mix_k1(le(&rest[..rest.len().min(8)]));
        }
        h1 ^= self.total;
        h2 ^= self.total;
        h1 = h1.wrapping_add(h2);
        h2 = h2.wrapping_add(h1);
        h1 = fmix64(h1);
        h2 = fmix64(h2);
        h1 = h1.wrapping_add(h2);
        h2 = h2.wrapping_add(h1);
        (h1, h2)
    }
}

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
