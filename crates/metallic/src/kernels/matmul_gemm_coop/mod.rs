//! The cooperative-matrix kernels of the prefill GEMM. Their dispatches are built by
//! [`crate::kernels::matmul_gemm`] (`GemmPath::Coop`); this family holds only the WGSL and
//! its tile shapes. Its shader module is created only on adapters that report 16x16 f16
//! cooperative matrices with an f32 accumulator (`Gpu::coop_matrix_f16`).

/// Kernel family name (`kernel_lib!`, pipeline cache).
pub const FAMILY: &str = "matmul_gemm_coop";

/// The largest tile, (batch rows, outputs) per workgroup: `CM` x `CN` in `kernel/coop.wgsl`
/// with 4 x 2 warp slots.
pub const TILE: (u32, u32) = (128, 128);

/// The fewest 128 x 128 workgroups for which [`CoopTile::for_shape`] takes that tile: about
/// one per SM of a large GPU (an H100 has 132). At M = 2048 the 0.5B attention output
/// (112 tiles) still runs 1.2x faster on it than on 64 x 64.
pub const TALL_MIN_TILES: u32 = 100;

/// A tile shape of the kernel: `warps_m` x `warps_n` warp slots of 32 batch rows x `wtn`
/// outputs each (its override constants `WARPS_M`, 1, 2 or 4, `WARPS_N`, 1 or 2, and
/// `WTN`, 64 or 32 with `warps_n` 2), and whether the next stage's loads of x and W are
/// held in registers (`PREFETCH_X`, `PREFETCH_W`), and the K per stage (`CK`, 64 or 32).
/// Tiles of 8 slots run 256 threads, the others 128 (`C_THREADS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoopTile {
    pub warps_m: u32,
    pub warps_n: u32,
    pub wtn: u32,
    pub prefetch_x: bool,
    pub prefetch_w: bool,
    pub ck: u32,
}

impl CoopTile {
    /// 64 x 128: 4 slots of 32 x 64.
    pub const WIDE: Self = Self {
        warps_m: 2,
        warps_n: 2,
        wtn: 64,
        prefetch_x: false,
        prefetch_w: false,
        ck: 64,
    };

    /// 64 x 64: 4 slots of 32 x 32.
    pub const NARROW: Self = Self {
        warps_m: 2,
        warps_n: 2,
        wtn: 32,
        prefetch_x: false,
        prefetch_w: false,
        ck: 64,
    };

    /// 128 x 128: 8 slots of 32 x 64, 256 threads.
    pub const TALL: Self = Self {
        warps_m: 4,
        warps_n: 2,
        wtn: 64,
        prefetch_x: false,
        prefetch_w: false,
        ck: 64,
    };

    /// Threads per workgroup: one 32-wide subgroup per slot, at least 128.
    pub fn threads(&self) -> u32 {
        (32 * self.warps_m * self.warps_n).max(128)
    }

    /// (batch rows, outputs) per workgroup.
    pub fn shape(&self) -> (u32, u32) {
        (32 * self.warps_m, self.wtn * self.warps_n)
    }

    /// Workgroup memory the kernel declares with this tile: the x and W stages (rows of
    /// CK halves plus 8 of padding, f16) and one 16 x 16 f32 drain area per slot. 128 x 128
    /// takes 44 KiB, 64 x 128 31 KiB, 64 x 64 22 KiB.
    pub fn workgroup_bytes(&self) -> u64 {
        let (rows, outs) = self.shape();
        let pitch = (self.ck as u64 / 4 + 2) * 8;
        (rows + outs) as u64 * pitch + (self.warps_m * self.warps_n) as u64 * 256 * 4
    }

    pub fn constants(&self) -> [(&'static str, f64); 7] {
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        [
            ("CK", self.ck as f64),
            ("C_THREADS", self.threads() as f64),
            ("WARPS_M", self.warps_m as f64),
            ("WARPS_N", self.warps_n as f64),
            ("WTN", self.wtn as f64),
            ("PREFETCH_X", flag(self.prefetch_x)),
            ("PREFETCH_W", flag(self.prefetch_w)),
        ]
    }

    /// `"128x128"`, `"64x128"`, `"64x64"`, `"32x128"`, `"32x64"` (slots of 32 x 64),
    /// `"64x64w"`, `"32x64w"` (2 slots across, of 32 x 32), each optionally followed by
    /// `"-pf"`, `"-px"` or `"-pw"` (the register prefetch of x and W, x, or W) and by
    /// `"-k32"` (32 K per stage instead of 64), in any order.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('-');
        let s = parts.next()?;
        let (mut prefetch_x, mut prefetch_w, mut ck) = (false, false, 64);
        for flag in parts {
            match flag {
                "pf" => (prefetch_x, prefetch_w) = (true, true),
                "px" => prefetch_x = true,
                "pw" => prefetch_w = true,
                "k32" => ck = 32,
                _ => return None,
            }
        }
        let (s, narrow) = match s.strip_suffix('w') {
            Some(s) => (s, true),
            None => (s, false),
        };
        let (m, n) = s.split_once('x')?;
        let warps_m = match m {
            "32" => 1,
            "64" => 2,
            "128" if !narrow && n == "128" => 4,
            _ => return None,
        };
        let (warps_n, wtn) = match (n, narrow) {
            ("64", false) => (1, 64),
            ("128", false) => (2, 64),
            ("64", true) => (2, 32),
            _ => return None,
        };
        Some(Self {
            warps_m,
            warps_n,
            wtn,
            prefetch_x,
            prefetch_w,
            ck,
        })
    }

    /// The tile for a weight chunk of `n` outputs in a plan for up to `max_rows` batch
    /// rows, on a device with `max_workgroup_bytes` of workgroup memory. 128 x 128 (256
    /// threads) when that still gives at least [`TALL_MIN_TILES`] workgroups and fits: it
    /// reads each staged x and W vector for twice the multiplies of 64 x 128. Otherwise the
    /// wide tile, unless its column tiles would be so few (under 8) that most of the GPU
    /// idles; then 64 x 64, still 4 slots. On an H100 (gemm_bench, F16) at M = 512: 7B
    /// gate_up 86 -> 114 TFLOP/s and down 60 -> 97 on 128 x 128, while 0.5B qkv (36 tall
    /// tiles) drops 31 -> 26; N = 896 runs 1.5x faster on 64 x 64 than on 64 x 128. Devices
    /// with 32 KiB (Apple) never take 128 x 128.
    pub fn for_shape(n: u32, max_rows: u32, max_workgroup_bytes: u32) -> Self {
        let tall_tiles = max_rows.div_ceil(128) * n.div_ceil(128);
        if tall_tiles >= TALL_MIN_TILES
            && Self::TALL.workgroup_bytes() <= max_workgroup_bytes as u64
        {
            Self::TALL
        } else if n < 1024 {
            Self::NARROW
        } else {
            Self::WIDE
        }
    }
}
