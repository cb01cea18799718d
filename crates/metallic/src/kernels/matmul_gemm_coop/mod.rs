//! The cooperative-matrix kernels of the prefill GEMM. Their dispatches are built by
//! [`crate::kernels::matmul_gemm`] (`GemmPath::Coop`); this family holds only the WGSL and
//! its tile shapes. Its shader module is created only on adapters that report 16x16 f16
//! cooperative matrices with an f32 accumulator (`Gpu::coop_matrix_f16`).

/// Kernel family name (`kernel_lib!`, pipeline cache).
pub const FAMILY: &str = "matmul_gemm_coop";

/// The widest tile, (batch rows, outputs) per workgroup: `CM` x `CN` in `kernel/coop.wgsl`
/// with 2 x 2 warp slots.
pub const TILE: (u32, u32) = (64, 128);

/// A tile shape of the kernel: `warps_m` x `warps_n` warp slots of 32 batch rows x `wtn`
/// outputs each (its override constants `WARPS_M`, `WARPS_N`, each 1 or 2, and `WTN`, 64
/// or 32 with `warps_n` 2), and whether the next stage's loads of x and W are held in
/// registers (`PREFETCH_X`, `PREFETCH_W`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoopTile {
    pub warps_m: u32,
    pub warps_n: u32,
    pub wtn: u32,
    pub prefetch_x: bool,
    pub prefetch_w: bool,
}

impl CoopTile {
    /// 64 x 128: 4 slots of 32 x 64.
    pub const WIDE: Self = Self {
        warps_m: 2,
        warps_n: 2,
        wtn: 64,
        prefetch_x: false,
        prefetch_w: false,
    };

    /// 64 x 64: 4 slots of 32 x 32.
    pub const NARROW: Self = Self {
        warps_m: 2,
        warps_n: 2,
        wtn: 32,
        prefetch_x: false,
        prefetch_w: false,
    };

    /// (batch rows, outputs) per workgroup.
    pub fn shape(&self) -> (u32, u32) {
        (32 * self.warps_m, self.wtn * self.warps_n)
    }

    pub fn constants(&self) -> [(&'static str, f64); 5] {
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        [
            ("WARPS_M", self.warps_m as f64),
            ("WARPS_N", self.warps_n as f64),
            ("WTN", self.wtn as f64),
            ("PREFETCH_X", flag(self.prefetch_x)),
            ("PREFETCH_W", flag(self.prefetch_w)),
        ]
    }

    /// `"64x128"`, `"64x64"`, `"32x128"`, `"32x64"` (slots of 32 x 64), `"64x64w"`,
    /// `"32x64w"` (2 slots across, of 32 x 32), each optionally followed by `"-pf"`,
    /// `"-px"` or `"-pw"` (the register prefetch of x and W, x, or W).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (s, prefetch_x, prefetch_w) = if let Some(s) = s.strip_suffix("-pf") {
            (s, true, true)
        } else if let Some(s) = s.strip_suffix("-px") {
            (s, true, false)
        } else if let Some(s) = s.strip_suffix("-pw") {
            (s, false, true)
        } else {
            (s, false, false)
        };
        let (s, narrow) = match s.strip_suffix('w') {
            Some(s) => (s, true),
            None => (s, false),
        };
        let (m, n) = s.split_once('x')?;
        let warps_m = match m {
            "32" => 1,
            "64" => 2,
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
        })
    }

    /// The tile for a weight chunk of `n` outputs: the wide tile, unless its column tiles
    /// would be so few (under 8) that most of the GPU idles; then 64 x 64, still 4 slots
    /// (a plan serves any batch, so only `n` decides). On an H100 at M = 512, N = 896
    /// (0.5B attn_output, ffn_down) runs 1.5x (F16) faster on 64 x 64, N = 1152 and up
    /// faster on 64 x 128.
    pub fn for_outputs(n: u32) -> Self {
        if n < 1024 {
            Self::NARROW
        } else {
            Self::WIDE
        }
    }
}
