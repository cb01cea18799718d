//! Random mutations of a valid file must produce Ok or Err, never a panic, and
//! anything that parses must have tensor slices inside the file.

mod common;

use metallic_gguf::{format_inspect, GgufFile};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_mutations_never_panic() {
    let base = common::small_bytes();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut parsed = 0;
    for _ in 0..2000 {
        let mut b = base.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(b.len());
            match rng.below(4) {
                0 => b[at] ^= 1 << rng.below(8),
                1 => b[at] = rng.next() as u8,
                // Extreme values are what overflow checks are for.
                2 => b[at] = [0x00, 0xff, 0x7f, 0x80][rng.below(4)],
                _ => {
                    let end = (at + 8).min(b.len());
                    b[at..end].fill(0xff);
                }
            }
        }
        if rng.below(10) == 0 {
            b.truncate(rng.below(b.len()));
        }
        if let Ok(f) = GgufFile::from_bytes(b) {
            parsed += 1;
            for t in f.tensors() {
                assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes);
            }
            let _ = format_inspect(&f);
        }
    }
    // Sanity: mutations that only touch tensor data or padding still parse.
    assert!(parsed > 0);
}
