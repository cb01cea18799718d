use std::sync::Arc;

/// How many workgroups a dispatch launches, given the batch's row count.
#[derive(Clone, Copy, Debug)]
pub enum Grid {
    /// The same grid whatever the batch.
    Fixed([u32; 3]),
    /// `x` workgroups for each batch row (grid y = rows).
    PerRow(u32),
    /// `x` workgroups for each tile of `tile_rows` batch rows (grid y = rows / tile_rows,
    /// rounded up): kernels that share weight or key tiles across batch rows.
    RowTiles { x: u32, tile_rows: u32 },
    /// [`Grid::RowTiles`] repeated `z` times along grid z (split-K GEMMs: one K range
    /// each), recorded only for steps of `rows.0..=rows.1` rows: a plan built once can hold
    /// one GEMM per range of chunk lengths (each with the tile and split-K that suit those
    /// lengths), of which a step records the one for its own.
    RowTilesFor {
        x: u32,
        tile_rows: u32,
        z: u32,
        rows: (u32, u32),
    },
    /// [`Grid::PerRow`], recorded only for steps of `rows.0..=rows.1` rows (the split-K
    /// reduce pass that goes with a [`Grid::RowTilesFor`]).
    PerRowFor { x: u32, rows: (u32, u32) },
}

impl Grid {
    pub fn size(&self, rows: u32) -> [u32; 3] {
        match *self {
            Grid::Fixed(g) => g,
            // Grids wider than the 65535 limit fold into z; kernels using PerRow with
            // such widths rebuild the index as wg.x + wg.z * num_workgroups.x.
            Grid::PerRow(x) if x > 65535 => {
                let z = x.div_ceil(65535);
                [x.div_ceil(z), rows, z]
            }
            Grid::PerRow(x) => [x, rows, 1],
            Grid::RowTiles { x, tile_rows } => [x, rows.div_ceil(tile_rows), 1],
            Grid::RowTilesFor {
                x,
                tile_rows,
                z,
                rows: (lo, hi),
            } if (lo..=hi).contains(&rows) => [x, rows.div_ceil(tile_rows), z],
            Grid::PerRowFor { x, rows: (lo, hi) } if (lo..=hi).contains(&rows) => {
                Grid::PerRow(x).size(rows)
            }
            Grid::RowTilesFor { .. } | Grid::PerRowFor { .. } => [0, 0, 0],
        }
    }
}

/// One recorded kernel launch: everything is built at load, so encoding a step is only
/// set_pipeline / set_bind_group / dispatch.
pub struct Dispatch {
    pub label: String,
    pub pipeline: Arc<wgpu::ComputePipeline>,
    pub bind_group: wgpu::BindGroup,
    pub grid: Grid,
}

impl Dispatch {
    /// Whether a step of `rows` rows launches this dispatch (an empty grid is skipped).
    pub fn runs_at(&self, rows: u32) -> bool {
        !self.grid.size(rows).contains(&0)
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, rows: u32) {
        let [x, y, z] = self.grid.size(rows);
        if x == 0 || y == 0 || z == 0 {
            return;
        }
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(x, y, z);
    }
}

/// An ordered list of dispatches; wgpu inserts the barriers between dependent ones.
#[derive(Default)]
pub struct Plan {
    pub dispatches: Vec<Dispatch>,
}

impl Plan {
    pub fn push(&mut self, d: Dispatch) {
        self.dispatches.push(d);
    }

    /// Appends a kernel call's dispatches (one per weight or table chunk, or per pass).
    pub fn extend(&mut self, ds: impl IntoIterator<Item = Dispatch>) {
        self.dispatches.extend(ds);
    }

    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>, rows: u32) {
        for d in &self.dispatches {
            d.record(pass, rows);
        }
    }

    /// Dispatches held, alternatives for other chunk lengths included.
    pub fn len(&self) -> usize {
        self.dispatches.len()
    }

    /// Dispatches a step of `rows` rows launches.
    pub fn len_at(&self, rows: u32) -> usize {
        self.dispatches.iter().filter(|d| d.runs_at(rows)).count()
    }

    pub fn is_empty(&self) -> bool {
        self.dispatches.is_empty()
    }
}
