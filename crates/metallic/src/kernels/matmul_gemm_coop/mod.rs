//! The cooperative-matrix kernels of the prefill GEMM. Their dispatches are built by
//! [`crate::kernels::matmul_gemm`] (`GemmPath::Coop`); this family holds only the WGSL and
//! its tile shapes. Its shader module is created only on adapters that report 16x16 f16
//! cooperative matrices with an f32 accumulator (`Gpu::coop_matrix_f16`).

/// Kernel family name (`kernel_lib!`, pipeline cache).
pub const FAMILY: &str = "matmul_gemm_coop";

/// The widest tile, (batch rows, outputs) per workgroup: `CM` x `CN` in `kernel/coop.wgsl`
/// with 2 x 2 warp slots.
pub const TILE: (u32, u32) = (64, 128);

/// A tile shape of the kernel: `warps_m` x `warps_n` warp slots of 32 batch rows x 64
/// outputs each (its override constants `WARPS_M`, `WARPS_N`, each 1 or 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoopTile {
    pub warps_m: u32,
    pub warps_n: u32,
}

impl CoopTile {
    pub const WIDE: Self = Self {
        warps_m: 2,
        warps_n: 2,
    };

    /// (batch rows, outputs) per workgroup.
    pub fn shape(&self) -> (u32, u32) {
        (32 * self.warps_m, 64 * self.warps_n)
    }

    pub fn constants(&self) -> [(&'static str, f64); 2] {
        [
            ("WARPS_M", self.warps_m as f64),
            ("WARPS_N", self.warps_n as f64),
        ]
    }

    /// `"64x128"`, `"64x64"`, `"32x128"` or `"32x64"`.
    pub fn parse(s: &str) -> Option<Self> {
        let (m, n) = s.trim().split_once('x')?;
        let warps_m = match m.trim() {
            "32" => 1,
            "64" => 2,
            _ => return None,
        };
        let warps_n = match n.trim() {
            "64" => 1,
            "128" => 2,
            _ => return None,
        };
        Some(Self { warps_m, warps_n })
    }

    /// The tile for a weight chunk of `n` outputs: the wide tile where its column tiles
    /// alone give the GPU enough workgroups, narrower ones where they would leave most of
    /// it idle (the batch's row tiles multiply these; a plan serves any batch, so only `n`
    /// decides).
    pub fn for_outputs(n: u32) -> Self {
        if n >= 4096 {
            Self::WIDE
        } else {
            Self {
                warps_m: 2,
                warps_n: 1,
            }
        }
    }
}
