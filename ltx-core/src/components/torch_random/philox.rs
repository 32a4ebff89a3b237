//! Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11) and
//! cuRAND's `curandStatePhilox4_32_10_t` stream over it (`curand_kernel.h`,
//! `curand_philox4x32_x.h` of CUDA 13: `curand_init`, `skipahead`, `skipahead_sequence`,
//! `curand`, `curand4`), which torch's CUDA generator drives.
//!
//! One round maps counter `(c0, c1, c2, c3)` under key `(k0, k1)` to
//! `(hi(M1·c2) ⊕ c1 ⊕ k0, lo(M1·c2), hi(M0·c0) ⊕ c3 ⊕ k1, lo(M0·c0))` with `M0 = 0xD2511F53`,
//! `M1 = 0xCD9E8D57` (32×32→64-bit products); the key is bumped by `(0x9E3779B9, 0xBB67AE85)`
//! (wrapping) before every round but the first.

const M0: u64 = 0xD251_1F53;
const M1: u64 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox4x32-10 of `counter` under `key`.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let p0 = M0 * c[0] as u64;
        let p1 = M1 * c[2] as u64;
        c = [
            ((p1 >> 32) as u32) ^ c[1] ^ k[0],
            p1 as u32,
            ((p0 >> 32) as u32) ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

/// `curandStatePhilox4_32_10_t`: a 128-bit counter, the key, the current output block and the
/// index of its next unused word.
#[derive(Clone, Debug)]
pub struct CurandPhilox {
    ctr: [u32; 4],
    key: [u32; 2],
    output: [u32; 4],
    state: u32,
}

impl CurandPhilox {
    /// `curand_init(seed, subsequence, offset, &state)`: key = the seed's two halves, counter
    /// `(0, 0, lo(subsequence), hi(subsequence))`, then `offset` words skipped.
    pub fn new(seed: u64, subsequence: u64, offset: u64) -> Self {
        let mut s = Self {
            ctr: [0; 4],
            key: [seed as u32, (seed >> 32) as u32],
            output: [0; 4],
            state: 0,
        };
        s.incr_hi(subsequence);
        s.output = philox4x32_10(s.ctr, s.key);
        s.skipahead(offset);
        s
    }

    /// `Philox_State_Incr(s, n)`: the low 64 counter bits += `n`, carrying as cuRAND does.
    fn incr(&mut self, n: u64) {
        let nlo = n as u32;
        let mut nhi = (n >> 32) as u32;
        self.ctr[0] = self.ctr[0].wrapping_add(nlo);
        if self.ctr[0] < nlo {
            nhi = nhi.wrapping_add(1);
        }
        self.ctr[1] = self.ctr[1].wrapping_add(nhi);
        if nhi <= self.ctr[1] {
            return;
        }
        self.ctr[2] = self.ctr[2].wrapping_add(1);
        if self.ctr[2] != 0 {
            return;
        }
        self.ctr[3] = self.ctr[3].wrapping_add(1);
    }

    /// `Philox_State_Incr_hi(s, n)`: the high 64 counter bits += `n`.
    fn incr_hi(&mut self, n: u64) {
        let nlo = n as u32;
        let mut nhi = (n >> 32) as u32;
        self.ctr[2] = self.ctr[2].wrapping_add(nlo);
        if self.ctr[2] < nlo {
            nhi = nhi.wrapping_add(1);
        }
        self.ctr[3] = self.ctr[3].wrapping_add(nhi);
    }

    /// `Philox_State_Incr(s)`: the counter += 1.
    fn incr_one(&mut self) {
        for w in &mut self.ctr {
            *w = w.wrapping_add(1);
            if *w != 0 {
                return;
            }
        }
    }

    /// `skipahead(n, &state)`: skip `n` words.
    fn skipahead(&mut self, n: u64) {
        self.state += (n & 3) as u32;
        let mut blocks = n / 4;
        if self.state > 3 {
            blocks += 1;
            self.state -= 4;
        }
        self.incr(blocks);
        self.output = philox4x32_10(self.ctr, self.key);
    }

    /// `curand(&state)`: the next word.
    pub fn next_u32(&mut self) -> u32 {
        let ret = self.output[self.state as usize];
        self.state += 1;
        if self.state == 4 {
            self.incr_one();
            self.output = philox4x32_10(self.ctr, self.key);
            self.state = 0;
        }
        ret
    }

    /// `curand4(&state)`: the next four words.
    pub fn next_u32x4(&mut self) -> [u32; 4] {
        let tmp = self.output;
        self.incr_one();
        self.output = philox4x32_10(self.ctr, self.key);
        let s = self.state as usize;
        let mut r = [0; 4];
        for (i, v) in r.iter_mut().enumerate() {
            *v = if s + i < 4 {
                tmp[s + i]
            } else {
                self.output[s + i - 4]
            };
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_known_answer() {
        // Random123's kat_vectors: philox4x32 10 rounds
        assert_eq!(
            philox4x32_10([0, 0, 0, 0], [0, 0]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32_10([0xffff_ffff; 4], [0xffff_ffff; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn curand_stream_layout() {
        let seed = 0x1234_5678_9abc_def0u64;
        let key = [seed as u32, (seed >> 32) as u32];
        // subsequence 3 is the counter's high half, offset 6 skips one block and two words
        let mut s = CurandPhilox::new(seed, 3, 6);
        let b1 = philox4x32_10([1, 0, 3, 0], key);
        let b2 = philox4x32_10([2, 0, 3, 0], key);
        assert_eq!(s.next_u32(), b1[2]);
        assert_eq!(s.next_u32x4(), [b1[3], b2[0], b2[1], b2[2]]);
        // aligned: curand4 returns whole blocks
        let mut a = CurandPhilox::new(seed, 0, 8);
        assert_eq!(a.next_u32x4(), philox4x32_10([2, 0, 0, 0], key));
        assert_eq!(a.next_u32x4(), philox4x32_10([3, 0, 0, 0], key));
        // a large offset carries into the second counter word
        let mut c = CurandPhilox::new(seed, 0, 4 << 32);
        assert_eq!(c.next_u32x4(), philox4x32_10([0, 1, 0, 0], key));
    }
}
