//! Philox4x32-10 (Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3"), the
//! counter-based generator cuRAND and PyTorch's CUDA dropout use: four 32-bit words from a
//! 128-bit counter and a 64-bit key in ten rounds of two multiplications, so the `i`-th number of
//! a stream is computed on its own — by any thread, in any order, again in the backward pass.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// The four words of block `counter` under `key`.
#[inline(always)]
pub fn philox4x32(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let p0 = u64::from(M0) * u64::from(c[0]);
        let p1 = u64::from(M1) * u64::from(c[2]);
        c = [
            (p1 >> 32) as u32 ^ c[1] ^ k[0],
            p1 as u32,
            (p0 >> 32) as u32 ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

/// A stream of 32-bit numbers: the `i`-th is word `i % 4` of block `i / 4` (blocks counted in the
/// counter's low 64 bits, the stream's `id` in its high 64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    pub key: u64,
    pub id: u64,
}

impl Stream {
    /// Block `block`'s four numbers.
    #[inline(always)]
    pub fn block(&self, block: u64) -> [u32; 4] {
        philox4x32(
            [
                block as u32,
                (block >> 32) as u32,
                self.id as u32,
                (self.id >> 32) as u32,
            ],
            [self.key as u32, (self.key >> 32) as u32],
        )
    }
}

/// Blocks computed side by side by [`Stream::words`]: one AVX-512 register of 32-bit lanes.
pub const LANES: usize = 16;

impl Stream {
    /// Numbers `4 · first_block ..` `4 · (first_block + LANES)` of the stream, in order: the same
    /// as [`Stream::block`] gives block by block, computed lane-wise so that the rounds vectorize.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // lane by lane on purpose: the form that vectorizes
    pub fn words(&self, first_block: u64) -> [u32; 4 * LANES] {
        let mut c = [[0u32; LANES]; 4];
        for l in 0..LANES {
            let b = first_block + l as u64;
            c[0][l] = b as u32;
            c[1][l] = (b >> 32) as u32;
            c[2][l] = self.id as u32;
            c[3][l] = (self.id >> 32) as u32;
        }
        let mut k = [self.key as u32, (self.key >> 32) as u32];
        for round in 0..10 {
            if round > 0 {
                k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
            }
            for l in 0..LANES {
                let p0 = u64::from(M0) * u64::from(c[0][l]);
                let p1 = u64::from(M1) * u64::from(c[2][l]);
                let next = [
                    (p1 >> 32) as u32 ^ c[1][l] ^ k[0],
                    p1 as u32,
                    (p0 >> 32) as u32 ^ c[3][l] ^ k[1],
                    p0 as u32,
                ];
                for (w, v) in next.into_iter().enumerate() {
                    c[w][l] = v;
                }
            }
        }
        let mut out = [0u32; 4 * LANES];
        for l in 0..LANES {
            for w in 0..4 {
                out[4 * l + w] = c[w][l];
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random123's known-answer vectors (`kat_vectors`, philox4x32 with 10 rounds).
    #[test]
    fn philox_matches_the_reference_known_answers() {
        assert_eq!(
            philox4x32([0; 4], [0; 2]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn streams_are_uniform_enough_and_differ() {
        let s = Stream { key: 42, id: 7 };
        let n = 1 << 16;
        let mut below_half = 0u32;
        let mut bits = [0u32; 32];
        for b in 0..n / 4 {
            for w in s.block(b) {
                below_half += u32::from(w < 1 << 31);
                for (j, count) in bits.iter_mut().enumerate() {
                    *count += (w >> j) & 1;
                }
            }
        }
        // Binomial(65536, ½): sd 128; 6 sd.
        let within = |c: u32| (c as i64 - (n as i64) / 2).abs() < 768;
        assert!(within(below_half), "{below_half}");
        assert!(bits.iter().all(|&c| within(c)), "{bits:?}");
        assert_ne!(s.block(0), Stream { key: 43, id: 7 }.block(0));
        assert_ne!(s.block(0), Stream { key: 42, id: 8 }.block(0));
        assert_ne!(s.block(0), s.block(1));
    }

    #[test]
    fn lane_wise_words_are_the_blocks_in_order() {
        let s = Stream {
            key: 0x0123_4567_89ab_cdef,
            id: 3,
        };
        for first in [0u64, 5, u64::from(u32::MAX) - 3] {
            let words = s.words(first);
            for l in 0..LANES {
                assert_eq!(words[4 * l..4 * l + 4], s.block(first + l as u64));
            }
        }
    }
}
